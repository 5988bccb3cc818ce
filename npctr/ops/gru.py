r"""GRU cells in DeepCTR's two layouts, DIEN's attention gates, and backpropagation through time.

One step maps the input :math:`x_t` ``(B, D)`` and the state :math:`h` ``(B, H)`` to a candidate
state. Both layouts compute a reset gate :math:`r`, an update gate :math:`u` (the gate that
weighs the OLD state) and a candidate :math:`c`:

``"keras"`` (tf.keras's legacy ``GRUCell``, DeepCTR's ``QAAttGRUCell`` / ``VecAttGRUCell``):

.. math::
    [r \mid u] = \sigma([x, h] K_g + b_g), \qquad c = \tanh([x, r \odot h] K_c + b_c)

with :math:`K_g` ``(D + H, 2H)``, :math:`K_c` ``(D + H, H)``: the reset gate acts BEFORE the
recurrent product. ``"torch"`` (``torch.nn.GRU``, DeepCTR-Torch's ``AGRUCell`` / ``AUGRUCell``),
kernels stored ``(in, out)`` with column blocks ``r | z | n``:

.. math::
    g_i = x W_i + b_i, \quad g_h = h W_h + b_h, \quad r = \sigma(g_i^r + g_h^r), \quad
    u = \sigma(g_i^z + g_h^z), \quad c = \tanh(g_i^n + r \odot g_h^n)

(the reset gate acts AFTER the recurrent product, whose bias :math:`b_h^n` it also scales).

Every variant then mixes old state and candidate through a *keep gate* :math:`g` ``(B, H)``,
:math:`\tilde h = g \odot h + (1 - g) \odot c`, with the attention score :math:`a` ``(B, 1)``:

===========  ============================  ==================================================
gru_type     keep gate :math:`g`           who
===========  ============================  ==================================================
GRU          :math:`u`                     both frameworks (torch's :math:`z`)
AGRU         :math:`1 - a`                 both (the update gate is computed and unused)
AUGRU keep   :math:`(1 - a) u`             DeepCTR-TF, the DIEN authors' code (``augru_gate="keep"``)
AUGRU update :math:`1 - a u`               DeepCTR-Torch, the paper (``augru_gate="update"``)
===========  ============================  ==================================================

Over a padded sequence with valid positions :math:`m_t = [t < L]` (DeepCTR's ``dynamic_rnn``,
DeepCTR-Torch's packed sequences) the cell runs on every row and

.. math::
    h_t = m_t\,?\,\tilde h_t : h_{t-1}, \qquad o_t = m_t\,?\,\tilde h_t : 0, \qquad h_{-1} = 0

so the state is frozen and the output zero past a row's length. Backward (``docs/dien.md``) runs
the steps in reverse, vectorized over the batch: the loop over time is the only loop. The products
with the input (:math:`x K_g^x`, :math:`x W_i`) and every weight gradient are one GEMM each over
all ``B * T`` positions, outside the loop.
"""
from typing import NamedTuple

import numpy as np

from .activations import sigmoid, sigmoid_
from .dense import matmul_last
from .rows import column_sums

LAYOUTS = ("keras", "torch")
#: the cell variants; DeepCTR's "AIGRU" is a plain GRU on attention-scaled inputs
GRU_TYPES = ("GRU", "AGRU", "AUGRU")
#: which gate AUGRU's attention scales: the keep gate by ``1 - a`` (TF) or the update by ``a`` (torch)
AUGRU_GATES = ("keep", "update")


# -- weights -------------------------------------------------------------------------------------
class KerasGRUWeights(NamedTuple):
    """tf.keras ``GRUCell`` / DeepCTR's ``_Linear_`` cells; rows of each kernel: ``[x-part (D); h-part (H)]``."""
    gates_kernel: np.ndarray       # (D + H, 2H), columns r | u
    gates_bias: np.ndarray         # (2H,)
    candidate_kernel: np.ndarray   # (D + H, H)
    candidate_bias: np.ndarray     # (H,)


