"""The training loop: ``compile``, ``fit``, ``evaluate``, ``train_on_batch``, the all-or-nothing step,
and ``loss_and_gradients``, as Keras 3 splits them from its ``Model`` (``keras.Model`` inherits
``Trainer``).

``Trainer`` is a mixin that npctr's ``Model`` inherits. It knows models only through their
protocol and never imports ``npctr.models``: ``forward`` / ``backward``, ``forward_logits`` /
``backward_logits`` and ``exposes_logits``, ``params`` / ``grads``, ``snapshot`` / ``restore``,
``regularization_loss`` / ``add_regularization_grads``, ``auxiliary_loss`` /
``add_auxiliary_grads``, ``weights_changed``, ``conventions``, ``task``, ``dtype``, ``seed``, and
the model's own input check ``_check_x`` and exact inference path ``_predict_checked`` /
``_check_predictions``. Every update comes from the hand-written backward passes; the math is in
``docs/training.md``.
"""
import math

import numpy as np

from .._blas import single_threaded_blas
from ..ops.activations import softmax
from . import arguments, losses as losses_mod, optimizers as optimizers_mod, metrics as metrics_mod
from .atomic import StepGuard, check_update
from .callbacks import CallbackList, History
from .progress import ProgressBar, format_logs

_LINKS = {"binary": "sigmoid", "multiclass": "softmax"}
_DEFAULT_LOSSES = {"binary": "binary_crossentropy", "regression": "mse", "multiclass": "categorical_crossentropy"}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``epoch`` and ``batch`` are 1-based."""

    def __init__(self, message, epoch=None, batch=None, loss=None):
        super().__init__(message)
        self.epoch, self.batch, self.loss = epoch, batch, loss


class Trainer:
    """Keras's training workflow for npctr's models (the methods ``Model`` inherits)."""

    # -- compile ------------------------------------------------------------------------------
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
        conv = self.conventions
        return losses_mod.get(_DEFAULT_LOSSES[self.task], conv.loss, conv.loss_reduction)

    def _objective(self):
        """The compiled loss, or the profile's default for the task."""
        return getattr(self, "loss", None) or self._default_loss()

    def _check_compiled(self, what):
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError(f"call model.compile(optimizer, loss, metrics) before {what}")

    @property
    def metrics_names(self):
        """``['loss', <metric keys>]``: the order of ``evaluate``'s list."""
        return ["loss"] + [k for k, _ in getattr(self, "compiled_metrics", [])]

    # -- the objective ------------------------------------------------------------------------
    def _check_xy(self, x, y, xname="x", yname="y", check_finite=True):
        """``(features, labels (n, 1), n)`` of one request, each validated once."""
        x, n = self._check_x(x, xname, check_finite)
        if n == 0:
            raise ValueError(f"{xname} holds no samples")
        return x, self._check_y(y, n, yname), n

    def _check_y(self, y, n, name="y"):
        return arguments.check_labels(y, n, self.task, self.dtype or np.float64, name)

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
        pred = self.forward(x, training=bool(training), backprop=False)
        return self._objective().value(y, pred) + self.regularization_loss() + self.auxiliary_loss()

    def loss_and_gradients(self, x, y, training=True, sample_weight=None):
        """``(loss, {path: gradient})``: the training objective of the model's profile on one
        batch (``compute_loss``'s value: data loss, regularization and any auxiliary loss) and
        its gradient for every trainable weight, as dense arrays keyed by npctr path.

        This is what a framework's optimizer receives in one step. The model is left exactly as
        it was: moving statistics and dropout generators are restored, no weight changes, no
        optimizer is needed. ``training=False`` differentiates the inference-mode objective
        (moving statistics, no dropout). ``sample_weight`` weighs the samples as in ``fit``.
        """
        x, y, n = self._check_xy(x, y)
        w = arguments.sample_weights(y, n, sample_weight, None, self.task)
        snapshot = self.snapshot()
        try:
            total, _ = self._loss_and_gradients(x, y, None, w, self._objective(), training=bool(training))
            grads = {k: (g.to_dense() if hasattr(g, "to_dense") else np.array(g))
                     for k, g in self.grads.items() if k in self._trainable_params()}
        finally:
            self.restore(snapshot)
        return total, grads

    # -- one step -----------------------------------------------------------------------------
    def _uses_logits(self, loss):
        link = _LINKS.get(self.task)
        return link is not None and loss.link == link and self.exposes_logits

    def _trainable_params(self):
        """``params`` without the weights of non-trainable layers (and their children)."""
        frozen = [prefix for prefix, layer in self.sublayers() if not layer.trainable]
        params = self.params
        if not frozen:
            return params
        if "" in frozen:
            return {}
        return {k: v for k, v in params.items() if not any(k.startswith(p) for p in frozen)}

    def _loss_and_gradients(self, xb, yb, where=None, wb=None, loss=None, training=True):
        """Forward, the objective, backward and the L2 gradients (``grads``); no weight changes.
        Returns ``(objective, predictions)``. ``loss``: the compiled loss unless given; ``where``
        ``(epoch, batch)`` makes a NaN or infinite objective a ``NonFiniteLossError``.

        ``wb``: per-sample weights ``(B,)`` or None. Keras's weighted loss
        ``sum_i w_i l_i / B`` (``SUM_OVER_BATCH_SIZE``: divided by the batch size, not by the
        weights' sum) has the gradient ``w_i`` times the unweighted one of sample ``i``.
        """
        loss = self.loss if loss is None else loss
        uses_logits = self._uses_logits(loss)
        if uses_logits:
            z = self.forward_logits(xb, training=training, backprop=True)
            pred = losses_mod.probability(z) if self.task == "binary" else softmax(z)
        else:
            pred = self.forward(xb, training=training, backprop=True)
        total = _loss_value(loss, yb, pred, wb) + self.regularization_loss() + self.auxiliary_loss()
        if where is not None and not math.isfinite(total):
            epoch, batch = where
            raise NonFiniteLossError(
                f"the training loss became {total} at epoch {epoch}, batch {batch}; the weights "
                "were not updated with this batch (lower the learning rate, check the inputs)",
                epoch=epoch, batch=batch, loss=total)
        self._backward_objective(arguments.weighted(loss.logit_grad(yb, z), wb) if uses_logits
                                 else arguments.weighted(loss.grad(yb, pred), wb), uses_logits)
        return total, pred

    def _backward_objective(self, d, uses_logits):
        """Every gradient of the objective: ``backward_logits`` (``uses_logits``) or ``backward`` from
        ``d``, then the L2 terms' (``add_regularization_grads``) and the auxiliary losses'
        (``add_auxiliary_grads``). A model may compute them together (DIEN: one BPTT of its
        extractor for the outputs and the auxiliary loss)."""
        if uses_logits:
            self.backward_logits(d)
        else:
            self.backward(d)
        self.add_regularization_grads()
        self.add_auxiliary_grads()

    def _train_step(self, xb, yb, where, wb=None):
        """One all-or-nothing update (see ``npctr.training.atomic``). Returns (total loss, predictions).

        If anything raises before the update is written (a NaN loss or gradient, a bad batch,
        ``KeyboardInterrupt``, an optimizer refusing the update), the weights, moving statistics,
        dropout generators and the optimizer's state are exactly as before the step. OpenBLAS runs single-threaded inside
        (``npctr._blas``): its busy-waiting threads stall many times over on a loaded machine
        (``docs/performance.md``); the ops' large passes use the cores instead, in row blocks
        (``npctr.ops.blocks``, ``NPCTR_NUM_THREADS``), with results independent of the thread count.
        """
        with single_threaded_blas(), StepGuard() as guard:
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
                # an optimizer that raises must do so before writing anything (docs/training.md,
                # 'Writing an optimizer'): then the forward's changes are undone here too
                self.optimizer.apply_gradients(params, grads)
            except BaseException:
                self.restore(snapshot)
                self.weights_changed()
                raise
            self.weights_changed()
        return total, pred

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False,
                       check_finite=True):
        """One update on one batch; returns the loss (before the update), or
        ``[loss, *metrics]`` on this batch when metrics were compiled (Keras's form), or a
        dict with ``return_dict=True``."""
        self._check_compiled("train_on_batch")
        x, y, n = self._check_xy(x, y, check_finite=check_finite)
        w = arguments.sample_weights(y, n, sample_weight, class_weight, self.task)
        total, pred = self._train_step(x, y, (1, 1), w)
        logs = {"loss": total, **self._metric_logs(y, pred)}
        return arguments.keras_result(logs, return_dict, self.compiled_metrics)

    def _metric_logs(self, y, pred, prefix=""):
        return metrics_mod.metric_logs(self.compiled_metrics, y, pred, prefix)

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
        by batch size, L2 included, as Keras; with a sum-reduced loss, e.g. under
        ``conventions="torch"``, the batch losses' sum over the sample count, as DeepCTR-Torch's
        ``fit`` reports it), each metric on the epoch's training
        predictions (unweighted, as Keras's ``metrics``), and ``val_loss`` / ``val_<metric>``
        in inference mode on the validated epochs.

        Raises ``ValueError`` / ``TypeError`` on bad input before any work, and
        ``NonFiniteLossError`` (a ``FloatingPointError``) naming the epoch and batch if the
        loss or a gradient turns NaN or infinite; a failed step changes nothing.
        """
        self._check_compiled("fit")
        batch_size = arguments.batch_size_of(batch_size)
        epochs = arguments.epoch_count(epochs, "epochs")
        initial_epoch = arguments.epoch_count(initial_epoch, "initial_epoch")
        verbose = arguments.verbosity(verbose)
        validate_on = arguments.validation_epochs(validation_freq)
        x, y, n = self._check_xy(x, y, check_finite=check_finite)
        w = arguments.sample_weights(y, n, sample_weight, class_weight, self.task)
        (x, y, w), val = arguments.hold_out(x, y, w, validation_split, validation_data,
                                            lambda vx, vy: self._check_xy(vx, vy, "validation_data[0]",
                                                                          "validation_data[1]", check_finite),
                                            self.task)
        steps = -(-y.shape[0] // batch_size)
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
            logs = self._fit_epoch(epoch, x, y, w, batch_size, rng, progress, callbacks)
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

    def _fit_epoch(self, epoch, x, y, w, batch_size, rng, progress, callbacks):
        """One pass over the (shuffled) samples, a step per batch; returns the epoch's logs."""
        n = y.shape[0]
        steps = -(-n // batch_size)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        y_epoch = y[order]
        w_epoch = None if w is None else w[order]
        preds = None
        loss_sum = 0.0
        # Keras: the batch losses (means) weighted by batch size, over n. DeepCTR-Torch's fit: its
        # batch totals (a sum-reduced loss plus the regularization) summed, over n
        per_sample = getattr(self.loss, "reduction", "mean") == "sum"
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
            loss_sum += total if per_sample else total * (hi - lo)
            batch_logs = {"loss": loss_sum / hi}
            progress.batch_end(b + 1, batch_logs)
            callbacks.call("on_train_batch_end", b, batch_logs)
        logs = {"loss": loss_sum / n}
        logs.update(self._metric_logs(y_epoch, preds))
        return logs

    # -- evaluate -----------------------------------------------------------------------------
    def _evaluate_arrays(self, x, y, batch_size, w=None):
        pred = self._check_predictions(self._predict_checked(x, y.shape[0], batch_size))
        return self._loss_value(y, pred, w) + self.regularization_loss(), pred

    def _loss_value(self, y, pred, w=None):
        return _loss_value(self.loss, y, pred, w)

    def evaluate(self, x, y, batch_size=None, verbose=0, sample_weight=None, return_dict=False,
                 check_finite=True):
        """Loss (data loss + L2, as Keras) and metrics in inference mode.

        Returns the loss alone when no metrics were compiled, else ``[loss, *metrics]`` in
        ``metrics_names`` order, as Keras; ``return_dict=True`` gives ``{name: value}``.
        ``sample_weight`` weighs the loss as in ``fit`` (metrics are unweighted).
        """
        self._check_compiled("evaluate")
        batch_size = arguments.batch_size_of(batch_size)
        verbose = arguments.verbosity(verbose)
        x, y, n = self._check_xy(x, y, check_finite=check_finite)
        w = arguments.sample_weights(y, n, sample_weight, None, self.task)
        loss, pred = self._evaluate_arrays(x, y, batch_size, w)
        logs = {"loss": loss, **self._metric_logs(y, pred)}
        if verbose:
            print(f"{y.shape[0]} samples{format_logs(logs)}")
        return arguments.keras_result(logs, return_dict, self.compiled_metrics)


def _loss_value(loss, y, pred, w=None):
    """The data loss of ``pred``, each sample weighted by ``w`` (Keras: divided by the batch size)."""
    if w is None:
        return loss.value(y, pred)
    weighted = loss.per_sample(y, pred).reshape(w.shape[0], -1) * w[:, None]
    return float(np.sum(weighted) if getattr(loss, "reduction", "mean") == "sum" else np.mean(weighted))
