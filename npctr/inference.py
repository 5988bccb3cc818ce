r"""Fast inference for npctr's feature models (``DIN``, ``DNNModel``): the ``Predictor``.

``model.inference()`` returns a :class:`Predictor`, the object a server holds. It computes
exactly ``model.forward(x, training=False)`` (to round-off), but is built for speed:

* the input is validated once per request (``FeatureModel.check_features`` and one
  reduction per id array), never again per sub-layer;
* weights are prepared once: BatchNormalization folded into the preceding Dense, Dice's
  moving statistics folded into one scale and shift, the attention's first-layer kernel
  split into query, key and product blocks (the query term computed once per row);
* the attention MLP runs on the valid ``(row, t)`` history positions only, gathered
  into 2-D arrays (one GEMM per layer instead of one per row); padded positions get
  exactly the value the layer gives them;
* rows are processed in cache-sized chunks in reused per-thread workspace buffers, so
  a large batch neither allocates ``(B, T, H)`` temporaries nor page-faults them in;
* large batches are split over a thread pool (NumPy releases the GIL in BLAS and in
  ufuncs, so the element-wise work runs on every core);
* requests of at most 16 rows take ``npctr._small_batch`` instead: the fewest NumPy calls
  (a cached layout check, one id bounds check, Dice as a stacked GEMM, biases as kernel
  rows, no pool or chunks).

The derivations, with shapes, are in ``docs/inference.md``.

Weights: a Predictor reads the embedding tables by reference and keeps prepared
(folded) copies of the small MLP weights. It rebuilds them lazily when the model's
weights version changes, which ``fit``, ``train_on_batch``, ``set_weights`` on the
model and training-mode forwards do. After editing weight arrays in place by hand,
call ``model.weights_changed()`` (or ``predictor.refresh()``).
"""
import math
import os
import threading

import numpy as np

from .layers.activation import Activation, Dice, PReLU, ACTIVATIONS
from .layers.sequence import _SOFTMAX_PAD
from .layers.activation import softmax
from ._validation import check_positive_int
from ._blas import single_threaded_blas

