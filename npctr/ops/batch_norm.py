r"""Batch normalization: training (batch statistics), inference (moving statistics), backward,
and the folding of its inference form into an affine map.

Statistics are taken over the reduction axes :math:`R` (every axis but the feature axis), with
:math:`N = |R|` elements per feature:

.. math::
    \mu = \tfrac1N \sum_R x, \quad \sigma^2 = \tfrac1N \sum_R (x - \mu)^2, \quad
    \hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}, \quad y = \gamma \hat x + \beta

Backward (batch statistics), with :math:`g = \partial L / \partial \hat x = \gamma\, dy`:

.. math::
    dx = \frac{1}{\sqrt{\sigma^2+\epsilon}}\Big(g - \overline{g} - \hat x\,\overline{g\hat x}\Big),
    \quad d\gamma = \sum_R dy\,\hat x, \quad d\beta = \sum_R dy

where the bar is the mean over :math:`R`. With moving statistics :math:`\mu, \sigma^2` are
constants and :math:`dx = g / \sqrt{\sigma^2+\epsilon}`. ``docs/batch_normalization.md``.
"""
from typing import NamedTuple, Optional

import numpy as np

from .rows import feature_sums, per_feature


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray             # normalised input, shape of x
    inv_std: np.ndarray           # 1 / sqrt(var + eps), broadcastable to x
    gamma: Optional[np.ndarray]   # broadcastable scale, None when scale=False
    batch_stats: bool             # True: mean/var came from this batch (training)
    axes: tuple                   # reduction axes
    counts: object = None         # multiplicities of the rows (see batch_moments), or None


def inverse_std(variance, epsilon):
    r""":math:`1 / \sqrt{\sigma^2 + \epsilon}`: the one place it is computed (the layer, the
    inference folds and the ONNX constants agree bit for bit)."""
    return 1.0 / np.sqrt(variance + epsilon)


def batch_moments(x, axes, counts=None):
    """Batch mean and biased variance over ``axes`` (keepdims), as ``tf.nn.moments``,
    and ``x - mean``, which the forward can reuse.

    ``counts`` (broadcastable to ``x``, 1 on the feature axis): each row of ``x`` stands
    for ``counts`` identical rows of the batch (``docs/local_activation_unit.md``, shared
    padding), so the moments are the count-weighted ones, :math:`N` = ``sum(counts)``.
    """
    if counts is None:
        mean = feature_means(x, axes)
        centred = per_feature(np.subtract, x, mean)                 # x - mean
        return mean, feature_means(centred * centred, axes), centred
    m = counts.sum()
    if (counts.shape == x.shape[:-1] + (1,) and tuple(axes) == tuple(range(x.ndim - 1))
            and x.flags.c_contiguous and counts.dtype == x.dtype):
        # the count-weighted sums over the rows as GEMVs: counts @ x, counts @ (x - mean)^2
        w, h = counts.reshape(-1), x.shape[-1]
        keep = (1,) * (x.ndim - 1) + (h,)
        mean = (w @ x.reshape(-1, h)).reshape(keep) / m
        centred = per_feature(np.subtract, x, mean)                 # x - mean
        variance = (w @ (centred * centred).reshape(-1, h)).reshape(keep) / m
        return mean, variance, centred
    scratch = times_counts_(x.copy(order="K"), counts)     # x's layout: the same summation order
    mean = feature_sums(scratch, axes, keepdims=True) / m
    centred = per_feature(np.subtract, x, mean)                     # x - mean
    scratch = times_counts_(np.multiply(centred, centred, out=scratch), counts)
    variance = feature_sums(scratch, axes, keepdims=True) / m
    return mean, variance, centred


