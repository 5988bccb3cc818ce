r"""Evaluation metrics on whole arrays, NumPy only.

* ``auc`` / ``AUC``: exact ROC AUC, ties handled by rank averaging (the Mann-Whitney
  statistic). tf.keras's ``AUC`` metric approximates it with 200 thresholds; npctr's
  is exact, as ``sklearn.metrics.roc_auc_score``.
* ``binary_crossentropy`` / ``logloss``: Keras's clipped BCE, mean over samples.
* ``accuracy`` / ``acc``: binary accuracy at threshold 0.5 (``y_pred > 0.5``, Keras's rule).
* ``mse``: mean squared error.

Each metric is a function ``f(y_true, y_pred) -> float`` over the whole data set;
:func:`get` resolves names and returns ``(history_key, function)``.
"""
import warnings

import numpy as np

from .losses import binary_crossentropy_per_sample


def _flat_pair(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same number of values, got "
                         f"{y_true.size} and {y_pred.size}")
    return y_true, y_pred


def average_ranks(x):
    """Ranks 1..n of ``x`` with ties given the mean of the ranks they span. Vectorized."""
    x = np.asarray(x).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]                 # exclusive
    run_rank = (starts + 1 + ends) / 2.0              # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(y_true, y_pred):
    r"""Exact area under the ROC curve; tied scores count one half.

    .. math::
        \mathrm{AUC} = \frac{\sum_{i \in P} r_i - |P|(|P| + 1)/2}{|P|\,|N|}

    with :math:`r_i` the average rank of sample :math:`i`'s score among all scores.
    Equals :math:`P(s_+ > s_-) + \tfrac12 P(s_+ = s_-)` over positive/negative pairs.
    Raises ``ValueError`` when only one class is present (AUC is undefined), as scikit-learn.
    """
    y_true, y_pred = _flat_pair(y_true, y_pred)
    pos = y_true == 1
    n_pos = int(pos.sum())
    n_neg = int((y_true == 0).sum())
    if n_pos + n_neg != y_true.size:
        raise ValueError("roc_auc needs labels in {0, 1}")
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc is undefined when y_true has only one class "
                         f"({n_pos} positives, {n_neg} negatives)")
    if np.isnan(y_pred).any():
        raise ValueError("roc_auc: y_pred contains NaN")
    ranks = average_ranks(y_pred)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y_true, y_pred):
    """Mean binary cross-entropy with Keras's clipping (``backend.binary_crossentropy``)."""
    y_true, y_pred = _flat_pair(y_true, y_pred)
    return float(np.mean(binary_crossentropy_per_sample(y_true, y_pred)))


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Fraction of samples with ``(y_pred > threshold) == y_true``."""
    y_true, y_pred = _flat_pair(y_true, y_pred)
    return float(np.mean((y_pred > threshold) == (y_true == 1)))


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _flat_pair(y_true, y_pred)
    return float(np.mean((y_pred - y_true) ** 2))


# name -> (history key, function); keys follow Keras (the AUC class reports as 'auc')
_METRICS = {
    "auc": ("auc", roc_auc),
    "AUC": ("auc", roc_auc),
    "binary_crossentropy": ("binary_crossentropy", log_loss),
    "logloss": ("logloss", log_loss),
    "log_loss": ("log_loss", log_loss),
    "accuracy": ("accuracy", binary_accuracy),
    "acc": ("acc", binary_accuracy),
    "binary_accuracy": ("binary_accuracy", binary_accuracy),
    "mse": ("mse", mean_squared_error),
    "mean_squared_error": ("mean_squared_error", mean_squared_error),
}


def get(metric):
    """``(key, fn)`` for a metric name (see the module docstring) or a callable
    ``fn(y_true, y_pred) -> float`` (key: its ``__name__``)."""
    if isinstance(metric, str):
        if metric in _METRICS:
            return _METRICS[metric]
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(_METRICS)} or a callable "
                         "fn(y_true, y_pred) -> float")
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    raise TypeError(f"a metric must be a name or a callable, got {metric!r}")


def metric_logs(compiled_metrics, y, pred, prefix=""):
    """``{prefix + key: value}`` of each compiled ``(key, fn)``; a metric that is undefined on
    these labels (e.g. the AUC of one class) is reported as nan with a warning."""
    logs = {}
    for key, fn in compiled_metrics:
        try:
            logs[prefix + key] = float(fn(y, pred))
        except ValueError as exc:
            warnings.warn(f"metric {prefix + key} is undefined here ({exc}); reporting nan",
                          RuntimeWarning, stacklevel=4)
            logs[prefix + key] = float("nan")
    return logs