#: attention positions (valid (row, t) pairs) per chunk: the (pairs, H) work arrays of one
#: chunk stay within a core's L2 cache (2048 x 80 float32 = 640 KiB); chosen by measurement
#: (docs/performance.md, "Predictor chunk size")
PAIRS_PER_CHUNK = 2048
#: rows per chunk of a model without attention (the DNN's (rows, 256) activations)
ROWS_PER_CHUNK = 512
#: requests of at most this many rows run as they are (OpenBLAS does not thread such GEMMs)
TINY_ROWS = 4


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- prepared activations (each applied in place to a 2-D (rows, H) array) -----------------
def _sigmoid_(z):
    """In-place ``1 / (1 + exp(-z))``: the same operations as ``npctr.layers.activation.sigmoid``
    (callers ignore the overflow of ``exp`` to inf for very negative ``z``: the result is 0)."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


class _Plain:
    """relu / sigmoid / tanh / linear / softmax by name."""

    def __init__(self, name):
        self.name = name

    def __call__(self, z, ws, t_index=None):
        if self.name == "relu":
            np.maximum(z, 0, out=z)
        elif self.name == "sigmoid":
            _sigmoid_(z)
        elif self.name == "tanh":
            np.tanh(z, out=z)
        elif self.name == "softmax":
            z[...] = softmax(z)
        return z


class _FoldedDice:
    r"""Dice at inference, in seven passes over ``z``:

    .. math:: y = x\,\Big(\alpha + \frac{1-\alpha}{1 + e^{\,x s' + c'}}\Big), \quad
              s' = -g, \quad c' = \mathrm{mean}\,g - \beta, \quad g = \gamma/\sqrt{\mathrm{var}+\epsilon}

    (moving statistics, :math:`\gamma = 1, \beta = 0` for DeepCTR's non-affine BN;
    :math:`x s' + c' = -\mathrm{BN}(x)`, so the fraction is :math:`(1-\alpha)\,p`).
    """

    def __init__(self, dice, dtype):
        bn = dice._layers["bn"]
        # BN(x) = gamma (x - mean) / sqrt(var + eps) + beta = x g - (mean g - beta)
        g = 1.0 / np.sqrt(bn._state["moving_variance"] + bn.epsilon)
        if bn.scale:                            # an affine Dice BN (conventions='torch')
            g = g * bn._params["gamma"]
        shift = bn._state["moving_mean"] * g
        if bn.center:
            shift = shift - bn._params["beta"]
        self.neg_scale = -g
        self.neg_shift = shift
        alpha = dice._params["dice_alpha"].astype(dtype)   # a float32 alpha is read in the layer's dtype
        self.alpha = alpha
        self.one_minus_alpha = 1.0 - alpha

    def __call__(self, z, ws, t_index=None):
        gate = ws.get("dice_gate", z.shape, z.dtype)
        np.multiply(z, self.neg_scale, out=gate)
        gate += self.neg_shift                       # -BN(x)
        np.exp(gate, out=gate)
        gate += 1.0
        np.divide(self.one_minus_alpha, gate, out=gate)   # (1 - alpha) p
        gate += self.alpha
        z *= gate
        return z


class _PReLU:
    """``max(z, 0) + alpha min(z, 0)``; in the attention alpha has one row per time step."""

    def __init__(self, prelu):
        self.alpha = prelu._params["alpha"].copy()

    def __call__(self, z, ws, t_index=None):
        alpha = self.alpha
        if alpha.ndim == 2:                 # (T, H): the attention's 3-D input
            alpha = alpha[t_index]
        negative = ws.get("prelu_negative", z.shape, z.dtype)
        np.minimum(z, 0, out=negative)
        negative *= alpha
        np.maximum(z, 0, out=z)
        z += negative
        return z


def _prepare_activation(layer):
    """The in-place activation for an activation layer, or None if it has no fast form."""
    if type(layer) is Activation:
        return _Plain(layer.activation)
    if type(layer) is Dice and layer.axis in (-1, layer._layers["bn"]._ndim - 1):
        return _FoldedDice(layer, layer.dtype)
    if type(layer) is PReLU and not layer.shared_axes:
        return _PReLU(layer)
    return None


class _Stack:
    """A DNN's layers as ``(kernel, bias, activation)`` with BatchNormalization folded in.

    .. math:: \\gamma\\,\\frac{xW + b - \\mu}{\\sqrt{\\sigma^2+\\epsilon}} + \\beta
              = x\\,(W \\odot g) + (b - \\mu) \\odot g + \\beta, \\quad g = \\gamma / \\sqrt{\\sigma^2+\\epsilon}
    """

    def __init__(self, dnn, prefix):
        self.prefix = prefix                  # workspace buffer names of this stack
        self.layers = []
        self.supported = True
        for i in range(len(dnn.hidden_units)):
            kernel, bias = dnn._params[f"kernel{i}"], dnn._params[f"bias{i}"]
            if dnn.use_bn:
                bn = dnn._layers[f"bn{i}"]
                g = 1.0 / np.sqrt(bn._state["moving_variance"] + bn.epsilon)
                if bn.scale:
                    g = g * bn._params["gamma"]
                bias = (bias - bn._state["moving_mean"]) * g
                if bn.center:
                    bias = bias + bn._params["beta"]
                kernel = kernel * g
            act = _prepare_activation(dnn._layers[f"activation{i}"])
            if act is None:
                self.supported = False
            self.layers.append((np.ascontiguousarray(kernel), np.array(bias), act))

    def run(self, a, ws, start=0, t_index=None, z0=None):
        """Layers ``start..`` on ``a`` (2-D); ``z0``: layer ``start``'s pre-activation, given."""
        for i in range(start, len(self.layers)):
            kernel, bias, act = self.layers[i]
            if i == start and z0 is not None:
                z = z0
            else:
                z = ws.get(f"{self.prefix}{i}", (a.shape[0], kernel.shape[1]), kernel.dtype)
                np.matmul(a, kernel, out=z)
                z += bias
            a = act(z, ws, t_index)
        return a


