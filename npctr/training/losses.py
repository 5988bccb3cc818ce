r"""Training losses with Keras's values and exact, finite gradients.

Every loss is an object with

* ``value(y_true, y_pred)``: the batch loss as tf.keras 2 computes it (mean over the batch);
* ``grad(y_true, y_pred)``: :math:`\partial L / \partial \hat y`, shape of ``y_pred``;
* for losses paired with a link function (``link`` is ``'sigmoid'`` or ``'softmax'``),
  ``logit_grad(y_true, z)``: :math:`\partial L / \partial z` for :math:`\hat y = \mathrm{link}(z)`,
  fused so it is finite and exact for any logit.

The trainer uses the fused form when the model exposes its logits
(``forward_logits`` / ``backward_logits``); see ``docs/training.md`` for the derivation.
"""
import numpy as np

from ..layers.activation import sigmoid, softmax

#: Keras's fuzz factor ``backend.epsilon()``.
EPSILON = 1e-7


def _as_pair(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true, dtype=y_pred.dtype if y_pred.dtype.kind == "f" else np.float64)
    if y_true.shape != y_pred.shape:
        y_true = y_true.reshape(y_pred.shape)
    return y_true, y_pred


def binary_crossentropy_per_sample(y_true, y_pred):
    r"""Keras's per-element BCE on probabilities, before the batch mean.

    .. math::
        \ell = -\bigl[y \log(\bar p + \epsilon) + (1 - y)\log(1 - \bar p + \epsilon)\bigr],
        \quad \bar p = \mathrm{clip}(p, \epsilon, 1 - \epsilon),\ \epsilon = 10^{-7}

    (tf.keras 2's ``backend.binary_crossentropy``: it clips *and* adds
    :math:`\epsilon` inside the logarithms.) Output keeps ``y_pred``'s shape.
    """
    y_true, y_pred = _as_pair(y_true, y_pred)
    eps = y_pred.dtype.type(EPSILON) if y_pred.dtype.kind == "f" else EPSILON
    p = np.clip(y_pred, eps, 1 - eps)
    return -(y_true * np.log(p + eps) + (1 - y_true) * np.log(1 - p + eps))


def _n_rows(y_pred):
    """How many per-sample values a loss reduced over the last axis averages: all axes but the last."""
    return y_pred.size // y_pred.shape[-1] if y_pred.ndim and y_pred.shape[-1] else 1


class Loss:
    """Base class: ``name``, ``link``, ``value``, ``grad``, ``logit_grad``."""
    name = None
    link = None

    def __call__(self, y_true, y_pred):
        return self.value(y_true, y_pred)

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError

    def value(self, y_true, y_pred):
        """Mean over the batch (Keras's ``SUM_OVER_BATCH_SIZE`` reduction), a Python float."""
        return float(np.mean(self.per_sample(y_true, y_pred)))

    def grad(self, y_true, y_pred):
        raise NotImplementedError

    def logit_grad(self, y_true, logits):
        raise NotImplementedError(f"{self.name} has no fused logit gradient")

    def __repr__(self):
        return f"{type(self).__name__}()"


class BinaryCrossentropy(Loss):
    r"""``binary_crossentropy``: value as tf.keras 2, gradient fused with the sigmoid.

    Notes
    -----
    Value: mean over the batch of :func:`binary_crossentropy_per_sample`.

    Fused gradient with respect to the logit :math:`z` (:math:`p = \sigma(z)`; :math:`N` is the
    number of elements of ``y_pred``, :math:`B` times the number of outputs, since the value is
    a mean over all of them):

    .. math:: \frac{\partial L}{\partial z} = \frac{\sigma(z) - y}{N}

    which is the exact derivative of the *unclipped* BCE
    :math:`-[y\log\sigma(z) + (1-y)\log(1-\sigma(z))]/N`. TensorFlow's autodiff of the
    clipped value differs from it by a relative :math:`O(10^{-7})` inside the clip range and
    is exactly 0 outside it (:math:`|z| \gtrsim 16.1`), where this gradient keeps pulling
    mis-classified saturated logits back. ``grad`` (with respect to probabilities, used
    only when a model exposes no logits) is the derivative of the clipped value as Keras's
    autodiff computes it.
    """
    name = "binary_crossentropy"
    link = "sigmoid"

    def per_sample(self, y_true, y_pred):
        return binary_crossentropy_per_sample(y_true, y_pred)

    def grad(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        eps = y_pred.dtype.type(EPSILON)
        inside = (y_pred >= eps) & (y_pred <= 1 - eps)  # tf.clip_by_value passes the gradient on ties
        p = np.clip(y_pred, eps, 1 - eps)
        d = (-y_true / (p + eps) + (1 - y_true) / (1 - p + eps)) / y_pred.size
        return np.where(inside, d, 0).astype(y_pred.dtype, copy=False)

    def logit_grad(self, y_true, logits):
        y_true, logits = _as_pair(y_true, logits)
        return (sigmoid(logits) - y_true) / logits.size


class MeanSquaredError(Loss):
    r"""``mse`` / ``mean_squared_error``: :math:`L = \frac1B\sum_i (\hat y_i - y_i)^2`.

    Notes
    -----
    :math:`\partial L/\partial \hat y_i = 2(\hat y_i - y_i)/B` (one output per sample;
    Keras's mean over the last axis is over a single element).
    """
    name = "mean_squared_error"

    def per_sample(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        return np.mean((y_pred - y_true) ** 2, axis=-1)

    def grad(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        return 2.0 * (y_pred - y_true) / y_pred.size        # value is the mean over every element


class CategoricalCrossentropy(Loss):
    r"""``categorical_crossentropy`` on one-hot labels ``(batch_size, n_classes)``.

    Value as tf.keras 2: :math:`\bar p = p / \sum_c p_c`, clipped to
    :math:`[\epsilon, 1 - \epsilon]`, :math:`\ell = -\sum_c y_c \log \bar p_c`, mean over the batch.

    Notes
    -----
    Fused with the softmax: :math:`\partial L / \partial z = (\mathrm{softmax}(z) - y) / B`
    for one-hot (or any row-stochastic) :math:`y`, where :math:`B` is the number of rows the
    value averages over (``y_pred.size // n_classes``: the batch size for a 2D ``y_pred``).
    """
    name = "categorical_crossentropy"
    link = "softmax"

    def per_sample(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        eps = y_pred.dtype.type(EPSILON)
        p = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
        p = np.clip(p, eps, 1 - eps)
        return -np.sum(y_true * np.log(p), axis=-1)

    def grad(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        eps = y_pred.dtype.type(EPSILON)
        s = np.sum(y_pred, axis=-1, keepdims=True)
        q = y_pred / s
        inside = (q >= eps) & (q <= 1 - eps)
        dq = np.where(inside, -y_true / np.clip(q, eps, 1 - eps), 0)
        # q = p / s: dL/dp_j = (dq_j - sum_c dq_c q_c) / s
        dp = (dq - np.sum(dq * q, axis=-1, keepdims=True)) / s
        return dp / _n_rows(y_pred)

    def logit_grad(self, y_true, logits):
        y_true, logits = _as_pair(y_true, logits)
        return (softmax(logits) - y_true) / _n_rows(logits)


_LOSSES = {
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "categorical_crossentropy": CategoricalCrossentropy,
}


def get(loss):
    """A loss by Keras name (``'binary_crossentropy'``, ``'mse'``, ``'mean_squared_error'``,
    ``'categorical_crossentropy'``) or a :class:`Loss` instance, returned as is."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _LOSSES:
        return _LOSSES[loss]()
    raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a npctr Loss instance, got {loss!r}")
