r"""Pooling over a sequence's valid positions, with DeepCTR's masking constants.

With the mask :math:`m_t \in \{0, 1\}` of the valid positions and the length :math:`\ell`:

.. math::
    \mathrm{sum}: y = \sum_t m_t x_t, \quad
    \mathrm{mean}: y = \frac{\sum_t m_t x_t}{\mathrm{fl}_{32}(\ell + 10^{-8})}, \quad
    \mathrm{max}: y = \max_t \big(x_t - (1 - m_t)\,10^9\big)

Backward: sum :math:`dx_t = m_t\,dy`; mean :math:`dx_t = m_t\,dy / (\ell + 10^{-8})`; max: ``dy``
goes to the position(s) holding the maximum, shared equally between ties (TensorFlow's
``reduce_max`` gradient). ``docs/sequence_pooling.md``.
"""
from typing import NamedTuple

import numpy as np

#: DeepCTR's max pooling: a padded position is pushed down by this much before the max
MAX_POOL_PAD = 1e9
#: DeepCTR's mean pooling: the length is ``length + MEAN_POOL_EPSILON`` (a length-0 row gives 0),
#: formed in float32 whatever the model's dtype (see :func:`mean_pool_length`)
MEAN_POOL_EPSILON = 1e-8


def mean_pool_length(length, dtype):
    """The mean's divisor ``length + 1e-8`` as both frameworks form it: in float32 (DeepCTR
    ``tf.cast(length, tf.float32) + eps``, DeepCTR-Torch ``length.type(torch.float32) + eps``, with
    a float32 ``eps``), also in a float64 model, so it is exactly the length for every length
    >= 1 and float32(1e-8) for an empty row; returned in ``dtype``."""
    return (np.asarray(length).astype(np.float32) + np.float32(MEAN_POOL_EPSILON)).astype(dtype)


def sequence_mask(lengths, maxlen):
    """``tf.sequence_mask``: ``(B, 1)`` lengths -> ``(B, maxlen)`` bool, True where ``t < length``."""
    return np.arange(maxlen) < np.asarray(lengths).reshape(-1, 1)


class PoolingCache(NamedTuple):
    mask: np.ndarray          # (B, T, 1) float, 1 at valid positions
    scale: object             # (B, 1, 1) 1 / float32(length + 1e-8) for mean, else None
    max_weights: object       # (B, T, E) share of the max's gradient for mode 'max', else None


def sequence_pool(x, valid, length, mode, keep_cache=False):
    """Pool ``x`` ``(B, T, E)`` over its ``valid`` ``(B, T)`` positions; ``length`` ``(B, 1)``.

    Returns ``y`` ``(B, 1, E)`` in ``x``'s dtype and, with ``keep_cache``, the
    ``PoolingCache`` the backward reads (else None).
    """
    dtype = x.dtype
    m = valid[:, :, None].astype(dtype)
    scale = max_weights = None
    if mode == "max":
        shifted = x - (1.0 - m) * MAX_POOL_PAD
        y = shifted.max(axis=1, keepdims=True)
        if keep_cache:
            ties = (shifted == y).astype(dtype)
            max_weights = ties / ties.sum(axis=1, keepdims=True)
    else:
        y = np.sum(x * m, axis=1, keepdims=True)
        if mode == "mean":
            scale = (1.0 / mean_pool_length(length, dtype))[:, :, None]
            y = y * scale
    return y, (PoolingCache(m, scale, max_weights) if keep_cache else None)


def sequence_pool_backward(dy, cache):
    """``dx`` ``(B, T, E)`` from ``dy`` ``(B, 1, E)``."""
    if cache.max_weights is not None:
        return cache.max_weights * dy
    return cache.mask * (dy * cache.scale if cache.scale is not None else dy)   # (B, T, 1) * (B, 1, E)
