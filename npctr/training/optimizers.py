r"""Optimizers in three flavours: tf.keras (``"keras"``), its legacy ``optimizer_v2``
(``"keras_legacy"``) and ``torch.optim`` (``"torch"``).

An optimizer works on two flat dicts with the same keys, the model's ``params`` and
``grads``: ``apply_gradients(params, grads)`` updates every array of ``params`` **in
place** and keeps its state (slots) keyed by the parameter's path, e.g.
``slots['m']['dnn/kernel0']``. ``iterations`` counts the calls.

**Flavours.** What a flavour changes is data, chosen in one place per optimizer class:

* ``defaults[flavor]``: the default hyperparameters (``None`` in the constructor takes them);
* ``float32_hypers[flavor]``: hyperparameters the framework holds in float32, so that in
  float64 training they enter rounded (``name`` everywhere, ``name@where`` at one use
  only, e.g. Adam's ``beta_1@bias_correction`` in tf.keras); a key ``flavor@framework``
  (e.g. ``"keras@keras3"``) refines a flavour for one framework (``framework`` is the
  conventions profile's name, set by ``compile``);
* ``formulas[flavor]``: which update (``_dense_<formula>`` / ``_sparse_<formula>``) runs: the
  one dispatch from flavour to arithmetic (no method tests the flavour again).

``flavor=None`` is resolved by ``Model.compile`` from the model's conventions profile
(``keras`` for tf_keras / keras3, ``torch`` for torch), or to ``"keras"`` at the first
``apply_gradients`` of an optimizer used on its own. A new flavour or optimizer adds
entries to these tables and, if its arithmetic differs, a ``_dense_<formula>`` method.

**Row-sparse gradients** (:class:`npctr.sparse.RowGrad`, an embedding table's): where a
zero gradient row provably changes nothing (plain SGD, Adagrad in every flavour) only
the touched rows are read and written; everywhere else (momentum, Adam) the dense math
runs, as the frameworks do on a DIN (tf.keras's optimizers decay every velocity and moment
row, the recorded legacy momentum trajectories too; torch's embeddings have dense gradients).
Equations: each class's Notes, ``docs/training.md`` and ``docs/conventions.md``.
"""
import numbers

import numpy as np

from ..ops import blocks
from ..sparse import RowGrad
from .._validation import check_positive, check_rate, check_nonnegative

FLAVORS = ("keras", "keras_legacy", "torch")


def check_flavor(flavor, allow_none=True):
    """Validate a ``flavor=`` argument (None allowed when ``allow_none``)."""
    if flavor is None and allow_none:
        return None
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {list(FLAVORS)}" + (" or None" if allow_none else "")
                         + f", got {flavor!r}")
    return flavor


def _f32(value):
    """``value`` rounded to float32, as a Python float (a framework's float32 variable)."""
    return float(np.float32(value))


