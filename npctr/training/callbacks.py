"""Callbacks in tf.keras 2's spirit: ``History``, ``EarlyStopping``, ``ModelCheckpoint``.

``fit`` calls, on every callback: ``set_model(model)``, ``set_params(params)``,
``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``, ``on_train_batch_begin(batch, logs)``,
``on_train_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)`` (``logs`` holds the epoch's
``loss``, metrics and ``val_`` entries), ``on_train_end(logs)``. A callback stops training by
setting ``model.stop_training = True``.

Any object works as a callback (Keras's duck typing): ``CallbackList`` calls each of these
methods the object has and skips the ones it lacks, so a ``tf.keras.callbacks.Callback``
subclass written for Keras runs unchanged when it only uses ``self.model``'s npctr API.
"""
import numbers
import warnings

import numpy as np


#: the hooks ``fit`` calls, in Keras's names (``on_batch_*`` are Keras's aliases of ``on_train_batch_*``)
HOOKS = ("set_model", "set_params", "on_train_begin", "on_epoch_begin", "on_train_batch_begin",
         "on_train_batch_end", "on_epoch_end", "on_train_end")


class CallbackList:
    """Calls a hook on every callback that has it (plain objects allowed; missing hooks skipped)."""

    def __init__(self, callbacks):
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not any(callable(getattr(cb, hook, None)) for hook in HOOKS + ("on_batch_end", "on_batch_begin")):
                raise TypeError(f"callbacks must be objects with Keras callback methods ({', '.join(HOOKS)}), "
                                f"got {cb!r}")
        self.callbacks = callbacks

    def call(self, hook, *args):
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is None and hook.startswith("on_train_batch_"):
                fn = getattr(cb, hook.replace("on_train_batch_", "on_batch_"), None)
            if callable(fn):
                fn(*args)


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class History(Callback):
    """What ``fit`` returns: ``history`` maps ``loss``, each metric and their ``val_``
    versions to per-epoch lists; ``epoch`` lists the epoch indices; ``params`` the
    run's settings (``epochs``, ``steps``, ``verbose``)."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        self.params = {}

    def on_train_begin(self, logs=None):
        self.epoch = []  # Keras keeps ``history`` across fits of the same model only via new objects

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _monitor_op(monitor, mode, who):
    """``np.greater`` or ``np.less`` for ``mode`` ('auto' guesses from the name, as
    EarlyStopping does: names ending in acc/accuracy/auc are maximized)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "max":
        return np.greater
    if mode == "min":
        return np.less
    return np.greater if monitor.endswith(("acc", "accuracy", "auc")) else np.less


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (tf.keras 2.x semantics).

    Parameters
    ----------
    monitor : str, default 'val_loss'
    min_delta : float, default 0
        An improvement must beat the best by more than ``min_delta``.
    patience : int, default 0
        Epochs without improvement before stopping.
    mode : {'auto', 'min', 'max'}, default 'auto'
        'auto' maximizes names ending in ``acc``, ``accuracy`` or ``auc``, minimizes the rest.
    restore_best_weights : bool, default False
        When training *stops early*, load the weights (and moving statistics) of the best
        epoch, as tf.keras 2 does. (If training runs to the last epoch, the last weights stay.)
    verbose : int, default 0
        1 prints ``Epoch N: early stopping`` (and the weights' restoration) as Keras does.
    baseline : float, optional
        Training stops if the monitored value does not beat ``baseline`` within ``patience``
        epochs (the wait restarts only on values better than both the best and the baseline).

    After training, ``stopped_epoch`` is the 0-based epoch at which training stopped
    (0 if it did not), ``best`` the best monitored value and ``best_epoch`` its epoch.
    As in tf.keras, training never stops at the first epoch.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False):
        super().__init__()
        self.monitor = monitor
        self.verbose = _check_verbose(verbose, "EarlyStopping")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, numbers.Real)
                                     or not np.isfinite(baseline)):
            raise ValueError(f"EarlyStopping: baseline must be a finite number or None, got {baseline!r}")
        self.baseline = None if baseline is None else float(baseline)
        self.patience = int(patience)
        if self.patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience!r}")
        self.monitor_op = _monitor_op(monitor, mode, "EarlyStopping")
        self.min_delta = abs(float(min_delta)) * (1 if self.monitor_op is np.greater else -1)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = -np.inf if self.monitor_op is np.greater else np.inf
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping conditioned on metric {self.monitor!r} which is not "
                          f"available; available: {sorted(logs or {})}", RuntimeWarning, stacklevel=2)
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self.monitor_op(current - self.min_delta, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self.monitor_op(current - self.min_delta, self.baseline):
                self.wait = 0
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose:
                    print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class ModelCheckpoint(Callback):
    """Save the model (``model.save``) at the end of each epoch.

    Parameters
    ----------
    filepath : str or path
        May contain ``str.format`` fields: ``{epoch}`` (1-based, as Keras) and any key
        of the epoch's logs, e.g. ``'ckpt-{epoch:02d}-{val_loss:.4f}.npz'``.
    monitor : str, default 'val_loss'
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best value so far.
    mode : {'auto', 'min', 'max'}, default 'auto'
        As ``EarlyStopping`` ('auto' maximizes names ending in acc/accuracy/auc; tf.keras's
        ModelCheckpoint does not recognise ``auc`` in 'auto' mode and would minimize it).
    save_weights_only : bool, default False
        Write ``model.save_weights(path)`` (weights by name, no config) instead of ``model.save``.
    verbose : int, default 0
        1 prints a line for each save (``Epoch N: saving model to path``).

    Every write is atomic (``npctr.io.save_model``): a crash mid-save leaves the previous
    checkpoint intact.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__()
        self.filepath = str(filepath)
        self.verbose = _check_verbose(verbose, "ModelCheckpoint")
        self.save_weights_only = bool(save_weights_only)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.monitor_op = _monitor_op(monitor, mode, "ModelCheckpoint")
        self.best = -np.inf if self.monitor_op is np.greater else np.inf
        self.saved = []   # paths written, in order

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"ModelCheckpoint: can save best model only with {self.monitor!r} "
                              f"available; available: {sorted(logs)}", RuntimeWarning, stacklevel=2)
                return
            if not self.monitor_op(current, self.best):
                return
            self.best = current
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self.saved.append(path)


def _check_verbose(verbose, who):
    if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"{who}: verbose must be a non-negative integer, got {verbose!r}")
    return int(verbose)
