r"""ONNX export of npctr's inference graphs: ``DNN``, ``DIN``, ``DIEN`` and ``DNNModel``.

``export_onnx(model, path)`` writes the model's ``forward(x, training=False)`` as an
ONNX graph (opset 17, IR 8) that ONNX Runtime runs in float32 and float64 alike:
every op used (Gather, MatMul, Add, Sub, Mul, Sigmoid, Relu, Tanh, Softmax, Max, Min,
Where, Equal, Less, Greater, Not, And, Cast, ReduceSum, ReduceMax, Concat, Reshape, Unsqueeze,
Transpose, Expand, Shape, Slice, Split, Flatten, ConstantOfShape and DIEN's ``Scan`` over time,
:mod:`npctr.interop.onnx_gru`) has CPU kernels for both. Inference folds what training
needs separately: BatchNormalization and Dice use their moving statistics, written as
constants ``mean`` and ``1 / sqrt(variance + epsilon)`` computed exactly as npctr
computes them, so the graph repeats npctr's arithmetic op for op.

Inputs are named by feature name as DeepCTR names them, with a dynamic batch axis:
``SparseFeat`` ``(batch, 1)`` int64 ids, ``VarLenSparseFeat`` ``(batch, maxlen)`` int64
ids (0 = padding), a ``length_name`` ``(batch, 1)`` int64, ``DenseFeat``
``(batch, dimension)`` in the model's dtype; a DIEN's negative histories are not inputs
(inference never reads them). The output ``prediction_layer``
``(batch, 1)`` is the probability (``task='binary'``) or the value (``'regression'``).
A ``DNN`` layer exports as input ``inputs`` ``(batch, input_dim)``, output ``outputs``.
See ``docs/onnx.md``. Needs the optional ``onnx`` package (``pip install npctr[onnx]``).
"""
import numpy as np

from .._version import __version__
from ..feature_column import DenseFeat, VarLenSparseFeat
from ..layers.activation import Activation, Dice, PReLU
from ..layers.core import DNN, PredictionLayer
from ..layers.dropout import Dropout
from ..layers.normalization import BatchNormalization
from ..layers.rnn import DynamicGRU
from ..ops.attention import SOFTMAX_PAD, split_first_kernel
from ..ops.batch_norm import inverse_std
from ..ops.sequence import MAX_POOL_PAD, MEAN_POOL_EPSILON
from .onnx_gru import gru_scan

OPSET = 17
IR_VERSION = 8          # what opset 17 needs; readable by ONNX Runtime >= 1.11

_PLAIN = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:     # an optional extra
        raise ImportError("export_onnx needs the onnx package: pip install 'npctr[onnx]'") from exc
    return onnx


