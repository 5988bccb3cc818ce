r"""Activation layers: a plain activation by name, PReLU, DIN's Dice, and DeepCTR's
``activation_layer``. The equations (the activation table with each derivative written
from the output, PReLU, Dice's normalize-and-gate form) are in :mod:`npctr.ops.activations`.
"""
import numbers
from typing import NamedTuple

import numpy as np

from .base import Layer
from .normalization import BatchNormalization
from .. import initializers
from .._validation import check_positive
from ..ops.activations import (ACTIVATIONS, sigmoid, relu, softmax, prelu, prelu_backward,  # noqa: F401
                               dice_gate, dice_gate_from_tanh_, dice_backward)
from ..ops.batch_norm import BatchNormCache, inverse_std, negated_inference_affine
from ..ops.rows import per_feature


class Activation(Layer):
    """A plain activation by its Keras name (``relu``, ``sigmoid``, ``tanh``, ``linear``, ``softmax``)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self._f, self._df = ACTIVATIONS[activation]

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs)
        y = self._f(x)
        self._cache = y if self._keeps_cache(training, backprop) else None
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        y, dy = self._take_cache(grad_output)
        return self._df(dy, y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class PReLUCache(NamedTuple):
    x: np.ndarray          # the input
    negative: np.ndarray   # min(x, 0)


class PReLU(Layer):
    r"""tf.keras ``PReLU``: :math:`y = \max(x, 0) + \alpha \min(x, 0)`, ``alpha`` starts at 0.

    As in Keras, ``alpha`` has the shape of the input without its batch axis,
    with 1 on each of ``shared_axes`` (1-based, as Keras counts them). On a 2D
    input that is one alpha per feature. Backward:
    :math:`dx = dy\,([x > 0] + \alpha\,[x < 0])` (slope 0 at exactly 0, as TensorFlow),
    :math:`d\alpha = \sum_{\text{batch, shared}} dy \min(x, 0)`.
    """

    def __init__(self, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if shared_axes is None:
            self.shared_axes = None
        else:
            if isinstance(shared_axes, (numbers.Integral, bool)) or not hasattr(shared_axes, "__iter__") \
                    or isinstance(shared_axes, (str, bytes)):
                axes = [shared_axes]
            else:
                axes = list(shared_axes)
            for a in axes:
                if isinstance(a, bool) or not isinstance(a, numbers.Integral):
                    raise TypeError(f"shared_axes must be None, an int or a sequence of ints (1-based axes), "
                                    f"got {shared_axes!r} (entry {a!r} of type {type(a).__name__})")
            self.shared_axes = tuple(int(a) for a in axes)

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            if not 1 <= a <= len(shape):
                raise ValueError(f"shared_axes entry {a} is out of range for input shape {tuple(input_shape)}")
            shape[a - 1] = 1
        self.add_weight("alpha", initializers.zeros(None, tuple(shape)))
        self._input_tail = tuple(input_shape[1:])
        super().build(input_shape)

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs, min_rank=2)
        if x.shape[1:] != self._input_tail:
            raise ValueError(f"inputs must have shape (batch_size, {', '.join(map(str, self._input_tail))}) "
                             f"as when the layer was built, got {x.shape}")
        y, negative = prelu(x, self._params["alpha"])
        self._cache = PReLUCache(x, negative) if self._keeps_cache(training, backprop) else None
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        sum_axes = (0,) + tuple(self.shared_axes or ())
        dx, self._grads["alpha"] = prelu_backward(dy, cache.x, cache.negative, self._params["alpha"], sum_axes)
        return dx

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "shared_axes": self.shared_axes}


class DiceCache(NamedTuple):
    x: np.ndarray      # the input
    p: np.ndarray      # sigmoid(bn(x))
    gate: np.ndarray   # alpha + (1 - alpha) p, so that y = gate * x


class Dice(Layer):
    r"""DIN's data-adaptive activation as DeepCTR's TensorFlow ``Dice``.

    .. math::
        p = \sigma(\mathrm{BN}(x)), \qquad y = \alpha (1 - p) x + p x

    ``BN`` is a BatchNormalization over every axis but ``axis`` (child ``bn``);
    ``alpha`` (weight ``dice_alpha``, shape ``(units,)``) starts at zero. The
    conventions profile sets BN's epsilon, momentum and whether it is affine:
    DeepCTR (``"tf_keras"``, ``"keras3"``): no centre or scale, momentum 0.99,
    epsilon 1e-9; DeepCTR-Torch (``"torch"``): ``BatchNorm1d(eps=1e-8)``, learnable
    ``bn/gamma`` and ``bn/beta``, momentum 0.1 (torch terms), unbiased moving variance.

    Parameters
    ----------
    axis : int, default -1
    epsilon : float or None
        None: the profile's ``dice_epsilon``.
    conventions : str, optional

    Notes
    -----
    Backward, with :math:`\hat x = \mathrm{BN}(x)`:
    :math:`d\alpha = \sum dy\,x(1-p)`,
    :math:`dx = dy\,(\alpha(1-p) + p) + \mathrm{BN}^\top\!\big(dy\,x(1-\alpha)\,p(1-p)\big)`,
    where :math:`\mathrm{BN}^\top` is the batch-norm backward (batch statistics in
    training mode, moving statistics otherwise), which also gives the affine BN's
    :math:`d\gamma, d\beta`. See ``docs/dice.md``.
    """

    def __init__(self, axis=-1, epsilon=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an int, got {axis!r} of type {type(axis).__name__}")
        self.axis = int(axis)
        self._epsilon = None if epsilon is None else check_positive(epsilon, "epsilon")

    @property
    def epsilon(self):
        """The epsilon in use: the explicit one, else the profile's ``dice_epsilon``."""
        return self._epsilon if self._epsilon is not None else float(self.conventions.dice_epsilon)

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(f"axis {self.axis} is out of range for input shape {tuple(input_shape)} "
                             f"(expected an axis in [{-rank}, {rank - 1}])")
        conv = self.conventions
        self.add_weight("dice_alpha", initializers.zeros(None, (input_shape[self.axis],)))
        # DeepCTR: center/scale off, Dice only needs the normalised input for its gate;
        # DeepCTR-Torch: an affine BatchNorm1d (learnable gamma/beta)
        bn = _DiceBatchNormalization(axis=self.axis, epsilon=self.epsilon, center=conv.dice_bn_affine,
                                     scale=conv.dice_bn_affine, dtype=self.dtype, name="bn")
        self.add_layer("bn", bn, input_shape=input_shape)
        super().build(input_shape)

    def forward(self, inputs, training=False, backprop=None):
        return self.forward_counted(inputs, training, backprop)

    def forward_counted(self, inputs, training=False, backprop=None, counts=None):
        """``forward`` with row multiplicities for the batch statistics
        (``BatchNormalization.forward_counted``); ``counts=None`` is ``forward``."""
        x = self._input(inputs, min_rank=2)
        alpha = self._params["dice_alpha"]
        if x.shape[self.axis] != alpha.shape[0]:
            raise ValueError(f"inputs must have {alpha.shape[0]} features on axis {self.axis}, "
                             f"got shape {x.shape}")
        bn = self._layers["bn"]
        keep = self._keeps_cache(training, backprop)
        if not training and x.ndim == bn.input_rank and bn._feature_axis == x.ndim - 1:
            return self._inference(x, alpha, bn, keep)
        p = sigmoid(bn.forward_counted(x, training=training, backprop=backprop, counts=counts))
        # alpha (1 - p) x + p x = gate x: fewer passes over (B, T, H)
        gate = dice_gate(p, bn._broadcast(alpha, x.ndim))
        y = gate * x
        self._cache = DiceCache(x, p, gate) if keep else None
        self._output_shape = y.shape
        return y

    def _inference(self, x, alpha, bn, keep):
        r"""Inference (moving statistics), features on the last axis: BN folded into
        :math:`u = \mathrm{BN}(x) / 2 = x s + c` and the gate in tanh form,
        :math:`g = \tfrac{1 + \alpha}{2} + \tfrac{1 - \alpha}{2} \tanh u`
        (``ops.activations.dice_gate_from_tanh_``): four passes fewer than normalize, sigmoid
        and gate. With ``keep`` (a backward follows) the same values, and the caches the backward
        reads: :math:`p = (1 + \tanh u) / 2`, the gate, and BN's ``inv_std`` (and ``x_hat`` for
        ``dgamma``)."""
        params, state, dtype = bn.params, bn.state, x.dtype
        gamma = params.get("gamma")
        half_scale, half_shift = negated_inference_affine(state["moving_mean"], state["moving_variance"], bn.epsilon,
                                                          gamma, params.get("beta"), factor=-0.5)
        u = per_feature(np.multiply, x, half_scale.astype(dtype, copy=False))
        per_feature(np.add, u, half_shift.astype(dtype, copy=False), out=u)
        np.tanh(u, out=u)
        p = None
        if keep:
            p = u * 0.5
            p += 0.5
        gate = dice_gate_from_tanh_(u, ((1.0 + alpha) * 0.5).astype(dtype, copy=False),
                                    ((1.0 - alpha) * 0.5).astype(dtype, copy=False))
        y = gate * x if keep else np.multiply(gate, x, out=gate)
        bn._cache = None
        if keep:
            inv_std = inverse_std(state["moving_variance"], bn.epsilon).astype(dtype, copy=False)
            x_hat = None if gamma is None else (x - state["moving_mean"]) * inv_std
            axes = tuple(range(x.ndim - 1))
            bn._cache = BatchNormCache(x_hat, inv_std, gamma, False, axes)
            bn._output_shape = x.shape
        self._cache = DiceCache(x, p, gate) if keep else None
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        x = cache.x
        bn = self._layers["bn"]
        alpha = bn._broadcast(self._params["dice_alpha"], x.ndim)
        reduce_axes = tuple(a for a in range(x.ndim) if a != bn._feature_axis)
        self._grads["dice_alpha"], d_normalized, d_x_gate = dice_backward(dy, x, cache.p, cache.gate, alpha,
                                                                          reduce_axes)
        dx = bn.backward(d_normalized)
        dx += d_x_gate
        return dx

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self._epsilon}


