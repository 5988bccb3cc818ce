r"""Optimizers with tf.keras 2's (``optimizer_v2``) defaults and update formulas.

An optimizer works on two flat dicts with the same keys, the model's ``params``
and ``grads`` (``model.params``, ``model.grads``): ``apply_gradients(params, grads)``
updates every array of ``params`` **in place** and keeps its state (slots) keyed
by the parameter's path, e.g. ``slots['m']['dnn/kernel0']``. ``iterations`` counts
the calls, as Keras's ``optimizer.iterations``.

A gradient is an ndarray or an :class:`npctr.sparse.RowGrad` (the row-sparse
gradient of an embedding table). With a ``RowGrad``:

* ``SGD`` without momentum and ``Adagrad`` update only the touched rows. That is
  exact: a zero gradient row leaves the row and its accumulator unchanged.
* ``SGD`` with momentum and ``Adam`` apply the dense math, as if the untouched rows had
  a zero gradient: every velocity / moment row decays and every row whose velocity or
  moment is non-zero moves. For Adam this is what tf.keras 2 does too (its sparse path
  decays the whole ``m`` and ``v`` slots and updates every row); for SGD with momentum
  tf.keras's sparse kernel is lazy (untouched rows keep their velocity and do not move),
  so npctr differs from TensorFlow there, and agrees with TensorFlow whenever the
  table's gradient is dense (e.g. any ``l2_reg_embedding > 0``, whose gradient
  ``2 c W`` touches every row).

Hyperparameters are used in the parameter's dtype. (tf.keras 2 stores ``learning_rate``,
``momentum``, ``beta_1`` and ``beta_2`` as float32 variables, so for float64 weights its
effective values are float32-rounded; npctr uses the exact values: identical for
float32 models, a ~1e-8 relative difference for float64 ones.) The equations are in
each class's Notes and in ``docs/training.md``.
"""

import numpy as np

from ..sparse import RowGrad
from .._validation import check_positive, check_rate, check_nonnegative


