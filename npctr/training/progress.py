"""Keras-like progress output for ``fit``.

``verbose=0``: silent. ``verbose=1``: ``Epoch i/n``, then, when the stream is a
terminal, a progress bar redrawn within the epoch, and a final line per epoch:

    Epoch 1/3
    40/40 [==============================] - 2s 51ms/step - loss: 0.6012 - auc: 0.7011 - val_loss: 0.5520 - val_auc: 0.7702

``verbose=2``: ``Epoch i/n`` and one summary line per epoch, never a bar.
"""
import sys
import time


def format_logs(logs):
    """`` - name: value`` pairs as Keras prints them (``%.4f``, or ``%.4e`` when tiny)."""
    parts = []
    for k, v in logs.items():
        v = float(v)
        parts.append(f" - {k}: {v:.4f}" if abs(v) > 1e-3 or v == 0 else f" - {k}: {v:.4e}")
    return "".join(parts)


def _format_time(seconds, steps):
    per = seconds / max(steps, 1)
    per_str = f"{per:.0f}s/step" if per >= 1 else (f"{per * 1e3:.0f}ms/step" if per >= 1e-3
                                                  else f"{per * 1e6:.0f}us/step")
    return f"{seconds:.0f}s {per_str}"


class ProgressBar:
    """Progress of one ``fit``; ``stream`` defaults to ``sys.stdout`` at construction."""

    width = 30

    def __init__(self, epochs, steps, verbose=1, stream=None, min_interval=0.1):
        self.epochs = epochs
        self.steps = steps
        self.verbose = int(verbose)
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = self.verbose == 1 and bool(isatty and isatty())
        self.min_interval = min_interval
        self._start = None
        self._last_draw = 0.0

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def epoch_begin(self, epoch):
        self._start = time.perf_counter()
        self._last_draw = 0.0
        if self.verbose:
            self._write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def _bar(self, done):
        filled = int(self.width * done / max(self.steps, 1))
        if done < self.steps:
            return "[" + "=" * max(filled - 1, 0) + ">" + "." * (self.width - max(filled, 1)) + "]"
        return "[" + "=" * self.width + "]"

    def batch_end(self, done, logs):
        """``done`` batches finished in this epoch; ``logs`` the running means."""
        if not self.dynamic:
            return
        now = time.perf_counter()
        if done < self.steps and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        n = len(str(self.steps))
        elapsed = now - self._start
        eta = elapsed / done * (self.steps - done)
        self._write(f"\r{done:{n}d}/{self.steps} {self._bar(done)} - ETA: {eta:.0f}s"
                    f"{format_logs(logs)}\033[K")

    def epoch_end(self, logs):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self._start
        bar = f" {self._bar(self.steps)}" if self.verbose == 1 else ""
        prefix = "\r" if self.dynamic else ""
        self._write(f"{prefix}{self.steps}/{self.steps}{bar} - {_format_time(elapsed, self.steps)}"
                    f"{format_logs(logs)}" + ("\033[K" if self.dynamic else "") + "\n")
