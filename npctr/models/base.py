"""``Model``: a Layer with DeepCTR/Keras's training workflow, and the model registry.

A model subclass implements, besides the Layer protocol:

* ``forward(x, training=False, backprop=None)``: ``x`` a dict of arrays keyed by
  ``feature_names``; returns predictions ``(batch_size, 1)`` (probabilities for
  ``task='binary'``, values for ``'regression'``); ``backward(d_output)`` sets ``grads``;
* for ``task='binary'`` (and ``'multiclass'``), ``forward_logits(x, training, backprop)``
  returning the link's input (``logit + global_bias``) and ``backward_logits(d_logits)``,
  so the trainer can use the loss gradient fused with the sigmoid (finite for any logit);
* ``build(input_shape=None)``: every weight from the constructor arguments alone
  (``load_model`` calls it before loading the arrays);
* ``get_config()`` (JSON-able constructor arguments) and ``from_config(config)``;
* attributes ``task``, ``feature_names`` and ``seed``.

Register a subclass with ``@register_model`` so ``npctr.load_model`` can rebuild it.

Training: ``compile(optimizer, loss, metrics)``, then ``fit`` / ``evaluate`` /
``predict`` / ``train_on_batch`` with Keras's signatures and semantics; the loss is
the data loss plus ``regularization_loss()`` (Keras's ``model.losses``) and every
update comes from the hand-written backward passes. See ``docs/training.md``.
"""
import math
import numbers
import warnings

import numpy as np

from ..layers.base import Layer
from .._validation import check_positive_int
from ..layers.activation import sigmoid, softmax
from ..training import losses as losses_mod, optimizers as optimizers_mod, metrics as metrics_mod
from ..training.callbacks import Callback, History
from ..training.progress import ProgressBar

#: class name -> Model subclass, filled by ``@register_model``
MODEL_REGISTRY = {}


