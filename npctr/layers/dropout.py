r"""Inverted dropout: ``rate`` is the fraction of units dropped.

.. math::
    m_i \sim \mathrm{Bernoulli}(1 - r), \qquad y = x \odot m / (1 - r), \qquad dx = dy \odot m / (1 - r)

The mask drawn by a training-mode forward is the one its backward uses.
Inference mode (and ``rate == 0``) is the identity.
"""

from .base import Layer, make_rng
from .._validation import check_rate, check_seed


class Dropout(Layer):
    """tf.keras ``Dropout(rate, noise_shape=None, seed=None)`` with a NumPy Generator.

    ``noise_shape`` (as Keras) shares one mask entry along axes where it is 1;
    ``None`` entries take the input's size.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate(rate, "rate")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = check_seed(seed)
        self._rng = make_rng(self.seed)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"noise_shape {self.noise_shape} must have the input's rank {len(shape)}")
        return tuple(s if n is None else n for n, s in zip(self.noise_shape, shape))

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs)
        self._output_shape = x.shape
        if not training or self.rate == 0.0:
            self._cache = 1.0 if self._keeps_cache(training, backprop) else None
            return x
        keep = self._rng.random(self._mask_shape(x.shape)) >= self.rate
        scaled_mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.rate)
        self._cache = scaled_mask if self._keeps_cache(training, backprop) else None
        return x * scaled_mask

    def backward(self, grad_output):
        scaled_mask, dy = self._take_cache(grad_output)
        return dy if isinstance(scaled_mask, float) else dy * scaled_mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}