class TorchGRUWeights(NamedTuple):
    """``torch.nn.GRU`` in ``(in, out)`` layout (``kernel_ih = weight_ih_l0.T``); columns ``r | z | n``.
    DeepCTR-Torch's AUGRU passes its one bias as both ``bias_ih`` and ``bias_hh``."""
    kernel_ih: np.ndarray          # (D, 3H)
    kernel_hh: np.ndarray          # (H, 3H)
    bias_ih: np.ndarray            # (3H,)
    bias_hh: np.ndarray            # (3H,)


WEIGHTS = {"keras": KerasGRUWeights, "torch": TorchGRUWeights}


def weight_shapes(layout, input_size, units):
    """``{weight name: shape}`` of a cell with ``input_size`` D and ``units`` H in ``layout``."""
    d, h = input_size, units
    if layout == "keras":
        return {"gates_kernel": (d + h, 2 * h), "gates_bias": (2 * h,),
                "candidate_kernel": (d + h, h), "candidate_bias": (h,)}
    return {"kernel_ih": (d, 3 * h), "kernel_hh": (h, 3 * h), "bias_ih": (3 * h,), "bias_hh": (3 * h,)}


def units_of(weights):
    """The state size H of a cell's weights."""
    return weights.candidate_bias.shape[0] if isinstance(weights, KerasGRUWeights) else weights.kernel_hh.shape[0]


# -- one step -----------------------------------------------------------------------------------
def input_projection(x, weights):
    r"""The input's part of every pre-activation, for all positions at once (one GEMM each).

    keras: ``(x K_g^x + b_g (B, T, 2H), x K_c^x + b_c (B, T, H))``; torch: ``(x W_i + b_i (B, T, 3H),)``.
    """
    if isinstance(weights, KerasGRUWeights):
        d = x.shape[-1]
        xg = matmul_last(x, weights.gates_kernel[:d])
        xg += weights.gates_bias
        xc = matmul_last(x, weights.candidate_kernel[:d])
        xc += weights.candidate_bias
        return xg, xc
    gi = matmul_last(x, weights.kernel_ih)
    gi += weights.bias_ih
    return (gi,)


def keras_cell(xg, xc, h, weights):
    r"""tf.keras ``GRUCell``: ``(r, u, c, r * h)`` from the input parts ``xg`` ``(B, 2H)``, ``xc`` ``(B, H)``."""
    units = h.shape[-1]
    d = weights.gates_kernel.shape[0] - units
    gates = sigmoid(xg + h @ weights.gates_kernel[d:])
    r, u = gates[:, :units], gates[:, units:]
    rh = r * h
    c = np.tanh(xc + rh @ weights.candidate_kernel[d:])
    return r, u, c, rh


def torch_cell(gi, h, weights):
    r"""``torch.nn.GRU``'s cell: ``(r, u, c, gh_n)`` from ``gi = x W_i + b_i`` ``(B, 3H)``;
    ``gh_n = h W_h^n + b_h^n`` is what the reset gate scales."""
    units = h.shape[-1]
    gh = h @ weights.kernel_hh
    gh += weights.bias_hh
    gates = sigmoid(gi[:, :2 * units] + gh[:, :2 * units])
    r, u = gates[:, :units], gates[:, units:]
    gh_n = gh[:, 2 * units:]
    c = np.tanh(gi[:, 2 * units:] + r * gh_n)
    return r, u, c, gh_n


def keep_gate(gru_type, u, a=None, augru_gate="keep"):
    r"""The weight :math:`g` of the old state in :math:`\tilde h = g h + (1 - g) c` (module table);
    ``u`` ``(B, H)`` the update gate, ``a`` ``(B, 1)`` the attention score."""
    if gru_type == "GRU":
        return u
    if gru_type == "AGRU":
        return np.broadcast_to(1.0 - a, u.shape)
    if augru_gate == "keep":
        return (1.0 - a) * u
    return 1.0 - a * u


def keep_gate_backward(gru_type, d_g, u, a=None, augru_gate="keep"):
    """``(d_u (B, H), d_a (B,) or None)`` from ``d_g``: AGRU leaves the update gate unused (0)."""
    if gru_type == "GRU":
        return d_g, None
    if gru_type == "AGRU":
        return np.zeros_like(u), -d_g.sum(axis=1)
    d_a = -(d_g * u).sum(axis=1)                   # both AUGRUs: dg/da = -u
    return (d_g * (1.0 - a) if augru_gate == "keep" else d_g * -a), d_a


