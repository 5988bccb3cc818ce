r"""The Predictor's small-batch path: requests of at most ``SMALL_ROWS`` rows.

At batch 1 a DIN forward is a few microseconds of arithmetic and ~100 us of per-call
Python/NumPy dispatch (docs/performance.md), so this path is written to make as few NumPy
calls as possible (docs/inference.md, section 9):

* the request is validated by one pass over a prepared feature spec (plain attribute
  reads) and **one** bounds check over every id array (:meth:`SmallPlan.check`); anything
  unusual (lists, a ``transform_fn``, a wrong shape, a bad id) goes to the full check,
  which raises the layers' own errors;
* a Dense layer followed by Dice is one GEMM with a widened kernel ``[W, -W g]`` and bias
  ``[b, -b g + mu g - beta]``: the second half is Dice's gate argument ``-BN(xW + b)``;
* history positions are found with one ``np.nonzero`` on the ids, only the valid keys are
  gathered, and the attention pooling of ``b`` rows is one ``(b, V) @ (V, E)`` GEMM with
  the scores scattered into a row-indicator matrix;
* buffers are per-thread and preallocated at the largest small size (slices, no ``get``);
  no thread pool, no chunking, and no BLAS-thread switching up to ``TINY_ROWS`` rows
  (GEMMs that small do not thread; above it OpenBLAS is set to one thread, as in the
  general path: measured 2x faster at 12-16 rows).

Requests with attention weights asked for, ``weight_normalization`` or an activation
without a prepared form take the general path (``Predictor.predict_checked``).
"""
import math
import threading

import numpy as np

from ..feature_column import DenseFeat, VarLenSparseFeat
from ..ops.activations import dice_gate_from_half_bn_, sigmoid_of_negated_
from .._blas import single_threaded_blas
from .prepared import TINY_ROWS, FoldedDice, pool_sequence

#: requests of at most this many rows take the small-batch path (measured: docs/performance.md)
SMALL_ROWS = 16
#: the largest query-to-kernel map (elements) kept for one-row requests (float32: 1 MiB)
QUERY_MAP_LIMIT = 2 ** 18
_NO_LIMIT = np.uint64(2 ** 63)         # lengths: only >= 0 (a negative one is >= 2**63 as uint64)


class _Layer:
    """One prepared Dense (+ activation) of the small path, as a stack of ``m`` kernels
    ``(m, K, H)``: ``m = 2`` for Dice (``[W, W s']``: the second output is half Dice's
    normalized input, ``BN(a W + b) / 2``, bias ``b s' + c'``, for the tanh form of its gate),
    ``m = 1`` otherwise. Each of the ``m`` outputs ``(rows, H)`` is contiguous, so the
    element-wise passes run on plain arrays.

    ``ones_out``: one more unit whose output is exactly 1 (kernel column 0, bias 1; for Dice
    gate bias ``+inf`` and alpha 0, so the gate is ``1/2 + tanh(inf) / 2 = 1``; relu keeps 1).
    ``ones_in``: the input's last column is that 1, so the bias is the kernel's last row
    (no bias pass)."""

    def __init__(self, kernel, bias, act, ones_in=False, ones_out=False):
        self.dice = isinstance(act, FoldedDice)
        self.relu = getattr(act, "name", None) == "relu"
        if self.dice:
            kernel = np.stack([kernel, kernel * act.half_scale])
            bias = np.stack([bias, bias * act.half_scale + act.half_shift])[:, None, :]
            alpha = act.alpha
        if ones_out:
            assert self.dice or self.relu
            kernel = np.concatenate([kernel, np.zeros(kernel.shape[:-1] + (1,), kernel.dtype)], axis=-1)
            one = np.array([1.0, np.inf] if self.dice else [1.0], bias.dtype).reshape(bias.shape[:-1] + (1,))
            bias = np.concatenate([bias, one], axis=-1)
            if self.dice:
                alpha = np.append(alpha, 0).astype(alpha.dtype)
        if self.dice:       # (1 + alpha) / 2 and (1 - alpha) / 2, in alpha's dtype
            self.half_one_plus_alpha, self.half_one_minus_alpha = (1.0 + alpha) * 0.5, (1.0 - alpha) * 0.5
        if ones_in:
            kernel, bias = np.concatenate([kernel, bias.reshape(kernel.shape[:-2] + (1, -1))], axis=-2), None
        self.kernel = np.ascontiguousarray(kernel)          # (2, K, H) for Dice, else (K, H)
        self.bias = None if bias is None else np.ascontiguousarray(bias)   # (2, 1, H) for Dice, else (H,)
        self.act = act

    def buffer(self, rows, dtype):
        return np.empty(self.kernel.shape[:-2] + (rows, self.kernel.shape[-1]), dtype)

    def activate(self, z, ws, t_index=None):
        """The activation of the pre-activation ``z`` (``(rows, H)``, for Dice stacked
        ``(2, rows, H)``); returns the ``(rows, H)`` output (``z`` or ``z[0]``, overwritten)."""
        if self.relu:
            return np.maximum(z, 0, out=z)
        if not self.dice:
            return self.act(z, ws, t_index)
        x, gate = z[0], z[1]                                  # gate: BN(x) / 2
        x *= dice_gate_from_half_bn_(gate, self.half_one_plus_alpha, self.half_one_minus_alpha)
        return x

    def run(self, a, buf, ws, t_index=None):
        """The layer on ``a`` ``(rows, K)``, in the buffer ``buf`` ``(m, >= rows, H)``."""
        z = buf[:, :a.shape[0]] if self.dice else buf[:a.shape[0]]
        np.matmul(a, self.kernel, out=z)
        if self.bias is not None:
            z += self.bias
        return self.activate(z, ws, t_index)


