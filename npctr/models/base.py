"""``Model``: a Layer that is a whole network, with Keras's workflow.

A model subclass implements, besides the Layer protocol:

* ``forward(x, training=False, backprop=None)``: ``x`` a dict of arrays keyed by
  ``feature_names``; returns predictions ``(batch_size, 1)`` (probabilities for
  ``task='binary'``, values for ``'regression'``); ``backward(d_output)`` sets ``grads``;
* for ``task='binary'`` (and ``'multiclass'``), ``forward_logits(x, training, backprop)``
  returning the link's input (``logit + global_bias``) and ``backward_logits(d_logits)``,
  so the trainer can use the loss gradient as each framework computes it;
* ``build(input_shape=None)``: every weight from the constructor arguments alone
  (``load_model`` calls it before loading the arrays);
* ``get_config()`` (JSON-able constructor arguments) and ``from_config(config)``;
* attributes ``task``, ``feature_names`` and ``seed``.

Register a subclass with ``@register_model`` so ``npctr.load_model`` can rebuild it.

``Model`` keeps the network: build, forward/backward, weights, config, files and
``predict``. The training workflow (``compile``, ``fit``, ``evaluate``, ``train_on_batch``,
``compute_loss``, ``loss_and_gradients``) is :class:`npctr.training.trainer.Trainer`, which
``Model`` inherits as ``keras.Model`` inherits Keras's ``Trainer``; see ``docs/training.md``.
"""
import math

import numpy as np

from ..layers.base import Layer
from ..registry import MODEL_REGISTRY, register_model  # noqa: F401  (npctr.models re-exports them)
from .._validation import check_finite_rows, as_feature_dict, as_array
from ..training import arguments
from ..training.trainer import Trainer, NonFiniteLossError  # noqa: F401


