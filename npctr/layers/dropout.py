r"""Inverted dropout: ``rate`` is the fraction of units dropped.

.. math::
    m_i \sim \mathrm{Bernoulli}(1 - r), \qquad y = x \odot m / (1 - r), \qquad dx = dy \odot m / (1 - r)

The mask drawn by a training-mode forward is the one its backward uses.
Inference mode (and ``rate == 0``) is the identity.
"""

import numbers
from typing import NamedTuple, Optional

import numpy as np

from .base import Layer, make_rng
from .._validation import check_rate, check_seed


class DropoutCache(NamedTuple):
    scaled_mask: Optional[np.ndarray]   # keep / (1 - rate), broadcastable to x; None: the identity


class Dropout(Layer):
    """tf.keras ``Dropout(rate, noise_shape=None, seed=None)`` with a NumPy Generator.

    ``noise_shape`` (as Keras) shares one mask entry along axes where it is 1;
    ``None`` entries take the input's size. Every entry must be ``None`` or a
    positive int, and (checked in ``forward``) ``None``, 1 or the input's size on
    that axis, so the output always has the input's shape.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate(rate, "rate")
        self.noise_shape = self._check_noise_shape(noise_shape)
        self.seed = check_seed(seed)
        self._rng = make_rng(self.seed)

    @staticmethod
    def _check_noise_shape(noise_shape):
        if noise_shape is None:
            return None
        try:
            entries = tuple(noise_shape)
        except TypeError:
            raise TypeError(f"noise_shape must be None or a tuple of None / positive ints, "
                            f"got {noise_shape!r} of type {type(noise_shape).__name__}") from None
        checked = []
        for i, n in enumerate(entries):
            if n is None:
                checked.append(None)
                continue
            if isinstance(n, bool) or not isinstance(n, numbers.Integral):
                raise TypeError(f"noise_shape entries must be None or positive ints, got {n!r} "
                                f"of type {type(n).__name__} at index {i} of {noise_shape!r}")
            if n <= 0:
                raise ValueError(f"noise_shape entries must be None or positive ints, got {n!r} "
                                 f"at index {i} of {noise_shape!r}")
            checked.append(int(n))
        return tuple(checked)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"noise_shape {self.noise_shape} must have the input's rank {len(shape)}, "
                             f"got input shape {tuple(shape)}")
        mask = tuple(s if n is None else n for n, s in zip(self.noise_shape, shape))
        if any(m not in (1, s) for m, s in zip(mask, shape)):
            expected = tuple(f"None, 1 or {s}" for s in shape)
            raise ValueError(f"noise_shape {self.noise_shape} does not fit input shape {tuple(shape)}: "
                             f"each entry must be None, 1 or the input's size on that axis "
                             f"(expected per axis: {'; '.join(expected)})")
        return mask

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs)
        self._output_shape = x.shape
        mask_shape = self._mask_shape(x.shape)   # checked in inference mode too: both modes agree
        if not training or self.rate == 0.0:
            self._cache = DropoutCache(None) if self._keeps_cache(training, backprop) else None
            return x
        keep = self._rng.random(mask_shape) >= self.rate
        scaled_mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.rate)
        self._cache = DropoutCache(scaled_mask) if self._keeps_cache(training, backprop) else None
        return x * scaled_mask

    def backward(self, grad_output):
        cache, dy = self._take_cache(grad_output)
        return dy if cache.scaled_mask is None else dy * cache.scaled_mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}
