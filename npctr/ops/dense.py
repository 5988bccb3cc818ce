r"""The fully connected map on the last axis.

.. math::
    y = x W + b, \qquad x: (\dots, n_{in}),\ W: (n_{in}, n_{out}),\ b: (n_{out},)

Backward, flattening the leading axes into one of size :math:`N`:

.. math::
    dx = dy\,W^\top, \qquad dW = x^\top dy, \qquad db = \textstyle\sum_N dy
"""
import numpy as np

from .rows import column_sums, per_feature


def matmul_last(x, kernel):
    """``x @ kernel`` on the last axis as ONE 2-D GEMM: ``(..., n) @ (n, m) -> (..., m)``.

    NumPy runs ``(B, T, n) @ (n, m)`` as B small GEMMs; flattening the leading axes to
    ``(B*T, n)`` gives BLAS one large product instead (same values up to round-off).
    """
    if x.ndim <= 2:
        return x @ kernel
    return (x.reshape(-1, x.shape[-1]) @ kernel).reshape(x.shape[:-1] + (kernel.shape[-1],))


def dense_forward(x, kernel, bias=None):
    """``x @ kernel + bias`` on the last axis (``bias`` None: no bias)."""
    y = matmul_last(x, kernel)
    if bias is not None:
        per_feature(np.add, y, bias, out=y)
    return y


def dense_backward(dy, x, kernel, use_bias=True):
    """Return ``dx, dkernel, dbias`` (``dbias`` None when ``use_bias`` is False)."""
    dy2 = dy.reshape(-1, dy.shape[-1])
    dkernel = x.reshape(-1, x.shape[-1]).T @ dy2
    dbias = column_sums(dy2) if use_bias else None
    return matmul_last(dy, kernel.T), dkernel, dbias
