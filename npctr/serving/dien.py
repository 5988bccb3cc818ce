r"""DIEN in the Predictor: the interest extractor, the attention and the evolving layer on packed sequences.

A ``DIEN`` in inference is ``forward(x, training=False)`` without the auxiliary loss (no negatives, no
auxiliary network). What the layers compute over padded ``(B, T)`` sequences, masking every step past
a row's length, is computed here on the valid steps only (``docs/inference.md``, section 10):

* **packing**: the rows of a chunk are ordered by length, longest first, so the rows still running at
  step :math:`t` are a prefix of that order, :math:`n_t = \#\{b : L_b > t\}` rows. The valid positions are
  laid out time-major, step after step (:math:`V = \sum_t n_t` rows, PyTorch's ``PackedSequence``): a
  row of length :math:`L` takes :math:`L` steps and nothing is masked, since a state frozen past the
  length is simply a row no longer in the prefix;
* **the GRU** (:class:`PreparedGRU`): the input's part of every pre-activation for all positions at
  once, one GEMM per chunk (the arrangement of :func:`npctr.ops.gru.input_projection`, its kernels
  stacked ``(m, D, H)`` so that every gate block is a contiguous ``(V, H)`` array); then the loop over
  time, the one loop, on the prefix of running rows: the recurrent products, the gates (negated
  kernels: :func:`npctr.ops.activations.sigmoid_of_negated_`), the candidate, the keep gate of the
  ``gru_type`` and the mix (:func:`npctr.ops.gru.mix_keep_` / :func:`npctr.ops.gru.mix_toward_`); the
  output of step :math:`t` is the state of step :math:`t + 1`, in place;
* **the attention** on the valid positions only (:class:`PreparedAttention`), its weights
  :func:`npctr.ops.attention.attention_weights` as the layer masks them;
* the DNN input in the profile's order, the folded DNN and the output, as for DIN.
"""
from typing import NamedTuple

import numpy as np

from ..ops.activations import sigmoid_of_negated_
from ..ops.attention import attention_weights
from ..ops.blocks import serial
from ..ops.gru import KerasGRUWeights, mix_keep_, mix_toward_, units_of
from .._blas import single_threaded_blas
from .prepared import (ROW_GROUP, TINY_ROWS, FoldedDNN, PreparedAttention, PreparedWeights, pool_sequence,
                       take_rows)
from .predictor import Predictor
from .small_batch import SMALL_ROWS, SmallRequests

#: rows per chunk of a DIEN: each of the ~25 NumPy calls of a GRU step works on the chunk's running
#: rows, so larger chunks amortise the per-call cost (chosen by measurement, docs/performance.md)
DIEN_ROWS_PER_CHUNK = 1024
#: a step is split over the cores only into chunks of at least this many rows: a GRU step on fewer
#: rows is a few microseconds per NumPy call, and two threads handing the GIL to each other on such
#: calls are slower than one (measured: batch 256, two chunks on two threads 1.3x slower than one
#: chunk on one; batch 512 about even; 1024 1.3x faster)
DIEN_MIN_SHARE_ROWS = 256


#: positions per block of the attention MLP (a multiple of ROW_GROUP): its (positions, 64) activations
#: stay in cache, as DIN's chunks (``predictor.PAIRS_PER_CHUNK``)
ATTENTION_POSITIONS = 8192


# -- packing ----------------------------------------------------------------------------------------
class Packing(NamedTuple):
    """A chunk's valid positions, time-major, rows ordered by length (longest first)."""
    order: np.ndarray      # (b,) chunk row of each sorted row
    lengths: np.ndarray    # (b,) sorted lengths, clipped to T
    steps: list            # (offset, n_t) of each step t: its positions are rows offset:offset+n_t
    v: int                 # valid positions
    vp: int                # v rounded up to a multiple of ROW_GROUP (the padding rows are position 0's)
    rows: np.ndarray       # (vp,) sorted row of each position
    ts: np.ndarray         # (vp,) time step of each position
    sorted_flat: np.ndarray   # (vp,) row * T + t in the sorted (b, T) layout
    flat: np.ndarray       # (v,) row * T + t in the chunk's own (b, T) layout
    nonempty: int          # rows of length > 0 (the first ones)
    last: np.ndarray       # (nonempty,) position of each such row's last step


_ONE_ROW = np.zeros(1, np.intp)


