"""What makes a training step all-or-nothing.

A step changes three kinds of state: the moving statistics (and dropout generators) in the
training-mode forward, the weights and the optimizer's slots in ``apply_gradients``. The
trainer makes the step atomic without copying any weight:

* the forward's changes are small (``Layer.snapshot()``: a few vectors of moving statistics
  and the generators' states), so they are snapshotted before the step and restored if
  anything in it raises;
* nothing is written to the weights or the slots until the gradients are known to be
  complete, of the right shapes and finite (``check_update``), so npctr's optimizers then
  cannot fail half-way;
* a Ctrl-C (``SIGINT``) arriving while the update is being written is held back until the
  update is complete (``StepGuard``), then raised: the step has then happened entirely.
  Earlier in the step it interrupts at once and the step is rolled back.
"""
import signal
import threading

import numpy as np

from ..sparse import RowGrad


def check_update(params, grads):
    """Raise before any write if ``grads`` cannot update ``params``: a missing gradient, a
    shape that differs from its parameter's, or a NaN / infinite entry.

    Returns the name of the first non-finite gradient, or None (the caller raises its own
    error type with the step's position).
    """
    missing = [k for k in params if k not in grads]
    if missing:
        raise ValueError(f"no gradient for parameters {missing}")
    for key, param in params.items():
        grad = grads[key]
        shape = tuple(grad.dense_shape) if isinstance(grad, RowGrad) else np.shape(grad)
        if shape != param.shape:
            raise ValueError(f"the gradient of {key!r} has shape {shape}, the parameter {param.shape}")
    for key in params:
        grad = grads[key]
        values = grad.values if isinstance(grad, RowGrad) else grad
        if not np.isfinite(values).all():
            return key
    return None


class StepGuard:
    """Context of one training step: ``SIGINT`` raises ``KeyboardInterrupt`` at once until
    ``commit()`` is called, and is held back from then to the end of the block (then raised).

    Only in the main thread and only when Python's default handler is installed (a program
    with its own SIGINT handler keeps it untouched, and interrupts are then not deferred).
    """

    def __enter__(self):
        self.committing = False
        self.received = False
        self._previous = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame):
        if not self.committing:
            raise KeyboardInterrupt
        self.received = True

    def commit(self):
        """From here on the step runs to its end."""
        self.committing = True

    def __exit__(self, exc_type, exc, tb):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.received and exc_type is None:
            raise KeyboardInterrupt
        return False
