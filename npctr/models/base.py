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
from .._validation import check_positive_int, check_finite_rows, as_feature_dict
from ..layers.activation import sigmoid, softmax
from ..training import losses as losses_mod, optimizers as optimizers_mod, metrics as metrics_mod
from ..training.atomic import StepGuard, check_update
from ..training.callbacks import CallbackList, History
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
    def _check_x(self, x, name="x", check_finite=True):
        """Dict of arrays holding exactly ``feature_names``, all of one length. Returns (dict, n).

        ``check_finite``: a float array holding NaN or inf is a ``ValueError`` naming the
        feature and its first bad row.
        """
        names = list(self.feature_names)
        x = as_feature_dict(x, names, name)
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
            if check_finite:
                check_finite_rows(a, f"{name}[{n!r}]")
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
        if self.task == "binary":      # soft labels in [0, 1], as Keras's binary cross-entropy takes
            bad = (y < 0) | (y > 1)
            if bad.any():
                values = np.unique(y[bad])[:5]
                raise ValueError(f"labels of a binary model must lie in [0, 1]; {name} holds "
                                 f"{int(bad.sum())} other values, e.g. {values.tolist()}")
        elif self.task == "multiclass":
            bad = (y != 0) & (y != 1)
            if bad.any():
                values = np.unique(y[bad])[:5]
                raise ValueError(f"labels of a multiclass model must be one-hot (0 or 1); {name} holds "
                                 f"{int(bad.sum())} other values, e.g. {values.tolist()}")
        return y

    def _check_xy(self, x, y, xname="x", yname="y", check_finite=True):
        x, n = self._check_x(x, xname, check_finite)
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

    def _train_step(self, xb, yb, where, wb=None):
        """One all-or-nothing update (see ``npctr.training.atomic``). Returns (total loss, predictions).

        If anything raises before the update is written (a NaN loss or gradient, a bad batch,
        ``KeyboardInterrupt``), the weights, moving statistics, dropout generators and the
        optimizer's state are exactly as before the step.
        """
        with StepGuard() as guard:
            snapshot = self.snapshot()
            try:
                total, pred = self._loss_and_gradients(xb, yb, where, wb)
                params, grads = self._trainable_params(), self.grads
                bad = check_update(params, grads)
                if bad is not None:
                    epoch, batch = where
                    raise NonFiniteLossError(
                        f"the gradient of {bad!r} became NaN or infinite at epoch {epoch}, batch "
                        f"{batch}; the weights were not updated with this batch (lower the learning "
                        "rate, check the inputs)", epoch=epoch, batch=batch, loss=total)
                guard.commit()
            except BaseException:
                self.restore(snapshot)
                raise
            self.optimizer.apply_gradients(params, grads)
        return total, pred

    def _loss_and_gradients(self, xb, yb, where, wb=None):
        """Forward, loss, backward and L2 gradients (``grads``); no weight changes.

        ``wb``: per-sample weights ``(B,)`` or None. Keras's weighted loss
        ``sum_i w_i l_i / B`` (``SUM_OVER_BATCH_SIZE``: divided by the batch size, not by the
        weights' sum) has the gradient ``w_i`` times the unweighted one of sample ``i``.
        """
        uses_logits = self._uses_logits()
        if uses_logits:
            z = self.forward_logits(xb, training=True, backprop=True)
            pred = losses_mod.probability(z) if self.task == "binary" else softmax(z)
        else:
            pred = self.forward(xb, training=True, backprop=True)
        total = self._loss_value(yb, pred, wb) + self.regularization_loss()
        if not math.isfinite(total):
            epoch, batch = where
            raise NonFiniteLossError(
                f"the training loss became {total} at epoch {epoch}, batch {batch}; the weights "
                "were not updated with this batch (lower the learning rate, check the inputs)",
                epoch=epoch, batch=batch, loss=total)
        if uses_logits:
            self.backward_logits(_weighted(self.loss.logit_grad(yb, z), wb))
        else:
            self.backward(_weighted(self.loss.grad(yb, pred), wb))
        self.add_regularization_grads()
        return total, pred

    def _loss_value(self, y, pred, w=None):
        if w is None:
            return self.loss.value(y, pred)
        weighted = self.loss.per_sample(y, pred).reshape(w.shape[0], -1) * w[:, None]
        return float(np.sum(weighted) if getattr(self.loss, "reduction", "mean") == "sum" else np.mean(weighted))

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False,
                       check_finite=True):
        """One update on one batch; returns the loss (before the update), or
        ``[loss, *metrics]`` on this batch when metrics were compiled (Keras's form), or a
        dict with ``return_dict=True``."""
        self._check_compiled("train_on_batch")
        x, y, n = self._check_xy(x, y, check_finite=check_finite)
        w = sample_weights(y, n, sample_weight, class_weight, self.task)
        total, pred = self._train_step(x, y, (1, 1), w)
        logs = {"loss": total, **self._metric_logs(y, pred)}
        return _keras_result(logs, return_dict, self.compiled_metrics)

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

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, validation_freq=1, check_finite=True):
        """Train for ``epochs`` passes over ``(x, y)`` in mini-batches; returns a ``History``.

        Parameters follow Keras (same names, order and defaults: ``batch_size=None`` is 32).
        ``validation_split`` holds out the *last* fraction of the samples (and of
        ``sample_weight``), before shuffling; ``validation_data=(x_val, y_val)`` or
        ``(x_val, y_val, sample_weight_val)`` takes precedence. ``sample_weight`` ``(n,)``
        weighs each sample's loss (Keras's ``sum(w * loss) / batch_size``);
        ``class_weight={class: weight}`` multiplies the weight of every sample of that class
        (binary labels rounded). ``initial_epoch``: the epoch to start at (0-based; training
        runs epochs ``initial_epoch .. epochs - 1``). ``validation_freq``: validate every
        ``validation_freq`` epochs, or on the (1-based) epochs of a list. ``callbacks``: any
        objects with Keras's callback methods. ``check_finite=False`` skips the NaN/inf check
        of the inputs. Shuffling draws from a Generator seeded by the model's ``seed``, so a
        fresh model with the same seed on the same data gives a bit-identical history.

        ``history.history`` has per-epoch lists: ``loss`` (mean of the batch losses weighted
        by batch size, L2 included, as Keras), each metric on the epoch's training
        predictions (unweighted, as Keras's ``metrics``), and ``val_loss`` / ``val_<metric>``
        in inference mode on the validated epochs.

        Raises ``ValueError`` / ``TypeError`` on bad input before any work, and
        ``NonFiniteLossError`` (a ``FloatingPointError``) naming the epoch and batch if the
        loss or a gradient turns NaN or infinite; a failed step changes nothing.
        """
        self._check_compiled("fit")
        batch_size = _batch_size(batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) \
                or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be a non-negative integer, got {initial_epoch!r}")
        verbose = _verbose(verbose)
        validate_on = _validation_epochs(validation_freq)
        x, y, n = self._check_xy(x, y, check_finite=check_finite)
        w = sample_weights(y, n, sample_weight, class_weight, self.task)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                                 f"sample_weight_val), got {type(validation_data).__name__}"
                                 + (f" of length {len(validation_data)}"
                                    if isinstance(validation_data, (tuple, list)) else ""))
            vx, vy, vn = self._check_xy(validation_data[0], validation_data[1], "validation_data[0]",
                                        "validation_data[1]", check_finite)
            vw = None if len(validation_data) == 2 else sample_weights(vy, vn, validation_data[2], None,
                                                                       self.task, "validation_data[2]")
            val = (vx, vy, vw)
        elif validation_split:
            if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
                    or not 0 <= validation_split < 1:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
            split_at = int(math.floor(n * (1.0 - validation_split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"x has {n} samples, not enough to split off a validation set with "
                                 f"validation_split={validation_split}")
            val = ({k: v[split_at:] for k, v in x.items()}, y[split_at:],
                   None if w is None else w[split_at:])
            x = {k: v[:split_at] for k, v in x.items()}
            y, n = y[:split_at], split_at
            w = None if w is None else w[:split_at]

        steps = -(-n // batch_size)
        history = History()
        history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        callbacks = CallbackList([history] + list(callbacks or []))
        callbacks.call("set_model", self)
        callbacks.call("set_params", dict(history.params))
        progress = ProgressBar(epochs, steps, verbose)
        self.stop_training = False
        rng = self._shuffle_rng() if shuffle else None
        callbacks.call("on_train_begin", {})
        for epoch in range(initial_epoch, epochs):
            callbacks.call("on_epoch_begin", epoch, {})
            progress.epoch_begin(epoch)
            order = rng.permutation(n) if shuffle else np.arange(n)
            y_epoch = y[order]
            w_epoch = None if w is None else w[order]
            preds = None
            loss_sum = 0.0
            for b in range(steps):
                lo, hi = b * batch_size, min((b + 1) * batch_size, n)
                idx = order[lo:hi]
                xb = {k: v[idx] for k, v in x.items()}
                callbacks.call("on_train_batch_begin", b, {})
                total, pred = self._train_step(xb, y_epoch[lo:hi], (epoch + 1, b + 1),
                                               None if w_epoch is None else w_epoch[lo:hi])
                if preds is None:
                    preds = np.empty((n,) + pred.shape[1:], dtype=pred.dtype)
                preds[lo:hi] = pred
                loss_sum += total * (hi - lo)
                batch_logs = {"loss": loss_sum / hi}
                progress.batch_end(b + 1, batch_logs)
                callbacks.call("on_train_batch_end", b, batch_logs)
            logs = {"loss": loss_sum / n}
            logs.update(self._metric_logs(y_epoch, preds))
            if val is not None and validate_on(epoch):
                val_loss, val_pred = self._evaluate_arrays(val[0], val[1], batch_size, val[2])
                logs["val_loss"] = val_loss
                logs.update(self._metric_logs(val[1], val_pred, prefix="val_"))
            progress.epoch_end(logs)
            callbacks.call("on_epoch_end", epoch, logs)
            if self.stop_training:
                break
        callbacks.call("on_train_end", {})
        self.history = history
        return history

    # -- inference ------------------------------------------------------------------------------
    #: attributes a forward sets per sample (first axis), kept for every row of a chunked predict
    _chunked_outputs = ()

    def _predict_arrays(self, x, n, batch_size):
        out = None
        extras = {name: [] for name in self._chunked_outputs}
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            pred = self.forward({k: v[lo:hi] for k, v in x.items()}, training=False, backprop=False)
            if out is None:
                out = np.empty((n,) + pred.shape[1:], dtype=pred.dtype)
            out[lo:hi] = pred
            for name, chunks in extras.items():
                chunks.append(getattr(self, name))
        for name, chunks in extras.items():
            if len(chunks) > 1:
                setattr(self, name, np.concatenate(chunks, axis=0))
        return out

    def _check_predictions(self, pred):
        """Predictions from finite inputs must be finite: NaN/inf means an activation overflowed."""
        finite = np.isfinite(pred)
        if finite.all():
            return pred
        rows = np.flatnonzero(~finite.reshape(pred.shape[0], -1).all(axis=1))
        raise FloatingPointError(
            f"the model's predictions are NaN or infinite for {rows.size} of {pred.shape[0]} rows "
            f"(first: row {rows[0]}) although the inputs are finite: its activations overflowed "
            f"{pred.dtype} (largest finite value {np.finfo(pred.dtype).max:.3g}); use dtype='float64' "
            "or check the weights")

    def _evaluate_arrays(self, x, y, batch_size, w=None):
        pred = self._check_predictions(self._predict_arrays(x, y.shape[0], batch_size))
        return self._loss_value(y, pred, w) + self.regularization_loss(), pred

    def predict(self, x, batch_size=None, verbose="auto", check_finite=True):
        """Predictions ``(n_samples, 1)`` in inference mode (no dropout, moving statistics,
        nothing cached), computed ``batch_size`` samples at a time (None: 32, as Keras).
        ``verbose`` is accepted for Keras compatibility (npctr prints nothing while
        predicting). NumPy only."""
        batch_size = _batch_size(batch_size)
        _verbose(verbose)
        x, n = self._check_x(x, check_finite=check_finite)
        if n == 0:
            raise ValueError("x holds no samples")
        pred = self._predict_arrays(x, n, batch_size)
        return self._check_predictions(pred) if check_finite else pred

    def evaluate(self, x, y, batch_size=None, verbose=0, sample_weight=None, return_dict=False,
                 check_finite=True):
        """Loss (data loss + L2, as Keras) and metrics in inference mode.

        Returns the loss alone when no metrics were compiled, else ``[loss, *metrics]`` in
        ``metrics_names`` order, as Keras; ``return_dict=True`` gives ``{name: value}``.
        ``sample_weight`` weighs the loss as in ``fit`` (metrics are unweighted).
        """
        self._check_compiled("evaluate")
        batch_size = _batch_size(batch_size)
        verbose = _verbose(verbose)
        x, y, n = self._check_xy(x, y, check_finite=check_finite)
        w = sample_weights(y, n, sample_weight, None, self.task)
        loss, pred = self._evaluate_arrays(x, y, batch_size, w)
        logs = {"loss": loss, **self._metric_logs(y, pred)}
        if verbose:
            from ..training.progress import format_logs
            print(f"{y.shape[0]} samples{format_logs(logs)}")
        return _keras_result(logs, return_dict, self.compiled_metrics)

    # -- Keras's model inspection ------------------------------------------------------------------
    @property
    def layers(self):
        """The model's top-level layers, in creation order (Keras's ``model.layers``)."""
        return list(self._layers.values())

    def count_params(self):
        """Number of weight values, trainable and not (moving statistics included), as Keras."""
        return sum(int(np.size(v)) for v in self.params.values()) + \
            sum(int(np.size(v)) for v in self.state.values())

    def _example_input(self):
        """A one-row input for ``summary``'s output shapes (None: use the last forward's)."""
        return None

    def _output_shapes(self):
        """Each top-level layer's output shape, from a one-row forward on ``_example_input()``
        that leaves every layer exactly as it was (caches of a training forward included)."""
        example = self._example_input()
        if example is None:
            return {k: _last_output_shape(layer) for k, layer in self._layers.items()}
        saved = [(layer, dict(layer.__dict__)) for _, layer in self.sublayers()]
        for layer, _ in saved:
            layer._output_shape = None
        try:
            self.forward(example, training=False, backprop=False)
            return {k: _last_output_shape(layer) for k, layer in self._layers.items()}
        finally:
            for layer, attrs in saved:
                layer.__dict__.clear()
                layer.__dict__.update(attrs)

    def summary(self, line_length=None, print_fn=None):
        """Print Keras's summary table: each top-level layer, its output shape (``None`` the
        batch axis; ``multiple`` for a layer used on several inputs) and parameter count, and
        the total, trainable and non-trainable counts. ``print_fn`` (default ``print``) gets
        the whole table as one string."""
        from .summary import format_summary
        (print_fn or print)(format_summary(self, self._output_shapes(), line_length))

    # -- files ------------------------------------------------------------------------------------
    def save(self, path):
        """Write the model to one ``.npz`` file, atomically (see ``npctr.io.save_model``)."""
        from ..io import save_model
        save_model(self, path)

    def save_weights(self, path):
        """Write every weight and moving statistic, by name, to one ``.npz`` file (no config),
        atomically. See ``npctr.io.save_weights``."""
        from ..io import save_weights
        save_weights(self, path)

    def load_weights(self, path):
        """Load weights by name from a ``save_weights`` file (or a model file): every name,
        shape and dtype must match. See ``npctr.io.load_weights``."""
        from ..io import load_weights
        load_weights(self, path)
        return self


def _last_output_shape(layer):
    """The layer's last output shape; None if it had several (a table shared by features)."""
    shapes = getattr(layer, "_output_shapes", None)
    if shapes:
        return shapes[0] if len(set(shapes)) == 1 else None
    return layer._output_shape


# -- Keras's argument conventions --------------------------------------------------------------
#: Keras's default batch size (``batch_size=None``)
DEFAULT_BATCH_SIZE = 32


def _batch_size(batch_size):
    return DEFAULT_BATCH_SIZE if batch_size is None else check_positive_int(batch_size, "batch_size")


def _verbose(verbose):
    """Keras's ``verbose``: 0, 1, 2 or ``'auto'`` (1)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def _validation_epochs(validation_freq):
    """``validation_freq`` (an int: every that many epochs; a list: those 1-based epochs) as a
    predicate on the 0-based epoch."""
    if isinstance(validation_freq, numbers.Integral) and not isinstance(validation_freq, bool):
        freq = check_positive_int(validation_freq, "validation_freq")
        return lambda epoch: (epoch + 1) % freq == 0
    if isinstance(validation_freq, (list, tuple, set, range)):
        epochs = {check_positive_int(e, "validation_freq entries") for e in validation_freq}
        return lambda epoch: epoch + 1 in epochs
    raise TypeError(f"validation_freq must be a positive integer or a list of epochs, got {validation_freq!r}")


def sample_weights(y, n, sample_weight, class_weight, task, name="sample_weight"):
    """Per-sample loss weights ``(n,)`` from Keras's ``sample_weight`` and ``class_weight``
    (multiplied when both are given), or None when neither is."""
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {w.dtype}")
        if w.size != n or w.ndim > 2 or (w.ndim == 2 and w.shape[1] != 1):
            raise ValueError(f"{name} must hold one weight per sample, shape ({n},), got {w.shape}")
        w = w.reshape(n).astype(y.dtype)
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"{name} must be finite and >= 0")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
        classes = (np.argmax(y, axis=1) if task == "multiclass" else np.round(y.reshape(n))).astype(np.int64)
        missing = sorted(set(classes.tolist()) - set(int(k) for k in class_weight))
        if missing:
            raise ValueError(f"class_weight has no weight for the classes {missing} (it has {sorted(class_weight)})")
        table = {int(k): float(v) for k, v in class_weight.items()}
        if not all(np.isfinite(v) and v >= 0 for v in table.values()):
            raise ValueError(f"class_weight values must be finite and >= 0, got {class_weight}")
        lookup = np.zeros(max(max(table), int(classes.max(initial=0))) + 1, dtype=y.dtype)
        for c, v in table.items():
            if c >= 0:
                lookup[c] = v
        cw = lookup[classes]
        w = cw if w is None else w * cw
    return w


def _weighted(grad, w):
    return grad if w is None else grad * w.reshape((-1,) + (1,) * (grad.ndim - 1)).astype(grad.dtype)


def _keras_result(logs, return_dict, metrics):
    if return_dict:
        return dict(logs)
    return logs["loss"] if not metrics else list(logs.values())
