r"""Training losses with each framework's values and exact gradients.

Every loss is an object with

* ``value(y_true, y_pred)``: the batch loss as the framework computes it (``reduction``
  ``'mean'``: Keras's sum over the batch size; ``'sum'``: DeepCTR-Torch's fit);
* ``grad(y_true, y_pred)``: :math:`\partial L / \partial \hat y`, shape of ``y_pred``, as the
  framework's autodiff computes it;
* for losses paired with a link function (``link`` is ``'sigmoid'`` or ``'softmax'``),
  ``logit_grad(y_true, z)``: :math:`\partial L / \partial z` for :math:`\hat y = \mathrm{link}(z)`:
  by default (``gradient='exact'``) the framework's gradient chained through the link, so
  the trainer minimises exactly what the framework minimises (including the zero gradient
  where Keras clips); with ``gradient='fused'`` the fused form
  (``fused_logit_grad``, finite and exact for any logit of the *unclipped* loss).

``convention`` picks the formula family (``'tf_keras'``, ``'keras3'``, ``'torch'``,
a conventions profile's ``loss`` field); see ``docs/training.md``.
"""
import numpy as np

from ..ops.activations import sigmoid, softmax
from ..ops.losses import torch_bce, torch_bce_grad

#: Keras's fuzz factor ``backend.epsilon()``.
EPSILON = 1e-7


def _as_pair(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true, dtype=y_pred.dtype if y_pred.dtype.kind == "f" else np.float64)
    if y_true.shape != y_pred.shape:
        y_true = y_true.reshape(y_pred.shape)
    return y_true, y_pred


def binary_crossentropy_per_sample(y_true, y_pred, convention="tf_keras"):
    r"""Per-element BCE on probabilities, before the batch reduction.

    .. math::
        \text{tf\_keras:}\ \ell = -\bigl[y \log(\bar p + \epsilon) + (1 - y)\log(1 - \bar p + \epsilon)\bigr],
        \quad \bar p = \mathrm{clip}(p, \epsilon, 1 - \epsilon),\ \epsilon = 10^{-7}

    (tf.keras 2's ``backend.binary_crossentropy`` clips *and* adds :math:`\epsilon` inside
    the logarithms); ``keras3``: only the clip; ``torch``
    (``F.binary_cross_entropy``): :math:`(y - 1)\max(\log(1 - p), -100) - y \max(\log p, -100)`.
    Output keeps ``y_pred``'s shape.
    """
    y_true, y_pred = _as_pair(y_true, y_pred)
    _check_convention(convention)
    if convention == "torch":
        return torch_bce(y_true, y_pred)
    eps = y_pred.dtype.type(EPSILON) if y_pred.dtype.kind == "f" else EPSILON
    p = np.clip(y_pred, eps, 1 - eps)
    inside = eps if convention == "tf_keras" else 0
    return -(y_true * np.log(p + inside) + (1 - y_true) * np.log(1 - p + inside))


def probability(logits):
    """``sigmoid(logits)`` correctly rounded to the logits' dtype.

    float32 is computed in float64 and rounded once: near saturation ``1 - p`` is a few
    float32 ulps, so the BCE gradient (``p (1 - p)``, ``1 / (1 - p)``) depends on the last bit
    of ``p``; the frameworks' float32 sigmoid is accurate to it, a float32 ``1 / (1 + exp(-z))``
    is not.
    """
    logits = np.asarray(logits)
    if logits.dtype == np.float32:
        return sigmoid(logits.astype(np.float64)).astype(np.float32)
    return sigmoid(logits)


CONVENTIONS = ("tf_keras", "keras3", "torch")
REDUCTIONS = ("mean", "sum")


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")


def _n_rows(y_pred):
    """How many per-sample values a loss reduced over the last axis averages: all axes but the last."""
    return y_pred.size // y_pred.shape[-1] if y_pred.ndim and y_pred.shape[-1] else 1