class _Workspace(threading.local):
    """Per-thread reusable buffers: ``get(name, shape)`` returns a view of a buffer that only grows."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, shape, dtype):
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1), dtype=dtype)
            self.buffers[name] = buf
        return buf[:size].reshape(shape)


class _Prepared:
    """Everything derived from the weights, built once per weights version."""

    def __init__(self, model):
        self.dtype = model.dtype
        self.tables = {name: model._layers[f"sparse_emb_{name}"]._params["embeddings"] for name in model._uses}
        self.dnn = _Stack(model._layers["dnn"], "dnn_z")
        self.out_kernel = model._layers["dense"]._params["kernel"]
        prediction = model._layers["prediction_layer"]
        self.global_bias = prediction._params.get("global_bias")
        self.link = prediction._link
        self.supported = self.dnn.supported
        self.attention = None
        if model.history_columns:
            att = model._layers["attention_sequence_pooling_layer"]
            lau = att._layers["local_att"]
            self.weight_normalization = att.weight_normalization
            self.att_stack = _Stack(lau._layers["dnn"], "att_z")
            self.supported &= self.att_stack.supported
            # the first linear map on u = [q, k, q-k, q*k]: kernel0 of the MLP, or the score
            # projection itself when the MLP has no hidden layer
            if lau.hidden_units:
                first_kernel, first_bias = self.att_stack.layers[0][:2]
            else:
                first_kernel, first_bias = lau._params["kernel"], lau._params["bias"]
            w_a, w_b, w_c, w_d = np.split(first_kernel, 4, axis=0)
            self.w_query = np.ascontiguousarray(w_a + w_c)     # (E, H1), applied once per row
            # [k, q*k] (V, 2E) @ [Wb - Wc; Wd] (2E, H1): one GEMM per chunk for both per-position terms
            self.w_key_product = np.ascontiguousarray(np.concatenate([w_b - w_c, w_d], axis=0))
            self.first_bias = first_bias
            self.has_hidden = bool(lau.hidden_units)
            self.score_kernel, self.score_bias = lau._params["kernel"], lau._params["bias"]
            self.attention = True
            # DIN's usual column order puts the query's fields side by side at the start of the
            # DNN input: then the concatenated query is a view of it (no copy)
            offsets, col = {}, 0
            for fc in model.sparse_columns:
                offsets[fc.name] = (col, col + fc.embedding_dim)
                col += fc.embedding_dim
            spans = [offsets[fc.name] for fc in model.query_columns]
            contiguous = all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            self.query_slice = slice(spans[0][0], spans[-1][1]) if contiguous else None
            self.query_spans = spans
        from ._small_batch import SmallPlan
        self.small = SmallPlan(model, self)

    def query(self, deep):
        """The concatenated query fields ``(b, E)``, read from the embedded DNN input."""
        if self.query_slice is not None:
            return deep[:, self.query_slice]
        return np.concatenate([deep[:, a:b] for a, b in self.query_spans], axis=1)


class Predictor:
    """Scores feature dicts with a ``DIN`` or ``DNNModel``: what ``model.predict`` uses.

    Parameters
    ----------
    model : FeatureModel
    threads : int, optional
        Worker threads for batches of several chunks (default: the usable cores).
        ``1`` computes in the calling thread only.
    chunk_rows : int, optional
        Rows per chunk (default: about ``PAIRS_PER_CHUNK`` history positions, or
        ``ROWS_PER_CHUNK`` rows without attention).

    ``predict(x)`` returns ``(n_samples, 1)`` in the model's dtype, equal to
    ``model.forward(x, training=False)`` to round-off. Thread-safe: concurrent calls
    use separate workspaces.
    """

    def __init__(self, model, threads=None, chunk_rows=None):
        self.model = model
        self.threads = _usable_cores() if threads is None else check_positive_int(threads, "threads")
        if chunk_rows is None:
            t = model.history_columns[0].maxlen if model.history_columns else 0
            chunk_rows = max(1, PAIRS_PER_CHUNK // t) if t else ROWS_PER_CHUNK
        self.chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
        self._lock = threading.Lock()
        self._workspace = _Workspace()
        self._pool = None
        self._prepared = None
        self._version = None

    def __getstate__(self):
        # threads, locks and buffers are per process: a copy makes its own
        return {"model": self.model, "threads": self.threads, "chunk_rows": self.chunk_rows}

    def __setstate__(self, state):
        self.__init__(state["model"], state["threads"], state["chunk_rows"])

    # -- weights ---------------------------------------------------------------------------
    def refresh(self):
        """Re-derive the prepared weights from the model's current arrays."""
        with self._lock:
            version = self.model._weights_version      # read first: a change during the build rebuilds again
            self._prepared = _Prepared(self.model)
            self._version = version

    def _weights(self):
        if self._version != self.model._weights_version or self._prepared is None:
            self.refresh()
        return self._prepared

    # -- public ----------------------------------------------------------------------------
    def predict(self, x, batch_size=None, return_attention=False):
        """Predictions ``(n_samples, 1)`` for the feature dict ``x`` (inference mode).

        ``batch_size`` bounds the rows handled per step (as ``Model.predict``); within a
        step rows are processed in chunks of ``chunk_rows`` on up to ``threads`` threads.
        ``return_attention=True`` (DIN) also returns the attention weights
        ``(n_samples, 1, T)``, what ``forward`` leaves in ``model.attention_scores``.
        """
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        if not return_attention:
            small = self._weights().small
            checked = small.check(x)            # None: not small, not plain, or an error to report
            if checked is not None:
                return small.run(checked[1], checked[0], self._workspace)
        n, f = self._checked(x)
        if not return_attention:
            return self._predict_features(f, n, batch_size or n)
        return self._predict_features(f, n, batch_size or n, scores_from=0)

    def _checked(self, x):
        n, f = self.model.check_features(x)
        if n == 0:
            raise ValueError("x holds no samples")
        self._check_ids(f)
        return n, f

    __call__ = predict

    def close(self):
        """Shut the worker threads down (they are also ended at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # -- internals -------------------------------------------------------------------------
    def _check_ids(self, f):
        for emb_name, names in self.model._uses.items():
            table = self.model._layers[f"sparse_emb_{emb_name}"]
            for name in names:
                table._check_ids(f[name], name)

    def _predict_features(self, f, n, batch_size, scores_from=None):
        """Predictions for checked features; with ``scores_from``, also the attention weights
        ``(n - scores_from, 1, T)`` of rows ``scores_from:`` (None without attention)."""
        prep = self._weights()
        if scores_from is None and prep.small.supported and min(n, batch_size) <= prep.small.max_rows:
            # each step as a request of its rows alone takes it: a row's score does not depend
            # on how many other rows the call holds
            if n <= batch_size:
                return prep.small.run(f, n, self._workspace)
            out = np.empty((n, 1), dtype=prep.dtype)
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                out[lo:hi] = prep.small.run({k: v[lo:hi] for k, v in f.items()}, hi - lo, self._workspace)
            return out
        out = np.empty((n, 1), dtype=prep.dtype)
        scores = None
        if scores_from is not None and prep.attention:
            scores = np.empty((n - scores_from, 1, self.model.history_columns[0].maxlen), dtype=prep.dtype)
        if not prep.supported:          # an activation class with no prepared form
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                out[lo:hi] = self.model.forward({k: v[lo:hi] for k, v in f.items()}, training=False,
                                                backprop=False)
                if scores is not None and hi > scores_from:
                    scores[max(lo, scores_from) - scores_from:hi - scores_from] = \
                        self.model.attention_scores[max(lo, scores_from) - lo:]
            return out if scores_from is None else (out, scores)
        bounds = [(lo, min(lo + self.chunk_rows, n, (lo // batch_size + 1) * batch_size))
                  for lo in self._chunk_starts(n, batch_size)]

        def run(bound):
            lo, hi = bound
            keep = scores is not None and lo >= scores_from
            self._chunk(prep, f, lo, hi, out, scores[lo - scores_from:hi - scores_from, 0] if keep else None)

        if n <= TINY_ROWS:              # GEMMs too small for OpenBLAS to thread: nothing to set
            for b in bounds:
                run(b)
        else:
            with single_threaded_blas():    # parallel over chunks, not inside each GEMM
                if len(bounds) == 1 or self.threads == 1:
                    for b in bounds:
                        run(b)
                else:
                    for _ in self._executor().map(run, bounds):
                        pass
        return out if scores_from is None else (out, scores)

    def _chunk_starts(self, n, batch_size):
        for step in range(0, n, batch_size):
            yield from range(step, min(step + batch_size, n), self.chunk_rows)

    def _executor(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="npctr-predict")
        return self._pool

    def _chunk(self, prep, f, lo, hi, out, scores=None):
        """Rows ``lo:hi``: embeddings, pooling, attention, DNN, output; writes ``out[lo:hi]``
        (and the attention weights into ``scores`` ``(hi - lo, T)`` if given)."""
        with np.errstate(over="ignore"):    # exp(-x) -> inf in a sigmoid is exact (gives 0)
            self._chunk_rows(prep, f, lo, hi, out, scores)

    def _chunk_rows(self, prep, f, lo, hi, out, scores):
        model, ws, dtype = self.model, self._workspace, prep.dtype
        b = hi - lo
        deep = ws.get("deep", (b, model._layers["dnn"]._input_dim), dtype)
        col = 0
        for fc in model.sparse_columns:
            e = fc.embedding_dim
            prep.tables[fc.embedding_name].take(f[fc.name][lo:hi, 0], axis=0, out=deep[:, col:col + e],
                                                mode="clip")       # ids checked once, in predict
            col += e
        for fc in model.pooled_columns:
            e = fc.embedding_dim
            deep[:, col:col + e] = self._pool_sequence(prep, model, fc, f, lo, hi)
            col += e
        if prep.attention:
            e = sum(c.embedding_dim for c in model.query_columns)
            self._attention(prep, model, f, lo, hi, deep, deep[:, col:col + e], ws, scores)
            col += e
        for fc in model.dense_columns:
            deep[:, col:col + fc.dimension] = f[fc.name][lo:hi]
            col += fc.dimension
        h = prep.dnn.run(deep, ws)
        logit = out[lo:hi]
        np.matmul(h, prep.out_kernel, out=logit)
        if prep.global_bias is not None:
            logit += prep.global_bias
        if prep.link == "sigmoid":
            _sigmoid_(logit)

    @staticmethod
    def _pool_sequence(prep, model, fc, f, lo, hi):
        """``SequencePoolingLayer`` (sum / mean / max over valid positions) for rows ``lo:hi``."""
        ids = f[fc.name][lo:hi]
        x = prep.tables[fc.embedding_name][ids]                         # (b, T, E)
        if fc.length_name is None:
            valid = ids != 0
            length = valid.sum(axis=1, keepdims=True)
        else:
            length = f[fc.length_name][lo:hi]
            valid = np.arange(ids.shape[1]) < length
        m = valid[:, :, None].astype(prep.dtype)
        if fc.combiner == "max":
            return (x - (1.0 - m) * 1e9).max(axis=1)
        y = np.sum(x * m, axis=1)
        if fc.combiner == "mean":
            y = y * (1.0 / (length.astype(prep.dtype) + prep.dtype.type(1e-8)))
        return y

    @staticmethod
    def _attention(prep, model, f, lo, hi, deep, out, ws, scores=None):
        """DIN's attention pooling for rows ``lo:hi`` into ``out`` ``(b, E)``, on valid positions only."""
        dtype = prep.dtype
        hist = [f[fc.name][lo:hi] for fc in model.history_columns]
        b, t = hist[0].shape
        e = out.shape[1]
        keys = ws.get("keys", (b, t, e), dtype)                          # (b, T, E)
        col = 0
        for fc, ids in zip(model.history_columns, hist):
            prep.tables[fc.embedding_name].take(ids, axis=0, out=keys[:, :, col:col + fc.embedding_dim],
                                                mode="clip")
            col += fc.embedding_dim
        query = prep.query(deep)                                         # (b, E)
        valid = model.history_mask(f, slice(lo, hi))
        flat = np.flatnonzero(valid)                                     # valid (row, t), row-major
        v = flat.size
        rows, ts = (None, flat) if b == 1 else np.divmod(flat, t)      # one row: no row indices needed
        # first layer: q (Wa + Wc) + b once per row; [k, q*k] [Wb - Wc; Wd] per valid position
        q_part = query @ prep.w_query
        q_part += prep.first_bias                                        # (b, H1)
        kp = ws.get("att_key_product", (v, 2 * e), dtype)                # [k, q*k], (V, 2E)
        keys.reshape(b * t, e).take(flat, axis=0, out=kp[:, :e], mode="clip")
        np.multiply(kp[:, :e], query if b == 1 else query[rows], out=kp[:, e:])
        z = ws.get("att_z0", (v, q_part.shape[1]), dtype)
        np.matmul(kp, prep.w_key_product, out=z)
        z += q_part if b == 1 else q_part[rows]
        if prep.has_hidden:
            first_act = prep.att_stack.layers[0][2]
            h = prep.att_stack.run(first_act(z, ws, ts), ws, start=1, t_index=ts)
            s_v = h @ prep.score_kernel
            s_v += prep.score_bias
        else:
            s_v = z                                                      # (V, 1) already the score
        if b == 1 and not prep.weight_normalization and scores is None:
            np.matmul(s_v[:, 0], kp[:, :e], out=out[0])                  # padded positions weigh 0
            return
        # scores at every (row, t), padded positions as the layer defines them
        if prep.weight_normalization:
            s = np.full((b, t), _SOFTMAX_PAD, dtype=dtype)
            s.reshape(-1)[flat] = s_v[:, 0]
            w = softmax(s)                                               # all-padding row: 1/T each
        else:
            w = np.zeros((b, t), dtype=dtype)
            w.reshape(-1)[flat] = s_v[:, 0]
        np.matmul(w[:, None, :], keys, out=out[:, None, :])
        if scores is not None:
            scores[...] = w