class Hyperparameter:
    """A hyperparameter attribute (``opt.learning_rate``): the given value, else the flavour's
    default; assigning sets the given value (as ``optimizer.learning_rate = 0.1`` in Keras)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, optimizer, owner=None):
        return self if optimizer is None else optimizer.hyper(self.name)

    def __set__(self, optimizer, value):
        optimizer._given[self.name] = value


class Optimizer:
    """Base class: flavour tables, hyperparameters, slots keyed by parameter path, ``apply_gradients``."""

    #: slot names created per parameter
    slot_names = ()
    #: flavour -> {hyperparameter: default}
    defaults = {f: {} for f in FLAVORS}
    #: flavour -> hyperparameters held in float32 by the framework (``name`` or ``name@where``)
    float32_hypers = {f: frozenset() for f in FLAVORS}
    #: flavour -> formula family (``_dense_<family>``, optional ``_sparse_<family>``)
    formulas = {f: "keras" for f in FLAVORS}

    def __init__(self, flavor=None, name=None, clipnorm=None, clipvalue=None, **hypers):
        self._flavor = check_flavor(flavor)
        self.framework = None                 # a conventions profile's name, refining the flavour
        if self._flavor is not None:
            self._check_has_flavor(self._flavor)
        self.clipnorm = _check_optional(clipnorm, check_positive, "clipnorm")
        self.clipvalue = _check_optional(clipvalue, check_positive, "clipvalue")
        self._given = dict(hypers)          # None: the flavour's default
        self.name = name or type(self).__name__
        self.iterations = 0
        self.slots = {s: {} for s in self.slot_names}

    # -- flavour and hyperparameters --------------------------------------------------
    @property
    def flavor(self):
        """The flavour in use (None until resolved)."""
        return self._flavor

    def set_flavor(self, flavor, framework=None):
        """Fix the flavour if it is still open (``Model.compile`` calls this, with the
        conventions profile's name as ``framework``). Returns ``self``."""
        flavor = check_flavor(flavor, allow_none=False)
        if self._flavor is None:
            self._check_has_flavor(flavor)
            if self.iterations:
                raise ValueError(f"{self.name} already took {self.iterations} steps as 'keras'; "
                                 "choose flavor= at construction")
            self._flavor = flavor
        if self.framework is None and flavor == self._flavor:
            self.framework = framework
        return self

    def _check_has_flavor(self, flavor):
        if self.formulas.get(flavor) is None:
            have = [f for f in FLAVORS if self.formulas.get(f) is not None]
            raise ValueError(f"{type(self).__name__} has no {flavor!r} flavour (that framework has no "
                             f"such optimizer); its flavours: {have}")

    def _clipped(self, grad):
        """Keras's per-variable clipping: ``clipnorm`` rescales a gradient whose L2 norm exceeds it
        (``g * c / max(||g||, c)``, as ``tf.clip_by_norm``; a ``RowGrad``'s norm is that of its
        rows), else ``clipvalue`` clips every entry to ``[-c, c]``; tf.keras applies only
        ``clipnorm`` when both are given."""
        if self.clipnorm is None and self.clipvalue is None:
            return grad
        values = grad.values if isinstance(grad, RowGrad) else np.asarray(grad)
        t = values.dtype.type if values.dtype.kind == "f" else np.float64
        if self.clipnorm is not None:
            c = t(self.clipnorm)
            norm = np.sqrt(np.sum(values * values))
            values = values * c / np.maximum(norm, c)
        else:
            c = t(self.clipvalue)
            values = np.clip(values, -c, c)
        return grad._replace(values=values) if isinstance(grad, RowGrad) else values

    def _resolved_flavor(self):
        return self._flavor or "keras"

    def hyper(self, name):
        """A hyperparameter's value: the given one, else the flavour's default."""
        value = self._given.get(name)
        return self.defaults[self._resolved_flavor()][name] if value is None else value

    def _h(self, name, t, where=None):
        """Hyperparameter ``name`` as the framework enters it at ``where``, in the scalar type ``t``."""
        value = self.hyper(name)
        flavor = self._resolved_flavor()
        f32 = self.float32_hypers[flavor] | self.float32_hypers.get(f"{flavor}@{self.framework}", frozenset())
        if name in f32 or (where is not None and f"{name}@{where}" in f32):
            value = _f32(value)
        return t(value)

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
        for key, param in params.items():          # every gradient checked before the first write
            grad = grads[key]
            if isinstance(grad, RowGrad):
                if tuple(grad.dense_shape) != param.shape:
                    raise ValueError(f"apply_gradients: RowGrad for {key!r} has dense_shape "
                                     f"{tuple(grad.dense_shape)}, parameter has shape {param.shape}")
            elif np.shape(grad) != param.shape:
                raise ValueError(f"apply_gradients: gradient for {key!r} has shape {np.shape(grad)}, "
                                 f"parameter has shape {param.shape}")
        if self._flavor is None:
            self._flavor = "keras"
        formula = self.formulas[self._flavor]
        dense = getattr(self, f"_dense_{formula}")
        sparse = getattr(self, f"_sparse_{formula}", None)
        done = 0
        try:
            for key, param in params.items():
                grad = self._clipped(grads[key])
                if isinstance(grad, RowGrad):
                    if sparse is not None and sparse(key, param, grad):
                        done += 1
                        continue
                    grad = grad.to_dense(param.shape)    # the dense math, as if untouched rows had g = 0
                dense(key, param, np.asarray(grad).astype(param.dtype, copy=False))
                done += 1
        except BaseException as exc:
            # only an exception inside the arithmetic gets here (e.g. MemoryError): say how far it got
            exc.add_note(f"npctr: {self.name}.apply_gradients stopped at {key!r} after updating {done} of "
                         f"{len(params)} parameters: those are updated, {key!r} may be partly, the others and "
                         "the iteration count are not. The weights are not copied, so this cannot be undone: "
                         "restore them from a checkpoint (docs/training.md, 'Writing an optimizer').")
            raise
        self.iterations += 1

    def get_config(self):
        clip = {k: getattr(self, k) for k in ("clipnorm", "clipvalue") if getattr(self, k) is not None}
        return {"name": self.name, "flavor": self._flavor,
                **{k: self._given[k] for k in sorted(self._given)}, **clip}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _check_optional(value, check, name):
    return None if value is None else check(value, name)


class SGD(Optimizer):
    r"""Gradient descent, with optional (Nesterov) momentum.

    Parameters
    ----------
    learning_rate : float, optional
        Default 0.01 (keras, keras_legacy), 0.001 (torch).
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
    flavor : {'keras', 'keras_legacy', 'torch'} or None

    Notes
    -----
    keras / keras_legacy (float64 training: :math:`\mu` enters float32-rounded, and
    :math:`\eta` too in keras_legacy), velocity
    :math:`v` (slot ``'momentum'``) from 0:
    :math:`v \leftarrow \mu v - \eta g`, :math:`w \leftarrow w + v`
    (Nesterov :math:`w \leftarrow w + \mu v - \eta g`); without momentum :math:`w \leftarrow w - \eta g`.

    torch (``torch.optim.SGD``, dampening 0; exact hyperparameters): buffer
    :math:`b \leftarrow \mu b + g` (:math:`b = g` at the first step, the same from 0),
    :math:`d = b` (Nesterov :math:`d = g + \mu b`), :math:`w \leftarrow w - \eta d`.

    ``RowGrad``: without momentum only the touched rows (exact in every flavour); with
    momentum the dense math (every velocity row decays), in every flavour.
    """
    defaults = {"keras": {"learning_rate": 0.01, "momentum": 0.0},
                "keras_legacy": {"learning_rate": 0.01, "momentum": 0.0},
                "torch": {"learning_rate": 0.001, "momentum": 0.0}}
    float32_hypers = {"keras": frozenset({"momentum"}),
                      "keras_legacy": frozenset({"learning_rate", "momentum"}),
                      "torch": frozenset()}
    formulas = {"keras": "keras", "keras_legacy": "keras", "torch": "torch"}
    learning_rate = Hyperparameter()
    momentum = Hyperparameter()

    def __init__(self, learning_rate=None, momentum=None, nesterov=False, name="SGD", flavor=None,
                 clipnorm=None, clipvalue=None):
        super().__init__(flavor, name, clipnorm, clipvalue, learning_rate=_check_optional(learning_rate, check_positive,
                                                                       "learning_rate"),
                         momentum=_check_optional(momentum, check_rate, "momentum"))
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if (momentum or 0) > 0 else ()
        self.slots = {s: {} for s in self.slot_names}

    def get_config(self):
        return {**super().get_config(), "nesterov": self.nesterov}

    def _dense_keras(self, key, param, grad):
        t = param.dtype.type
        lr = self._h("learning_rate", t)
        if not self.hyper("momentum"):
            param += -grad * lr
            return
        mu = self._h("momentum", t)
        v = self._slot("momentum", key, param)
        v[...] = -grad * lr + v * mu
        param += (-grad * lr + v * mu) if self.nesterov else v

    def _sparse_rows(self, key, param, grad):
        """Plain SGD on the touched rows only; returns False (dense) with momentum."""
        if self.hyper("momentum"):
            return False
        t = param.dtype.type
        param[grad.indices] -= self._h("learning_rate", t) * grad.values.astype(param.dtype, copy=False)
        return True

    _sparse_keras = _sparse_rows
    _sparse_torch = _sparse_rows

    def _dense_torch(self, key, param, grad):
        t = param.dtype.type
        lr = self._h("learning_rate", t)
        mu = self._h("momentum", t)
        if mu:
            buf = self._slot("momentum", key, param)
            buf *= mu
            buf += grad
            grad = grad + mu * buf if self.nesterov else buf
        param += -lr * grad


class Adagrad(Optimizer):
    r"""Adagrad.

    Parameters
    ----------
    learning_rate : float, optional
        Default 0.001 (keras, keras_legacy), 0.01 (torch).
    initial_accumulator_value : float, optional
        Default 0.1 (keras, keras_legacy), 0 (torch).
    epsilon : float, optional
        Default 1e-7 (keras, keras_legacy), 1e-10 (torch ``eps``).
    flavor : {'keras', 'keras_legacy', 'torch'} or None

    Notes
    -----
    Accumulator :math:`a` (slot ``'accumulator'``), :math:`a \leftarrow a + g^2`, then

    * keras (tf.keras >= 2.11): :math:`w \leftarrow w - \eta\,g / \sqrt{a + \epsilon}`;
    * keras_legacy (``ResourceApplyAdagradV2``): :math:`w \leftarrow w - \eta\,g / (\sqrt a + \epsilon)`;
    * torch: :math:`w \leftarrow w - \eta\,g / (\sqrt a + \epsilon)` (exact hyperparameters).

    In float64 training :math:`\eta` enters float32-rounded in keras_legacy, and Keras 3
    (``framework='keras3'``) starts the accumulator at float32(``initial_accumulator_value``).
    ``RowGrad``: only the touched rows change (exact: a zero gradient row keeps :math:`a` and :math:`w`).
    """
    slot_names = ("accumulator",)
    defaults = {"keras": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
                "keras_legacy": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
                "torch": {"learning_rate": 0.01, "initial_accumulator_value": 0.0, "epsilon": 1e-10}}
    float32_hypers = {"keras": frozenset(), "keras_legacy": frozenset({"learning_rate"}),
                      "keras@keras3": frozenset({"initial_accumulator_value"}), "torch": frozenset()}
    formulas = {"keras": "keras", "keras_legacy": "root_plus_eps", "torch": "root_plus_eps"}
    learning_rate = Hyperparameter()
    initial_accumulator_value = Hyperparameter()
    epsilon = Hyperparameter()

    def __init__(self, learning_rate=None, initial_accumulator_value=None, epsilon=None, name="Adagrad",
                 flavor=None, clipnorm=None, clipvalue=None):
        super().__init__(flavor, name, clipnorm, clipvalue,
                         learning_rate=_check_optional(learning_rate, check_positive, "learning_rate"),
                         initial_accumulator_value=_check_optional(initial_accumulator_value, check_nonnegative,
                                                                   "initial_accumulator_value"),
                         epsilon=_check_optional(epsilon, check_positive, "epsilon"))

    def _accumulator(self, key, param):
        return self._slot("accumulator", key, param,
                          fill=self._h("initial_accumulator_value", param.dtype.type))

    def _step_keras(self, grad, acc, t):
        """``-lr g / sqrt(a + eps)`` (tf.keras >= 2.11)."""
        return -(self._h("learning_rate", t) * grad / np.sqrt(acc + self._h("epsilon", t)))

    def _step_root_plus_eps(self, grad, acc, t):
        """``-lr g / (sqrt(a) + eps)`` (optimizer_v2, torch)."""
        return -(self._h("learning_rate", t) * grad / (np.sqrt(acc) + self._h("epsilon", t)))

    def _dense(self, key, param, grad, step):
        acc = self._accumulator(key, param)
        acc += grad * grad
        param += step(grad, acc, param.dtype.type)

    def _sparse(self, key, param, grad, step):
        acc = self._accumulator(key, param)
        rows, g = grad.indices, grad.values.astype(param.dtype, copy=False)
        a = acc[rows] + g * g
        acc[rows] = a
        param[rows] += step(g, a, param.dtype.type)
        return True

    def _dense_keras(self, key, param, grad):
        self._dense(key, param, grad, self._step_keras)

    def _dense_root_plus_eps(self, key, param, grad):
        self._dense(key, param, grad, self._step_root_plus_eps)

    def _sparse_keras(self, key, param, grad):
        return self._sparse(key, param, grad, self._step_keras)

    def _sparse_root_plus_eps(self, key, param, grad):
        return self._sparse(key, param, grad, self._step_root_plus_eps)


class Adam(Optimizer):
    r"""Adam (``epsilon`` is added to :math:`\sqrt{v}`, the paper's "epsilon hat" in Keras).

    Parameters
    ----------
    learning_rate : float, optional
        Default 0.001.
    beta_1, beta_2 : float, optional
        Default 0.9, 0.999.
    epsilon : float, optional
        Default 1e-7 (keras, keras_legacy), 1e-8 (torch ``eps``).
    amsgrad : bool, default False
    flavor : {'keras', 'keras_legacy', 'torch'} or None

    Notes
    -----
    Step :math:`t = \text{iterations} + 1`; slots ``'m'``, ``'v'`` (``'vhat'``) start at 0.

    keras / keras_legacy:
    :math:`\alpha = \eta\sqrt{1 - \beta_2^t}/(1 - \beta_1^t)`,
    :math:`m \leftarrow m + (g - m)(1 - \beta_1)`, :math:`v \leftarrow v + (g^2 - v)(1 - \beta_2)`,
    :math:`w \leftarrow w - m\alpha / (\sqrt v + \epsilon)`. In float64 training tf.keras (>= 2.11)
    and Keras 3 cast the betas through float32 in the bias correction only; the legacy
    optimizer_v2 holds :math:`\eta, \beta_1, \beta_2` in float32 everywhere.

    torch: :math:`m \leftarrow m + (1 - \beta_1)(g - m)` (``lerp``),
    :math:`v \leftarrow \beta_2 v + (1 - \beta_2) g^2`,
    :math:`w \leftarrow w - \frac{\eta}{1 - \beta_1^t}\, m / (\sqrt v / \sqrt{1 - \beta_2^t} + \epsilon)`.

    AMSGrad: :math:`\hat v = \max(\hat v, v)` in the denominator. ``RowGrad``: the dense math
    (every moment row decays; rows with non-zero moments keep moving), as the frameworks do.
    """
    slot_names = ("m", "v", "vhat")
    defaults = {"keras": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                "keras_legacy": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                "torch": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}}
    float32_hypers = {"keras": frozenset({"beta_1@bias_correction", "beta_2@bias_correction"}),
                      "keras_legacy": frozenset({"learning_rate", "beta_1", "beta_2"}),
                      "torch": frozenset()}
    formulas = {"keras": "keras", "keras_legacy": "keras_legacy", "torch": "torch"}
    learning_rate = Hyperparameter()
    beta_1 = Hyperparameter()
    beta_2 = Hyperparameter()
    epsilon = Hyperparameter()

    def __init__(self, learning_rate=None, beta_1=None, beta_2=None, epsilon=None, amsgrad=False,
                 name="Adam", flavor=None, clipnorm=None, clipvalue=None):
        super().__init__(flavor, name, clipnorm, clipvalue,
                         learning_rate=_check_optional(learning_rate, check_positive, "learning_rate"),
                         beta_1=_check_optional(beta_1, check_rate, "beta_1"),
                         beta_2=_check_optional(beta_2, check_rate, "beta_2"),
                         epsilon=_check_optional(epsilon, check_positive, "epsilon"))
        self.amsgrad = bool(amsgrad)
        if not self.amsgrad:
            self.slot_names = ("m", "v")
        self.slots = {s: {} for s in self.slot_names}

    def get_config(self):
        return {**super().get_config(), "amsgrad": self.amsgrad}

    def _second_moment_slot(self, key, param):
        """AMSGrad's running maximum of ``v`` (None without amsgrad)."""
        return self._slot("vhat", key, param) if self.amsgrad else None

    def _second_moment(self, key, param, v):
        if not self.amsgrad:
            return v
        vhat = self._slot("vhat", key, param)
        np.maximum(vhat, v, out=vhat)
        return vhat

    def _dense_keras(self, key, param, grad):
        # tf.keras: (1 - self.beta_1) is Python arithmetic on the exact beta
        t = param.dtype.type
        self._keras_update(key, param, grad, t(1 - self.hyper("beta_1")), t(1 - self.hyper("beta_2")))

    def _dense_keras_legacy(self, key, param, grad):
        # optimizer_v2: 1 - beta_t in the variable's dtype, beta_t float32-rounded
        t = param.dtype.type
        self._keras_update(key, param, grad, t(1) - self._h("beta_1", t), t(1) - self._h("beta_2", t))

    def _keras_update(self, key, param, grad, one_minus_b1, one_minus_b2):
        """The tf.keras update (both generations) given how each writes ``1 - beta``."""
        t = param.dtype.type
        step = t(self.iterations + 1)
        lr = self._h("learning_rate", t)
        b1_power = self._h("beta_1", t, "bias_correction") ** step
        b2_power = self._h("beta_2", t, "bias_correction") ** step
        alpha = lr * np.sqrt(t(1) - b2_power) / (t(1) - b1_power)
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        v_hat = self._second_moment_slot(key, param)
        epsilon = self._h("epsilon", t)
        # element-wise, so block by block (bit-identical): cache-sized blocks, shared by the cores
        def update(p_, g, m_, v_, vh):
            d = np.subtract(g, m_)                      # m += (g - m) (1 - beta_1)
            d *= one_minus_b1
            m_ += d
            np.multiply(g, g, out=d)                    # v += (g g - v) (1 - beta_2)
            d -= v_
            d *= one_minus_b2
            v_ += d
            if vh is not None:
                np.maximum(vh, v_, out=vh)
                v_ = vh
            step_ = np.multiply(m_, alpha, out=d)       # p -= (m alpha) / (sqrt(v) + epsilon)
            denominator = np.sqrt(v_)
            denominator += epsilon
            step_ /= denominator
            p_ -= step_

        _blockwise(update, 12, param, grad, m, v, v_hat)

    def _dense_torch(self, key, param, grad):
        t = param.dtype.type
        step = self.iterations + 1
        lr, b1, b2, eps = (self.hyper(n) for n in ("learning_rate", "beta_1", "beta_2", "epsilon"))
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        m += t(1 - b1) * (grad - m)                     # exp_avg.lerp_(grad, 1 - beta1)
        v *= t(b2)
        v += t(1 - b2) * (grad * grad)                  # exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
        v = self._second_moment(key, param, v)
        step_size = lr / (1 - b1 ** step)               # Python floats, as torch's single-tensor path
        bias_correction2_sqrt = (1 - b2 ** step) ** 0.5
        denom = np.sqrt(v) / t(bias_correction2_sqrt) + t(eps)
        param += t(-step_size) * (m / denom)