def register_model(cls):
    """Class decorator: make ``cls`` loadable by ``npctr.load_model`` (keyed by class name)."""
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"register_model expects a Model subclass, got {cls!r}")
    known = MODEL_REGISTRY.get(cls.__name__)
    if known is not None and known is not cls and \
            (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"a different model class named {cls.__name__!r} is already registered "
                         f"({known.__module__}.{known.__qualname__})")
    MODEL_REGISTRY[cls.__name__] = cls
    return cls


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``epoch`` and ``batch`` are 1-based."""

    def __init__(self, message, epoch=None, batch=None, loss=None):
        super().__init__(message)
        self.epoch, self.batch, self.loss = epoch, batch, loss


_LINKS = {"binary": "sigmoid", "multiclass": "softmax"}


class Model(Layer):
    """Base class of npctr's models (see the module docstring for the subclass contract)."""

    task = "binary"
    feature_names = ()

    # -- subclass contract --------------------------------------------------------------
    def forward_logits(self, x, training=False, backprop=None):
        raise NotImplementedError(f"{type(self).__name__} does not expose its logits")

    def backward_logits(self, d_logits):
        raise NotImplementedError(f"{type(self).__name__} does not expose its logits")

    def build(self, input_shape=None):
        super().build(input_shape)

    # -- compile --------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Choose the optimizer, the loss and the metrics, by Keras name or instance.

        ``loss=None`` picks ``binary_crossentropy`` for ``task='binary'``, ``mse`` for
        ``'regression'``. Names follow the model's conventions profile: the loss's formula
        and reduction (Keras's mean, DeepCTR-Torch's sum) and the optimizer's flavour and
        defaults (``compile('adam')`` is what ``compile('adam')`` gives in that framework);
        an optimizer instance with ``flavor=None`` takes the profile's flavour.
        ``metrics``: names (``'auc'``, ``'binary_crossentropy'``,
        ``'logloss'``, ``'accuracy'``, ``'mse'``, ...) or callables ``f(y_true, y_pred)``.
        """
        conv = self.conventions
        self.optimizer = optimizers_mod.get(optimizer, flavor=conv.optimizer_flavor, framework=conv.name)
        self.loss = self._default_loss() if loss is None else losses_mod.get(loss, conv.loss, conv.loss_reduction)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]
        self.compiled_metrics = [metrics_mod.get(m) for m in metrics]
        keys = [k for k, _ in self.compiled_metrics]
        dupes = sorted({k for k in keys if keys.count(k) > 1} | ({"loss"} & set(keys)))
        if dupes:
            raise ValueError(f"metrics must have distinct names other than 'loss', got {keys}")
        self.stop_training = False
        return self

    def _default_loss(self):
        name = {"binary": "binary_crossentropy", "regression": "mse",
                "multiclass": "categorical_crossentropy"}[self.task]
        return losses_mod.get(name, self.conventions.loss, self.conventions.loss_reduction)

    def compute_loss(self, x, y, training=False):
        """The training objective on one batch: data loss plus regularisation, a float.

        What the profile's framework minimises (Keras's ``compute_loss``: mean loss plus
        ``model.losses``; DeepCTR-Torch's fit: ``reduction='sum'`` loss plus
        ``get_regularization_loss()``), with the compiled loss (or the profile's default for
        the task). ``training=True`` runs the forward in training mode (batch statistics,
        dropout), which updates the moving statistics as a training step would; nothing is
        cached either way.
        """
        x, y, _ = self._check_xy(x, y)
        loss = getattr(self, "loss", None) or self._default_loss()
        pred = self.forward(x, training=bool(training), backprop=False)
        return loss.value(y, pred) + self.regularization_loss()

    def _check_compiled(self, what):
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError(f"call model.compile(optimizer, loss, metrics) before {what}")

    @property
    def metrics_names(self):
        """``['loss', <metric keys>]``: the order of ``evaluate``'s list."""
        return ["loss"] + [k for k, _ in getattr(self, "compiled_metrics", [])]

    # -- input checks ---------------------------------------------------------------------
    def _check_x(self, x, name="x"):
        """Dict of arrays holding exactly ``feature_names``, all of one length. Returns (dict, n)."""
        names = list(self.feature_names)
        if isinstance(x, (list, tuple)) and not isinstance(x, dict):
            if len(x) != len(names):
                raise ValueError(f"{name} given as a list must hold {len(names)} arrays in the order "
                                 f"{names}, got {len(x)}")
            x = dict(zip(names, x))
        if not isinstance(x, dict):
            raise TypeError(f"{name} must be a dict of arrays keyed by feature name {names}, "
                            f"got {type(x).__name__}")
        missing = [n for n in names if n not in x]
        extra = [k for k in x if k not in names]
        if missing or extra:
            raise ValueError(f"{name} must hold exactly the features {names}; missing: {missing}, "
                             f"unexpected: {extra}")
        arrays = {}
        for n in names:
            a = np.asarray(x[n])
            if a.ndim == 0:
                raise ValueError(f"{name}[{n!r}] must be an array with one row per sample, got a scalar")
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{name}[{n!r}] must be numeric, got dtype {a.dtype}")
            arrays[n] = a
        lengths = {n: a.shape[0] for n, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"every array of {name} must have the same number of samples, got {lengths}")
        n = next(iter(lengths.values())) if lengths else 0
        return arrays, n

    def _check_y(self, y, n, name="y"):
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {y.dtype}")
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{name} must have one label per sample: x has {n} samples, "
                             f"{name} has shape {y.shape}")
        if self.task == "multiclass":
            if y.ndim != 2:
                raise ValueError(f"{name} of a multiclass model must be one-hot, shape "
                                 f"(n_samples, n_classes), got {y.shape}")
        else:
            if y.size != n:
                raise ValueError(f"{name} must hold one value per sample, shape ({n},) or ({n}, 1), "
                                 f"got {y.shape}")
            y = y.reshape(n, 1)
        y = y.astype(self.dtype or np.float64, copy=False)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if self.task in ("binary", "multiclass"):
            bad = (y != 0) & (y != 1)
            if bad.any():
                values = np.unique(y[bad])[:5]
                raise ValueError(f"labels of a {self.task} model must be 0 or 1; {name} holds "
                                 f"{int(bad.sum())} other values, e.g. {values.tolist()}")
        return y

    def _check_xy(self, x, y, xname="x", yname="y"):
        x, n = self._check_x(x, xname)
        if n == 0:
            raise ValueError(f"{xname} holds no samples")
        return x, self._check_y(y, n, yname), n

    # -- one step ---------------------------------------------------------------------------
    def _uses_logits(self):
        link = _LINKS.get(self.task)
        return (link is not None and self.loss.link == link
                and type(self).forward_logits is not Model.forward_logits)

    def _trainable_params(self):
        """``params`` without the weights of non-trainable layers (and their children)."""
        frozen = [prefix for prefix, layer in self.sublayers() if not layer.trainable]
        params = self.params
        if not frozen:
            return params
        if "" in frozen:
            return {}
        return {k: v for k, v in params.items() if not any(k.startswith(p) for p in frozen)}

    def _train_step(self, xb, yb, where):
        """Forward, loss, backward, L2 gradients, optimizer update. Returns (total loss, predictions)."""
        uses_logits = self._uses_logits()
        if uses_logits:
            z = self.forward_logits(xb, training=True, backprop=True)
            pred = losses_mod.probability(z) if self.task == "binary" else softmax(z)
        else:
            pred = self.forward(xb, training=True, backprop=True)
        total = self.loss.value(yb, pred) + self.regularization_loss()
        if not math.isfinite(total):
            epoch, batch = where
            raise NonFiniteLossError(
                f"the training loss became {total} at epoch {epoch}, batch {batch}; the weights "
                "were not updated with this batch (lower the learning rate, check the inputs)",
                epoch=epoch, batch=batch, loss=total)
        if uses_logits:
            self.backward_logits(self.loss.logit_grad(yb, z))
        else:
            self.backward(self.loss.grad(yb, pred))
        self.add_regularization_grads()
        self.optimizer.apply_gradients(self._trainable_params(), self.grads)
        return total, pred

    def train_on_batch(self, x, y):
        """One update on one batch; returns the loss (before the update), or
        ``[loss, *metrics]`` on this batch when metrics were compiled (Keras's form)."""
        self._check_compiled("train_on_batch")
        x, y, _ = self._check_xy(x, y)
        total, pred = self._train_step(x, y, (1, 1))
        if not self.compiled_metrics:
            return total
        return [total] + list(self._metric_logs(y, pred).values())

    # -- metrics ----------------------------------------------------------------------------
    def _metric_logs(self, y, pred, prefix=""):
        logs = {}
        for key, fn in self.compiled_metrics:
            try:
                logs[prefix + key] = float(fn(y, pred))
            except ValueError as exc:   # e.g. AUC of a single-class set is undefined
                warnings.warn(f"metric {prefix + key} is undefined here ({exc}); reporting nan",
                              RuntimeWarning, stacklevel=3)
                logs[prefix + key] = float("nan")
        return logs

    # -- fit ----------------------------------------------------------------------------------
    def _shuffle_rng(self):
        rng = getattr(self, "_fit_rng", None)
        if rng is None:
            seed = getattr(self, "seed", None)
            # a stream of its own, independent of the seed's use for weights and dropout
            rng = np.random.default_rng(None if seed is None else [int(seed), 0x5EED])
            self._fit_rng = rng
        return rng

    def fit(self, x=None, y=None, batch_size=256, epochs=1, verbose=1, validation_split=0.0,
            validation_data=None, shuffle=True, callbacks=None):
        """Train for ``epochs`` passes over ``(x, y)`` in mini-batches; returns a ``History``.

        Parameters follow Keras. ``validation_split`` holds out the *last* fraction of the
        samples, before shuffling; ``validation_data=(x_val, y_val)`` takes precedence.
        Shuffling draws from a Generator seeded by the model's ``seed``, so a fresh model
        with the same seed on the same data gives a bit-identical history.

        ``history.history`` has per-epoch lists: ``loss`` (mean of the batch losses weighted
        by batch size, L2 included, as Keras), each metric on the epoch's training
        predictions, and ``val_loss`` / ``val_<metric>`` in inference mode.

        Raises ``ValueError`` / ``TypeError`` on bad input before any work, and
        ``NonFiniteLossError`` (a ``FloatingPointError``) naming the epoch and batch if the
        loss turns NaN or infinite.
        """
        self._check_compiled("fit")
        batch_size = check_positive_int(batch_size, "batch_size")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        x, y, n = self._check_xy(x, y)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val) (sample weights are "
                                 f"not supported), got {type(validation_data).__name__}"
                                 + (f" of length {len(validation_data)}"
                                    if isinstance(validation_data, (tuple, list)) else ""))
            vx, vy, _ = self._check_xy(validation_data[0], validation_data[1], "validation_data[0]",
                                       "validation_data[1]")
            val = (vx, vy)
        elif validation_split:
            if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
                    or not 0 <= validation_split < 1:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
            split_at = int(math.floor(n * (1.0 - validation_split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"x has {n} samples, not enough to split off a validation set with "
                                 f"validation_split={validation_split}")
            val = ({k: v[split_at:] for k, v in x.items()}, y[split_at:])
            x = {k: v[:split_at] for k, v in x.items()}
            y, n = y[:split_at], split_at
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be npctr Callback instances, got {cb!r}")

        steps = -(-n // batch_size)
        history = History()
        history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        callbacks = [history] + callbacks
        for cb in callbacks:
            cb.set_model(self)
        progress = ProgressBar(epochs, steps, verbose)
        self.stop_training = False
        rng = self._shuffle_rng() if shuffle else None
        for cb in callbacks:
            cb.on_train_begin({})
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            progress.epoch_begin(epoch)
            order = rng.permutation(n) if shuffle else np.arange(n)
            y_epoch = y[order]
            preds = None
            loss_sum = 0.0
            for b in range(steps):
                lo, hi = b * batch_size, min((b + 1) * batch_size, n)
                idx = order[lo:hi]
                xb = {k: v[idx] for k, v in x.items()}
                total, pred = self._train_step(xb, y_epoch[lo:hi], (epoch + 1, b + 1))
                if preds is None:
                    preds = np.empty((n,) + pred.shape[1:], dtype=pred.dtype)
                preds[lo:hi] = pred
                loss_sum += total * (hi - lo)
                batch_logs = {"loss": loss_sum / hi}
                progress.batch_end(b + 1, batch_logs)
                for cb in callbacks:
                    cb.on_train_batch_end(b, batch_logs)
            logs = {"loss": loss_sum / n}
            logs.update(self._metric_logs(y_epoch, preds))
            if val is not None:
                val_loss, val_pred = self._evaluate_arrays(val[0], val[1], batch_size)
                logs["val_loss"] = val_loss
                logs.update(self._metric_logs(val[1], val_pred, prefix="val_"))
            progress.epoch_end(logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end({})
        self.history = history
        return history

    # -- inference ------------------------------------------------------------------------------
    def _predict_arrays(self, x, n, batch_size):
        out = None
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            pred = self.forward({k: v[lo:hi] for k, v in x.items()}, training=False, backprop=False)
            if out is None:
                out = np.empty((n,) + pred.shape[1:], dtype=pred.dtype)
            out[lo:hi] = pred
        return out

    def _evaluate_arrays(self, x, y, batch_size):
        pred = self._predict_arrays(x, y.shape[0], batch_size)
        return self.loss.value(y, pred) + self.regularization_loss(), pred

    def predict(self, x, batch_size=256):
        """Predictions ``(n_samples, 1)`` in inference mode (no dropout, moving statistics,
        nothing cached), computed ``batch_size`` samples at a time. NumPy only."""
        batch_size = check_positive_int(batch_size, "batch_size")
        x, n = self._check_x(x)
        if n == 0:
            raise ValueError("x holds no samples")
        return self._predict_arrays(x, n, batch_size)

    def evaluate(self, x, y, batch_size=256, verbose=0):
        """Loss (data loss + L2, as Keras) and metrics in inference mode.

        Returns the loss alone when no metrics were compiled, else
        ``[loss, *metrics]`` in ``metrics_names`` order, as Keras.
        """
        self._check_compiled("evaluate")
        batch_size = check_positive_int(batch_size, "batch_size")
        x, y, _ = self._check_xy(x, y)
        loss, pred = self._evaluate_arrays(x, y, batch_size)
        logs = {"loss": loss, **self._metric_logs(y, pred)}
        if verbose:
            from ..training.progress import format_logs
            print(f"{y.shape[0]} samples{format_logs(logs)}")
        return loss if not self.compiled_metrics else list(logs.values())

    # -- files ------------------------------------------------------------------------------------
    def save(self, path):
        """Write the model to one ``.npz`` file, atomically (see ``npctr.io.save_model``)."""
        from ..io import save_model
        save_model(self, path)