class Loss:
    """Base class: ``name``, ``link``, ``reduction``, ``value``, ``grad``, ``logit_grad``."""
    name = None
    link = None

    def __init__(self, reduction="mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def __call__(self, y_true, y_pred):
        return self.value(y_true, y_pred)

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError

    def value(self, y_true, y_pred):
        """Mean over the batch (Keras's ``SUM_OVER_BATCH_SIZE``) or sum, a Python float."""
        per = self.per_sample(y_true, y_pred)
        return float(np.sum(per) if self.reduction == "sum" else np.mean(per))

    def _count(self, n):
        """The divisor of the reduction: ``n`` elements for the mean, 1 for the sum."""
        return n if self.reduction == "mean" else 1

    def grad(self, y_true, y_pred):
        raise NotImplementedError

    def logit_grad(self, y_true, logits):
        raise NotImplementedError(f"{self.name} has no fused logit gradient")

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class BinaryCrossentropy(Loss):
    r"""``binary_crossentropy`` with a framework's value and gradient.

    Parameters
    ----------
    convention : {'tf_keras', 'keras3', 'torch'}, default 'tf_keras'
    reduction : {'mean', 'sum'}, optional
        Default: ``'sum'`` for torch (DeepCTR-Torch's fit), else ``'mean'``.
    gradient : {'exact', 'fused'}, default 'exact'
        What ``logit_grad`` returns (the trainer uses it).

    Notes
    -----
    With :math:`N` the divisor of the reduction (the element count for ``'mean'``, 1 for
    ``'sum'``), :math:`p = \sigma(z)`, :math:`\bar p = \mathrm{clip}(p, \epsilon, 1-\epsilon)`
    and :math:`[\cdot]` the clip's pass-through mask (1 for :math:`\epsilon \le p \le 1-\epsilon`,
    ties included, as ``tf.clip_by_value``'s gradient):

    * tf_keras: :math:`\partial L/\partial p = [\cdot]\,(-y/(\bar p+\epsilon) + (1-y)/(1-\bar p+\epsilon))/N`
    * keras3: :math:`\partial L/\partial p = [\cdot]\,(-y/\bar p + (1-y)/(1-\bar p))/N`
    * torch: :math:`\partial L/\partial p = (p - y)/\max(p(1-p), 10^{-12})/N` (its autograd formula,
      not the derivative of the clamped logs)

    ``logit_grad`` (exact) multiplies by :math:`p(1-p)` (the sigmoid's backward).
    ``fused_logit_grad`` is :math:`(\sigma(z) - y)/N`: the exact derivative of the
    *unclipped* loss. They differ by a relative :math:`O(10^{-7})` inside the clip range for
    tf_keras (its :math:`+\epsilon` inside the logs), by round-off for keras3 and torch, and
    completely where Keras clips (:math:`|z| \gtrsim 16.1`: Keras's gradient is exactly 0, the
    fused one keeps pulling a confidently wrong sample back).
    """
    name = "binary_crossentropy"
    link = "sigmoid"

    def __init__(self, convention="tf_keras", reduction=None, gradient="exact"):
        _check_convention(convention)
        if gradient not in ("exact", "fused"):
            raise ValueError(f"gradient must be 'exact' or 'fused', got {gradient!r}")
        super().__init__(("sum" if convention == "torch" else "mean") if reduction is None else reduction)
        self.convention = convention
        self.gradient = gradient

    def per_sample(self, y_true, y_pred):
        return binary_crossentropy_per_sample(y_true, y_pred, self.convention)

    def grad(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        n = y_pred.dtype.type(self._count(y_pred.size))
        if self.convention == "torch":
            return torch_bce_grad(y_true, y_pred) / n
        eps = y_pred.dtype.type(EPSILON)
        inside = (y_pred >= eps) & (y_pred <= 1 - eps)  # tf.clip_by_value passes the gradient on ties
        p = np.clip(y_pred, eps, 1 - eps)
        shift = eps if self.convention == "tf_keras" else 0
        d = (-y_true / (p + shift) + (1 - y_true) / (1 - p + shift)) / n
        return np.where(inside, d, 0).astype(y_pred.dtype, copy=False)

    def exact_logit_grad(self, y_true, logits):
        """The framework's gradient chained through the sigmoid: ``grad(y, p) * p (1 - p)``."""
        p = probability(logits)
        return self.grad(y_true, p) * p * (1 - p)

    def fused_logit_grad(self, y_true, logits):
        """``(sigmoid(z) - y) / N``: finite and exact for any logit (of the unclipped loss)."""
        y_true, logits = _as_pair(y_true, logits)
        return (sigmoid(logits) - y_true) / logits.dtype.type(self._count(logits.size))

    def logit_grad(self, y_true, logits):
        if self.gradient == "fused":
            return self.fused_logit_grad(y_true, logits)
        return self.exact_logit_grad(y_true, logits)

    def __repr__(self):
        return (f"BinaryCrossentropy(convention={self.convention!r}, reduction={self.reduction!r}, "
                f"gradient={self.gradient!r})")


class MeanSquaredError(Loss):
    r"""``mse`` / ``mean_squared_error``: :math:`L = \frac1B\sum_i (\hat y_i - y_i)^2`.

    Notes
    -----
    :math:`\partial L/\partial \hat y_i = 2(\hat y_i - y_i)/B` (one output per sample;
    Keras's mean over the last axis is over a single element).
    """
    name = "mean_squared_error"

    def __init__(self, convention="tf_keras", reduction=None):
        _check_convention(convention)
        super().__init__(("sum" if convention == "torch" else "mean") if reduction is None else reduction)
        self.convention = convention

    def per_sample(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        return np.mean((y_pred - y_true) ** 2, axis=-1)

    def value(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        if self.reduction == "sum":                         # F.mse_loss(reduction="sum"): every element
            return float(np.sum((y_pred - y_true) ** 2))
        return super().value(y_true, y_pred)

    def grad(self, y_true, y_pred):
        y_true, y_pred = _as_pair(y_true, y_pred)
        return 2.0 * (y_pred - y_true) / self._count(y_pred.size)   # the mean is over every element


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


def get(loss, convention="tf_keras", reduction=None):
    """A loss by Keras name (``'binary_crossentropy'``, ``'mse'``, ``'mean_squared_error'``,
    ``'categorical_crossentropy'``) with the ``convention``'s formulas (a conventions profile's
    ``loss`` field) and ``reduction`` (its ``loss_reduction``; None: the convention's), or a
    :class:`Loss` instance, returned as is."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _LOSSES:
        cls = _LOSSES[loss]
        if cls is CategoricalCrossentropy:
            return cls() if reduction is None else cls(reduction)
        return cls(convention=convention, reduction=reduction)
    raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a npctr Loss instance, got {loss!r}")