class _Buffers(threading.local):
    def __init__(self):
        self.arrays = None


class SmallRequests:
    """The cheapest complete check of a small request: a feature spec read once per weights
    version, each distinct layout (types, shapes, dtypes) checked once and remembered, the
    ids bounds-checked with one comparison per call."""

    def __init__(self, model, max_rows):
        self.max_rows = max_rows
        self.supported = True
        self._spec(model)

    def _spec(self, model):
        """Per feature ``(name, kind, width, limit)``: kind 'dense', 'seq' (ids (b, T)),
        'id' (ids (b,) or (b, 1)) or 'len'; ``limit`` the exclusive id bound (uint64)."""
        limits = {}
        for emb_name, names in model.table_features.items():
            vocab = model.get_layer(f"sparse_emb_{emb_name}").input_dim
            for n in names:
                limits[n] = vocab
        self.spec = []
        for n in model.feature_names:
            fc = model.input_features[n]
            if isinstance(fc, DenseFeat):
                if fc.transform is not None:        # its output is checked in check_features
                    self.supported = False
                self.spec.append((n, "dense", fc.dimension, None))
            elif isinstance(fc, VarLenSparseFeat) and n == fc.name:
                self.spec.append((n, "seq", fc.maxlen, limits[n]))
            elif isinstance(fc, VarLenSparseFeat):
                self.spec.append((n, "len", 1, None))
            else:
                self.spec.append((n, "id", 1, limits[n]))
        self.order = [name for name, _, _, _ in self.spec]
        self.id_positions = [i for i, (_, kind, _, _) in enumerate(self.spec) if kind != "dense"]
        self.dense_positions = [i for i, (_, kind, _, _) in enumerate(self.spec) if kind == "dense"]
        self._limits = {}       # batch size -> the id bounds, laid out as the concatenated ids
        self._layouts = {}      # checked layouts -> batch size

    def check(self, x, check_finite=True):
        """``(n, features)`` for a well-formed request of 1..SMALL_ROWS rows, else None (then the
        full check runs and raises the model's error, or accepts an unusual valid input).

        The layout (types, shapes, dtypes) is checked once per distinct layout and remembered;
        the ids are bounds-checked, and float dense features checked finite (``check_finite``),
        on every call."""
        if type(x) is not dict or len(x) != len(self.spec):
            return None
        try:
            arrays = [x[name] for name in self.order]
            layout = tuple([(type(a), a.shape, a.dtype) for a in arrays])
        except (KeyError, AttributeError):
            return None
        n = self._layouts.get(layout)
        if n is None:
            n = self._check_layout(arrays)
            if n is None:
                return None
            if len(self._layouts) < 256:
                self._layouts[layout] = n
        ids = [arrays[i] for i in self.id_positions]
        # viewed as uint64 a negative id (or length) exceeds every bound: one comparison checks both
        if ids and not np.less(np.concatenate(ids, axis=None, dtype=np.uint64, casting="unsafe"),
                               self._limits[n]).all():
            return None
        if check_finite:
            for i in self.dense_positions:
                a = arrays[i]
                if a.dtype.kind == "f" and not (math.isfinite(a.item()) if a.size == 1 else np.isfinite(a).all()):
                    return None         # one value (a one-row request) is checked in Python floats
        return n, x

    def _check_layout(self, arrays):
        """The batch size if every array has the type, dtype kind and shape its feature needs."""
        n = None
        for a, (name, kind, width, limit) in zip(arrays, self.spec):
            if type(a) is not np.ndarray:
                return None
            shape, k = a.shape, a.dtype.kind
            if n is None:
                if not shape:
                    return None
                n = shape[0]
                if not 0 < n <= self.max_rows:
                    return None
            if kind == "dense":
                if k not in "biuf" or (shape != (n, width) and not (width == 1 and shape == (n,))):
                    return None
                continue
            if k not in "iu":
                return None
            if kind == "seq":
                if shape != (n, width):
                    return None
            elif shape != (n,) and shape != (n, 1):
                return None
        if n not in self._limits:
            self._limits[n] = np.concatenate([np.full(n * (w if kind == "seq" else 1),
                                                      _NO_LIMIT if lim is None else lim, dtype=np.uint64)
                                              for _, kind, w, lim in self.spec if kind != "dense"])
        return n