class _Graph:
    """A growing list of nodes and constants with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self._used = [], [], set()

    def reserve(self, names):
        """Names taken by the graph's inputs."""
        self._used.update(names)

    def _name(self, hint):
        name, n = hint, 0
        while name in self._used:
            n += 1
            name = f"{hint}_{n}"
        self._used.add(name)
        return name

    def const(self, hint, value, dtype=None):
        """A constant tensor (in the graph's float dtype unless ``dtype`` says otherwise)."""
        name = self._name(hint)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype or self.dtype))
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, *inputs, hint=None, **attrs):
        out = self._name(hint or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def ops(self, op_type, inputs, n_outputs, hint=None, **attrs):
        """A node with ``n_outputs`` outputs (``Split``, ``Scan``); returns their names."""
        outs = [self._name(f"{hint or op_type.lower()}_{i}") for i in range(n_outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs

    def body(self):
        """A graph for a loop body: its own nodes, this graph's names and constants (a subgraph
        reads the constants of its outer graph by name)."""
        sub = _Graph(self.onnx, self.dtype)
        sub._used, sub.initializers = self._used, self.initializers
        return sub

    def float_type(self):
        return self.onnx.helper.np_dtype_to_tensor_dtype(self.dtype)

    def axes(self, *axes):
        return self.const("axes", list(axes), dtype=np.int64)


def _is(layer, cls):
    """``layer`` computes what ``cls`` computes at inference: an instance whose ``forward`` is
    ``cls``'s own (a subclass that only changes defaults passes; one that overrides forward does not)."""
    return isinstance(layer, cls) and type(layer).forward is cls.forward


def _unsupported(path, layer, what):
    return TypeError(f"export_onnx cannot export {path or 'the model'} ({type(layer).__name__}): {what}")


# -- layers ----------------------------------------------------------------------------------
def _batch_norm(g, bn, x, ndim, path):
    """``(x - mean) * inv_std [* gamma] [+ beta]`` with the moving statistics (inference)."""
    if not _is(bn, BatchNormalization):
        raise _unsupported(path, bn, "only npctr's BatchNormalization is supported")
    mean = bn._broadcast(bn.state["moving_mean"], ndim)
    inv_std = inverse_std(bn._broadcast(bn.state["moving_variance"], ndim), bn.epsilon)
    y = g.op("Mul", g.op("Sub", x, g.const(f"{path}/moving_mean", mean)),
             g.const(f"{path}/inv_std", inv_std), hint=f"{path}/x_hat")
    if "gamma" in bn.params:
        y = g.op("Mul", y, g.const(f"{path}/gamma", bn._broadcast(bn.params["gamma"], ndim)))
    if "beta" in bn.params:
        y = g.op("Add", y, g.const(f"{path}/beta", bn._broadcast(bn.params["beta"], ndim)))
    return y


def _activation(g, layer, x, ndim, path):
    if _is(layer, Dice):
        bn = layer.get_layer("bn")
        alpha = bn._broadcast(layer.params["dice_alpha"], ndim)
        p = g.op("Sigmoid", _batch_norm(g, bn, x, ndim, f"{path}/bn"), hint=f"{path}/p")
        # y = (p (1 - alpha) + alpha) x, as npctr factors it
        gate = g.op("Add", g.op("Mul", p, g.const(f"{path}/one_minus_alpha", 1.0 - alpha)),
                    g.const(f"{path}/dice_alpha", alpha), hint=f"{path}/gate")
        return g.op("Mul", gate, x, hint=path)
    if _is(layer, PReLU):
        if not layer.built:
            raise _unsupported(path, layer, "not built yet (its alpha's shape comes from its first input): "
                                            "call the model once first")
        if ndim - 1 != len(layer._input_tail):
            raise _unsupported(path, layer, f"built for inputs of rank {len(layer._input_tail) + 1}, not {ndim}")
        zero = g.const("zero", 0.0)
        negative = g.op("Mul", g.const(f"{path}/alpha", layer.params["alpha"]), g.op("Min", x, zero))
        return g.op("Add", g.op("Max", x, zero), negative, hint=path)
    if _is(layer, Activation):
        if layer.activation == "linear":
            return x
        if layer.activation == "softmax":
            return g.op("Softmax", x, axis=-1, hint=path)
        return g.op(_PLAIN[layer.activation], x, hint=path)
    raise _unsupported(path, layer, "supported activations are npctr's Activation (linear, relu, sigmoid, "
                                    "tanh, softmax), Dice and PReLU")


def _dnn(g, dnn, x, ndim, path, z0=None):
    """DeepCTR's DNN in inference: per layer ``x W + b``, BN, activation (dropout is the identity)."""
    if not _is(dnn, DNN):
        raise _unsupported(path, dnn, "only npctr's DNN is supported")
    a = x
    for i in range(len(dnn.hidden_units)):
        if i == 0 and z0 is not None:
            z = z0
        else:
            z = g.op("Add", g.op("MatMul", a, g.const(f"{path}/kernel{i}", dnn.params[f"kernel{i}"])),
                     g.const(f"{path}/bias{i}", dnn.params[f"bias{i}"]), hint=f"{path}/z{i}")
        if dnn.use_bn:
            z = _batch_norm(g, dnn.get_layer(f"bn{i}"), z, ndim, f"{path}/bn{i}")
        a = _activation(g, dnn.get_layer(f"activation{i}"), z, ndim, f"{path}/activation{i}")
        if not _is(dnn.get_layer(f"dropout{i}"), Dropout):
            raise _unsupported(f"{path}/dropout{i}", dnn.get_layer(f"dropout{i}"), "only npctr's Dropout")
    return a


def _local_activation_unit(g, lau, query, keys, path):
    """Scores ``(B, T, 1)`` for ``query (B, 1, E)`` and ``keys (B, T, E)``."""
    dnn = lau.get_layer("dnn")
    if lau.split and lau.hidden_units:
        # [q, k, q-k, q*k] W + b = k W_k + (q*k) W_p + (q W_q + b)   (npctr.ops.attention)
        w_query, w_key, w_product = split_first_kernel(dnn.params["kernel0"])
        z = g.op("MatMul", keys, g.const(f"{path}/dnn/kernel0_k", w_key))
        z = g.op("Add", z, g.op("MatMul", g.op("Mul", query, keys, hint=f"{path}/query_keys"),
                                g.const(f"{path}/dnn/kernel0_qk", w_product)))
        per_row = g.op("Add", g.op("MatMul", query, g.const(f"{path}/dnn/kernel0_q", w_query)),
                       g.const(f"{path}/dnn/bias0", dnn.params["bias0"]))
        h = _dnn(g, dnn, None, 3, f"{path}/dnn", z0=g.op("Add", z, per_row, hint=f"{path}/dnn/z0"))
    else:
        q = g.op("Expand", query, g.op("Shape", keys))
        u = g.op("Concat", q, keys, g.op("Sub", q, keys), g.op("Mul", q, keys), axis=-1,
                 hint=f"{path}/attention_input")
        h = _dnn(g, dnn, u, 3, f"{path}/dnn")
    return g.op("Add", g.op("MatMul", h, g.const(f"{path}/kernel", lau.params["kernel"])),
                g.const(f"{path}/bias", lau.params["bias"]), hint=f"{path}/score")


def _attention_weights(g, att, query, keys, valid, path):
    """The attention weights ``(B, 1, T)`` of ``keys`` for ``query``; ``valid`` is the ``(B, 1, T)`` bool mask."""
    score = g.op("Transpose", _local_activation_unit(g, att.get_layer("local_att"), query, keys,
                                                     f"{path}/local_att"), perm=[0, 2, 1])
    if att.weight_normalization:
        return g.op("Softmax", g.op("Where", valid, score, g.const("softmax_pad", SOFTMAX_PAD)), axis=-1,
                    hint=f"{path}/weights")
    return g.op("Where", valid, score, g.const("zero", 0.0), hint=f"{path}/weights")


def _attention(g, att, query, keys, valid, path):
    """DIN's attention pooling ``(B, 1, E)``; ``valid`` is the ``(B, 1, T)`` bool mask."""
    return g.op("MatMul", _attention_weights(g, att, query, keys, valid, path), keys, hint=f"{path}/output")


def _pooling(g, layer, seq, valid, lengths, path):
    """``SequencePoolingLayer``: sum/mean/max of ``seq (B, T, E)`` over valid positions -> ``(B, 1, E)``."""
    m = g.op("Cast", g.op("Unsqueeze", valid, g.axes(-1)), to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype),
             hint=f"{path}/mask")                                                     # (B, T, 1)
    if layer.mode == "max":
        shifted = g.op("Sub", seq, g.op("Mul", g.op("Sub", g.const("one", 1.0), m), g.const("max_pool_pad", MAX_POOL_PAD)))
        return g.op("ReduceMax", shifted, axes=[1], keepdims=1, hint=path)
    y = g.op("ReduceSum", g.op("Mul", seq, m), g.axes(1), keepdims=1, hint=f"{path}/sum")
    if layer.mode == "sum":
        return y
    length = lengths if lengths is not None else g.op("ReduceSum", m, g.axes(1), keepdims=1)
    length = g.op("Reshape", length, g.const("shape_b11", [-1, 1, 1], dtype=np.int64))
    # the divisor length + 1e-8 is formed in float32, as the frameworks do (ops.sequence.mean_pool_length)
    float32 = g.onnx.TensorProto.FLOAT
    length = g.op("Add", g.op("Cast", length, to=float32),
                  g.const("mean_pool_epsilon", MEAN_POOL_EPSILON, dtype=np.float32))
    length = g.op("Cast", length, to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype))
    scale = g.op("Div", g.const("one", 1.0), length)
    return g.op("Mul", y, scale, hint=path)


def _prediction(g, layer, logit, path):
    if not _is(layer, PredictionLayer) or layer.task not in ("binary", "regression"):
        raise _unsupported(path, layer, "only a binary or regression PredictionLayer is supported")
    if layer.use_bias:
        logit = g.op("Add", logit, g.const(f"{path}/global_bias", layer.params["global_bias"]))
    return g.op("Sigmoid", logit, hint=path) if layer.task == "binary" else logit


# -- models ----------------------------------------------------------------------------------
def _length_mask(g, maxlen, length):
    """``(B, T)`` bool ``t < length`` for a ``(B, 1)`` int64 length input (``tf.sequence_mask``)."""
    return g.op("Less", g.const(f"positions_{maxlen}", np.arange(maxlen)[None, :], np.int64), length)


def graph_inputs(model):
    """The names of the graph inputs of a feature model: ``model.feature_names``, without a DIEN's
    negative histories (inference never reads them)."""
    unused = {fc.name for fc in getattr(model, "negative_columns", ())}
    return [n for n in model.feature_names if n not in unused]


def _inputs_and_embeddings(g, model):
    """The graph inputs (``graph_inputs``) and ``{feature name: its embeddings}`` (a ``Gather`` each)."""
    helper, tp = g.onnx.helper, g.onnx.TensorProto
    names = graph_inputs(model)
    inputs = []
    g.reserve(model.input_features)
    for name in names:
        fc = model.input_features[name]
        if isinstance(fc, DenseFeat):
            inputs.append(helper.make_tensor_value_info(name, g.float_type(), ["batch", fc.dimension]))
        elif isinstance(fc, VarLenSparseFeat) and name == fc.name:
            inputs.append(helper.make_tensor_value_info(name, tp.INT64, ["batch", fc.maxlen]))
        else:
            inputs.append(helper.make_tensor_value_info(name, tp.INT64, ["batch", 1]))
    emb = {}
    for emb_name, features in model.table_features.items():
        used = [n for n in features if n in names]
        if not used:
            continue
        table = g.const(f"sparse_emb_{emb_name}/embeddings",
                        model.get_layer(f"sparse_emb_{emb_name}").params["embeddings"])
        for n in used:
            emb[n] = g.op("Gather", table, n, axis=0, hint=f"{n}_emb")
    return inputs, emb


def _pooled(g, model, emb):
    """The pooled (non-history) sequences ``(B, 1, E)``, in column order."""
    pieces = []
    for fc in model.pooled_columns:
        path = f"sequence_pooling_{fc.name}"
        if fc.length_name is None:
            valid, lengths = g.op("Not", g.op("Equal", fc.name, g.const("id_pad", 0, np.int64))), None
        else:
            valid = _length_mask(g, fc.maxlen, fc.length_name)
            lengths = g.op("Cast", fc.length_name, to=g.float_type())
        pieces.append(_pooling(g, model.get_layer(path), emb[fc.name], valid, lengths, path))
    return pieces


def _output(g, model, deep):
    """``DNN``, ``Dense(1)`` and the ``PredictionLayer`` on the DNN input ``deep`` ``(B, D)``."""
    h = _dnn(g, model.get_layer("dnn"), deep, 2, "dnn")
    dense = model.get_layer("dense")
    logit = g.op("MatMul", h, g.const("dense/kernel", dense.params["kernel"]), hint="dense")
    return _prediction(g, model.get_layer("prediction_layer"), logit, "prediction_layer")


def _feature_model(g, model):
    """The graph of ``FeatureModel._forward_logit`` + the prediction; returns (inputs, output)."""
    inputs, emb = _inputs_and_embeddings(g, model)
    pieces = [emb[fc.name] for fc in model.sparse_columns]                       # (B, 1, E_i)
    pieces += _pooled(g, model, emb)
    if model.history_columns:
        query = g.op("Concat", *[emb[fc.name] for fc in model.query_columns], axis=-1, hint="query")
        keys = g.op("Concat", *[emb[fc.name] for fc in model.history_columns], axis=-1, hint="keys")
        if getattr(getattr(model, "conventions", None), "history_mask", "ids") == "length":
            # DeepCTR-Torch's profile: position t is valid when t < keys_length
            valid = _length_mask(g, model.history_columns[0].maxlen, model.history_length_name)
        else:
            valid = None
            for fc in model.history_columns:      # a position is valid when none of its ids is padding
                v = g.op("Not", g.op("Equal", fc.name, g.const("id_pad", 0, np.int64)))
                valid = v if valid is None else g.op("And", valid, v)
        valid = g.op("Unsqueeze", valid, g.axes(1), hint="history_mask")                 # (B, 1, T)
        pieces.append(_attention(g, model.get_layer("attention_sequence_pooling_layer"), query, keys, valid,
                                 "attention_sequence_pooling_layer"))
    flat = []
    if pieces:
        joined = g.op("Concat", *pieces, axis=-1) if len(pieces) > 1 else pieces[0]
        flat = [g.op("Reshape", joined, g.const("shape_flat", [-1, sum(model._emb_sizes)], np.int64),
                     hint="embeddings_flat")]
    parts = flat + [fc.name for fc in model.dense_columns]
    deep = g.op("Concat", *parts, axis=-1, hint="dnn_input") if len(parts) > 1 else parts[0]
    return inputs, _output(g, model, deep), "prediction_layer", ["batch", 1]


def _dien_model(g, model):
    """The graph of ``DIEN``'s inference forward (no auxiliary loss; negatives are not inputs) + the
    prediction: the interest extractor and the evolving layer as ``Scan``s (``onnx_gru``), the
    attention as DIN's, masked by the length; returns (inputs, output)."""
    conv = model.conventions
    for name in ("gru1", "gru2"):
        if not _is(model.get_layer(name), DynamicGRU):
            raise _unsupported(name, model.get_layer(name), "only npctr's DynamicGRU is supported")
    inputs, emb = _inputs_and_embeddings(g, model)
    query = g.op("Concat", *[emb[fc.name] for fc in model.query_columns], axis=-1, hint="query")     # (B, 1, H)
    keys = g.op("Concat", *[emb[fc.name] for fc in model.history_columns], axis=-1, hint="keys")     # (B, T, H)
    length = model.history_length_name
    valid = _length_mask(g, model.history_columns[0].maxlen, length)                                # (B, T)
    valid_steps = g.op("Unsqueeze", valid, g.axes(-1), hint="step_mask")                             # (B, T, 1)
    valid_keys = g.op("Unsqueeze", valid, g.axes(1), hint="history_mask")                            # (B, 1, T)
    att_layer = model.get_layer("attention_sequence_pooling_layer")

    def weights(keys):
        w = _attention_weights(g, att_layer, query, keys, valid_keys, "attention_sequence_pooling_layer")
        if conv.dien_attention_rows == "nonempty":          # DeepCTR-Torch attends rows of length > 0 only
            attended = g.op("Unsqueeze", g.op("Greater", length, g.const("length_0", 0, np.int64)), g.axes(1))
            w = g.op("Where", attended, w, g.const("zero", 0.0), hint="attention_weights")
        return w                                                                                    # (B, 1, T)

    interests, _ = gru_scan(g, model.get_layer("gru1"), "GRU", conv.augru_gate, keys, valid_steps, None, "gru1")
    gru2 = model.get_layer("gru2")
    if model.gru_type == "GRU":                             # a GRU, then attention pooling of its outputs
        evolved, _ = gru_scan(g, gru2, "GRU", conv.augru_gate, interests, valid_steps, None, "gru2")
        hist = g.op("MatMul", weights(evolved), evolved, hint="final_interest")
    else:
        scores = g.op("Transpose", weights(interests), perm=[0, 2, 1], hint="attention_scores")    # (B, T, 1)
        if model.gru_type == "AIGRU":                       # a GRU on the attention-scaled interests
            _, final = gru_scan(g, gru2, "GRU", conv.augru_gate, g.op("Mul", interests, scores), valid_steps,
                                None, "gru2")
        else:
            _, final = gru_scan(g, gru2, model.gru_type, conv.augru_gate, interests, valid_steps, scores, "gru2")
        hist = g.op("Unsqueeze", final, g.axes(1), hint="final_interest")                           # (B, 1, H)
    pieces = {"sparse": [emb[fc.name] for fc in model.sparse_columns], "hist": [hist],
              "pooled": _pooled(g, model, emb) if "pooled" in conv.dien_dnn_input else [],
              "dense": [fc.name for fc in model.dense_columns]}
    parts = []
    for kind in conv.dien_dnn_input:
        for piece in pieces[kind]:
            if kind != "dense":
                piece = g.op("Flatten", piece, axis=1)                                              # (B, E)
            elif conv.dien_dense_float32 and g.dtype != np.float32:    # DeepCTR-Torch's .float()
                piece = g.op("Cast", g.op("Cast", piece, to=g.onnx.TensorProto.FLOAT), to=g.float_type())
            parts.append(piece)
    deep = g.op("Concat", *parts, axis=-1, hint="dnn_input") if len(parts) > 1 else parts[0]
    return inputs, _output(g, model, deep), "prediction_layer", ["batch", 1]


def _dnn_layer(g, dnn):
    if not dnn.built:
        raise ValueError("export_onnx needs a built DNN: call it once or build it (dnn.build((None, input_dim)))")
    helper = g.onnx.helper
    g.reserve(["inputs", "outputs"])
    x = helper.make_tensor_value_info("inputs", helper.np_dtype_to_tensor_dtype(g.dtype),
                                      ["batch", dnn.input_dim])
    out = _dnn(g, dnn, "inputs", 2, "dnn")
    if out == "inputs":      # hidden_units=(): the identity
        out = g.op("Identity", out)
    width = dnn.hidden_units[-1] if dnn.hidden_units else dnn.input_dim
    return [x], out, "outputs", ["batch", width]


def onnx_inputs(model, x):
    """The feed dict for the exported graph from ``model.predict``'s input ``x``.

    Ids and lengths become ``(batch, 1)`` / ``(batch, maxlen)`` int64, dense features
    ``(batch, dimension)`` in the model's dtype; a DNN's array becomes ``{'inputs': x}``. A DIEN's
    negative histories are not graph inputs: ``x`` may leave them out.
    """
    if type(model) is DNN:
        return {"inputs": np.asarray(x, dtype=model.dtype)}
    names = graph_inputs(model)
    if len(names) < len(model.feature_names) and isinstance(x, dict):
        x = {n: x[n] for n in names if n in x}
        n_rows = len(np.asarray(x[names[0]])) if names[0] in x else 0
        for fc in model.negative_columns:          # checked as zeros: never read
            x[fc.name] = np.zeros((n_rows, fc.maxlen), np.int64)
    arrays, n = model._check_x(x)
    feed = {}
    for name in names:
        a = arrays[name]
        fc = model.input_features[name]
        dtype = model.dtype if isinstance(fc, DenseFeat) else np.int64
        feed[name] = np.ascontiguousarray(a.reshape(n, -1), dtype=dtype)
    return feed


def export_onnx(model, path):
    """Write the inference graph of ``model`` to ``path`` as ONNX; return the ``onnx.ModelProto``.

    Parameters
    ----------
    model : DIN, DNNModel or DNN
        In its dtype (float32 or float64); batch size is dynamic.
    path : str or path-like

    Inputs are named by feature name (``model.feature_names``): ids ``(batch, 1)`` /
    ``(batch, maxlen)`` int64, dense features ``(batch, dimension)`` float; the output
    ``prediction_layer`` ``(batch, 1)`` equals ``model.predict(x)``. A DNN layer has input
    ``inputs (batch, input_dim)`` and output ``outputs``. Raises ``TypeError`` for a
    model or sub-layer the exporter does not know (naming it); needs ``onnx``.
    """
    from ..models.ctr import FeatureModel
    onnx = _onnx()
    if type(model) is DNN:
        build = _dnn_layer
    elif isinstance(model, FeatureModel) and type(model).__name__ in ("DIN", "DNNModel"):
        build = _feature_model
    elif isinstance(model, FeatureModel) and type(model).__name__ == "DIEN":
        build = _dien_model
    else:
        raise TypeError(f"export_onnx exports DIN, DIEN, DNNModel and DNN, got {type(model).__name__}")
    dtype = model.dtype or np.dtype(np.float64)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"export_onnx exports float32 and float64 models, got dtype {dtype}")
    g = _Graph(onnx, dtype)
    g.reserve(["prediction_layer"])
    inputs, out, out_name, out_shape = build(g, model)
    g.nodes.append(onnx.helper.make_node("Identity", [out], [out_name], name=out_name + "/identity"))
    output = onnx.helper.make_tensor_value_info(out_name, onnx.helper.np_dtype_to_tensor_dtype(dtype), out_shape)
    graph = onnx.helper.make_graph(g.nodes, model.name or type(model).__name__, inputs, [output],
                                   initializer=g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="npctr", opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION)
    proto.producer_version = __version__
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return proto


