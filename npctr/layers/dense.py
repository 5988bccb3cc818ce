r"""A fully connected layer on the last axis of an input of any rank >= 2.

.. math::
    y = x W + b, \qquad x: (\dots, n_{in}),\ W: (n_{in}, n_{out}),\ b: (n_{out},)

Backward, flattening the leading axes into one of size :math:`N`:

.. math::
    dx = dy\,W^\top, \qquad dW = x^\top dy, \qquad db = \textstyle\sum_N dy

The equations are :func:`npctr.ops.dense.dense_forward` / ``dense_backward``.
"""
from typing import NamedTuple

import numpy as np

from .base import Layer, make_rng
from ..ops.activations import ACTIVATIONS
from ..ops.dense import dense_forward, dense_backward
from .. import initializers
from .._validation import check_last_dim, check_nonnegative, check_seed


def initializer_config_name(initializer, arg):
    """How an initializer argument is written into a layer config: its name.

    ``None`` and names pass through; a callable registered in
    :data:`npctr.initializers.INITIALIZERS` is written as its registered name. Any
    other callable cannot be saved (``from_config`` would silently build a
    different layer), so it raises a ValueError naming ``arg``.
    """
    if initializer is None or isinstance(initializer, str):
        return initializer
    for name, fn in initializers.INITIALIZERS.items():
        if initializer is fn:
            return name
    raise ValueError(f"{arg} {initializer!r} is a callable with no registered initializer name, so it "
                     f"cannot be saved in a config; expected a name, one of {sorted(initializers.INITIALIZERS)}")


class DenseCache(NamedTuple):
    x: np.ndarray     # the input (..., input_dim)
    y: np.ndarray     # the output after the activation, (..., units)


class Dense(Layer):
    """tf.keras ``Dense`` on the last axis, with a plain activation by name.

    Parameters
    ----------
    units : int
    activation : str or None
        One of ``linear``, ``relu``, ``sigmoid``, ``tanh``, ``softmax``.
    use_bias : bool, default True
    kernel_initializer : str or callable, default 'glorot_uniform' (Keras's default)
    l2_reg : float, default 0
        ``l2_reg * sum(kernel ** 2)`` is added to the loss (Keras's ``kernel_regularizer=l2(l2_reg)``).
    seed : int or None
        Seeds the kernel initializer.

    Input ``(batch_size, ..., input_dim)``, output ``(batch_size, ..., units)``.
    Weights: ``kernel (input_dim, units)``, ``bias (units,)``.
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 l2_reg=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be None or one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.units = int(units)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self._init = initializers.get(kernel_initializer)
        self.l2_reg = check_nonnegative(l2_reg, "l2_reg")
        self.seed = check_seed(seed)

    def build(self, input_shape):
        rng = make_rng(self.seed)
        self.add_weight("kernel", self._init(rng, (input_shape[-1], self.units), dtype=self.dtype),
                        l2_reg=self.l2_reg)
        if self.use_bias:
            self.add_weight("bias", initializers.zeros(None, (self.units,)))
        super().build(input_shape)

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs, min_rank=2)
        check_last_dim(x, "inputs", self._params["kernel"].shape[0])
        y = dense_forward(x, self._params["kernel"], self._params.get("bias"))
        if self.activation is not None:
            y = ACTIVATIONS[self.activation][0](y)
        self._cache = DenseCache(x, y) if self._keeps_cache(training, backprop) else None
        self._output_shape = y.shape
        return y

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        if self.activation is not None:
            dy = ACTIVATIONS[self.activation][1](dy, cache.y)
        dx, dkernel, dbias = dense_backward(dy, cache.x, self._params["kernel"], self.use_bias)
        self._grads["kernel"] = dkernel
        if self.use_bias:
            self._grads["bias"] = dbias
        return dx

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializer_config_name(self.kernel_initializer, "kernel_initializer"),
                "l2_reg": self.l2_reg, "seed": self.seed}
