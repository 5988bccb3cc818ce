r"""Batch normalization with tf.keras semantics.

Statistics are taken over every axis but ``axis`` (the feature axis). With the
reduction set :math:`R` and :math:`m = |R|` elements per feature:

.. math::
    \mu = \tfrac1m \sum_R x, \quad \sigma^2 = \tfrac1m \sum_R (x - \mu)^2, \quad
    \hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}, \quad y = \gamma \hat x + \beta

Backward (batch statistics), with :math:`g = \partial L / \partial \hat x = \gamma\, dy`:

.. math::
    dx = \frac{1}{\sqrt{\sigma^2+\epsilon}}\Big(g - \overline{g} - \hat x\,\overline{g\hat x}\Big),
    \quad d\gamma = \sum_R dy\,\hat x, \quad d\beta = \sum_R dy

where the bar is the mean over :math:`R`. With moving statistics (inference)
:math:`\mu, \sigma^2` are constants and :math:`dx = g / \sqrt{\sigma^2+\epsilon}`.
The derivation is in ``docs/batch_normalization.md``.
"""
import numbers
from typing import NamedTuple, Optional

import numpy as np

from .base import Layer
from .._validation import check_positive


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray             # normalised input, shape of x
    inv_std: np.ndarray           # 1 / sqrt(var + eps), broadcastable to x
    gamma: Optional[np.ndarray]   # broadcastable scale, None when scale=False
    batch_stats: bool             # True: mean/var came from this batch (training)
    axes: tuple                   # reduction axes
    counts: object = None         # multiplicities of the rows (see batch_moments), or None


def batch_moments(x, axes, counts=None):
    """Batch mean and biased variance over ``axes`` (keepdims), as ``tf.nn.moments``,
    and ``x - mean``, which the forward can reuse.

    ``counts`` (broadcastable to ``x``, 1 on the feature axis): each row of ``x`` stands
    for ``counts`` identical rows of the batch (``docs/local_activation_unit.md``, shared
    padding), so the moments are the count-weighted ones, ``m = sum(counts)``.
    """
    if counts is None:
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean
        variance = np.mean(centred * centred, axis=axes, keepdims=True)
        return mean, variance, centred
    m = counts.sum()
    scratch = _times_counts(x.copy(order="K"), counts)     # x's layout: the same summation order
    mean = np.sum(scratch, axis=axes, keepdims=True) / m
    centred = x - mean
    scratch = _times_counts(np.multiply(centred, centred, out=scratch), counts)
    variance = np.sum(scratch, axis=axes, keepdims=True) / m
    return mean, variance, centred


