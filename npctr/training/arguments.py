"""Keras's argument conventions for ``fit`` / ``evaluate`` / ``predict``: batch sizes, verbosity,
validation frequency, labels, sample and class weights, and the shape of the returned logs."""
import math
import numbers

import numpy as np

from .._validation import check_positive_int

#: Keras's default batch size (``batch_size=None``)
DEFAULT_BATCH_SIZE = 32


def batch_size_of(batch_size):
    """``batch_size``, or Keras's default 32 for None."""
    return DEFAULT_BATCH_SIZE if batch_size is None else check_positive_int(batch_size, "batch_size")


def verbosity(verbose):
    """Keras's ``verbose``: 0, 1, 2 or ``'auto'`` (1)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def epoch_count(value, name):
    """A non-negative integer number of epochs (``epochs``, ``initial_epoch``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def validation_epochs(validation_freq):
    """``validation_freq`` (an int: every that many epochs; a list: those 1-based epochs) as a
    predicate on the 0-based epoch."""
    if isinstance(validation_freq, numbers.Integral) and not isinstance(validation_freq, bool):
        freq = check_positive_int(validation_freq, "validation_freq")
        return lambda epoch: (epoch + 1) % freq == 0
    if isinstance(validation_freq, (list, tuple, set, range)):
        epochs = {check_positive_int(e, "validation_freq entries") for e in validation_freq}
        return lambda epoch: epoch + 1 in epochs
    raise TypeError(f"validation_freq must be a positive integer or a list of epochs, got {validation_freq!r}")


def check_labels(y, n, task, dtype, name="y"):
    """The labels of ``n`` samples as ``(n, 1)`` (one-hot ``(n, C)`` for multiclass) in ``dtype``:
    numeric, finite, in ``[0, 1]`` for a binary task (soft labels, as Keras's binary
    cross-entropy takes them), 0 or 1 for a multiclass one."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {y.dtype}")
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"{name} must have one label per sample: x has {n} samples, "
                         f"{name} has shape {y.shape}")
    if task == "multiclass":
        if y.ndim != 2:
            raise ValueError(f"{name} of a multiclass model must be one-hot, shape "
                             f"(n_samples, n_classes), got {y.shape}")
    else:
        if y.size != n:
            raise ValueError(f"{name} must hold one value per sample, shape ({n},) or ({n}, 1), "
                             f"got {y.shape}")
        y = y.reshape(n, 1)
    y = y.astype(dtype, copy=False)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if task == "binary":
        bad = (y < 0) | (y > 1)
        if bad.any():
            values = np.unique(y[bad])[:5]
            raise ValueError(f"labels of a binary model must lie in [0, 1]; {name} holds "
                             f"{int(bad.sum())} other values, e.g. {values.tolist()}")
    elif task == "multiclass":
        bad = (y != 0) & (y != 1)
        if bad.any():
            values = np.unique(y[bad])[:5]
            raise ValueError(f"labels of a multiclass model must be one-hot (0 or 1); {name} holds "
                             f"{int(bad.sum())} other values, e.g. {values.tolist()}")
    return y


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


def weighted(grad, w):
    """The per-sample gradient ``grad`` ``(B, ...)`` times the weights ``w`` ``(B,)`` (or as is)."""
    return grad if w is None else grad * w.reshape((-1,) + (1,) * (grad.ndim - 1)).astype(grad.dtype)


def keras_result(logs, return_dict, metrics):
    """What Keras returns: the loss alone, ``[loss, *metrics]``, or the dict."""
    if return_dict:
        return dict(logs)
    return logs["loss"] if not metrics else list(logs.values())


def hold_out(x, y, w, validation_split, validation_data, check_xy, task):
    """``((x, y, w) to train on, (x_val, y_val, w_val) or None)``: Keras's ``validation_data``
    (checked by ``check_xy(x_val, y_val)``) if given, else the last ``validation_split`` of the
    samples, taken before any shuffling."""
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                             f"sample_weight_val), got {type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}"
                                if isinstance(validation_data, (tuple, list)) else ""))
        vx, vy, vn = check_xy(validation_data[0], validation_data[1])
        vw = None if len(validation_data) == 2 else sample_weights(vy, vn, validation_data[2], None, task,
                                                                   "validation_data[2]")
        return (x, y, w), (vx, vy, vw)
    if not validation_split:
        return (x, y, w), None
    if (isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real)
            or not 0 <= validation_split < 1):
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    n = y.shape[0]
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"x has {n} samples, not enough to split off a validation set with "
                         f"validation_split={validation_split}")
    val = ({k: v[split_at:] for k, v in x.items()}, y[split_at:], None if w is None else w[split_at:])
    train = ({k: v[:split_at] for k, v in x.items()}, y[:split_at], None if w is None else w[:split_at])
    return train, val
