r"""Fast inference for npctr's feature models (``DIN``, ``DNNModel``; ``DIEN`` through
:mod:`npctr.serving.dien`): the ``Predictor``.

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
import threading

import numpy as np

from ..ops.attention import attention_weights
from ..ops.blocks import serial, usable_cores
from .._blas import single_threaded_blas
from .._validation import check_positive_int
from .prepared import ROW_GROUP, TINY_ROWS, PreparedWeights, Workspace, pool_sequence, take_rows
from .small_batch import SmallPlan

#: history positions per chunk (about half of them valid): few enough that the buffers of a
#: chunk stay small, many enough that each NumPy call has work (the per-call cost, paid holding
#: the GIL, is what limits a second thread); chosen by measurement (docs/performance.md)
PAIRS_PER_CHUNK = 8192
#: rows per chunk of a model without attention (the DNN's (rows, 256) activations)
ROWS_PER_CHUNK = 512
#: a step is split over the threads only into chunks of at least this many rows
MIN_SHARE_ROWS = 16


class Predictor:
    """Scores feature dicts with a ``DIN`` or ``DNNModel`` (a ``DIEN``: the subclass
    :class:`~npctr.serving.dien.DIENPredictor`): what ``model.predict`` uses.

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

    #: a step is split over the cores only into chunks of at least this many rows
    min_share_rows = MIN_SHARE_ROWS

    def __init__(self, model, threads=None, chunk_rows=None):
        self.model = model
        self.threads = usable_cores() if threads is None else check_positive_int(threads, "threads")
        if chunk_rows is None:
            t = model.history_columns[0].maxlen if model.history_columns else 0
            chunk_rows = max(1, PAIRS_PER_CHUNK // t) if t else ROWS_PER_CHUNK
        self.chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
        self._cores = usable_cores()
        self._lock = threading.Lock()
        self._workspace = Workspace()
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
            version = self.model.weights_version      # read first: a change during the build rebuilds again
            self._prepared = self._prepare()
            self._version = version

    def _prepare(self):
        """The prepared weights of the model's current arrays, with their small-batch plan."""
        prepared = PreparedWeights(self.model)
        prepared.small = SmallPlan(self.model, prepared)
        return prepared

    def _weights(self):
        if self._version != self.model.weights_version or self._prepared is None:
            self.refresh()
        return self._prepared

    # -- public ----------------------------------------------------------------------------
    def predict(self, x, batch_size=None, return_attention=False, check_finite=True):
        """Predictions ``(n_samples, 1)`` for the feature dict ``x`` (inference mode).

        ``x`` is validated once (``model.check_features``; ``check_finite=False`` skips the
        NaN/inf check of dense features). ``batch_size`` bounds the rows handled per step
        (as ``Model.predict``); within a step rows are processed in chunks of ``chunk_rows``
        on up to ``threads`` threads. ``return_attention=True`` (DIN, DIEN) also returns the
        attention weights ``(n_samples, 1, T)``, what ``forward`` leaves in
        ``model.attention_scores``.
        """
        if batch_size is not None and not (type(batch_size) is int and batch_size > 0):
            batch_size = check_positive_int(batch_size, "batch_size")
        prep = self._prepared
        if self._version != self.model.weights_version or prep is None:
            prep = self._weights()
        small = prep.small
        checked = small.check(x, check_finite)    # None: not small, not plain, or an error to report
        if checked is not None and (batch_size is None or checked[0] <= batch_size):
            n, f = checked
            run = small.run_with_scores if return_attention else small.run
            return run(f, n, self._workspace)
        n, f = self.model.check_features(x, check_finite=check_finite)
        if n == 0:
            raise ValueError("x holds no samples")
        return self.predict_checked(f, n, batch_size or n, return_attention)

    __call__ = predict

    def close(self):
        """Shut the worker threads down (they are also ended at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def predict_checked(self, f, n, batch_size, return_attention=False):
        """``predict`` for features ``f`` of ``n`` rows that ``model.check_features`` returned
        (what ``model.evaluate`` uses after validating ``x`` with ``y``): no validation here.
        ``batch_size`` None: one step."""
        batch_size = batch_size or n
        prep = self._weights()
        f = self.model.transform_dense(f)
        with_scores = return_attention and prep.attention
        out = np.empty((n, 1), dtype=prep.dtype)
        scores = np.empty((n, 1, self.model.history_columns[0].maxlen), dtype=prep.dtype) if with_scores else None
        if prep.small.supported and min(n, batch_size) <= prep.small.max_rows:
            # each step as a request of its rows alone takes it: a row's score does not depend
            # on how many other rows the call holds
            run = prep.small.run_with_scores if return_attention else prep.small.run
            if n <= batch_size:
                return run(f, n, self._workspace)
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                step = run({k: v[lo:hi] for k, v in f.items()}, hi - lo, self._workspace)
                if return_attention:
                    step, step_scores = step
                    if scores is not None:
                        scores[lo:hi] = step_scores
                out[lo:hi] = step
            return (out, scores) if return_attention else out
        if not prep.supported:          # an activation class with no prepared form
            self._forward_steps(f, n, batch_size, out, scores)
            return (out, scores) if return_attention else out
        bounds = list(self._chunks(n, batch_size))

        def run(bound):
            lo, hi = bound
            self._chunk(prep, f, lo, hi, out, None if scores is None else scores[lo:hi, 0])

        if n <= TINY_ROWS:              # GEMMs too small for OpenBLAS to thread: nothing to set
            for b in bounds:
                run(b)
        else:
            with single_threaded_blas():    # parallel over chunks, not inside each GEMM
                if len(bounds) == 1 or self.threads == 1:
                    for b in bounds:
                        run(b)
                else:
                    self._run_shared(run, bounds)
        return (out, scores) if return_attention else out

    def _run_shared(self, run, bounds):
        """``run`` every bound on the calling thread and ``threads - 1`` pool workers, each taking
        the next chunk when it is free. The caller works too, rather than waiting: its caches
        are warm and one fewer thread has to be woken."""
        chunks = iter(bounds)
        take = threading.Lock()

        def work():
            while True:
                with take:
                    bound = next(chunks, None)
                if bound is None:
                    return
                run(bound)

        helpers = [self._executor().submit(work) for _ in range(min(self.threads, len(bounds)) - 1)]
        try:
            work()
        finally:
            for helper in helpers:
                helper.result()

    # -- internals -------------------------------------------------------------------------
    def _forward_steps(self, f, n, batch_size, out, scores):
        """The layers' own inference forward, chunk by chunk (models with an activation that has
        no prepared form)."""
        for lo, hi in self._chunks(n, batch_size):
            out[lo:hi] = self.model.forward({k: v[lo:hi] for k, v in f.items()}, training=False,
                                            backprop=False)
            if scores is not None:
                scores[lo:hi] = self.model.attention_scores

    def _chunks(self, n, batch_size):
        """``(lo, hi)`` of each chunk: every step of ``batch_size`` rows cut into equal chunks of at
        most ``chunk_rows`` rows, their number a multiple of the usable cores (when the chunks keep
        at least ``min_share_rows`` rows), so that each core gets the same work. The plan does not
        depend on ``threads``: BLAS may round a row differently at another place in a GEMM, and
        results must not depend on the thread count."""
        share = self._cores
        for step in range(0, n, batch_size):
            rows = min(batch_size, n - step)
            count = -(-rows // self.chunk_rows)
            if share > 1 and rows >= share * self.min_share_rows:
                count = -(-count // share) * share
            size = -(-rows // count)
            for lo in range(step, step + rows, size):
                yield lo, min(lo + size, step + rows)

    def _executor(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max(1, self.threads - 1), thread_name_prefix="npctr-predict")
        return self._pool

    def _chunk(self, prep, f, lo, hi, out, scores=None):
        """Rows ``lo:hi``: embeddings, pooling, attention, DNN, output; writes ``out[lo:hi]``
        (and the attention weights into ``scores`` ``(hi - lo, T)`` if given)."""
        # exp(-x) -> inf in a sigmoid is exact (gives 0); the chunks are the parallel work, so the
        # ops inside them stay on their thread (npctr.ops.blocks)
        with np.errstate(over="ignore"), serial():
            self._chunk_rows(prep, f, lo, hi, out, scores)

    def _chunk_rows(self, prep, f, lo, hi, out, scores):
        model, ws, dtype = self.model, self._workspace, prep.dtype
        b = hi - lo
        if prep.dense_input is not None:                 # the DNN's input is one dense feature:
            x = f[prep.dense_input]                      # a view of it, when it is in the dtype
            if x.dtype == dtype and x.ndim == 2 and x.strides[1] == x.itemsize:
                self._dnn_out(prep, x[lo:hi], out[lo:hi])
                return
        deep = ws.get("deep", (b, model.get_layer("dnn").input_dim), dtype)
        col = 0
        for fc in model.sparse_columns:
            e = fc.embedding_dim
            take_rows(prep.tables[fc.embedding_name], f[fc.name][lo:hi, 0], deep[:, col:col + e], ws)
            col += e                                                     # ids checked once, in predict
        for fc in model.pooled_columns:
            e = fc.embedding_dim
            deep[:, col:col + e] = pool_sequence(prep.tables[fc.embedding_name], fc, f, lo, hi)
            col += e
        if prep.attention:
            e = sum(c.embedding_dim for c in model.query_columns)
            self._attention(prep, f, lo, hi, deep, deep[:, col:col + e], scores)
            col += e
        for fc in model.dense_columns:
            deep[:, col:col + fc.dimension] = f[fc.name][lo:hi]
            col += fc.dimension
        self._dnn_out(prep, deep, out[lo:hi])

    def _dnn_out(self, prep, deep, logit):
        """The DNN, the output Dense and the link on ``deep`` ``(b, input_dim)`` into ``logit`` ``(b, 1)``."""
        prep.output(deep, logit, self._workspace)

    def _attention(self, prep, f, lo, hi, deep, out, scores=None):
        """DIN's attention pooling for rows ``lo:hi`` into ``out`` ``(b, E)``, on valid positions only.

        Every per-position array is contiguous ``(V', width)``, ``V'`` the valid positions rounded
        up to a multiple of ``ROW_GROUP`` (the extra rows repeat position 0 and are dropped with
        their scores): strided column slices cost NumPy a loop set-up per row."""
        model, ws, dtype = self.model, self._workspace, prep.dtype
        b, t = f[model.history_columns[0].name][lo:hi].shape
        e = out.shape[1]
        keys = ws.get("keys", (b * t, e), dtype)                         # every position's key, (b T, E)
        col = 0
        for fc in model.history_columns:
            ids = f[fc.name][lo:hi].reshape(-1)
            take_rows(prep.tables[fc.embedding_name], ids, keys[:, col:col + fc.embedding_dim], ws)
            col += fc.embedding_dim
        valid = model.history_mask(f, slice(lo, hi))                     # (b, T)
        v = np.count_nonzero(valid)
        vp = -(-v // ROW_GROUP) * ROW_GROUP
        flat = ws.get("att_flat", (vp,), np.intp)                        # valid (row, t), row-major
        flat[:v] = np.flatnonzero(valid)
        flat[v:] = 0
        rows, ts = np.divmod(flat, t)
        k_v = keys.take(flat, axis=0, out=ws.get("att_keys", (vp, e), dtype), mode="clip")
        s_v = prep.att.position_scores(k_v, prep.query(deep), rows, ts, ws)           # (V', 1)
        # scores at every (row, t), then masked as the layer masks them
        s = np.zeros((b, t), dtype=dtype)
        s.reshape(-1)[flat[:v]] = s_v[:v, 0]
        w = attention_weights(s, valid, prep.weight_normalization)      # all-padding row: 1/T each (softmax)
        np.matmul(w[:, None, :], keys.reshape(b, t, e), out=out[:, None, :])
        if scores is not None:
            scores[...] = w
