r"""A ``DynamicGRU`` as an ONNX ``Scan`` over time, for :func:`npctr.export_onnx`.

The graph repeats :func:`npctr.ops.gru.gru_sequence` op for op, with a dynamic batch:

* before the loop, the input's part of every pre-activation for all ``T`` steps
  (:func:`npctr.ops.gru.input_projection`): ``x K_g^x + b_g`` and ``x K_c^x + b_c`` (``keras`` layout)
  or ``x W_i + b_i`` (``torch``), one ``MatMul`` + ``Add`` each;
* the ``Scan`` body, one step: the cell of the layout (:func:`npctr.ops.gru.keras_cell`,
  :func:`npctr.ops.gru.torch_cell`), the keep gate of the ``gru_type``
  (:func:`npctr.ops.gru.keep_gate`), the mix :math:`g h + (1 - g) c` (:func:`npctr.ops.gru.mix`) and the
  masked step (:func:`npctr.ops.gru.masked_step`): ``Where(t < L, h~, h)`` carried, ``Where(t < L, h~, 0)``
  emitted, so a row's state is frozen past its length and a row of length 0 keeps the zero state.

The ``Scan`` reads its inputs along axis 1 (``(batch, T, .)``) and writes its outputs along axis 1;
its state is the ``(batch, H)`` state. Weights are constants of the outer graph.
"""
import numpy as np

from ..ops.gru import KerasGRUWeights, units_of


def gru_scan(g, layer, cell_type, augru_gate, x, valid, att, path):
    """The GRU ``layer`` over ``x`` ``(batch, T, D)``.

    Parameters
    ----------
    g : the exporter's graph builder
    layer : DynamicGRU
    cell_type : {'GRU', 'AGRU', 'AUGRU'}
    augru_gate : {'keep', 'update'}
    x : name of ``(batch, T, D)``
    valid : name of the ``(batch, T, 1)`` bool mask ``t < L``
    att : name of the ``(batch, T, 1)`` attention scores (AGRU / AUGRU), or None
    path : the layer's name, for node and constant names

    Returns
    -------
    names of the outputs ``(batch, T, H)`` (0 past the length) and of the final state ``(batch, H)``
    """
    onnx, helper = g.onnx, g.onnx.helper
    w = layer.cell_weights()
    h = units_of(w)
    keras = isinstance(w, KerasGRUWeights)
    if keras:
        d = w.gates_kernel.shape[0] - h
        projected = [g.op("Add", g.op("MatMul", x, g.const(f"{path}/gates_kernel_x", w.gates_kernel[:d])),
                          g.const(f"{path}/gates_bias", w.gates_bias), hint=f"{path}/x_gates"),
                     g.op("Add", g.op("MatMul", x, g.const(f"{path}/candidate_kernel_x", w.candidate_kernel[:d])),
                          g.const(f"{path}/candidate_bias", w.candidate_bias), hint=f"{path}/x_candidate")]
    else:
        projected = [g.op("Add", g.op("MatMul", x, g.const(f"{path}/kernel_ih", w.kernel_ih)),
                          g.const(f"{path}/bias_ih", w.bias_ih), hint=f"{path}/x_gates")]
    scanned = projected + [valid] + ([att] if att is not None else [])
    # the zero initial state (batch, H)
    batch = g.op("Slice", g.op("Shape", x), g.const("start_0", [0], np.int64), g.const("end_1", [1], np.int64))
    shape = g.op("Concat", batch, g.const(f"{path}/units", [h], np.int64), axis=0)
    zero = helper.make_tensor("value", g.float_type(), [1], [0.0])
    h0 = g.op("ConstantOfShape", shape, value=zero, hint=f"{path}/initial_state")

    body = g.body()
    state = body._name(f"{path}/state")
    step_in = [body._name(f"{path}/step_input_{i}") for i in range(len(scanned))]
    widths = ([2 * h, h] if keras else [3 * h]) + [1] + ([1] if att is not None else [])
    types = [g.float_type()] * len(projected) + [onnx.TensorProto.BOOL] + ([g.float_type()] if att is not None else [])
    body_inputs = [helper.make_tensor_value_info(state, g.float_type(), ["batch", h])]
    body_inputs += [helper.make_tensor_value_info(n, t, ["batch", width])
                    for n, t, width in zip(step_in, types, widths)]
    valid_t = step_in[len(projected)]
    att_t = step_in[-1] if att is not None else None
    if keras:
        r, u, c = _keras_cell(body, w, h, d, state, step_in[0], step_in[1], path)
    else:
        r, u, c = _torch_cell(body, w, h, state, step_in[0], path)
    one = g.const("one", 1.0)
    if cell_type == "GRU":                                          # ops.gru.keep_gate
        keep = u
    elif cell_type == "AGRU":
        keep = body.op("Sub", one, att_t)
    elif augru_gate == "keep":
        keep = body.op("Mul", body.op("Sub", one, att_t), u)
    else:
        keep = body.op("Sub", one, body.op("Mul", att_t, u))
    new = body.op("Add", body.op("Mul", keep, state), body.op("Mul", body.op("Sub", one, keep), c),
                  hint=f"{path}/h_candidate")                       # ops.gru.mix
    carried = body.op("Where", valid_t, new, state, hint=f"{path}/h")                  # ops.gru.masked_step
    emitted = body.op("Where", valid_t, new, g.const("zero", 0.0), hint=f"{path}/o")
    body_outputs = [helper.make_tensor_value_info(carried, g.float_type(), ["batch", h]),
                    helper.make_tensor_value_info(emitted, g.float_type(), ["batch", h])]
    graph = helper.make_graph(body.nodes, f"{path}_step", body_inputs, body_outputs)
    final, outputs = g.ops("Scan", [h0] + scanned, 2, hint=f"{path}/scan", body=graph,
                           num_scan_inputs=len(scanned), scan_input_axes=[1] * len(scanned), scan_output_axes=[1])
    return outputs, final


