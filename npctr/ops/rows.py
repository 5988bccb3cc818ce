r"""A per-feature vector applied to every row of a large array, as NumPy runs it fastest.

For ``a`` ``(..., H)`` and ``v`` ``(H,)``, NumPy computes ``a * v`` as one inner loop of ``H``
elements per row, with a set-up per row: measured 2-4x slower than the same number of elements in
one contiguous loop (H = 80, float32). :func:`per_feature` views the rows of ``a`` in groups of
``GROUP`` against ``v`` tiled ``GROUP`` times: the same elements meet the same operation, so the
result is bit for bit the broadcast's, in one long loop (plus one short call for the rows left
over). It is a layout device, not an equation: callers keep writing the equation, e.g.
``per_feature(np.subtract, x, mean)`` for :math:`x - \mu`.
"""
import numpy as np

from . import blocks

#: rows per group (a loop of ``GROUP * H`` elements; measured best at 64 for H = 40-80)
GROUP = 64


def per_feature(ufunc, a, v, out=None):
    """``ufunc(a, v)`` with ``v`` (``H`` values, any shape broadcastable as ``(..., H)``) applied
    along the last axis of ``a``; into ``out`` if given (may be ``a``). Falls back to the plain
    broadcast for small, non-contiguous or mixed-dtype operands."""
    h = a.shape[-1] if a.ndim else 0
    rows = a.size // h if h else 0
    if (rows < 2 * GROUP or np.shape(v)[-1:] != (h,) or np.size(v) != h or not a.flags.c_contiguous or getattr(v, "dtype", None) != a.dtype
            or (out is not None and (not out.flags.c_contiguous or out.dtype != a.dtype or out.shape != a.shape))
            or np.ndim(v) > a.ndim):
        return ufunc(a, v) if out is None else ufunc(a, v, out=out)
    if out is None:
        out = np.empty_like(a)
    v = v.reshape(h)
    bulk = rows - rows % GROUP
    a2, out2 = a.reshape(rows, h), out.reshape(rows, h)
    grouped, grouped_out, tiled = a2[:bulk].reshape(-1, GROUP * h), out2[:bulk].reshape(-1, GROUP * h), np.tile(v, GROUP)
    blocks.rows(lambda lo, hi: ufunc(grouped[lo:hi], tiled, out=grouped_out[lo:hi]), grouped.shape[0], a.size)
    if bulk < rows:
        ufunc(a2[bulk:], v, out=out2[bulk:])
    return out


def column_sums(a):
    """``a.sum(axis=0)`` of a 2-D ``(rows, H)`` array as one matrix-vector product ``ones @ a``: NumPy
    reduces axis 0 with one short loop per row (measured 10x slower than the GEMV on (12800, 32)
    float32). A bias gradient, summed over every row; the same sum, another rounding order."""
    if a.ndim != 2 or a.shape[0] < 2 * GROUP or a.dtype.kind != "f":
        return a.sum(axis=0)
    return np.ones(a.shape[0], a.dtype) @ a


def step_sums(a):
    """``a.sum(axis=1, keepdims=True)`` ``(B, 1, H)`` of ``a`` ``(B, T, H)`` as B products
    ``ones (1, T) @ a[b]``: NumPy reduces a middle axis with one short inner loop per ``(b, t)``
    (measured 3.6x slower on (256, 50, 80) float32, 11x with H = 16). The same sum, another
    rounding order."""
    if a.ndim != 3 or a.dtype.kind != "f":
        return a.sum(axis=1, keepdims=True)
    return np.matmul(np.ones((1, 1, a.shape[1]), a.dtype), a)


def feature_sums(a, axes, keepdims=False):
    """``a.sum(axis=axes)`` when ``axes`` are every axis but the last, i.e. a per-feature sum over
    the rows of a contiguous float array, as :func:`column_sums` (measured 5x faster on
    (6656, 80) float32); any other sum as NumPy's."""
    if a.ndim < 2 or tuple(axes) != tuple(range(a.ndim - 1)) or not a.flags.c_contiguous or a.dtype.kind != "f":
        return np.sum(a, axis=axes, keepdims=keepdims)
    total = column_sums(a.reshape(-1, a.shape[-1]))
    return total.reshape((1,) * (a.ndim - 1) + total.shape) if keepdims else total