def feature_means(a, axes):
    """The mean over ``axes`` (keepdims): the sum by :func:`npctr.ops.rows.feature_sums` (one
    GEMV when ``axes`` are every axis but the last) over the count."""
    if tuple(axes) != tuple(range(a.ndim - 1)):
        return np.mean(a, axis=axes, keepdims=True)
    return feature_sums(a, axes, keepdims=True) / (a.size // a.shape[-1])


def times_counts_(a, counts):
    """``a * counts`` in place (``a`` is a scratch array), touching only the rows whose count is
    not 1: with shared padding nearly every count is 1, and ``v * 1`` is exactly ``v``, so this
    is bit for bit the broadcast product at a fraction of its passes over ``a``."""
    if counts.shape != a.shape[:-1] + (1,):
        a *= counts
        return a
    rows = np.nonzero(counts[..., 0] != 1)            # index arrays: any memory layout of a
    a[rows] *= counts[rows]
    return a


def batch_norm_forward(x, mean, variance, gamma, beta, epsilon, axes, batch_stats, centred=None, counts=None):
    """``y = gamma * (x - mean) / sqrt(variance + epsilon) + beta``; gamma/beta may be None.

    ``centred`` (``x - mean``, e.g. from ``batch_moments``) is used, and overwritten, if given.
    Returns ``y`` and the ``BatchNormCache`` the backward reads.
    """
    inv_std = inverse_std(variance, epsilon)
    if centred is None:
        centred = per_feature(np.subtract, x, mean)                 # x - mean
    x_hat = per_feature(np.multiply, centred, inv_std, out=centred)
    y = x_hat
    if gamma is not None:
        y = per_feature(np.multiply, y, gamma)                      # gamma x_hat
    if beta is not None:
        y = per_feature(np.add, y, beta)                            # + beta
    return y, BatchNormCache(x_hat, inv_std, gamma, batch_stats, axes, counts)


def batch_norm_backward(dy, cache, with_beta=True):
    """Return ``dx, dgamma, dbeta``; dgamma is None without gamma, dbeta None unless ``with_beta``."""
    x_hat, inv_std, gamma, axes, counts = cache.x_hat, cache.inv_std, cache.gamma, cache.axes, cache.counts
    dgamma = feature_sums(dy * x_hat, axes) if gamma is not None else None
    dbeta = feature_sums(dy, axes) if with_beta else None
    g = per_feature(np.multiply, dy, gamma) if gamma is not None else dy
    if cache.batch_stats and counts is not None:
        # rows standing for `counts` identical rows: dy holds each group's summed gradient,
        # the means are over all m rows and each group's dx is the sum of its members'
        m = counts.sum()
        g_mean = feature_sums(g, axes, keepdims=True) / m
        dx = np.multiply(g, x_hat)                     # one scratch array for the whole expression
        gx_mean = feature_sums(dx, axes, keepdims=True) / m
        per_feature(np.multiply, x_hat, gx_mean, out=dx)
        per_feature(np.add, dx, g_mean, out=dx)
        np.subtract(g, times_counts_(dx, counts), out=dx)
        per_feature(np.multiply, dx, inv_std, out=dx)  # inv_std * (g - counts * (g_mean + x_hat gx_mean))
    elif cache.batch_stats:
        # mean and variance depend on every x in the reduction set
        g_mean = feature_means(g, axes)
        gx_mean = feature_means(g * x_hat, axes)
        dx = per_feature(np.subtract, g, g_mean)                   # inv_std * (g - g_mean - x_hat gx_mean)
        dx -= per_feature(np.multiply, x_hat, gx_mean)
        per_feature(np.multiply, dx, inv_std, out=dx)
    else:
        dx = per_feature(np.multiply, g, inv_std)
    return dx, dgamma, dbeta


# -- moving statistics ---------------------------------------------------------------------------
def unbiased_variance(variance, count):
    r""":math:`\tfrac{N}{N-1}\sigma^2` from the biased variance of ``count`` = :math:`N` values (torch's moving variance)."""
    return variance * (count / (count - 1.0))


def update_moving_(moving, batch, momentum, decay, rule):
    """Update a moving statistic in place from the batch's, with ``momentum`` (weight of the old
    value) and ``decay`` (of the batch's) as Python floats, by the framework's arithmetic ``rule``:

    * ``'subtract'`` (tf.keras 2): ``moving -= (moving - batch) * decay`` (``assign_sub``);
    * ``'lerp'`` (Keras 3): ``moving * momentum + batch * decay``;
    * ``'torch'``: ``decay * batch + (1 - decay) * moving`` (``1 - decay`` in Python floats).
    """
    t = moving.dtype.type
    if rule == "subtract":
        moving -= (moving - batch) * t(decay)
    elif rule == "lerp":
        moving[...] = moving * t(momentum) + batch * t(decay)
    elif rule == "torch":
        moving[...] = t(decay) * batch + t(1.0 - decay) * moving
    else:
        raise ValueError(f"unknown moving-statistic rule {rule!r}; expected 'subtract', 'lerp' or 'torch'")


# -- the inference form as an affine map --------------------------------------------------------
def inference_scale(moving_variance, epsilon, gamma=None):
    r""":math:`s = \gamma / \sqrt{\sigma^2 + \epsilon}` (``gamma`` None: 1), so that at inference
    :math:`\mathrm{BN}(x) = (x - \mu)\,s + \beta`."""
    scale = inverse_std(moving_variance, epsilon)
    return scale if gamma is None else scale * gamma


def negated_inference_affine(moving_mean, moving_variance, epsilon, gamma=None, beta=None, factor=1.0):
    r"""``(a, c)`` with :math:`-f\,\mathrm{BN}(x) = x a + c` at inference, :math:`f` = ``factor``:
    :math:`a = -s f`, :math:`c = (\mu s - \beta) f` (Dice's gate argument in one multiply-add;
    ``factor=-0.5`` gives :math:`\mathrm{BN}(x) / 2`)."""
    scale = inference_scale(moving_variance, epsilon, gamma)
    shift = moving_mean * scale
    if beta is not None:
        shift = shift - beta
    if factor != 1.0:
        scale, shift = scale * factor, shift * factor
    return -scale, shift


def fold_into_dense(kernel, bias, moving_mean, moving_variance, epsilon, gamma=None, beta=None):
    r"""A Dense followed by inference BN as one Dense:
    :math:`\mathrm{BN}(xW + b) = x (W \odot s) + (b - \mu) \odot s + \beta`. Returns ``(kernel, bias)``."""
    scale = inference_scale(moving_variance, epsilon, gamma)
    bias = (bias - moving_mean) * scale
    if beta is not None:
        bias = bias + beta
    return kernel * scale, bias
