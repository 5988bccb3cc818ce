r"""Weights prepared for inference, shared by the Predictor's chunked path and its small-batch path.

Everything here is an *arrangement* of :mod:`npctr.ops`, not a re-derivation: BatchNormalization
folded into the preceding Dense (:func:`npctr.ops.batch_norm.fold_into_dense`), Dice's moving
statistics folded into one multiply-add giving ``-BN(x)``
(:func:`npctr.ops.batch_norm.negated_inference_affine`), the attention's first kernel split
(:func:`npctr.ops.attention.split_first_kernel`), activations applied in place
(:mod:`npctr.ops.activations`). The derivations are in ``docs/inference.md``.
"""
import math
import threading

import numpy as np

from ..layers.activation import Activation, Dice, PReLU
from ..ops.activations import activation_, prelu_, dice_gate_from_negated_bn_, sigmoid_
from ..ops.attention import split_first_kernel
from ..ops.batch_norm import fold_into_dense, negated_inference_affine
from ..ops.sequence import sequence_mask, sequence_pool

#: requests of at most this many rows run as they are (OpenBLAS does not thread such GEMMs)
TINY_ROWS = 4
#: rows per group of the per-unit vector ops: a ``(rows, H)`` array whose rows are a multiple of this
#: is viewed as ``(rows / ROW_GROUP, ROW_GROUP * H)`` against vectors tiled ``ROW_GROUP`` times, so
#: NumPy's inner loop runs over ``ROW_GROUP * H`` elements instead of ``H`` (a broadcast row vector
#: costs it ~15 ns per row: measured 2.3x slower than the grouped form on (1024, 80) float32)
ROW_GROUP = 64