#: elements per block of a blocked element-wise update (float32: 1 MiB per array). Measured
#: (Adam's 12 passes, one thread): 16384-element blocks 1.2x slower than these at 0.4M-8M
#: elements; whole arrays as fast up to 0.4M, 2x slower at 8M (streamed through memory 12 times)
_BLOCK = 262144


def _blockwise(fn, passes, *arrays):
    """``fn`` on matching flat blocks of same-shaped C-contiguous arrays (None passes through as
    None): blocks of at most ``_BLOCK`` elements, at least one per thread when the update fans out
    (``npctr.ops.blocks.each``; ``passes`` passes over the elements); ``fn`` on the arrays
    themselves when they are not contiguous or need no cutting."""
    present = [a for a in arrays if a is not None]
    n = present[0].size
    work = passes * n
    parts = -(-n // _BLOCK)
    if blocks.fans_out(work):
        parts = max(parts, blocks.num_threads())
    if parts < 2 or not all(a.flags.c_contiguous for a in present):
        fn(*arrays)
        return
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    blocks.each(lambda lo, hi: fn(*(None if a is None else a[lo:hi] for a in flat)),
                blocks.even_bounds(n, parts), work)


class RMSprop(Optimizer):
    r"""RMSprop, optionally centred and with momentum.

    Parameters
    ----------
    learning_rate : float, optional
        Default 0.001 (keras, keras_legacy), 0.01 (torch).
    rho : float, optional
        Decay of the squared-gradient average; default 0.9 (keras), 0.99 (torch ``alpha``).
    momentum : float in [0, 1), default 0
    epsilon : float, optional
        Default 1e-7 (keras), 1e-8 (torch ``eps``).
    centered : bool, default False
    flavor : {'keras', 'keras_legacy', 'torch'} or None
    clipnorm, clipvalue : float, optional

    Notes
    -----
    Slots ``'velocity'`` :math:`s`, ``'momentum'`` :math:`b`, ``'average_gradient'`` :math:`\bar g`,
    all from 0: :math:`s \leftarrow \rho s + (1-\rho) g^2`, centred
    :math:`\bar g \leftarrow \rho \bar g + (1-\rho) g` and :math:`d = s - \bar g^2`, else :math:`d = s`.

    * keras (tf.keras >= 2.11, Keras 3): :math:`\Delta = \eta\, g / \sqrt{d + \epsilon}`; with momentum
      :math:`b \leftarrow \mu b + \Delta`, :math:`w \leftarrow w - b`, else :math:`w \leftarrow w - \Delta`.
    * keras_legacy (``tf.keras.optimizers.legacy.RMSprop``; in float64 training :math:`\eta, \rho, \mu`
      enter float32-rounded): with momentum the fused kernels ``ResourceApply(Centered)RMSProp``, as
      keras; **without momentum** its Python path, :math:`w \leftarrow w - \eta\, g / (\sqrt{d} + \epsilon)`
      (epsilon outside the root: where :math:`d \ll \epsilon` the steps differ by orders of magnitude).
    * torch: :math:`a = \sqrt{d} + \epsilon`; with momentum :math:`b \leftarrow \mu b + g / a`,
      :math:`w \leftarrow w - \eta b`, else :math:`w \leftarrow w - \eta g / a`.

    ``RowGrad``: the dense math (every :math:`s` row decays, as tf.keras's sparse path does).
    """
    defaults = {"keras": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
                "keras_legacy": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
                "torch": {"learning_rate": 0.01, "rho": 0.99, "momentum": 0.0, "epsilon": 1e-8}}
    float32_hypers = {"keras": frozenset(),
                      "keras_legacy": frozenset({"learning_rate", "rho", "momentum"}),
                      "torch": frozenset()}
    formulas = {"keras": "keras", "keras_legacy": "keras_legacy", "torch": "torch"}
    learning_rate = Hyperparameter()
    rho = Hyperparameter()
    momentum = Hyperparameter()
    epsilon = Hyperparameter()

    def __init__(self, learning_rate=None, rho=None, momentum=None, epsilon=None, centered=False,
                 name="RMSprop", flavor=None, clipnorm=None, clipvalue=None):
        super().__init__(flavor, name, clipnorm, clipvalue,
                         learning_rate=_check_optional(learning_rate, check_positive, "learning_rate"),
                         rho=_check_optional(rho, check_rate, "rho"),
                         momentum=_check_optional(momentum, check_rate, "momentum"),
                         epsilon=_check_optional(epsilon, check_positive, "epsilon"))
        self.centered = bool(centered)
        self.slot_names = (("velocity",) + (("momentum",) if (momentum or 0) > 0 else ())
                           + (("average_gradient",) if self.centered else ()))
        self.slots = {s: {} for s in self.slot_names}

    def get_config(self):
        return {**super().get_config(), "centered": self.centered}

    def _denominator(self, key, param, grad, t):
        rho = self._h("rho", t)
        # 1 - rho as the frameworks form it: from the hyperparameter as a Python float (as entered:
        # float32-rounded in keras_legacy), rounded once to the dtype; float32(1) - float32(0.99)
        # would be 9.3e-7 relative off torch's float32(1 - 0.99)
        one_minus_rho = t(1 - self._h("rho", float))
        s = self._slot("velocity", key, param)
        s[...] = rho * s + one_minus_rho * (grad * grad)
        if not self.centered:
            return s
        avg = self._slot("average_gradient", key, param)
        avg[...] = rho * avg + one_minus_rho * grad
        return s - avg * avg

    def _dense_keras(self, key, param, grad):
        t = param.dtype.type
        d = self._denominator(key, param, grad, t)
        increment = self._h("learning_rate", t) * grad / np.sqrt(d + self._h("epsilon", t))
        if self.hyper("momentum") > 0:
            b = self._slot("momentum", key, param)
            b[...] = self._h("momentum", t) * b + increment
            param -= b
        else:
            param -= increment

    def _dense_keras_legacy(self, key, param, grad):
        if self.hyper("momentum") > 0:                # the fused kernels: epsilon inside the root
            self._dense_keras(key, param, grad)
            return
        t = param.dtype.type
        d = self._denominator(key, param, grad, t)
        param -= self._h("learning_rate", t) * grad / (np.sqrt(d) + self._h("epsilon", t))

    def _dense_torch(self, key, param, grad):
        t = param.dtype.type
        a = np.sqrt(self._denominator(key, param, grad, t)) + self._h("epsilon", t)
        lr = self._h("learning_rate", t)
        if self.hyper("momentum") > 0:
            b = self._slot("momentum", key, param)
            b *= self._h("momentum", t)
            b += grad / a
            param -= lr * b
        else:
            param -= lr * (grad / a)


class Ftrl(Optimizer):
    r"""FTRL-Proximal (McMahan et al. 2013), tf.keras's ``Ftrl``: the classic for CTR models.

    Parameters
    ----------
    learning_rate : float, default 0.001
    learning_rate_power : float <= 0, default -0.5
    initial_accumulator_value : float >= 0, default 0.1
    l1_regularization_strength, l2_regularization_strength : float >= 0, default 0
    l2_shrinkage_regularization_strength : float >= 0, default 0
    beta : float >= 0, default 0
    flavor : {'keras', 'keras_legacy'} or None (PyTorch has no FTRL)
    clipnorm, clipvalue : float, optional

    Notes
    -----
    Slots ``'accumulator'`` :math:`n` (from ``initial_accumulator_value``) and ``'linear'``
    :math:`z` (from 0); :math:`p` = ``-learning_rate_power``, :math:`\lambda_2' = \lambda_2 + \beta / (2\eta)`:

    .. math::
        \tilde g = g + 2\lambda_{\text{shrink}} w, \quad n' = n + g^2, \quad
        z \leftarrow z + \tilde g - \frac{n'^{p} - n^{p}}{\eta} w, \quad
        q = \frac{n'^{p}}{\eta} + 2\lambda_2', \quad
        w \leftarrow \frac{\mathrm{clip}(z, -\lambda_1, \lambda_1) - z}{q}, \quad n \leftarrow n'

    (The accumulator starts at float32(``initial_accumulator_value``), as tf.keras fills it.)
    ``RowGrad``: the dense math, as tf.keras (a row never touched still has :math:`z = 0`, so
    the first step sets it to 0: FTRL's weights are a function of :math:`z` and :math:`n`).
    """
    slot_names = ("accumulator", "linear")
    defaults = {f: {"learning_rate": 0.001, "learning_rate_power": -0.5, "initial_accumulator_value": 0.1,
                    "l1_regularization_strength": 0.0, "l2_regularization_strength": 0.0,
                    "l2_shrinkage_regularization_strength": 0.0, "beta": 0.0} for f in FLAVORS}
    # the accumulator starts from tf.fill(value): a float32 tensor, then cast
    float32_hypers = {f: frozenset({"initial_accumulator_value"}) for f in FLAVORS}
    formulas = {"keras": "keras", "keras_legacy": "keras", "torch": None}
    learning_rate = Hyperparameter()
    learning_rate_power = Hyperparameter()
    initial_accumulator_value = Hyperparameter()
    l1_regularization_strength = Hyperparameter()
    l2_regularization_strength = Hyperparameter()
    l2_shrinkage_regularization_strength = Hyperparameter()
    beta = Hyperparameter()

    def __init__(self, learning_rate=None, learning_rate_power=None, initial_accumulator_value=None,
                 l1_regularization_strength=None, l2_regularization_strength=None,
                 l2_shrinkage_regularization_strength=None, beta=None, name="Ftrl", flavor=None,
                 clipnorm=None, clipvalue=None):
        if learning_rate_power is not None and not (isinstance(learning_rate_power, numbers.Real)
                                                    and not isinstance(learning_rate_power, bool)
                                                    and np.isfinite(learning_rate_power)
                                                    and learning_rate_power <= 0):
            raise ValueError(f"learning_rate_power must be a finite number <= 0, got {learning_rate_power!r}")
        nonneg = {k: _check_optional(v, check_nonnegative, k) for k, v in (
            ("initial_accumulator_value", initial_accumulator_value),
            ("l1_regularization_strength", l1_regularization_strength),
            ("l2_regularization_strength", l2_regularization_strength),
            ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength),
            ("beta", beta))}
        super().__init__(flavor, name, clipnorm, clipvalue,
                         learning_rate=_check_optional(learning_rate, check_positive, "learning_rate"),
                         learning_rate_power=None if learning_rate_power is None else float(learning_rate_power),
                         **nonneg)

    def _update(self, w, g, n, z, t):
        """The FTRL step on arrays of rows; returns new ``(w, n, z)``."""
        lr = self._h("learning_rate", t)
        power = t(-self.hyper("learning_rate_power"))
        l1 = t(self.hyper("l1_regularization_strength"))
        l2 = t(self.hyper("l2_regularization_strength")) + t(self.hyper("beta")) / (t(2) * lr)
        g_shrunk = g + t(2 * self.hyper("l2_shrinkage_regularization_strength")) * w
        n_new = n + g * g
        z = z + (g_shrunk - (n_new ** power - n ** power) / lr * w)
        quadratic = n_new ** power / lr + t(2) * l2
        w_new = (np.clip(z, -l1, l1) - z) / quadratic
        return w_new, n_new, z

    def _slots_for(self, key, param):
        return (self._slot("accumulator", key, param, fill=self._h("initial_accumulator_value", float)),
                self._slot("linear", key, param))

    def _dense_keras(self, key, param, grad):
        n, z = self._slots_for(key, param)
        param[...], n[...], z[...] = self._update(param, grad, n, z, param.dtype.type)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (tf.keras's ``AdamW``, ``torch.optim.AdamW``).

    Parameters as :class:`Adam`, plus ``weight_decay`` (default 0.004 keras, 0.01 torch).

    Notes
    -----
    Before Adam's update of a weight: keras :math:`w \leftarrow w - w\,\lambda\,\eta`
    (:math:`\lambda` cast through float32, as tf.keras's ``tf.cast``), torch :math:`w \leftarrow w (1 - \eta\lambda)`; then :class:`Adam`'s
    flavour's update (keras_legacy has no AdamW and uses the keras one).
    """
    defaults = {f: {**Adam.defaults[f], "weight_decay": 0.01 if f == "torch" else 0.004} for f in FLAVORS}
    # tf.cast(weight_decay, float64) goes through a float32 tensor, as Adam's betas do
    float32_hypers = {**Adam.float32_hypers, "keras": Adam.float32_hypers["keras"] | {"weight_decay"},
                      "keras_legacy": Adam.float32_hypers["keras"] | {"weight_decay"}}
    formulas = {"keras": "keras", "keras_legacy": "keras", "torch": "torch"}
    weight_decay = Hyperparameter()

    def __init__(self, learning_rate=None, weight_decay=None, beta_1=None, beta_2=None, epsilon=None,
                 amsgrad=False, name="AdamW", flavor=None, clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name, flavor, clipnorm, clipvalue)
        self._given["weight_decay"] = _check_optional(weight_decay, check_nonnegative, "weight_decay")

    def _dense_keras(self, key, param, grad):
        t = param.dtype.type
        param -= param * self._h("weight_decay", t) * self._h("learning_rate", t)
        super()._dense_keras(key, param, grad)

    def _dense_torch(self, key, param, grad):
        t = param.dtype.type
        param *= t(1) - self._h("learning_rate", t) * self._h("weight_decay", t)
        super()._dense_torch(key, param, grad)


class LazyAdam(Adam):
    r"""Adam that, for a row-sparse gradient, updates the moments and the weights of the touched
    rows only (TensorFlow Addons' ``LazyAdam``). **A deviation from exact Adam**: untouched rows
    keep their moments and do not move (Adam decays every moment row and moves every row with a
    non-zero moment), so results differ from :class:`Adam` whenever a batch misses a row.

    Parameters as :class:`Adam`; flavours ``'keras'`` / ``'keras_legacy'`` (Addons builds on
    tf.keras's optimizer_v2: :math:`\eta, \beta_1, \beta_2` float32).

    Notes
    -----
    Dense gradients: :class:`Adam`'s legacy update. ``RowGrad`` with rows :math:`r`:
    :math:`\alpha = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)`,
    :math:`m_r \leftarrow \beta_1 m_r + (1-\beta_1) g_r`, :math:`v_r \leftarrow \beta_2 v_r + (1-\beta_2) g_r^2`,
    :math:`w_r \leftarrow w_r - \alpha\, m_r / (\sqrt{v_r} + \epsilon)`: work proportional to the
    touched rows, not to the table (``benchmarks/bench_lazy_adam.py``).
    """
    float32_hypers = {f: Adam.float32_hypers["keras_legacy"] for f in FLAVORS}
    formulas = {"keras": "lazy", "keras_legacy": "lazy", "torch": None}

    def __init__(self, learning_rate=None, beta_1=None, beta_2=None, epsilon=None, amsgrad=False,
                 name="LazyAdam", flavor=None, clipnorm=None, clipvalue=None):
        if amsgrad:
            raise ValueError("LazyAdam does not support amsgrad=True (TensorFlow Addons' does not either)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, False, name, flavor, clipnorm, clipvalue)

    _dense_lazy = Adam._dense_keras_legacy

    def _sparse_lazy(self, key, param, grad):
        t = param.dtype.type
        step = t(self.iterations + 1)
        b1, b2 = self._h("beta_1", t), self._h("beta_2", t)
        alpha = self._h("learning_rate", t) * np.sqrt(t(1) - b2 ** step) / (t(1) - b1 ** step)
        m, v = self._slot("m", key, param), self._slot("v", key, param)
        rows, g = grad.indices, grad.values.astype(param.dtype, copy=False)
        m_rows = b1 * m[rows] + (t(1) - b1) * g
        v_rows = b2 * v[rows] + (t(1) - b2) * (g * g)
        m[rows], v[rows] = m_rows, v_rows
        param[rows] -= alpha * m_rows / (np.sqrt(v_rows) + self._h("epsilon", t))
        return True


_OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam, "rmsprop": RMSprop, "ftrl": Ftrl,
               "adamw": AdamW, "lazy_adam": LazyAdam, "lazyadam": LazyAdam}
#: flavour -> name -> constructor arguments of ``compile(name)`` in that framework
#: (DeepCTR-Torch's compile builds ``torch.optim.SGD(lr=0.01)``, the rest with torch's defaults)
COMPILE_ARGUMENTS = {"keras": {}, "keras_legacy": {}, "torch": {"sgd": {"learning_rate": 0.01}}}


def get(optimizer, flavor=None, framework=None):
    """An optimizer by name (``'sgd'``, ``'adagrad'``, ``'adam'``, any case) as ``compile(name)``
    gives it in the ``flavor``'s framework (``framework``: a conventions profile's name), or
    an :class:`Optimizer` instance (its open flavour set to ``flavor``) returned as is."""
    flavor = check_flavor(flavor)
    if isinstance(optimizer, Optimizer):
        return optimizer.set_flavor(flavor, framework) if flavor is not None else optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _OPTIMIZERS:
        name = optimizer.lower()
        kwargs = COMPILE_ARGUMENTS.get(flavor or "keras", {}).get(name, {})
        opt = _OPTIMIZERS[name](flavor=flavor, **kwargs)
        return opt.set_flavor(flavor, framework) if flavor is not None else opt
    raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)} (any case) or a npctr "
                     f"Optimizer instance, got {optimizer!r}")