class _DiceBatchNormalization(BatchNormalization):
    """Dice's inner BatchNormalization: its momentum default is the profile's ``dice_bn_momentum``."""
    _momentum_field = "dice_bn_momentum"


def activation_layer(activation, name=None, dtype=None, conventions=None):
    """DeepCTR's ``activation_layer``: a layer for a name or an activation layer class.

    Names are matched as DeepCTR 0.9.4 matches them: ``'dice'`` or ``'Dice'``,
    otherwise a Keras activation name, which is case-sensitive (``'relu'``,
    ``'sigmoid'``, ``'tanh'``, ``'linear'``, ``'softmax'``). npctr also accepts
    ``'prelu'`` / ``'PReLU'`` (DeepCTR wants the ``PReLU`` class for that). A
    Layer subclass is instantiated with no arguments.
    """
    if isinstance(activation, str):
        if activation in ("dice", "Dice"):
            return Dice(name=name, dtype=dtype, conventions=conventions)
        if activation in ("prelu", "PReLU"):
            return PReLU(name=name, dtype=dtype, conventions=conventions)
        if activation in ACTIVATIONS:
            return Activation(activation, name=name, dtype=dtype, conventions=conventions)
        lowered = activation.lower()
        hint = ""
        if lowered in ACTIVATIONS:
            hint = f" (activation names are case-sensitive, as in Keras: use {lowered!r})"
        elif lowered in ("dice", "prelu"):
            hint = f" (use {'Dice' if lowered == 'dice' else 'PReLU'!r} or {lowered!r})"
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS) + ['dice', 'prelu']} or an "
                         f"activation Layer class, got {activation!r}{hint}")
    if isinstance(activation, type):
        if not issubclass(activation, Layer):
            raise ValueError(f"activation class must be an npctr Layer subclass, got {activation!r}")
        layer = activation()
        if name is not None:
            layer.name = name
        if layer.dtype is None and dtype is not None:
            layer.dtype = np.dtype(dtype)
        return layer
    raise TypeError(f"activation must be a str or an activation Layer class, got {activation!r} "
                    f"of type {type(activation).__name__}")


def activation_name(activation):
    """How an activation argument is written into a config: a name where one exists
    (strings, ``Dice``, ``PReLU``), otherwise the class itself."""
    if isinstance(activation, type) and activation in (Dice, PReLU):
        return activation.__name__
    return activation