def pack(lengths, t_max):
    """The :class:`Packing` of a chunk whose rows have ``lengths`` ``(b,)`` (any integer dtype, >= 0)."""
    if lengths.size == 1:                  # one row: its steps 0..L-1, nothing to order
        length = min(int(lengths[0]), t_max)
        vp = -(-length // ROW_GROUP) * ROW_GROUP
        ts = np.zeros(vp, np.intp)
        ts[:length] = np.arange(length)
        rows = np.zeros(vp, np.intp)
        steps = [(t, 1) for t in range(length)]
        return Packing(_ONE_ROW, np.array([length]), steps, length, vp, rows, ts, ts, ts[:length], int(length > 0),
                       np.array([length - 1]) if length else np.zeros(0, np.intp))
    lengths = np.minimum(lengths, t_max).astype(np.intp, copy=False)
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    l_max = int(sorted_lengths[0]) if sorted_lengths.size else 0
    # running rows at step t: #(L > t) = #(-L < -t), the sorted -L ascending
    counts = np.searchsorted(-sorted_lengths, -np.arange(l_max), side="left")
    offsets = np.zeros(l_max + 1, np.intp)
    np.cumsum(counts, out=offsets[1:])
    v = int(offsets[-1])
    vp = -(-v // ROW_GROUP) * ROW_GROUP
    rows = np.zeros(vp, np.intp)
    ts = np.zeros(vp, np.intp)
    rows[:v] = np.arange(v) - np.repeat(offsets[:-1], counts)
    ts[:v] = np.repeat(np.arange(l_max), counts)
    sorted_flat = rows * t_max + ts
    flat = order[rows[:v]] * t_max + ts[:v]
    nonempty = int(counts[0]) if l_max else 0
    last = offsets[sorted_lengths[:nonempty] - 1] + np.arange(nonempty)
    steps = list(zip(offsets[:-1].tolist(), counts.tolist()))
    return Packing(order, sorted_lengths, steps, v, vp, rows, ts, sorted_flat, flat, nonempty, last)


# -- the GRU ----------------------------------------------------------------------------------------
class PreparedGRU:
    r"""A ``DynamicGRU``'s weights arranged for the packed loop.

    Gate blocks (``r`` and, unless the cell is AGRU, whose update gate is unused, ``u``) are negated,
    so that their pre-activation arrives as :math:`-p` for :func:`npctr.ops.activations.sigmoid_of_negated_`
    (negation is exact). Kernels are stacked ``(m, ., H)``, one contiguous block per gate:

    * ``keras`` layout: ``proj_kernel`` ``[-K_r^x, -K_u^x, K_c^x]`` ``(m, D, H)`` with bias
      ``[-b_r, -b_u, b_c]``; ``rec`` ``[-K_r^h, -K_u^h]``; ``rec_candidate`` ``K_c^h`` applied to
      :math:`r \odot h`;
    * ``torch`` layout: ``proj_kernel`` ``[-W_i^r, -W_i^z, W_i^n]`` with bias
      ``[-(b_i^r + b_h^r), -(b_i^z + b_h^z), b_i^n]`` (the state side's gate biases added to the input
      side's: exact algebra); ``rec`` ``[-W_h^r, -W_h^z, W_h^n]``; ``bias_hn`` :math:`b_h^n`, which the
      reset gate scales with :math:`h W_h^n`.
    """

    def __init__(self, layer, cell_type, augru_gate):
        w = layer.cell_weights()
        h = self.units = units_of(w)
        self.cell_type, self.augru_gate = cell_type, augru_gate
        self.keras = isinstance(w, KerasGRUWeights)
        gates = ["r"] + ([] if cell_type == "AGRU" else ["u"])
        self.gate_blocks = len(gates)
        block = {"r": slice(0, h), "u": slice(h, 2 * h)}           # keras gate columns; torch's z = u
        if self.keras:
            d = w.gates_kernel.shape[0] - h
            kx, kh = w.gates_kernel[:d], w.gates_kernel[d:]
            proj = [-kx[:, block[g]] for g in gates] + [w.candidate_kernel[:d]]
            bias = [-w.gates_bias[block[g]] for g in gates] + [w.candidate_bias]
            self.rec = np.stack([-kh[:, block[g]] for g in gates])
            self.rec_candidate = np.ascontiguousarray(w.candidate_kernel[d:])
            self.bias_hn = None
        else:
            n = slice(2 * h, 3 * h)
            proj = [-w.kernel_ih[:, block[g]] for g in gates] + [w.kernel_ih[:, n]]
            bias = [-(w.bias_ih[block[g]] + w.bias_hh[block[g]]) for g in gates] + [w.bias_ih[n]]
            self.rec = np.stack([-w.kernel_hh[:, block[g]] for g in gates] + [w.kernel_hh[:, n]])
            self.rec_candidate = None
            self.bias_hn = w.bias_hh[n].copy()
        self.proj_kernel = np.stack(proj)                               # (m, D, H)
        self.proj_bias = np.stack(bias)[:, None, :]                     # (m, 1, H)
        self.proj_bias_grouped = np.tile(self.proj_bias, ROW_GROUP)     # (m, 1, ROW_GROUP H)
        # one row: the same blocks side by side, (D, m H) / (H, . H): every step's parts are 1-D slices
        self.row_proj_kernel = np.concatenate(proj, axis=1)
        self.row_proj_bias = np.concatenate(bias)
        self.row_rec = np.concatenate(list(self.rec), axis=1)
        self.row_bias_h = None if self.keras else np.concatenate([np.zeros(self.gate_blocks * h, self.bias_hn.dtype),
                                                                 self.bias_hn])

    def run(self, x, pk, out, ws, weight=None):
        """The GRU over the packed inputs ``x`` ``(V', D)`` into ``out`` ``(V', H)`` (every step's state);
        ``weight`` ``(V', H)``: the attention's factor of each position (AUGRU ``'keep'``: ``1 - a``,
        AUGRU ``'update'`` and AGRU: ``a``)."""
        h, m, vp = self.units, self.proj_kernel.shape[0], pk.vp
        dtype = x.dtype
        proj = ws.get("gru_proj", (m, vp, h), dtype)
        np.matmul(x, self.proj_kernel, out=proj)            # x's part of every pre-activation, one GEMM
        proj.reshape(m, vp // ROW_GROUP, ROW_GROUP * h)[...] += self.proj_bias_grouped
        b0 = pk.steps[0][1]
        rec = ws.get("gru_rec", (self.rec.shape[0], b0, h), dtype)
        if self.keras:
            rh, cand = ws.get("gru_rh", (b0, h), dtype), ws.get("gru_cand", (b0, h), dtype)
        else:
            bias_hn = ws.get("gru_bias_hn", (b0, h), dtype)
            bias_hn[...] = self.bias_hn
        gb = self.gate_blocks
        state = ws.zeros((b0, h), dtype)                    # h_{-1} = 0
        for o, n in pk.steps:
            h_prev = state[:n]                              # the running rows: a prefix
            r = rec[:, :n]
            np.matmul(h_prev, self.rec, out=r)
            gates = r[:gb]
            gates += proj[:gb, o:o + n]
            sigmoid_of_negated_(gates)                      # r (and u)
            if self.keras:                                  # c = tanh(x K_c^x + b_c + (r h) K_c^h)
                c = np.matmul(np.multiply(gates[0], h_prev, out=rh[:n]), self.rec_candidate, out=cand[:n])
            else:                                           # c = tanh(x W_i^n + b_i^n + r (h W_h^n + b_h^n))
                c = r[gb]
                c += bias_hn[:n]
                c *= gates[0]
            c += proj[gb, o:o + n]
            np.tanh(c, out=c)
            state = self._mix(h_prev, c, gates, None if weight is None else weight[o:o + n], out[o:o + n])
        return out

    def run_row(self, x, out, ws, weight=None):
        """:meth:`run` for one row of ``L`` valid steps, ``x`` ``(L, D)``, ``out`` ``(L, H)``, ``weight``
        ``(L, H)``: the same operations on 1-D vectors, the fewest NumPy calls, array operands only (a
        Python scalar operand costs NumPy ~0.4 us per call on a 16-vector)."""
        h, gb = self.units, self.gate_blocks
        dtype = x.dtype
        proj = np.dot(x, self.row_proj_kernel)                          # (L, (gb + 1) H)
        proj += self.row_proj_bias
        gates_x, cand_x = proj[:, :gb * h], proj[:, gb * h:]
        rec = ws.get("gru_row_rec", (self.row_rec.shape[1],), dtype)
        gates = rec[:gb * h]
        r, u = gates[:h], gates[h:]
        ones = ws.get("gru_row_ones", (gb * h,), dtype)
        ones[...] = 1
        dot, multiply, add, tanh, sigmoid = np.dot, np.multiply, np.add, np.tanh, sigmoid_of_negated_
        rec_kernel, keras, cell = self.row_rec, self.keras, self.cell_type
        if keras:
            rh, cand = ws.get("gru_row_rh", (h,), dtype), ws.get("gru_row_cand", (h,), dtype)
            cand_kernel = self.rec_candidate
        else:
            cand, bias_h = rec[gb * h:], self.row_bias_h
        mix = mix_toward_ if cell == "AGRU" or (cell == "AUGRU" and self.augru_gate == "update") else mix_keep_
        weights = out if weight is None else weight                      # (only AGRU / AUGRU read it)
        state = ws.zeros((h,), dtype)                                    # h_{-1} = 0
        for gx, cx, w, o in zip(gates_x, cand_x, weights, out):
            dot(state, rec_kernel, rec)
            if keras:
                add(gates, gx, gates)
                sigmoid(gates, ones)
                dot(multiply(r, state, rh), cand_kernel, cand)
            else:
                add(rec, bias_h, rec)
                add(gates, gx, gates)
                sigmoid(gates, ones)
                multiply(cand, r, cand)
            add(cand, cx, cand)
            tanh(cand, cand)
            if cell == "GRU":
                state = mix(state, cand, u, o)
            elif cell == "AGRU":
                state = mix(state, cand, w, o)
            else:
                state = mix(state, cand, multiply(u, w, u), o)
        return out

    def _mix(self, h_prev, c, gates, weight, out):
        """The new state (``ops.gru``'s keep gate and mix) of the running rows into ``out``."""
        if self.cell_type == "GRU":                         # g = u
            return mix_keep_(h_prev, c, gates[1], out)
        if self.cell_type == "AGRU":                        # 1 - g = a
            return mix_toward_(h_prev, c, weight, out)
        u = gates[1]
        u *= weight
        if self.augru_gate == "keep":                       # g = (1 - a) u
            return mix_keep_(h_prev, c, u, out)
        return mix_toward_(h_prev, c, u, out)               # 1 - g = a u


# -- the prepared model -----------------------------------------------------------------------------
class PreparedDIEN(PreparedWeights):
    """Everything a DIEN's Predictor derives from its weights (one weights version): the tables, both
    GRUs (:class:`PreparedGRU`), the attention (:class:`PreparedAttention`), the folded output DNN, and
    the plan of the DNN input in the profile's order (``dien_dnn_input``)."""

    def __init__(self, model):
        self._prepare_tables_and_output(model)
        self.dense_input = None
        self.small = None
        conv = model.conventions
        self.gru_type = model.gru_type
        cell = "GRU" if model.gru_type == "AIGRU" else model.gru_type
        self.gru1 = PreparedGRU(model.get_layer("gru1"), "GRU", conv.augru_gate)
        self.gru2 = PreparedGRU(model.get_layer("gru2"), cell, conv.augru_gate)
        self.att = PreparedAttention(model.get_layer("attention_sequence_pooling_layer"))
        self.weight_normalization = self.att.weight_normalization
        self.attention = True
        self.supported = self.dnn.supported and self.att.supported
        self.nonempty_rows_only = conv.dien_attention_rows == "nonempty"
        self.dense_float32 = conv.dien_dense_float32
        self.t = model.history_columns[0].maxlen
        self.h = model.interest_size
        self.length_name = model.history_length_name
        self.history = self._fields(model.history_columns)
        self.query = self._fields(model.query_columns)
        # the DNN input: (kind, what, first column, last column) in the profile's order
        self.layout, col = [], 0
        pieces = {"sparse": [(fc, fc.embedding_dim) for fc in model.sparse_columns],
                  "pooled": [(fc, fc.embedding_dim) for fc in model.pooled_columns],
                  "hist": [(None, self.h)], "dense": [(fc, fc.dimension) for fc in model.dense_columns]}
        for kind in conv.dien_dnn_input:
            for fc, size in pieces[kind]:
                self.layout.append((kind, fc, col, col + size))
                col += size
        self.d_in = col

    def _fields(self, columns):
        """``(table, feature name, first column, last column)`` of side-by-side fields."""
        out, col = [], 0
        for fc in columns:
            out.append((self.tables[fc.embedding_name], fc.name, col, col + fc.embedding_dim))
            col += fc.embedding_dim
        return out

    # -- one chunk ------------------------------------------------------------------------------------
    def run(self, f, lo, hi, logit, scores, ws):
        """Rows ``lo:hi`` of the checked features ``f`` into ``logit`` ``(b, 1)``, and the attention
        weights into ``scores`` ``(b, T)`` if given. Ids and lengths may be ``(n,)`` or ``(n, 1)``."""
        b, dtype = hi - lo, self.dtype
        deep = ws.get("deep", (b, self.d_in), dtype)
        for kind, fc, c0, c1 in self.layout:
            if kind == "sparse":
                take_rows(self.tables[fc.embedding_name], f[fc.name].reshape(-1)[lo:hi], deep[:, c0:c1], ws)
            elif kind == "pooled":
                deep[:, c0:c1] = pool_sequence(self.tables[fc.embedding_name], fc, f, lo, hi)
            elif kind == "dense":
                values = f[fc.name].reshape(-1, c1 - c0)[lo:hi]
                if self.dense_float32:                      # DeepCTR-Torch's .float()
                    values = values.astype(np.float32)
                deep[:, c0:c1] = values
            else:
                self._interest(f, lo, hi, deep[:, c0:c1], scores, ws)
        self.output(deep, logit, ws)

    def _interest(self, f, lo, hi, out, scores, ws):
        """The final interest ``(b, H)`` of rows ``lo:hi`` into ``out`` (and the weights into ``scores``)."""
        b, t, h, dtype = hi - lo, self.t, self.h, self.dtype
        pk = pack(f[self.length_name].reshape(-1)[lo:hi], t)
        query = ws.get("dien_query", (b, h), dtype)                      # sorted rows
        for table, name, c0, c1 in self.query:
            take_rows(table, f[name].reshape(-1)[lo:hi].take(pk.order), query[:, c0:c1], ws)
        hist = ws.get("dien_hist", (b, h), dtype)                        # sorted rows
        hist[...] = 0
        s = np.zeros((b, t), dtype)                                      # the scores, sorted rows
        if pk.v:
            self._evolve(f, lo, hi, pk, query, s, hist, ws)
        else:
            self._weights(pk, s)
        if scores is not None:
            scores[pk.order] = s
        out[pk.order] = hist

    def _weights(self, pk, s):
        """The attention weights ``(b, T)``, in place of the scores ``s`` at the valid positions, as
        the layer masks them; DeepCTR-Torch's rows of length 0 (never attended) get 0."""
        valid = np.arange(self.t) < pk.lengths[:, None]
        s[...] = attention_weights(s, valid, self.weight_normalization)
        if self.nonempty_rows_only:
            s[pk.nonempty:] = 0

    def _evolve(self, f, lo, hi, pk, query, s, hist, ws):
        h, vp, v, dtype = self.h, pk.vp, pk.v, self.dtype
        keys = ws.get("dien_keys", (vp, h), dtype)                      # the behaviours, packed
        for table, name, c0, c1 in self.history:
            ids = f[name][lo:hi].reshape(-1).take(pk.flat)
            take_rows(table, ids, keys[:v, c0:c1], ws)
        keys[v:] = 0
        interests = self._gru(self.gru1, keys, pk, ws.get("dien_interests", (vp, h), dtype), ws)
        interests[v:] = 0                                                # (the padding rows' states)
        evolved = ws.get("dien_evolved", (vp, h), dtype)
        if self.gru_type == "GRU":                       # attention pooling of the evolved states
            self._gru(self.gru2, interests, pk, evolved, ws)
            evolved[v:] = 0
            a = self._attend(evolved, query, pk, s, ws)
            evolved *= a
            if pk.order.size == 1:                       # hist = sum_t w_t o_t over valid steps
                np.sum(evolved[:v], axis=0, out=hist[0])
            else:
                for o, n in pk.steps:
                    hist[:n] += evolved[o:o + n]
            return
        a = self._attend(interests, query, pk, s, ws)
        if self.gru_type == "AIGRU":                     # a GRU on the attention-scaled interests
            self._gru(self.gru2, np.multiply(interests, a, out=ws.get("dien_scaled", (vp, h), dtype)), pk, evolved, ws)
        else:
            if self.gru2.cell_type == "AUGRU" and self.gru2.augru_gate == "keep":
                np.subtract(1.0, a, out=a)               # the keep gate's factor 1 - a
            self._gru(self.gru2, interests, pk, evolved, ws, weight=a)
        hist[:pk.nonempty] = evolved.take(pk.last, axis=0)     # the final states (0 for length 0)

    @staticmethod
    def _gru(gru, x, pk, out, ws, weight=None):
        """``gru`` over the packed ``x`` into ``out``: one row's steps as 1-D vectors (the fewest calls)."""
        if pk.order.size == 1:
            v = pk.v
            gru.run_row(x[:v], out[:v], ws, None if weight is None else weight[:v])
            return out
        return gru.run(x, pk, out, ws, weight)

    def _attend(self, keys, query, pk, s, ws):
        """The attention weights of the packed ``keys`` into ``s`` ``(b, T)``; returns each position's
        weight repeated over the H columns ``(V', H)``."""
        s_v = ws.get("dien_scores", (pk.vp,), self.dtype)
        for lo in range(0, pk.vp, ATTENTION_POSITIONS):                 # cache-sized blocks of positions
            hi = min(lo + ATTENTION_POSITIONS, pk.vp)
            s_v[lo:hi] = self.att.position_scores(keys[lo:hi], query, pk.rows[lo:hi], pk.ts[lo:hi], ws)[:, 0]
        s.reshape(-1)[pk.sorted_flat[:pk.v]] = s_v[:pk.v]
        self._weights(pk, s)
        a = ws.get("dien_att", (pk.vp, self.h), self.dtype)
        a[...] = s.reshape(-1).take(pk.sorted_flat)[:, None]
        return a


# -- small requests ---------------------------------------------------------------------------------
class DIENSmallPlan:
    """Requests of 1..``SMALL_ROWS`` rows: the cheapest complete check (``SmallRequests``), then the
    rows as one chunk, in the calling thread, without the chunk plan."""

    def __init__(self, model, prep):
        self.max_rows = SMALL_ROWS
        self.dtype = prep.dtype
        self.t = prep.t
        self.prep = prep
        self.supported = prep.supported
        if self.supported:
            self.requests = SmallRequests(model, self.max_rows)
            self.supported = self.requests.supported

    def check(self, x, check_finite=True):
        """``(n, features)`` for a well-formed request of 1..SMALL_ROWS rows, else None."""
        return self.requests.check(x, check_finite) if self.supported else None

    def run(self, f, n, ws):
        """Predictions ``(n, 1)`` (a new array) for checked features ``f`` of ``n`` rows."""
        return self._run(f, n, ws, None)

    def run_with_scores(self, f, n, ws):
        """``(predictions, attention weights (n, 1, T))``."""
        scores = np.empty((n, 1, self.t), self.dtype)
        return self._run(f, n, ws, scores[:, 0]), scores

    def _run(self, f, n, ws, scores):
        out = np.empty((n, 1), self.dtype)
        with np.errstate(over="ignore"), serial():       # exp -> inf in a sigmoid is exact (gives 0)
            if n <= TINY_ROWS:                           # GEMMs too small for OpenBLAS to thread
                self.prep.run(f, 0, n, out, scores, ws)
            else:
                with single_threaded_blas():
                    self.prep.run(f, 0, n, out, scores, ws)
        return out


# -- the Predictor ----------------------------------------------------------------------------------
class DIENPredictor(Predictor):
    """The :class:`~npctr.serving.Predictor` of a ``DIEN``: same interface (``predict``,
    ``predict_checked``, threads, chunks, ``return_attention``), the computation of this module.
    ``chunk_rows`` defaults to ``DIEN_ROWS_PER_CHUNK``."""

    min_share_rows = DIEN_MIN_SHARE_ROWS

    def __init__(self, model, threads=None, chunk_rows=None):
        super().__init__(model, threads, DIEN_ROWS_PER_CHUNK if chunk_rows is None else chunk_rows)

    def _prepare(self):
        prepared = PreparedDIEN(self.model)
        prepared.small = DIENSmallPlan(self.model, prepared)
        return prepared

    def _chunk_rows(self, prep, f, lo, hi, out, scores):
        prep.run(f, lo, hi, out[lo:hi], scores, self._workspace)


__all__ = ["DIENPredictor", "PreparedDIEN", "PreparedGRU", "pack"]