def mix(h, c, g):
    r""":math:`\tilde h = g \odot h + (1 - g) \odot c`."""
    return g * h + (1.0 - g) * c


def mix_keep_(h, c, g, out):
    r""":math:`\tilde h = c + g \odot (h - c)` into ``out`` (the inference paths): :func:`mix` with one
    multiply fewer, for a keep gate :math:`g` at hand (GRU's :math:`u`, AUGRU's :math:`(1 - a) u`).
    The same value; the rounding of another order. ``out`` must not alias ``h`` or ``c``."""
    np.subtract(h, c, out)
    np.multiply(out, g, out)
    return np.add(out, c, out)


def mix_toward_(h, c, w, out):
    r""":math:`\tilde h = h + w \odot (c - h)` with :math:`w = 1 - g` the weight of the candidate, into
    ``out`` (the inference paths): :func:`mix` for the cells that give :math:`1 - g` directly, AGRU
    (:math:`w = a`) and the update-gate AUGRU (:math:`w = a u`), without forming :math:`g`. The same
    value; the rounding of another order. ``out`` must not alias ``h`` or ``c``."""
    np.subtract(c, h, out)
    np.multiply(out, w, out)
    return np.add(out, h, out)


def masked_step(h_new, h_prev, valid):
    """``(h_t, o_t)``: ``h_new`` where ``valid`` ``(B, 1)``, else the frozen ``h_prev`` and a 0 output."""
    return np.where(valid, h_new, h_prev), np.where(valid, h_new, 0.0).astype(h_new.dtype, copy=False)


def masked_step_backward(d_h, d_o, valid):
    """``(d_h_new, d_h_prev_frozen)`` from the gradients at ``h_t`` and ``o_t``: a valid row passes
    both to the cell's output, a padded one passes ``d_h`` straight to ``h_{t-1}``."""
    return np.where(valid, d_h + d_o, 0.0), np.where(valid, 0.0, d_h)


def masked_step_(h_new, h_prev, valid, state, output):
    """:func:`masked_step` into ``state`` (``h_new`` where ``valid``, else ``h_prev``) and ``output``
    (``h_new`` where ``valid``; left as it is elsewhere: give it zeroed), for the sequence loop."""
    np.copyto(state, h_prev)
    np.copyto(state, h_new, where=valid)
    np.copyto(output, h_new, where=valid)
    return state


# -- a whole sequence ---------------------------------------------------------------------------
class GRUSequenceCache(NamedTuple):
    """What BPTT reads, **time-major** (step ``t``'s rows are one contiguous block): the inputs, the
    states and, per position, the cell's parts."""
    x: np.ndarray              # (T, B, D)
    valid: np.ndarray          # (T, B, 1) bool
    att: object                # (T, B, 1) attention scores, or None
    states: np.ndarray         # (T + 1, B, H): states[t] the state step t started from (states[0] = 0)
    gates: np.ndarray          # (T, 2, B, H): the reset and update gates r, u
    c: np.ndarray              # (T, B, H) candidate
    g: np.ndarray              # (T, B, H) keep gate
    reset_operand: np.ndarray  # (T, B, H): keras r * h (the product's input), torch gh_n (what r scales)
    weights: object            # KerasGRUWeights or TorchGRUWeights
    gru_type: str
    augru_gate: str

    @property
    def h_prev(self):
        return self.states[:-1]

    @property
    def r(self):
        return self.gates[:, 0]

    @property
    def u(self):
        return self.gates[:, 1]