# -- layout helpers ---------------------------------------------------------------------------
class UnitVectors:
    """Per-unit vectors ``(H,)`` for in-place ops on ``(rows, H)`` arrays, with their
    ``ROW_GROUP``-tiled copies (see ``ROW_GROUP``): :meth:`views` returns the array and the
    vectors in the grouped layout when ``rows`` allows it. Same elements, same operations."""

    def __init__(self, *vectors):
        self.plain = tuple(np.ascontiguousarray(v) for v in vectors)
        self.tiled = tuple(np.tile(v, ROW_GROUP) for v in self.plain)

    def views(self, z):
        """``(z', vectors)``: ``z`` ``(rows, H)`` as ``(rows / ROW_GROUP, ROW_GROUP * H)`` with the
        tiled vectors when ``rows`` is a multiple of ``ROW_GROUP`` (and ``z`` contiguous), else as is."""
        rows, h = z.shape
        if rows % ROW_GROUP == 0 and z.flags.c_contiguous:
            return z.reshape(rows // ROW_GROUP, ROW_GROUP * h), self.tiled
        return z, self.plain


def as_records(a):
    """A ``(rows, width)`` array with contiguous rows as ``(rows,)`` opaque records of one row each.

    NumPy copies a strided float slice such as ``keys[:, 8:16]`` element by element, with a loop
    set-up per row (measured ~10x slower than a contiguous copy for widths 8-16); as records it
    copies each row as one block. Bytes are copied unchanged."""
    return a.view(np.dtype((np.void, a.shape[1] * a.itemsize)))[:, 0]


def take_rows(table, ids, out, ws, scratch="take_rows"):
    """``out[...] = table[ids]`` for checked ``ids`` ``(n,)``, ``out`` ``(n, width)`` with contiguous rows:
    one gather, and, when ``out`` is a column slice, one copy of whole rows (:func:`as_records`)."""
    if out.flags.c_contiguous:
        return table.take(ids, axis=0, out=out, mode="clip")
    tmp = ws.get(scratch, out.shape, out.dtype)
    table.take(ids, axis=0, out=tmp, mode="clip")
    as_records(out)[...] = as_records(tmp)
    return out


# -- prepared activations (each applied in place to a 2-D (rows, H) array) ---------------------
class PlainActivation:
    """relu / sigmoid / tanh / linear / softmax by name (:func:`npctr.ops.activations.activation_`)."""

    def __init__(self, name):
        self.name = name

    def __call__(self, z, ws, t_index=None):
        return activation_(self.name, z, ws.zeros(z.shape, z.dtype) if self.name == "relu" else None)


class FoldedDice:
    r"""Dice with its moving statistics folded: the gate argument :math:`-\mathrm{BN}(x) = x a + c`
    in one multiply-add, then :func:`npctr.ops.activations.dice_gate_from_negated_bn_`:

    .. math:: y = x\,\Big(\alpha + \frac{1-\alpha}{1 + e^{\,x a + c}}\Big)
    """

    def __init__(self, dice, dtype):
        bn = dice.get_layer("bn")
        state, params = bn.state, bn.params
        self.neg_scale, self.neg_shift = negated_inference_affine(
            state["moving_mean"], state["moving_variance"], bn.epsilon, params.get("gamma"), params.get("beta"))
        # BN(x) / 2, for the small-batch path's gate (npctr.ops.activations.dice_gate_from_half_bn_)
        self.half_scale, self.half_shift = negated_inference_affine(
            state["moving_mean"], state["moving_variance"], bn.epsilon, params.get("gamma"), params.get("beta"),
            factor=-0.5)
        alpha = dice.params["dice_alpha"].astype(dtype)   # a float32 alpha is read in the layer's dtype
        self.alpha = alpha
        self.one_minus_alpha = 1.0 - alpha
        self.vectors = UnitVectors(self.neg_scale, self.neg_shift, alpha, self.one_minus_alpha)

    def __call__(self, z, ws, t_index=None):
        x, (neg_scale, neg_shift, alpha, one_minus_alpha) = self.vectors.views(z)
        gate = ws.get("dice_gate", x.shape, x.dtype)
        np.multiply(x, neg_scale, out=gate)
        gate += neg_shift                            # -BN(x)
        x *= dice_gate_from_negated_bn_(gate, alpha, one_minus_alpha)
        return z


class PreparedPReLU:
    """``max(z, 0) + alpha min(z, 0)``; in the attention alpha has one row per time step."""

    def __init__(self, prelu):
        self.alpha = prelu.params["alpha"].copy()

    def __call__(self, z, ws, t_index=None):
        alpha = self.alpha
        if alpha.ndim == 2:                 # (T, H): the attention's 3-D input
            alpha = alpha[t_index]
        return prelu_(z, alpha, ws.get("prelu_negative", z.shape, z.dtype))


def prepare_activation(layer):
    """The in-place activation for an activation layer, or None if it has no prepared form."""
    if type(layer) is Activation:
        return PlainActivation(layer.activation)
    if type(layer) is Dice and layer.axis in (-1, layer.get_layer("bn").input_rank - 1):
        return FoldedDice(layer, layer.dtype)
    if type(layer) is PReLU and not layer.shared_axes:
        return PreparedPReLU(layer)
    return None


class FoldedDNN:
    """A DNN's layers as ``(kernel, bias, activation)`` with BatchNormalization folded in
    (:func:`npctr.ops.batch_norm.fold_into_dense`); dropout is the identity at inference."""

    def __init__(self, dnn, prefix):
        self.prefix = prefix                  # workspace buffer names of this stack
        self.layers = []
        self.supported = True
        params, state = dnn.params, dnn.state
        for i in range(len(dnn.hidden_units)):
            kernel, bias = params[f"kernel{i}"], params[f"bias{i}"]
            if dnn.use_bn:
                bn = f"bn{i}/"
                kernel, bias = fold_into_dense(kernel, bias, state[bn + "moving_mean"],
                                               state[bn + "moving_variance"], dnn.get_layer(f"bn{i}").epsilon,
                                               params.get(bn + "gamma"), params.get(bn + "beta"))
            act = prepare_activation(dnn.get_layer(f"activation{i}"))
            if act is None:
                self.supported = False
            self.layers.append((np.ascontiguousarray(kernel), np.array(bias), act))
        self.biases = [UnitVectors(bias) for _, bias, _ in self.layers]

    def run(self, a, ws, start=0, t_index=None, z0=None):
        """Layers ``start..`` on ``a`` (2-D); ``z0``: layer ``start``'s pre-activation, given."""
        for i in range(start, len(self.layers)):
            kernel, bias, act = self.layers[i]
            if i == start and z0 is not None:
                z = z0
            else:
                z = ws.get(f"{self.prefix}{i}", (a.shape[0], kernel.shape[1]), kernel.dtype)
                np.matmul(a, kernel, out=z)
                grouped, (bias,) = self.biases[i].views(z)
                grouped += bias
            a = act(z, ws, t_index)
        return a


class Workspace(threading.local):
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

    def zeros(self, shape, dtype):
        """A read-only view of zeros ``shape`` (for :func:`npctr.ops.activations.relu_`)."""
        size = math.prod(shape)
        buf = self.buffers.get("zeros")
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.zeros(max(size, 1), dtype=dtype)
            buf.flags.writeable = False
            self.buffers["zeros"] = buf
        return buf[:size].reshape(shape)


def pool_sequence(table, fc, f, lo, hi):
    """``SequencePoolingLayer`` of the ``VarLenSparseFeat`` ``fc`` (sum / mean / max over its
    valid positions) for rows ``lo:hi`` of the checked features ``f``, ``(rows, E)``."""
    ids = f[fc.name][lo:hi]
    x = table[ids]                                                    # (b, T, E)
    if fc.length_name is None:
        valid = ids != 0
        length = valid.sum(axis=1, keepdims=True)
    else:
        length = f[fc.length_name][lo:hi].reshape(-1, 1)       # (a small request may give (b,))
        valid = sequence_mask(length, ids.shape[1])
    return sequence_pool(x, valid, length, fc.combiner)[0][:, 0]


class PreparedAttention:
    """An ``AttentionSequencePoolingLayer``'s LocalActivationUnit prepared for scoring positions:
    the first kernel split (:func:`npctr.ops.attention.split_first_kernel`) into the query's part
    ``w_query`` (once per row) and the per-position ``w_key_product`` ``[W_k; W_p]``, the MLP
    folded (``FoldedDNN``), the score projection."""

    def __init__(self, att):
        lau = att.get_layer("local_att")
        self.weight_normalization = att.weight_normalization
        self.att_stack = FoldedDNN(lau.get_layer("dnn"), "att_z")
        self.supported = self.att_stack.supported
        # the first linear map on u = [q, k, q-k, q*k]: kernel0 of the MLP, or the score
        # projection itself when the MLP has no hidden layer
        if lau.hidden_units:
            first_kernel, first_bias = self.att_stack.layers[0][:2]
        else:
            first_kernel, first_bias = lau.params["kernel"], lau.params["bias"]
        w_query, w_key, w_product = split_first_kernel(first_kernel)
        self.w_query = np.ascontiguousarray(w_query)                     # (E, H1), applied once per row
        # [k, q*k] (V, 2E) @ [W_k; W_p] (2E, H1): one GEMM per chunk for both per-position terms
        self.w_key_product = np.ascontiguousarray(np.concatenate([w_key, w_product], axis=0))
        self.first_bias = first_bias
        self.has_hidden = bool(lau.hidden_units)
        self.score_kernel, self.score_bias = lau.params["kernel"], lau.params["bias"]

    def position_scores(self, k_v, query, rows, ts, ws):
        """The unit's scores ``(V', 1)`` of the positions whose keys are ``k_v`` ``(V', E)`` (contiguous),
        in the rows ``rows`` ``(V',)`` of ``query`` ``(b, E)``, at time steps ``ts`` (for a per-step PReLU).

        The first layer is ``[k, q*k] [W_k; W_p] + (q W_q + b)[rows]`` (docs/inference.md, section 4),
        with ``[k, q*k]`` written as whole rows (:func:`as_records`)."""
        vp, e = k_v.shape
        dtype = k_v.dtype
        key_product = ws.get("att_key_product", (vp, 2 * e), dtype)      # [k, q*k], (V', 2E)
        qk_v = query.take(rows, axis=0, out=ws.get("att_qk", (vp, e), dtype), mode="clip")
        qk_v *= k_v
        as_records(key_product[:, :e])[...] = as_records(k_v)
        as_records(key_product[:, e:])[...] = as_records(qk_v)
        z = ws.get("att_z0", (vp, self.w_key_product.shape[1]), dtype)
        np.matmul(key_product, self.w_key_product, out=z)
        q_part = query @ self.w_query
        q_part += self.first_bias                                        # (b, H1)
        z += q_part.take(rows, axis=0, out=ws.get("att_q_part", z.shape, dtype), mode="clip")
        if not self.has_hidden:
            return z                                                     # (V', 1) already the score
        first_act = self.att_stack.layers[0][2]
        h = self.att_stack.run(first_act(z, ws, ts), ws, start=1, t_index=ts)
        s_v = h @ self.score_kernel
        s_v += self.score_bias
        return s_v


class PreparedWeights:
    """Everything the Predictor derives from a model's weights, built once per weights version.

    ``small`` is the small-batch plan of these weights (set by the Predictor, which owns both).
    """

    def __init__(self, model):
        self._prepare_tables_and_output(model)
        self.supported = self.dnn.supported
        # the DNN's input is exactly one dense feature (no embeddings): the chunks read it in place
        only = model.dense_columns[0] if len(model.dense_columns) == 1 else None
        self.dense_input = only.name if (only is not None and not model.sparse_columns and not model.pooled_columns
                                         and not model.history_columns) else None
        self.attention = False
        self.small = None
        if model.history_columns:
            self._prepare_attention(model)

    def _prepare_tables_and_output(self, model):
        """The embedding tables, the folded DNN, the output Dense and the link (every model's)."""
        self.dtype = model.dtype
        self.tables = {name: model.get_layer(f"sparse_emb_{name}").params["embeddings"]
                       for name in model.table_features}
        self.dnn = FoldedDNN(model.get_layer("dnn"), "dnn_z")
        self.out_kernel = model.get_layer("dense").params["kernel"]
        prediction = model.get_layer("prediction_layer")
        self.global_bias = prediction.params.get("global_bias")
        self.link = prediction.link

    def output(self, deep, logit, ws):
        """The DNN, the output Dense and the link on ``deep`` ``(b, input_dim)`` into ``logit`` ``(b, 1)``."""
        h = self.dnn.run(deep, ws)
        np.matmul(h, self.out_kernel, out=logit)
        if self.global_bias is not None:
            logit += self.global_bias
        if self.link == "sigmoid":
            sigmoid_(logit)

    def _prepare_attention(self, model):
        att = self.att = PreparedAttention(model.get_layer("attention_sequence_pooling_layer"))
        self.supported &= att.supported
        # the attention's prepared parts under the names the small-batch plan reads
        for name in ("weight_normalization", "att_stack", "w_query", "w_key_product", "first_bias", "has_hidden",
                     "score_kernel", "score_bias"):
            setattr(self, name, getattr(att, name))
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

    def query(self, deep):
        """The concatenated query fields ``(b, E)``, read from the embedded DNN input."""
        if self.query_slice is not None:
            return deep[:, self.query_slice]
        return np.concatenate([deep[:, a:b] for a, b in self.query_spans], axis=1)