def _times_counts(a, counts):
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
    """
    inv_std = 1.0 / np.sqrt(variance + epsilon)
    if centred is None:
        centred = x - mean
    x_hat = centred
    x_hat *= inv_std
    y = x_hat
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y, BatchNormCache(x_hat, inv_std, gamma, batch_stats, axes, counts)


def batch_norm_backward(dy, cache, with_beta=True):
    """Return ``dx, dgamma, dbeta``; dgamma is None without gamma, dbeta None unless ``with_beta``."""
    x_hat, inv_std, gamma, batch_stats, axes, counts = cache
    dgamma = np.sum(dy * x_hat, axis=axes) if gamma is not None else None
    dbeta = np.sum(dy, axis=axes) if with_beta else None
    g = dy * gamma if gamma is not None else dy
    if batch_stats and counts is not None:
        # rows standing for `counts` identical rows: dy holds each group's summed gradient,
        # the means are over all m rows and each group's dx is the sum of its members'
        m = counts.sum()
        g_mean = np.sum(g, axis=axes, keepdims=True) / m
        dx = np.multiply(g, x_hat)                     # one scratch array for the whole expression
        gx_mean = np.sum(dx, axis=axes, keepdims=True) / m
        np.multiply(x_hat, gx_mean, out=dx)
        dx += g_mean
        np.subtract(g, _times_counts(dx, counts), out=dx)
        dx *= inv_std                                  # inv_std * (g - counts * (g_mean + x_hat gx_mean))
    elif batch_stats:
        # mean and variance depend on every x in the reduction set
        g_mean = g.mean(axis=axes, keepdims=True)
        gx_mean = np.mean(g * x_hat, axis=axes, keepdims=True)
        dx = inv_std * (g - g_mean - x_hat * gx_mean)
    else:
        dx = g * inv_std
    return dx, dgamma, dbeta


class BatchNormalization(Layer):
    """tf.keras ``BatchNormalization``: normalise over every axis but ``axis``.

    Parameters
    ----------
    axis : int, default -1
        The feature axis; statistics are pooled over all other axes.
    momentum : float or None
        In Keras terms: the weight of the old moving statistic. None: the
        conventions profile's (0.99 for tf_keras / keras3, torch's 0.1 = 0.9 in Keras terms).
    epsilon : float or None
        None: the profile's (1e-3 Keras, 1e-5 torch).
    center, scale : bool, default True
        Learn ``beta`` / ``gamma``.
    conventions : str, optional
        ``"tf_keras"`` (default), ``"keras3"``, ``"torch"``: how the moving statistics are
        updated (``npctr.conventions``).

    Weights: ``gamma``, ``beta`` (trainable, shape ``(C,)``), ``moving_mean``,
    ``moving_variance`` (state, shape ``(C,)``).

    Notes
    -----
    Training mode normalises with the batch mean and the biased batch variance and
    updates the moving statistics with the decay :math:`d = 1 - \\text{momentum}` as the
    profile says (``bn_moving_update``; tf.keras 2 rounds :math:`d` to float32; torch feeds
    the unbiased batch variance :math:`\\tfrac{m}{m-1}\\sigma^2` to the moving variance);
    inference mode uses the moving statistics. ``docs/batch_normalization.md``.
    """

    #: profile fields giving the defaults (Dice's inner BN reads the ``dice_*`` ones)
    _momentum_field = "bn_momentum"
    _epsilon_field = "bn_epsilon"

    def __init__(self, axis=-1, momentum=None, epsilon=None, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int, got {axis!r}")
        if momentum is not None:
            if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
                raise TypeError(f"momentum must be a number in [0, 1], got {momentum!r}")
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
            momentum = float(momentum)
        if epsilon is not None:
            epsilon = check_positive(epsilon, "epsilon")
        self.axis = int(axis)
        self._momentum = momentum
        self._epsilon = epsilon
        self.center = bool(center)
        self.scale = bool(scale)

    @property
    def epsilon(self):
        """The epsilon in use: the explicit one, else the profile's."""
        if self._epsilon is not None:
            return self._epsilon
        return float(getattr(self.conventions, self._epsilon_field))

    def _momentum_and_decay(self):
        """``(momentum, decay)`` as Python floats: weights of the old and of the batch statistic,
        each as the framework writes it (torch's 0.1 stays exactly 0.1)."""
        if self._momentum is not None:
            return self._momentum, 1.0 - self._momentum
        value = float(getattr(self.conventions, self._momentum_field))
        if self.conventions.bn_momentum_convention == "torch":
            return 1.0 - value, value
        return value, 1.0 - value

    @property
    def momentum(self):
        """The momentum in use, in Keras terms (weight of the old moving statistic)."""
        return self._momentum_and_decay()[0]

    def build(self, input_shape):
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"axis {self.axis} is out of range for input shape {tuple(input_shape)}")
        self._feature_axis = self.axis % ndim
        self._ndim = ndim
        c = input_shape[self._feature_axis]
        if self.scale:
            self.add_weight("gamma", np.ones(c))
        if self.center:
            self.add_weight("beta", np.zeros(c))
        self.add_weight("moving_mean", np.zeros(c), trainable=False)
        self.add_weight("moving_variance", np.ones(c), trainable=False)
        super().build(input_shape)

    def _broadcast(self, v, ndim):
        if v is None or self._feature_axis == ndim - 1:
            return v
        shape = [1] * ndim
        shape[self._feature_axis] = v.shape[0]
        return v.reshape(shape)

    def forward(self, inputs, training=False, backprop=None):
        return self.forward_counted(inputs, training, backprop)

    def forward_counted(self, inputs, training=False, backprop=None, counts=None):
        """``forward`` where row ``i`` stands for ``counts[i]`` identical rows of the batch
        (training: count-weighted statistics, see ``batch_moments``; the backward then takes
        each group's summed gradient). ``counts=None`` is ``forward``."""
        x = self._input(inputs, min_rank=1)
        if x.ndim != self._ndim or x.shape[self._feature_axis] != self._state["moving_mean"].shape[0]:
            raise ValueError(f"inputs must have rank {self._ndim} and {self._state['moving_mean'].shape[0]} "
                             f"features on axis {self.axis}, got shape {x.shape}")
        axes = tuple(a for a in range(x.ndim) if a != self._feature_axis)
        gamma = self._broadcast(self._params.get("gamma"), x.ndim)
        beta = self._broadcast(self._params.get("beta"), x.ndim)
        centred = None
        if training:
            mean, variance, centred = batch_moments(x, axes, counts)
            count = x.size // x.shape[self._feature_axis] if counts is None else int(counts.sum())
            self._update_moving(mean.reshape(-1), variance.reshape(-1), count)
        else:                                   # moving statistics: the counts play no part
            counts = None
            mean = self._broadcast(self._state["moving_mean"], x.ndim)
            variance = self._broadcast(self._state["moving_variance"], x.ndim)
        y, cache = batch_norm_forward(x, mean, variance, gamma, beta, self.epsilon, axes,
                                      batch_stats=bool(training), centred=centred, counts=counts)
        self._cache = cache if self._keeps_cache(training, backprop) else None
        self._output_shape = y.shape
        return y

    def _update_moving(self, batch_mean, batch_variance, count):
        """Update the moving statistics from the batch's (``count`` elements per feature)."""
        conv = self.conventions
        if conv.bn_moving_variance == "unbiased":
            if count < 2:
                raise ValueError(f"{self.name}: training needs more than 1 value per feature for the "
                                 f"unbiased moving variance (conventions {conv.name!r}), got {count}")
            batch_variance = batch_variance * (count / (count - 1.0))
        m, d = self._momentum_and_decay()
        t = self.dtype.type
        if conv.bn_decay_float32:
            d = float(np.float32(d))
        for key, value in (("moving_mean", batch_mean), ("moving_variance", batch_variance)):
            moving = self._state[key]
            if conv.bn_moving_update == "subtract":     # tf.keras 2: assign_sub((moving - batch) * d)
                moving -= (moving - value) * t(d)
            elif conv.bn_moving_update == "lerp":       # Keras 3: moving * m + batch * (1 - m)
                moving[...] = moving * t(m) + value * t(d)
            elif conv.bn_moving_update == "torch":      # torch: d * batch + (1 - d) * moving
                moving[...] = t(d) * value + t(1.0 - d) * moving
            else:
                raise ValueError(f"unknown bn_moving_update {conv.bn_moving_update!r} in conventions "
                                 f"{conv.name!r}; expected 'subtract', 'lerp' or 'torch'")

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        dx, dgamma, dbeta = batch_norm_backward(dy, cache, with_beta=self.center)
        if self.scale:
            self._grads["gamma"] = dgamma
        if self.center:
            self._grads["beta"] = dbeta
        return dx

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self._momentum,
                "epsilon": self._epsilon, "center": self.center, "scale": self.scale}
