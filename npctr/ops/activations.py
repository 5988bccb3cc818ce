r"""Activations: the plain functions and their derivatives, PReLU, and DIN's Dice.

Every plain activation's derivative is written in terms of its output :math:`y` (each is
invertible or piecewise linear), so a forward keeps only ``y`` for its backward:

=========  ============================================  ==============================================
name       forward                                       backward ``dx``
=========  ============================================  ==============================================
linear     :math:`y = x`                                 :math:`dy`
relu       :math:`y = \max(x, 0)`                        :math:`dy\,[y > 0]`
sigmoid    :math:`y = 1/(1+e^{-x})`                      :math:`dy\,y(1-y)`
tanh       :math:`y = \tanh x`                           :math:`dy\,(1-y^2)`
softmax    :math:`y_j = e^{x_j}/\sum_k e^{x_k}`          :math:`y \odot (dy - \langle dy, y\rangle)`
=========  ============================================  ==============================================

The functions ending in ``_`` compute the same values in place (the inference paths); they
repeat the operations of their out-of-place twins in the same order, except that 1/x is a
``divide`` (NumPy vectorises it, not ``reciprocal``; the same IEEE quotient).
"""
import math

import numpy as np

from . import blocks
from .rows import feature_sums, per_feature



def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, as TensorFlow computes it in float64.

    For very negative ``x``, ``exp(-x)`` overflows to inf and the result is exactly 0 (the
    overflow is expected, not reported); it does not reach the subnormal range.
    """
    e = np.negative(x)
    flat = e.reshape(-1)                    # e is a new array: contiguous

    def rows(lo, hi):
        part = flat[lo:hi]
        with np.errstate(over="ignore"):
            np.exp(part, out=part)
        part += 1.0
        np.divide(1.0, part, out=part)      # 1/e: NumPy vectorises divide, not reciprocal

    blocks.rows(rows, flat.size, 4 * flat.size)     # exp: dearer than a memory-bound pass
    return e


def sigmoid_(z):
    r"""``sigmoid`` in place: the same operations (callers ignore the overflow of ``exp``).

    Not ``exp2`` with :math:`\log_2 e` folded in, although NumPy's float32 ``exp2`` is twice as
    fast: every SIMD vector holding a value that overflows takes its slow path (measured 4x slower
    than ``exp`` with 10 % of the values overflowing), which a Dice unit with a near-zero moving
    variance (DeepCTR's epsilon is 1e-9) produces in every row."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    return np.divide(1.0, z, out=z)


def sigmoid_of_negated_(z, ones=None):
    """``1 / (1 + e^z)`` in place, i.e. ``sigmoid(-z)``, for ``z`` the negated pre-activation
    (any shape: the logits ``(n, 1)``, DIEN's stacked GRU gates ``(m, n, H)``).

    One value is computed in Python floats: three NumPy calls on one number cost more than
    the arithmetic. ``1 / x`` is a ``divide`` (vectorised; ``reciprocal`` is not): the same IEEE
    quotient. ``ones``: an array of ones of ``z``'s shape and dtype, the operand of the add and
    the divide instead of the scalar 1 (the same values; on a small array NumPy's scalar operand
    costs ~0.4 us per call more than an array). Callers ignore the overflow of ``exp`` (the sigmoid
    is then exactly 0).
    """
    if z.size == 1:
        try:
            z.flat[0] = 1.0 / (1.0 + math.exp(float(z.flat[0])))
        except OverflowError:           # e^z beyond the float range: the sigmoid is 0
            z.flat[0] = 0.0
        return z
    one = 1.0 if ones is None else ones
    np.exp(z, z)
    np.add(z, one, z)
    return np.divide(one, z, z)


def sigmoid_backward(dy, y):
    """``dy * y * (1 - y)`` from the sigmoid's output ``y``, with one temporary fewer (same order)."""
    if dy.shape != y.shape or not (dy.flags.c_contiguous and y.flags.c_contiguous):
        dx = dy * y
        dx *= 1 - y
        return dx
    dx = np.empty(y.shape, np.result_type(dy, y))
    d, s, out = dy.reshape(-1), y.reshape(-1), dx.reshape(-1)

    def rows(lo, hi):
        part = out[lo:hi]
        np.multiply(d[lo:hi], s[lo:hi], out=part)
        part *= 1 - s[lo:hi]

    blocks.rows(rows, out.size, 3 * out.size)
    return dx


def relu(x):
    return np.maximum(x, 0)


def relu_(z, zeros):
    """``relu`` in place, against ``zeros`` (an array of zeros of ``z``'s shape): NumPy's maximum
    with a scalar is not vectorised (measured 41 vs 8 us on 82k float32 values)."""
    return np.maximum(z, zeros, out=z)


def softmax(x, axis=-1):
    """``exp(x - max) / sum(exp(x - max))`` over ``axis``."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(dy, y):
    """``dx = y * (dy - <dy, y>)`` over the last axis, from the softmax's output ``y``.

    A float32 gradient is formed in float64 and rounded once: its terms cancel to exactly 0 over
    the axis (``sum y = 1``, so ``sum dx = <dy, y> (1 - sum y) = 0``), and a rounding error in
    ``<dy, y>`` is not random over the terms but common to all of them, so in float32 it would
    reach every later sum over the axis (e.g. the gradient of a bias before the softmax, exactly
    0) at the scale of ``|dy|``. Float64 arrays are unchanged.
    """
    if dy.dtype == np.float32 or y.dtype == np.float32:
        wide = np.asarray(dy, dtype=np.float64)
        return (y * (wide - np.sum(wide * y, axis=-1, keepdims=True))).astype(np.result_type(dy, y))
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


#: name -> (forward(x), backward(dy, y)), the backward from the output y
ACTIVATIONS = {
    "linear": (lambda x: x, lambda dy, y: dy),
    "relu": (relu, lambda dy, y: dy * (y > 0)),
    "sigmoid": (sigmoid, lambda dy, y: sigmoid_backward(dy, y)),
    "tanh": (np.tanh, lambda dy, y: dy * (1 - y * y)),
    "softmax": (softmax, softmax_backward),
}


def activation_(name, z, zeros=None):
    """The plain activation ``name`` applied to ``z`` in place; returns ``z``. ``zeros``: an array
    of zeros of ``z``'s shape for relu (:func:`relu_`), None for a scalar 0."""
    if name == "relu":
        np.maximum(z, 0 if zeros is None else zeros, out=z)
    elif name == "sigmoid":
        sigmoid_(z)
    elif name == "tanh":
        np.tanh(z, out=z)
    elif name == "softmax":
        z[...] = softmax(z)
    elif name != "linear":
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return z


# -- PReLU -----------------------------------------------------------------------------------
def prelu(x, alpha):
    r"""``max(x, 0) + alpha min(x, 0)``; returns ``y`` and ``min(x, 0)`` (what the backward needs)."""
    negative = np.minimum(x, 0)
    return np.maximum(x, 0) + alpha * negative, negative


def prelu_(z, alpha, scratch):
    """``prelu`` in place in ``z``, with ``scratch`` (``z``'s shape) for ``alpha min(z, 0)``."""
    np.minimum(z, 0, out=scratch)
    scratch *= alpha
    np.maximum(z, 0, out=z)
    z += scratch
    return z


def prelu_backward(dy, x, negative, alpha, sum_axes):
    """Return ``dx, dalpha``: ``dx = dy (1 if x > 0, alpha if x < 0, 0 at 0)`` (TensorFlow's
    ``relu(x) - alpha relu(-x)`` has slope 0 at exactly 0), ``dalpha = sum dy min(x, 0)``."""
    d_alpha = np.sum(dy * negative, axis=sum_axes, keepdims=True).reshape(alpha.shape)
    return dy * ((x > 0) + alpha * (x < 0)), d_alpha


# -- Dice, in normalize-and-gate form ---------------------------------------------------------
def dice_gate(p, alpha):
    r"""Dice's gate :math:`g = \alpha + (1 - \alpha) p` for :math:`p = \sigma(\mathrm{BN}(x))`,
    so that :math:`y = \alpha (1 - p) x + p x = g x`."""
    gate = per_feature(np.multiply, p, 1.0 - alpha)
    return per_feature(np.add, gate, alpha, out=gate)


def dice_gate_from_negated_bn_(t, alpha, one_minus_alpha):
    r"""The gate from ``t = -BN(x)``, in place: :math:`\alpha + (1 - \alpha) / (1 + e^{t})`
    (the inference paths, where ``-BN(x)`` is one affine map of ``x``)."""
    np.exp(t, out=t)
    t += 1.0
    np.divide(one_minus_alpha, t, out=t)       # (1 - alpha) p
    t += alpha
    return t


def dice_gate_from_half_bn_(u, half_one_plus_alpha, half_one_minus_alpha):
    r"""The gate from :math:`u = \mathrm{BN}(x) / 2`, in place, through
    :math:`\sigma(v) = (1 + \tanh(v/2)) / 2`:
    :math:`\tfrac{1 + \alpha}{2} + \tfrac{1 - \alpha}{2} \tanh u`. One ufunc call fewer than
    :func:`dice_gate_from_negated_bn_`, and no exponential that can overflow (the small-batch
    path, where each call costs more than its arithmetic; Dice's inference forward, where float32
    ``tanh`` costs less than ``exp``: 369 vs 459 us on 10^6 values)."""
    np.tanh(u, out=u)
    return dice_gate_from_tanh_(u, half_one_plus_alpha, half_one_minus_alpha)


def dice_gate_from_tanh_(t, half_one_plus_alpha, half_one_minus_alpha):
    r"""The gate from :math:`t = \tanh(\mathrm{BN}(x) / 2)`, in place:
    :math:`\tfrac{1 + \alpha}{2} + \tfrac{1 - \alpha}{2} t` (then :math:`p = (1 + t) / 2`)."""
    per_feature(np.multiply, t, half_one_minus_alpha, out=t)
    return per_feature(np.add, t, half_one_plus_alpha, out=t)


def dice_backward(dy, x, p, gate, alpha, reduce_axes):
    r"""Dice's backward up to its BatchNormalization.

    Returns ``d_alpha`` (summed over ``reduce_axes``), ``d_normalized``
    :math:`= dy\,x\,(1-\alpha)\,p(1-p)` (the gradient at ``BN(x)``, for the BN backward) and
    the direct term :math:`dy\,g`; then :math:`dx = \mathrm{BN}^\top(d_{normalized}) + dy\,g`.
    """
    def first(u, dy, x, p):                        # element-wise: blocks of rows over the cores
        np.multiply(dy, x, out=u)
        u *= 1.0 - p                               # dy x (1 - p)

    def second(u, p):
        u *= p
        per_feature(np.multiply, u, 1.0 - alpha, out=u)   # dy x (1 - alpha) p (1 - p)

    u = blocks.elementwise(first, np.empty(x.shape, np.result_type(dy, x)), dy, x, p, passes=3)
    d_alpha = feature_sums(u, reduce_axes)
    return d_alpha, blocks.elementwise(second, u, p, passes=2), blocks.elementwise(
        lambda out, dy, gate: np.multiply(dy, gate, out=out), np.empty_like(u), dy, gate)