def _time_major(a):
    """``(B, T, ...)`` as a contiguous ``(T, B, ...)`` array."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def _blocks(weights, d):
    """The cell's kernels by gate block: ``(x_gates (D, 2H), x_bias_gates (2H,), h_gates (2, H, H),
    x_candidate (D, H), x_bias_candidate (H,), h_candidate (H, H), h_bias_candidate (H,) or None)``;
    torch's state-side gate biases are added to the input side's (``b_h^n`` stays with ``h``)."""
    h = units_of(weights)
    if isinstance(weights, KerasGRUWeights):
        kg, kc = weights.gates_kernel, weights.candidate_kernel
        return (kg[:d], weights.gates_bias, np.stack([kg[d:, :h], kg[d:, h:]]), kc[:d], weights.candidate_bias,
                kc[d:], None)
    ki, kh, bi, bh = weights
    return (ki[:, :2 * h], bi[:2 * h] + bh[:2 * h], np.stack([kh[:, :h], kh[:, h:2 * h]]), ki[:, 2 * h:],
            bi[2 * h:], kh[:, 2 * h:], bh[2 * h:])


def gru_sequence(x, valid, weights, gru_type="GRU", att=None, augru_gate="keep", keep_cache=False):
    r"""Run a cell over a padded sequence.

    Parameters
    ----------
    x : (batch_size, T, D)
    valid : (batch_size, T) bool, the positions :math:`t < L` (a step is valid or padding)
    weights : KerasGRUWeights or TorchGRUWeights (the layout)
    gru_type : {'GRU', 'AGRU', 'AUGRU'}
    att : (batch_size, T) or (batch_size, T, 1), the attention scores (AGRU / AUGRU)
    augru_gate : {'keep', 'update'}
    keep_cache : bool

    Returns
    -------
    outputs (batch_size, T, H) (0 at padding), final state (batch_size, H), GRUSequenceCache or None

    The equations of :func:`keras_cell` / :func:`torch_cell`, :func:`keep_gate`, :func:`mix`
    (as :func:`mix_keep_`) and :func:`masked_step`, arranged for speed: time-major arrays (each step
    reads and writes contiguous ``(B, .)`` blocks), the input's part of every pre-activation for all
    positions before the loop (:func:`input_projection`, the two gates stacked ``(2, B, H)``), every
    part written in place into the arrays the cache keeps.
    """
    b, t_max, d = x.shape
    units = units_of(weights)
    dtype = x.dtype
    valid = _time_major(np.asarray(valid, dtype=bool).reshape(b, t_max))[:, :, None]    # (T, B, 1)
    if att is not None:
        att = _time_major(att.reshape(b, t_max))[:, :, None]                             # (T, B, 1)
    x = _time_major(x)                                                                   # (T, B, D)
    keras = isinstance(weights, KerasGRUWeights)
    # the mask repeated over H: NumPy selects with a full-shape mask in one loop, a (B, 1) one row by row
    valid_h = np.ascontiguousarray(np.broadcast_to(valid, (t_max, b, units)))
    kx_g, bx_g, kh_g, kx_c, bx_c, kh_c, bh_c = _blocks(weights, d)
    x2 = x.reshape(-1, d)
    x_gates = matmul_last(x2, kx_g)
    x_gates += bx_g
    x_gates = np.ascontiguousarray(x_gates.reshape(t_max, b, 2, units).transpose(0, 2, 1, 3))   # (T, 2, B, H)
    x_cand = matmul_last(x2, kx_c)
    x_cand += bx_c
    x_cand = x_cand.reshape(t_max, b, units)
    states = np.zeros((t_max + 1, b, units), dtype)
    gates = np.empty((t_max, 2, b, units), dtype)
    cand = np.empty((t_max, b, units), dtype)
    operand = np.empty((t_max, b, units), dtype)
    outputs = np.zeros((t_max, b, units), dtype)
    new = np.empty((b, units), dtype)
    keep, factor = _keep_gate_arrays(gru_type, augru_gate, gates, att, (t_max, b, units), dtype)
    bias_hn = None if keras else np.ascontiguousarray(np.broadcast_to(bh_c, (b, units)))
    for t in range(t_max):
        h = states[t]
        ru = gates[t]
        np.matmul(h, kh_g, out=ru)
        ru += x_gates[t]
        sigmoid_(ru)                                            # r, u
        c = cand[t]
        if keras:                                               # c = tanh(x K_c^x + b_c + (r h) K_c^h)
            np.matmul(np.multiply(ru[0], h, out=operand[t]), kh_c, out=c)
        else:                                                   # c = tanh(x W_i^n + b_i^n + r (h W_h^n + b_h^n))
            gh_n = np.matmul(h, kh_c, out=operand[t])
            gh_n += bias_hn
            np.multiply(ru[0], gh_n, out=c)
        c += x_cand[t]
        np.tanh(c, out=c)
        if gru_type == "AUGRU":                                 # keep_gate, in place
            np.multiply(factor[t], ru[1], out=keep[t])
            if augru_gate == "update":
                np.subtract(1.0, keep[t], out=keep[t])
        masked_step_(mix_keep_(h, c, keep[t], new), h, valid_h[t], states[t + 1], outputs[t])
    cache = GRUSequenceCache(x, valid, att, states, gates, cand, keep, operand, weights, gru_type,
                             augru_gate) if keep_cache else None
    return _time_major(outputs), states[t_max].copy(), cache


def _keep_gate_arrays(gru_type, augru_gate, gates, att, shape, dtype):
    """The keep gate's storage ``(T, B, H)`` and the factor that AUGRU multiplies ``u`` by (``1 - a``
    or ``a``, repeated over ``H``); GRU's keep gate is ``u`` itself, AGRU's ``1 - a`` for all steps."""
    if gru_type == "GRU":
        return gates[:, 1], None
    a = np.broadcast_to(att, shape)
    if gru_type == "AGRU":
        return np.ascontiguousarray(1.0 - a), None
    factor = np.ascontiguousarray(1.0 - a if augru_gate == "keep" else a)
    return np.empty(shape, dtype), factor


def gru_sequence_backward(d_outputs, d_final, cache):
    r"""Backpropagation through time.

    Parameters
    ----------
    d_outputs : (batch_size, T, H) or None
        Gradient at the outputs (None: only the final state is used).
    d_final : (batch_size, H) or None
        Gradient at the final state.
    cache : GRUSequenceCache

    Returns
    -------
    d_x (batch_size, T, D), the weights' gradients (the same NamedTuple type as the weights; with
    tied biases each use gets its own entry, to be summed), d_att (batch_size, T) or None.

    Every factor that does not depend on the carried gradient is formed for all positions before
    the loop (``docs/dien.md``, section 3): with :math:`\delta` the gradient at the cell's output,
    :math:`dp_c = \delta (1 - g)(1 - c^2)`, the update gate's pre-activation gets
    :math:`\delta (h - c)\,\partial g/\partial u\; u (1 - u)`, the reset gate's
    :math:`d(r \odot h) \odot h\, r (1 - r)` (keras, :math:`d(r \odot h) = dp_c K_c^{h\top}`) or
    :math:`dp_c\, g_h^n\, r (1 - r)` (torch); the attention's :math:`\sum_H \delta (h - c)\,
    \partial g / \partial a`. The loop carries :math:`dh` through the recurrent products only.
    """
    x, valid, att, w = cache.x, cache.valid, cache.att, cache.weights
    t_max, b, d = x.shape
    units = cache.c.shape[-1]
    dtype = x.dtype
    keras = isinstance(w, KerasGRUWeights)
    _, _, kh_g, _, _, kh_c, _ = _blocks(w, d)
    d_h = np.zeros((b, units), dtype) if d_final is None else np.array(d_final, dtype=dtype)
    d_outputs = None if d_outputs is None else _time_major(np.asarray(d_outputs, dtype=dtype))   # (T, B, H)
    h_prev, r, u, c, g = cache.h_prev, cache.r, cache.u, cache.c, cache.g
    # the per-position factors (T, B, H), formed once
    diff = h_prev - c                                          # dg = delta (h - c)
    cand_factor = 1.0 - g
    cand_factor *= 1.0 - c * c                                 # dp_c = delta (1 - g) tanh'
    reset_factor = (h_prev if keras else cache.reset_operand) * r
    reset_factor *= 1.0 - r                                    # sigmoid' of r, times what r multiplies
    update_factor, att_factor = _gate_factors(cache.gru_type, cache.augru_gate, diff, u, att)
    h_kernel_gates = np.concatenate(list(kh_g), axis=1).T      # (2H, H)
    h_kernel_cand = kh_c.T
    # the gradients at the pre-activations of every position (0 at padding)
    d_pre_gates = np.zeros((t_max, b, 3 * units if not keras else 2 * units), dtype)
    d_pre_cand = np.empty((t_max, b, units), dtype)
    d_cell = np.empty((t_max, b, units), dtype)                # delta at every position
    zero = np.zeros((b, units), dtype)
    valid_h = np.ascontiguousarray(np.broadcast_to(valid, (t_max, b, units)))   # (see gru_sequence)
    for t in reversed(range(t_max)):
        d_o = zero if d_outputs is None else d_outputs[t]
        d_new, d_h = masked_step_backward(d_h, d_o, valid_h[t])
        d_cell[t] = d_new
        d_pc = np.multiply(d_new, cand_factor[t], out=d_pre_cand[t])
        d_pre = d_pre_gates[t]
        d_h += d_new * g[t]                                   # h~ = g h + ...
        if keras:                                             # c = tanh(... + (r h) K_c^h)
            d_rh = d_pc @ h_kernel_cand
            np.multiply(d_rh, reset_factor[t], out=d_pre[:, :units])
            d_rh *= r[t]
            d_h += d_rh
        else:                                                 # c = tanh(... + r (h W_h^n + b_h^n))
            np.multiply(d_pc, reset_factor[t], out=d_pre[:, :units])
            np.multiply(d_pc, r[t], out=d_pre[:, 2 * units:])
        if update_factor is not None:
            np.multiply(d_new, update_factor[t], out=d_pre[:, units:2 * units])
        d_h += d_pre[:, :2 * units] @ h_kernel_gates if keras else d_pre @ w.kernel_hh.T
    d_att = None if att_factor is None else np.sum(d_cell * att_factor, axis=-1)          # (T, B)
    d_x, grads = _input_side(x, cache, d_pre_gates, d_pre_cand)
    return _time_major(d_x), grads, None if d_att is None else _time_major(d_att)


def _gate_factors(gru_type, augru_gate, diff, u, att):
    r"""``(update factor, attention factor)`` (T, B, H): the update gate's pre-activation gets
    :math:`\delta` times the first (``keep_gate_backward``'s :math:`du` times :math:`u (1 - u)`), the
    attention score :math:`\sum_H \delta` times the second; None where the gate or the score is absent."""
    if gru_type == "AGRU":                                     # g = 1 - a: u unused
        return None, -diff
    sig = u * (1.0 - u)
    if gru_type == "GRU":
        return diff * sig, None
    a = np.broadcast_to(att, u.shape)
    du = (1.0 - a) if augru_gate == "keep" else -a             # dg/du
    return diff * du * sig, -(diff * u)                        # dg/da = -u (both AUGRUs)


def _input_side(x, cache, d_pre_gates, d_pre_cand):
    """``(d_x (T, B, D), d_weights)`` from the pre-activation gradients of every position: one GEMM
    per product, over all ``B * T`` positions. Torch: ``d_pre_gates`` holds the state side's
    ``[dr, dz, dp_c r]``, the input side's last block is ``dp_c``."""
    w = cache.weights
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    h2 = cache.h_prev.reshape(-1, cache.h_prev.shape[-1])
    dg2 = d_pre_gates.reshape(-1, d_pre_gates.shape[-1])
    dc2 = d_pre_cand.reshape(-1, d_pre_cand.shape[-1])
    if isinstance(w, KerasGRUWeights):
        rh2 = cache.reset_operand.reshape(h2.shape)
        d_x = matmul_last(d_pre_gates, w.gates_kernel[:d].T) + matmul_last(d_pre_cand, w.candidate_kernel[:d].T)
        grads = KerasGRUWeights(np.concatenate([x2.T @ dg2, h2.T @ dg2]), column_sums(dg2),
                                np.concatenate([x2.T @ dc2, rh2.T @ dc2]), column_sums(dc2))
        return d_x, grads
    units = h2.shape[-1]
    d_gi2 = dg2.copy()
    d_gi2[:, 2 * units:] = dc2                                 # b_h^n and W_h^n sit inside r * (...)
    d_x = matmul_last(d_gi2, w.kernel_ih.T).reshape(x.shape)
    grads = TorchGRUWeights(x2.T @ d_gi2, h2.T @ dg2, column_sums(d_gi2), column_sums(dg2))
    return d_x, grads
