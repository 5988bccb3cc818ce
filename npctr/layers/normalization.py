r"""Batch normalization with tf.keras semantics: the ``BatchNormalization`` layer.

Statistics are taken over every axis but ``axis`` (the feature axis); training mode normalises
with the batch statistics and updates the moving ones as the conventions profile says,
inference mode uses the moving statistics. The forward and backward equations, with shapes,
are :mod:`npctr.ops.batch_norm`; the derivation is in ``docs/batch_normalization.md``.
"""
import numbers

import numpy as np

from .base import Layer
from .. import initializers
from .._validation import check_positive
from ..ops.batch_norm import (batch_moments, batch_norm_forward, batch_norm_backward, unbiased_variance,
                              update_moving_)


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
    the unbiased batch variance :math:`\\tfrac{N}{N-1}\\sigma^2` to the moving variance);
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
            self.add_weight("gamma", initializers.ones(None, (c,)))
        if self.center:
            self.add_weight("beta", initializers.zeros(None, (c,)))
        self.add_weight("moving_mean", initializers.zeros(None, (c,)), trainable=False)
        self.add_weight("moving_variance", initializers.ones(None, (c,)), trainable=False)
        super().build(input_shape)

    @property
    def input_rank(self):
        """The rank of the inputs the layer was built for."""
        return self._ndim

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
            count = x.size // x.shape[self._feature_axis] if counts is None else int(counts.sum())
            if count == 0:          # the batch mean of nothing is NaN, and would poison the moving statistics
                raise ValueError(f"{self.name}: training needs at least one value per feature for the batch "
                                 f"statistics, got inputs of shape {x.shape}; the moving statistics are left "
                                 "as they were")
            mean, variance, centred = batch_moments(x, axes, counts)
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
            batch_variance = unbiased_variance(batch_variance, count)
        m, d = self._momentum_and_decay()
        if conv.bn_decay_float32:
            d = float(np.float32(d))
        update_moving_(self._state["moving_mean"], batch_mean, m, d, conv.bn_moving_update)
        update_moving_(self._state["moving_variance"], batch_variance, m, d, conv.bn_moving_update)

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