class Model(Trainer, Layer):
    """Base class of npctr's models (see the module docstring for the subclass contract)."""

    task = "binary"
    feature_names = ()
    #: bumped whenever the weights or moving statistics change (training steps, training-mode
    #: forwards, ``set_weights``); a ``Predictor`` re-derives its prepared weights when it moves
    _weights_version = 0

    @property
    def weights_version(self):
        """A counter that moves whenever the weights or moving statistics change."""
        return self._weights_version

    def weights_changed(self):
        """Tell holders of ``inference()`` that weight arrays were edited in place by hand."""
        self._weights_version += 1

    def set_weights(self, weights, *args, **kwargs):
        super().set_weights(weights, *args, **kwargs)
        self.weights_changed()

    # -- subclass contract --------------------------------------------------------------
    def forward_logits(self, x, training=False, backprop=None):
        raise NotImplementedError(f"{type(self).__name__} does not expose its logits")

    def backward_logits(self, d_logits):
        raise NotImplementedError(f"{type(self).__name__} does not expose its logits")

    @property
    def exposes_logits(self):
        """Whether the subclass implements ``forward_logits`` / ``backward_logits``."""
        return type(self).forward_logits is not Model.forward_logits

    def build(self, input_shape=None):
        super().build(input_shape)

    def auxiliary_loss(self):
        """The model's own loss terms of its last forward, weighted as the objective counts them
        (Keras's ``add_loss`` terms other than regularization, e.g. DIEN's ``alpha`` x auxiliary
        loss); 0.0 for a model without any. The trainer adds it to the data loss and the
        regularization."""
        return 0.0

    def add_auxiliary_grads(self):
        """Add the gradients of ``auxiliary_loss()`` to ``grads`` (after ``backward``; as
        ``add_regularization_grads`` does for the L2 terms). Nothing for a model without any."""

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
            a = as_array(x[n], f"{name}[{n!r}]")
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

    # -- inference ------------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose="auto", check_finite=True):
        """Predictions ``(n_samples, 1)`` in inference mode (no dropout, moving statistics,
        nothing cached), computed ``batch_size`` samples at a time. None: as one step for a
        model with a Predictor (``DIN``, ``DNNModel``, ``DIEN``: it bounds its memory by its own chunks;
        a step of 32 rows, Keras's default, would cost it 2x), else 32, as Keras.
        ``verbose`` is accepted for Keras compatibility (npctr prints nothing while
        predicting). ``x`` is validated once. NumPy only."""
        if batch_size is not None:
            batch_size = arguments.batch_size_of(batch_size)
        arguments.verbosity(verbose)
        pred = self._predict(x, batch_size, check_finite)
        return self._check_predictions(pred) if check_finite else pred

    def _predict(self, x, batch_size, check_finite):
        """Validate ``x`` and predict; a model with a faster exact path overrides this."""
        x, n = self._check_x(x, check_finite=check_finite)
        if n == 0:
            raise ValueError("x holds no samples")
        return self._predict_checked(x, n, batch_size)

    def _predict_checked(self, x, n, batch_size):
        """Predictions for ``x`` already validated by ``_check_x``: ``forward``, ``batch_size``
        rows at a time (None: 32, as Keras)."""
        batch_size = arguments.batch_size_of(batch_size)
        out = None
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            pred = self.forward({k: v[lo:hi] for k, v in x.items()}, training=False, backprop=False)
            if out is None:
                out = np.empty((n,) + pred.shape[1:], dtype=pred.dtype)
            out[lo:hi] = pred
        return out

    def _check_predictions(self, pred):
        """Predictions from finite inputs must be finite: NaN/inf means non-finite weights or
        moving statistics, or activations that overflowed."""
        # one value (a one-row request) in Python floats, else one reduction: a NaN or inf anywhere
        # makes the sum one
        if pred.size == 1:
            total = pred.item()
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                total = pred.sum()
        if math.isfinite(total):
            return pred
        finite = np.isfinite(pred)
        if finite.all():                # the sum overflowed
            return pred
        rows = np.flatnonzero(~finite.reshape(pred.shape[0], -1).all(axis=1))
        head = (f"the model's predictions are NaN or infinite for {rows.size} of {pred.shape[0]} rows "
                f"(first: row {rows[0]}) although the inputs are finite")
        weights = {**self.params, **self.state}
        bad = [k for k, v in weights.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
        if bad:            # the real cause, whatever the dtype: no overflow advice
            raise FloatingPointError(f"{head}: the weights or moving statistics hold NaN or infinite values "
                                     f"({bad[:5]}{' ...' if len(bad) > 5 else ''}); load or train the model again")
        advice = ("use dtype='float64' or check the weights" if pred.dtype != np.float64
                  else "check the weights and the scale of the inputs")
        raise FloatingPointError(
            f"{head}: its activations overflowed {pred.dtype} (largest finite value "
            f"{np.finfo(pred.dtype).max:.3g}); {advice}")

    def inference(self, **options):
        """The object a server holds to score requests; ``None`` if this model has no fast
        inference path (``predict`` then runs ``forward``). See ``npctr.serving.Predictor``."""
        return None

    def __getstate__(self):
        # the cached predictor holds threads and locks: it is rebuilt on demand, never copied
        state = self.__dict__.copy()
        state.pop("_default_predictor", None)
        return state

    def _predictor(self):
        """The predictor ``predict`` uses, created once (``inference()`` with default options)."""
        predictor = self.__dict__.get("_default_predictor", False)
        if predictor is False:
            predictor = self._default_predictor = self.inference()
        return predictor

    # -- Keras's model inspection ------------------------------------------------------------------
    @property
    def layers(self):
        """The model's top-level layers, in creation order (Keras's ``model.layers``)."""
        return list(self._layers.values())

    def count_params(self):
        """Number of weight values, trainable and not (moving statistics included), as Keras."""
        return (sum(int(np.size(v)) for v in self.params.values())
                + sum(int(np.size(v)) for v in self.state.values()))

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