# -- python -m npctr export-onnx -------------------------------------------------------------
def random_inputs(model, n, seed=0):
    """``n`` rows of valid random inputs for ``model``: ids in ``[1, vocabulary_size)``, histories
    padded with 0 after a random length (some rows all padding), lengths in ``[0, maxlen]``,
    dense features standard normal."""
    rng = np.random.default_rng(seed)
    x = {}
    for name, fc in model.input_features.items():
        if isinstance(fc, DenseFeat):
            x[name] = rng.normal(size=(n, fc.dimension))
        elif isinstance(fc, VarLenSparseFeat) and name == fc.name:
            length = rng.integers(0, fc.maxlen + 1, size=(n, 1))
            ids = rng.integers(1, max(fc.vocabulary_size, 2), size=(n, fc.maxlen)) % fc.vocabulary_size
            x[name] = np.where(np.arange(fc.maxlen) < length, ids, 0)
        elif isinstance(fc, VarLenSparseFeat):
            x[name] = rng.integers(0, fc.maxlen + 1, size=(n, 1))
        else:
            x[name] = rng.integers(0, fc.vocabulary_size, size=(n, 1))
    return x


def check_export(model, path, n=256, seed=0):
    """Run the exported graph at ``path`` in ONNX Runtime on ``n`` random rows; return the largest
    ``|onnx - model.predict|``. Needs onnxruntime."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if type(model) is DNN:
        x = np.random.default_rng(seed).normal(size=(n, model.input_dim)).astype(model.dtype)
        expected = model.forward(x)
    else:
        x = random_inputs(model, n, seed)
        expected = model.predict(x)
    out = session.run(None, onnx_inputs(model, x))[0]
    return float(np.max(np.abs(out - expected)))


def main(argv=None):
    """``python -m npctr export-onnx MODEL OUTPUT [--check N]``: exit 0 done, 1 failed (a bad model file,
    a failed write or check), 2 usage (a missing or special model file, an output that is the model,
    onnx / onnxruntime not installed). Every failure is one line on stderr."""
    import argparse
    import os
    import sys
    from .. import _files
    p = argparse.ArgumentParser(prog="python -m npctr export-onnx",
                                description="Write a saved DIN / DIEN / DNNModel as an ONNX inference graph.")
    p.add_argument("model", help="model file written by model.save")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="then run it in onnxruntime on N random rows and compare with model.predict "
                        "(fails above 1e-6 for float32, 1e-12 for float64)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return exc.code

    def fail(message, status):
        print(f"npctr export-onnx: {'error: ' if status == 1 else ''}{' '.join(str(message).split())[:1000]}",
              file=sys.stderr)
        return status

    try:
        _files.check_regular(args.model, "model file")
    except FileNotFoundError:
        return fail(f"model file {args.model!r} does not exist", 2)
    except ValueError as exc:
        return fail(exc, 2)
    if args.check < 0:
        return fail(f"--check must be >= 0, got {args.check}", 2)
    if os.path.exists(args.output) and os.path.samefile(args.output, args.model):
        return fail(f"the output {args.output!r} is the model file: refusing to replace it", 2)
    try:
        from ..io import load_model
        model = load_model(args.model)
        export_onnx(model, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
        if args.check > 0:
            error = check_export(model, args.output, args.check)
            tol = 1e-6 if model.dtype == np.float32 else 1e-12
            print(f"onnxruntime vs model.predict on {args.check} random rows: max |difference| {error:.3g} "
                  f"(tolerance {tol:g})", file=sys.stderr)
            if not error <= tol:
                return 1
    except ImportError as exc:            # an optional extra that is not installed
        return fail(exc if "pip install" in str(exc) else f"{exc}: pip install 'npctr[onnx]'", 2)
    except (ValueError, TypeError, OSError) as exc:
        return fail(exc, 1)
    except MemoryError:
        return fail("out of memory", 1)
    return 0