class Optimizer:
    """Base class: slots keyed by parameter path, ``iterations``, ``apply_gradients``."""

    #: slot names created per parameter
    slot_names = ()

    def __init__(self, name=None):
        self.name = name or type(self).__name__
        self.iterations = 0
        self.slots = {s: {} for s in self.slot_names}

    # -- state ------------------------------------------------------------------------
    def _slot(self, slot, key, param, fill=0.0):
        table = self.slots[slot]
        arr = table.get(key)
        if arr is None or arr.shape != param.shape or arr.dtype != param.dtype:
            arr = np.full_like(param, fill)
            table[key] = arr
        return arr

    def state(self):
        """Flat dict ``'<slot>/<param path>' -> array`` plus ``'iterations'``."""
        out = {f"{s}/{k}": v for s, table in self.slots.items() for k, v in table.items()}
        out["iterations"] = np.array(self.iterations, dtype=np.int64)
        return out

    # -- updates ----------------------------------------------------------------------
    def apply_gradients(self, params, grads):
        """Update every ``params[k]`` in place from ``grads[k]``; one step (``iterations += 1``).

        ``grads`` must have a gradient for every key of ``params`` (extra keys in
        ``grads`` are ignored, so a caller may pass only the trainable subset of
        ``params``).
        """
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"apply_gradients: no gradient for parameters {missing}")
        self._prepare()
        for key, param in params.items():
            grad = grads[key]
            if isinstance(grad, RowGrad):
                if tuple(grad.dense_shape) != param.shape:
                    raise ValueError(f"apply_gradients: RowGrad for {key!r} has dense_shape "
                                     f"{tuple(grad.dense_shape)}, parameter has shape {param.shape}")
                self._apply_sparse(key, param, grad)
            else:
                grad = np.asarray(grad)
                if grad.shape != param.shape:
                    raise ValueError(f"apply_gradients: gradient for {key!r} has shape {grad.shape}, "
                                     f"parameter has shape {param.shape}")
                self._apply_dense(key, param, grad.astype(param.dtype, copy=False))
        self.iterations += 1

    def _prepare(self):
        """Per-step coefficients (Keras's ``_prepare_local``)."""

    def _apply_dense(self, key, param, grad):
        raise NotImplementedError

    def _apply_sparse(self, key, param, grad):
        """Default: the dense math on the densified gradient (exact, not lazy)."""
        self._apply_dense(key, param, grad.to_dense(param.shape).astype(param.dtype, copy=False))

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    r"""Gradient descent, with optional (Nesterov) momentum, as tf.keras 2's ``SGD``.

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float in [0, 1), default 0.0
    nesterov : bool, default False

    Notes
    -----
    Without momentum: :math:`w \leftarrow w - \eta g`.
    With momentum :math:`\mu` (velocity :math:`v`, slot ``'momentum'``, starts at 0):

    .. math::
        v \leftarrow \mu v - \eta g, \qquad
        w \leftarrow w + v \ \ \text{(plain)}, \qquad
        w \leftarrow w + \mu v - \eta g \ \ \text{(Nesterov, with the new } v)

    ``RowGrad``: without momentum only the touched rows change (exact); with momentum the
    dense math (every velocity row decays), see the module docstring.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD"):
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        self.momentum = check_rate(momentum, "momentum")
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum > 0 else ()
        super().__init__(name)

    def _apply_dense(self, key, param, grad):
        lr = param.dtype.type(self.learning_rate)
        if self.momentum == 0:
            param -= lr * grad
            return
        mu = param.dtype.type(self.momentum)
        v = self._slot("momentum", key, param)
        v *= mu
        v -= lr * grad
        if self.nesterov:
            param += mu * v - lr * grad
        else:
            param += v

    def _apply_sparse(self, key, param, grad):
        if self.momentum == 0:
            # w[rows] -= lr * g_rows: untouched rows have g = 0 and do not change
            param[grad.indices] -= param.dtype.type(self.learning_rate) * \
                grad.values.astype(param.dtype, copy=False)
        else:
            super()._apply_sparse(key, param, grad)

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate,
                "momentum": self.momentum, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    r"""tf.keras 2's ``Adagrad``.

    Parameters
    ----------
    learning_rate : float, default 0.001
    initial_accumulator_value : float, default 0.1
    epsilon : float, default 1e-7

    Notes
    -----
    Accumulator :math:`a` (slot ``'accumulator'``, starts at ``initial_accumulator_value``):

    .. math::
        a \leftarrow a + g^2, \qquad w \leftarrow w - \eta\,\frac{g}{\sqrt{a} + \epsilon}

    (``ResourceApplyAdagradV2``: :math:`\epsilon` added to :math:`\sqrt a`.)
    ``RowGrad``: only the touched rows of :math:`w` and :math:`a` change (exact).
    """
    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, name="Adagrad"):
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        self.initial_accumulator_value = check_nonnegative(initial_accumulator_value,
                                                           "initial_accumulator_value")
        self.epsilon = check_positive(epsilon, "epsilon")
        super().__init__(name)

    def _accumulator(self, key, param):
        return self._slot("accumulator", key, param, fill=self.initial_accumulator_value)

    def _apply_dense(self, key, param, grad):
        t = param.dtype.type
        acc = self._accumulator(key, param)
        acc += grad * grad
        param -= t(self.learning_rate) * grad / (np.sqrt(acc) + t(self.epsilon))

    def _apply_sparse(self, key, param, grad):
        t = param.dtype.type
        acc = self._accumulator(key, param)
        rows = grad.indices
        g = grad.values.astype(param.dtype, copy=False)
        a = acc[rows] + g * g
        acc[rows] = a
        param[rows] -= t(self.learning_rate) * g / (np.sqrt(a) + t(self.epsilon))

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate,
                "initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon}


class Adam(Optimizer):
    r"""tf.keras 2's ``Adam`` (``epsilon`` is the paper's "epsilon hat").

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta_1 : float, default 0.9
    beta_2 : float, default 0.999
    epsilon : float, default 1e-7
    amsgrad : bool, default False

    Notes
    -----
    At step :math:`t = \text{iterations} + 1`, slots ``'m'``, ``'v'`` (and ``'vhat'``) start at 0:

    .. math::
        \eta_t = \eta\,\frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}, \quad
        m \leftarrow m + (1 - \beta_1)(g - m), \quad
        v \leftarrow v + (1 - \beta_2)(g^2 - v), \quad
        w \leftarrow w - \eta_t\,\frac{m}{\sqrt{v} + \hat\epsilon}

    (``ResourceApplyAdam``'s arithmetic; :math:`m + (1-\beta_1)(g - m) = \beta_1 m + (1 - \beta_1) g`.)
    AMSGrad: :math:`\hat v \leftarrow \max(\hat v, v)` and :math:`\sqrt{\hat v}` in the update.

    ``RowGrad``: the dense math, as tf.keras's sparse path: :math:`m \leftarrow \beta_1 m`,
    :math:`v \leftarrow \beta_2 v` on every row, then :math:`(1-\beta_1) g` and
    :math:`(1-\beta_2) g^2` added on the touched rows, then every row updated. Not lazy:
    rows with non-zero moments keep moving after their last gradient.
    """
    slot_names = ("m", "v", "vhat")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 name="Adam"):
        self.learning_rate = check_positive(learning_rate, "learning_rate")
        self.beta_1 = check_rate(beta_1, "beta_1")
        self.beta_2 = check_rate(beta_2, "beta_2")
        self.epsilon = check_positive(epsilon, "epsilon")
        self.amsgrad = bool(amsgrad)
        if not self.amsgrad:
            self.slot_names = ("m", "v")
        super().__init__(name)

    def _coefficients(self, dtype):
        t = dtype.type
        step = t(self.iterations + 1)
        b1, b2 = t(self.beta_1), t(self.beta_2)
        lr_t = t(self.learning_rate) * (np.sqrt(t(1) - b2 ** step) / (t(1) - b1 ** step))
        return lr_t, b1, b2, t(self.epsilon)

    def _apply_dense(self, key, param, grad):
        lr_t, b1, b2, eps = self._coefficients(param.dtype)
        one = param.dtype.type(1)
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        m += (grad - m) * (one - b1)
        v += (grad * grad - v) * (one - b2)
        self._step(key, param, lr_t, m, v, eps)

    def _apply_sparse(self, key, param, grad):
        lr_t, b1, b2, eps = self._coefficients(param.dtype)
        one = param.dtype.type(1)
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        rows = grad.indices
        g = grad.values.astype(param.dtype, copy=False)
        m *= b1
        m[rows] += g * (one - b1)
        v *= b2
        v[rows] += (g * g) * (one - b2)
        self._step(key, param, lr_t, m, v, eps)

    def _step(self, key, param, lr_t, m, v, eps):
        if self.amsgrad:
            vhat = self._slot("vhat", key, param)
            np.maximum(vhat, v, out=vhat)
            v = vhat
        param -= lr_t * m / (np.sqrt(v) + eps)

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": self.amsgrad}


_OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}


def get(optimizer):
    """An optimizer by name as Keras accepts it (``'sgd'``, ``'adagrad'``, ``'adam'``, any
    case, with default arguments) or an :class:`Optimizer` instance, returned as is."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[optimizer.lower()]()
    raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)} (any case) or a npctr "
                     f"Optimizer instance, got {optimizer!r}")