def _keras_cell(body, w, h, d, state, x_gates, x_candidate, path):
    """tf.keras's ``GRUCell`` (:func:`npctr.ops.gru.keras_cell`): ``(r, u, c)``."""
    g = body
    gates = g.op("Sigmoid", g.op("Add", x_gates, g.op("MatMul", state, g.const(f"{path}/gates_kernel_h",
                                                                                w.gates_kernel[d:]))))
    r, u = g.ops("Split", [gates], 2, hint=f"{path}/r_u", axis=-1)
    rh = g.op("Mul", r, state, hint=f"{path}/rh")
    c = g.op("Tanh", g.op("Add", x_candidate, g.op("MatMul", rh, g.const(f"{path}/candidate_kernel_h",
                                                                         w.candidate_kernel[d:]))), hint=f"{path}/c")
    return r, u, c


def _torch_cell(body, w, h, state, x_gates, path):
    """``torch.nn.GRU``'s cell (:func:`npctr.ops.gru.torch_cell`): ``(r, u, c)``."""
    g = body
    gh = g.op("Add", g.op("MatMul", state, g.const(f"{path}/kernel_hh", w.kernel_hh)),
              g.const(f"{path}/bias_hh", w.bias_hh), hint=f"{path}/gh")
    sizes = g.const(f"{path}/split_rz_n", [2 * h, h], np.int64)
    gi_rz, gi_n = g.ops("Split", [x_gates, sizes], 2, hint=f"{path}/gi", axis=-1)
    gh_rz, gh_n = g.ops("Split", [gh, sizes], 2, hint=f"{path}/gh", axis=-1)
    r, u = g.ops("Split", [g.op("Sigmoid", g.op("Add", gi_rz, gh_rz))], 2, hint=f"{path}/r_u", axis=-1)
    c = g.op("Tanh", g.op("Add", gi_n, g.op("Mul", r, gh_n)), hint=f"{path}/c")
    return r, u, c