class SmallPlan:
    """Everything the small path needs, derived from a ``PreparedWeights`` (one weights version)."""

    def __init__(self, model, prep):
        self.model = model
        self.max_rows = SMALL_ROWS
        self.dtype = prep.dtype
        self.supported = prep.supported and not (prep.attention and prep.weight_normalization)
        if not self.supported:
            return
        self.requests = SmallRequests(model, self.max_rows)
        self.supported = self.requests.supported
        if not self.supported:
            return
        self.d_in = model.get_layer("dnn").input_dim
        col, self.sparse = 0, []
        for fc in model.sparse_columns:
            self.sparse.append((prep.tables[fc.embedding_name], fc.name, col, col + fc.embedding_dim))
            col += fc.embedding_dim
        self.pooled = []
        for fc in model.pooled_columns:
            self.pooled.append((fc, col, col + fc.embedding_dim))
            col += fc.embedding_dim
        self.attention = prep.attention
        if prep.attention:
            self._prepare_attention(model, prep, col)
            col += self.e
        self.dense = []
        for fc in model.dense_columns:
            self.dense.append((fc.name, col, col + fc.dimension))
            col += fc.dimension
        self.dnn = [_Layer(k, b, a) for k, b, a in prep.dnn.layers]
        # no exponential that can overflow in a one-row request: Dice takes its tanh form here and
        # the output sigmoid is computed in Python floats; only a sigmoid activation has one
        stacks = prep.dnn.layers + (prep.att_stack.layers if prep.attention else [])
        self.exp_free = all(getattr(a, "name", None) != "sigmoid" for _, _, a in stacks)
        self.out_kernel, self.global_bias, self.link = prep.out_kernel, prep.global_bias, prep.link
        self.neg_out_kernel = -prep.out_kernel
        self._prepare_affine_dnn(prep)
        self.prep = prep
        self._buffers = _Buffers()

    # -- preparation ---------------------------------------------------------------------------
    def _prepare_affine_dnn(self, prep):
        """relu / linear DNNs: every activation ``a`` carries a trailing column of ones, so each
        bias is a kernel row: ``[a, 1] @ [[W, 0], [b, 1]] = [a W + b, 1]`` (relu keeps the 1),
        and the output ``[h, 1] @ [w; c]`` (negated for the sigmoid: ``1 / (1 + e^{-logit})``)."""
        self.affine = all(layer.relu or getattr(layer.act, "name", None) == "linear" for layer in self.dnn)
        if not self.affine:
            return
        dt = self.dtype
        self.affine_dnn = []
        for kernel, bias, act in prep.dnn.layers:
            k, h = kernel.shape
            ext = np.zeros((k + 1, h + 1), dt)
            ext[:k, :h], ext[k, :h], ext[k, h] = kernel, bias, 1
            self.affine_dnn.append((ext, act.name == "relu"))
        bias = np.zeros((1, 1), dt) if self.global_bias is None else np.reshape(self.global_bias, (1, 1))
        ext = np.concatenate([self.out_kernel, bias]).astype(dt)
        self.affine_out = -ext if self.link == "sigmoid" else ext

    def _prepare_attention(self, model, prep, col):
        self.t = model.history_columns[0].maxlen
        self.hist, k = [], 0
        for fc in model.history_columns:
            self.hist.append((prep.tables[fc.embedding_name], fc.name, k, k + fc.embedding_dim))
            k += fc.embedding_dim
        self.e = k
        self.att_col = col
        self.by_length = model.conventions.history_mask == "length"
        self.length_name = model.history_length_name if self.by_length else None
        self.query = prep.query
        self.positions = np.arange(SMALL_ROWS * self.t)
        self.first = None
        # [k, q*k] @ key_product_kernel + (q @ query_kernel + query_bias): the split first layer
        key_product_kernel, query_kernel, query_bias = prep.w_key_product, prep.w_query, prep.first_bias
        if prep.has_hidden:
            stack = prep.att_stack.layers
            # Dice / relu attention: every hidden output carries a unit that is exactly 1, so the
            # later biases (and the score's) are kernel rows
            ones = all(isinstance(a, FoldedDice) or getattr(a, "name", None) == "relu" for _, _, a in stack)
            self.first = _Layer(key_product_kernel, query_bias, stack[0][2], ones_out=ones)
            query = _Layer(query_kernel, query_bias, stack[0][2], ones_out=ones)   # the same stacking for q
            key_product_kernel, query_kernel, query_bias = self.first.kernel, query.kernel, query.bias
            self.att = [_Layer(kk, b, a, ones_in=ones, ones_out=ones) for kk, b, a in stack[1:]]
            self.score_kernel, self.score_bias = prep.score_kernel, prep.score_bias
            if ones:
                self.score_kernel = np.concatenate([prep.score_kernel, prep.score_bias.reshape(1, 1)])
                self.score_bias = None
        if key_product_kernel.ndim == 2:                                 # m = 1 stacked
            key_product_kernel = key_product_kernel[None]
            query_kernel, query_bias = query_kernel[None], query_bias.reshape(1, 1, -1)
        e = self.e
        # (m, 2E, H1), (m, E, H1), (m, 1, H1)
        self.first_kernel, self.query_kernel, self.query_bias = key_product_kernel, query_kernel, query_bias
        self.w_key, self.w_product = key_product_kernel[:, :e], key_product_kernel[:, e:]
        m, _, h1 = key_product_kernel.shape
        self.query_map = None
        if e * m * (e + 1) * h1 <= QUERY_MAP_LIMIT:
            # the one-row first-layer kernel [W_k + diag(q) W_p; q W_q + b] (m, E+1, H1) is affine in
            # q: q @ query_map + query_offset, one GEMV (query_map holds W_p on its diagonal blocks)
            query_map = np.zeros((e, m, e + 1, h1), self.dtype)
            for i in range(e):
                query_map[i, :, i, :] = self.w_product[:, i, :]
            query_map[:, :, e, :] = query_kernel.transpose(1, 0, 2)
            self.query_map = query_map.reshape(e, -1)
            self.query_offset = np.concatenate([self.w_key, query_bias], axis=1)     # (m, E+1, H1)

    def check(self, x, check_finite=True):
        """``(n, features)`` for a well-formed request of 1..SMALL_ROWS rows, else None
        (:meth:`SmallRequests.check`)."""
        return self.requests.check(x, check_finite) if self.supported else None

    # -- computation ---------------------------------------------------------------------------
    def _arrays(self):
        bufs = self._buffers.arrays
        if bufs is None or bufs["plan"] is not self:
            rows, dt = SMALL_ROWS, self.dtype
            bufs = {"plan": self, "views": {}, "deep": np.ones((rows, self.d_in + 1), dt),     # [deep, 1]
                    "dnn": [layer.buffer(rows, dt) for layer in self.dnn]}
            if self.affine:
                bufs["affine"] = [np.ones((rows, k.shape[1]), dt) for k, _ in self.affine_dnn]
            if self.attention:
                v = rows * self.t
                bufs["key_product"] = np.empty((v, 2 * self.e), dt)
                bufs["k1"] = np.ones((self.t, self.e + 1), dt)           # the last column stays 1
                bufs["kernel1"] = np.empty((self.first_kernel.shape[0], self.e + 1, self.first_kernel.shape[2]), dt)
                bufs["kernel1_flat"] = bufs["kernel1"].reshape(1, -1)
                bufs["z0"] = np.empty((self.first_kernel.shape[0], v, self.first_kernel.shape[2]), dt)
                bufs["att"] = [layer.buffer(v, dt) for layer in self.att] if self.first is not None else []
                bufs["pool"] = np.empty((rows, v), dt)
            self._buffers.arrays = bufs
        return bufs

    def run(self, f, n, ws):
        """Predictions ``(n, 1)`` (a new array) for checked features ``f`` of ``n`` rows."""
        return self._run_blas(f, n, ws, None)

    def run_with_scores(self, f, n, ws):
        """``(predictions, attention weights (n, 1, T))`` for checked features ``f`` of ``n``
        rows; the weights are None for a model without attention."""
        scores = np.zeros((n, 1, self.t), self.dtype) if self.attention else None
        return self._run_blas(f, n, ws, scores), scores

    def _run_blas(self, f, n, ws, scores):
        if n == 1 and self.exp_free:        # nothing to overflow: no errstate (~1 us)
            return self._run(f, n, ws, scores)
        with np.errstate(over="ignore"):    # exp -> inf in a sigmoid is exact (gives 0)
            if n <= TINY_ROWS:              # GEMMs too small for OpenBLAS to thread
                return self._run(f, n, ws, scores)
            with single_threaded_blas():    # else its spinning threads cost more than they give
                return self._run(f, n, ws, scores)

    def _views(self, bufs, n):
        """The buffers' views for ``n`` rows, made once per size: ``(deep, [deep, 1], the sparse
        fields' columns, the affine DNN's outputs)``."""
        views = bufs["views"].get(n)
        if views is None:
            deep = bufs["deep"][:n, :-1]
            views = (deep, bufs["deep"][:n], [deep[:, c0:c1] for _, _, c0, c1 in self.sparse],
                     [buf[:n] for buf in bufs.get("affine", ())])
            if self.attention:          # the query (when a view of the DNN input) and the pooled output
                bufs["views", "att", n] = (None if self.prep.query_slice is None else self.query(deep),
                                           deep[:, self.att_col:self.att_col + self.e])
            bufs["views"][n] = views
        return views

    def _run(self, f, n, ws, scores):
        bufs = self._buffers.arrays
        if bufs is None or bufs["plan"] is not self:
            bufs = self._arrays()
        deep, deep1, sparse_out, affine_out = self._views(bufs, n)
        for (table, name, _, _), out in zip(self.sparse, sparse_out):
            table.take(f[name].reshape(n), axis=0, out=out, mode="clip")         # ids checked
        for fc, c0, c1 in self.pooled:
            deep[:, c0:c1] = pool_sequence(self.prep.tables[fc.embedding_name], fc, f, 0, n)
        if self.attention:
            self._attention(f, n, deep, bufs, ws, scores)
        for name, c0, c1 in self.dense:
            deep[:, c0:c1] = f[name].reshape(n, c1 - c0)                            # cast to the dtype
        if self.affine:
            a = deep1
            for (kernel, relu), out in zip(self.affine_dnn, affine_out):
                a = np.dot(a, kernel, out=out)      # dot: ~0.4 us less per call than matmul
                if relu:
                    np.maximum(a, 0, out=a)
            z = np.dot(a, self.affine_out)
            if self.link != "sigmoid":
                return z
            return sigmoid_of_negated_(z)
        a = deep
        for layer, buf in zip(self.dnn, bufs["dnn"]):
            a = layer.run(a, buf, ws)
        if self.link != "sigmoid":
            logit = np.matmul(a, self.out_kernel)
            if self.global_bias is not None:
                logit += self.global_bias
            return logit
        z = np.matmul(a, self.neg_out_kernel)
        if self.global_bias is not None:
            z -= self.global_bias
        return sigmoid_of_negated_(z)

    def _valid_positions(self, f, n):
        """``(rows, ts)`` of the valid history positions, row-major (``rows`` None for one row)."""
        if self.by_length:
            valid = self.positions[:self.t] < f[self.length_name].reshape(n, 1)
        else:       # ids are >= 0 (checked): a position is valid when the smallest is non-zero
            valid = f[self.hist[0][1]]
            for _, name, _, _ in self.hist[1:]:
                valid = np.minimum(valid, f[name])
        if n == 1:
            return None, valid[0].nonzero()[0]
        return np.nonzero(valid)

    def _attention(self, f, n, deep, bufs, ws, scores=None):
        """Attention pooling of the valid history positions into ``deep[:, att_col:att_col+E]``
        (and their weights into ``scores`` ``(n, 1, T)`` if given; padded positions stay 0)."""
        e = self.e
        rows, ts = self._valid_positions(f, n)
        v = ts.size
        query, out = bufs["views", "att", n]
        if query is None:
            query = self.query(deep)                                     # (n, E)
        z = bufs["z0"][:, :v]                                            # (m, V, H1)
        if n == 1:
            # one query: (q*k) W_p = k (diag(q) W_p), so the first layer is [k, 1] @ [W_k + diag(q) W_p;
            # q W_q + b0]: one (V, E+1) @ (E+1, H1) GEMM per stacked output, nothing per position
            keys = bufs["k1"][:v]                                        # [k, 1] (V, E+1)
            for table, name, k0, k1 in self.hist:
                table.take(f[name][0, ts], axis=0, out=keys[:, k0:k1], mode="clip")
            kernel = bufs["kernel1"]                                     # (m, E+1, H1)
            if self.query_map is not None:
                np.dot(query, self.query_map, out=bufs["kernel1_flat"])
                kernel += self.query_offset
            else:
                np.multiply(query[0, :, None], self.w_product, out=kernel[:, :e])
                kernel[:, :e] += self.w_key
                np.matmul(query, self.query_kernel, out=kernel[:, e:])
                kernel[:, e:] += self.query_bias
            np.matmul(keys, kernel, out=z)
            keys = keys[:, :e]
        else:
            key_product = bufs["key_product"][:v]                        # [k, q*k] (V, 2E)
            for table, name, k0, k1 in self.hist:
                table.take(f[name][rows, ts], axis=0, out=key_product[:, k0:k1], mode="clip")
            np.multiply(key_product[:, :e], query[rows], out=key_product[:, e:])
            q_part = np.matmul(query, self.query_kernel)
            q_part += self.query_bias                                    # (m, n, H1)
            np.matmul(key_product, self.first_kernel, out=z)
            z += q_part[:, rows]
            keys = key_product[:, :e]
        if self.first is not None:
            h = self.first.activate(z if self.first.dice else z[0], ws, ts)
            for layer, buf in zip(self.att, bufs["att"]):
                h = layer.run(h, buf, ws, ts)
            s_v = np.dot(h, self.score_kernel)                           # (V, 1)
            if self.score_bias is not None:
                s_v += self.score_bias
        else:
            s_v = z[0]
        if scores is not None:                                           # padded positions weigh 0
            if n == 1:
                scores.reshape(-1).put(ts, s_v[:, 0])
            else:
                scores[rows, 0, ts] = s_v[:, 0]
        if n == 1:
            np.dot(s_v[:, 0], keys, out=out[0])
            return
        weights = bufs["pool"][:n, :v]                                   # (n, V): row r's scores
        weights[...] = 0
        weights[rows, self.positions[:v]] = s_v[:, 0]
        np.matmul(weights, keys, out=out)
