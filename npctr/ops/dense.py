r"""The fully connected map on the last axis.

.. math::
    y = x W + b, \qquad x: (\dots, n_{in}),\ W: (n_{in}, n_{out}),\ b: (n_{out},)

Backward, flattening the leading axes into one of size :math:`N`:

.. math::
    dx = dy\,W^\top, \qquad dW = x^\top dy, \qquad db = \textstyle\sum_N dy
"""
import numpy as np

from . import blocks
from .rows import column_sums, per_feature


def matmul_last(x, kernel):
    """``x @ kernel`` on the last axis as 2-D GEMMs: ``(..., n) @ (n, m) -> (..., m)``.

    NumPy runs ``(B, T, n) @ (n, m)`` as B small GEMMs; flattening the leading axes to
    ``(B*T, n)`` gives BLAS one large product instead (same values up to round-off), cut into
    row blocks over the cores when it is large (:func:`npctr.ops.blocks.gemm_blocks`).
    """
    if x.ndim < 2:
        return x @ kernel
    x2 = x.reshape(-1, x.shape[-1])
    if x2.shape[0] < blocks.MIN_GEMM_ROWS:
        y = x2 @ kernel
    else:
        y = np.empty((x2.shape[0], kernel.shape[-1]), np.result_type(x2, kernel))
        blocks.gemm_blocks(lambda lo, hi: np.matmul(x2[lo:hi], kernel, out=y[lo:hi]), x2.shape[0])
    return y.reshape(x.shape[:-1] + (kernel.shape[-1],))


def transposed_product(x, dy):
    """``x^T dy`` ``(n, m)`` for ``x`` ``(N, n)``, ``dy`` ``(N, m)``: a weight gradient, a sum over
    the ``N`` rows (in row blocks over the cores when large: :func:`npctr.ops.blocks.summed`)."""
    return blocks.summed(lambda lo, hi: x[lo:hi].T @ dy[lo:hi], x.shape[0])


def dense_forward(x, kernel, bias=None):
    """``x @ kernel + bias`` on the last axis (``bias`` None: no bias)."""
    y = matmul_last(x, kernel)
    if bias is not None:
        per_feature(np.add, y, bias, out=y)
    return y


def dense_backward(dy, x, kernel, use_bias=True):
    """Return ``dx, dkernel, dbias`` (``dbias`` None when ``use_bias`` is False)."""
    dy2 = dy.reshape(-1, dy.shape[-1])
    dkernel = transposed_product(x.reshape(-1, x.shape[-1]), dy2)
    dbias = column_sums(dy2) if use_bias else None
    return matmul_last(dy, kernel.T), dkernel, dbias
