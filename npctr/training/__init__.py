"""Training without autograd: losses, optimizers, metrics, callbacks, progress output.

``npctr.models.Model`` (``compile`` / ``fit`` / ``evaluate`` / ``predict``) uses these;
the math is in ``docs/training.md``.
"""
from . import losses, optimizers, metrics, callbacks
from .optimizers import Optimizer, SGD, Adagrad, Adam, RMSprop, Ftrl, AdamW, LazyAdam
from .losses import Loss, BinaryCrossentropy, MeanSquaredError, CategoricalCrossentropy
from .metrics import roc_auc, log_loss, binary_accuracy, mean_squared_error
from .callbacks import Callback, History, EarlyStopping, ModelCheckpoint

__all__ = ["losses", "optimizers", "metrics", "callbacks", "Optimizer", "SGD", "Adagrad", "Adam",
           "RMSprop", "Ftrl", "AdamW", "LazyAdam",
           "Loss", "BinaryCrossentropy", "MeanSquaredError", "CategoricalCrossentropy", "roc_auc",
           "log_loss", "binary_accuracy", "mean_squared_error", "Callback", "History",
           "EarlyStopping", "ModelCheckpoint"]
