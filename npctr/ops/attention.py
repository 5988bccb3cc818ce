r"""DIN's attention: the first layer on :math:`u = [q, k, q - k, q \odot k]` and the masked scores.

The local activation unit's first Dense acts on :math:`u \in \mathbb R^{B \times T \times 4E}`
(:math:`q` the query repeated over the :math:`T` keys). Splitting its kernel into four
:math:`E`-row blocks :math:`W = [W_a; W_b; W_c; W_d]`:

.. math::
    u W + b = q\,\underbrace{(W_a + W_c)}_{W_q} + k\,\underbrace{(W_b - W_c)}_{W_k}
              + (q \odot k)\,\underbrace{W_d}_{W_p} + b

so the query term is computed once per row, not once per key, and :math:`u` is never formed.
Backward: with :math:`dz` the gradient at the first layer's output,
:math:`dW_q = q^\top dz`, :math:`dW_k = k^\top dz`, :math:`dW_p = (q \odot k)^\top dz`, and since
:math:`W_c` enters :math:`W_q` and :math:`-W_k`: :math:`dW = [dW_q; dW_k; dW_q - dW_k; dW_p]`;
:math:`dq = \sum_T (dz\,W_q^\top + (dz\,W_p^\top) \odot k)`,
:math:`dk = dz\,W_k^\top + (dz\,W_p^\top) \odot q`. ``docs/local_activation_unit.md``.

Scores are masked before pooling: padded positions get ``SOFTMAX_PAD`` before a softmax
(``exp`` of it is exactly 0) or 0 without weight normalization, as DeepCTR does.
"""
from typing import NamedTuple

import numpy as np

from .activations import softmax, softmax_backward
from . import blocks
from .dense import matmul_last, transposed_product
from .rows import step_sums

#: DeepCTR's padding score before the softmax: ``exp(-2**32 + 1 - max)`` is exactly 0
SOFTMAX_PAD = -2.0 ** 32 + 1


# -- the first kernel, split ------------------------------------------------------------------
def split_first_kernel(kernel):
    """``(W_q, W_k, W_p) = (W_a + W_c, W_b - W_c, W_d)`` of a ``(4E, H)`` first-layer kernel."""
    w_a, w_b, w_c, w_d = np.split(kernel, 4, axis=0)
    return w_a + w_c, w_b - w_c, w_d


def merge_first_kernel_grad(d_w_q, d_w_k, d_w_p):
    """``dW = [dW_q; dW_k; dW_q - dW_k; dW_p]`` ``(4E, H)`` from the gradients of the split kernels."""
    e = d_w_q.shape[0]
    d_kernel = np.empty((4 * e, d_w_q.shape[1]), d_w_q.dtype)
    d_kernel[:e] = d_w_q
    d_kernel[e:2 * e] = d_w_k
    d_kernel[2 * e:3 * e] = d_w_q - d_w_k
    d_kernel[3 * e:] = d_w_p
    return d_kernel


def attention_input(query, keys):
    """``u = [q, k, q - k, q * k]`` ``(B, T, 4E)`` for ``query (B, 1, E)``, ``keys (B, T, E)``."""
    q = np.broadcast_to(query, keys.shape)
    return np.concatenate([q, keys, q - keys, q * keys], axis=-1)


def attention_input_backward(d_u, query, keys):
    """``(d_query (B, 1, E), d_keys (B, T, E))`` from ``d_u`` ``(B, T, 4E)``: each of ``q`` and
    ``k`` reaches ``u`` along three paths, and ``q`` is summed over the ``T`` copies."""
    d_q, d_k, d_diff, d_prod = np.split(d_u, 4, axis=-1)
    d_query = np.sum(d_q + d_diff + d_prod * keys, axis=1, keepdims=True)
    d_keys = d_k - d_diff + d_prod * query
    return d_query, d_keys


class QueryKeyInput(NamedTuple):
    """``u = [q, k, q - k, q * k]`` in factored form, the input of the attention MLP: its first
    Dense is computed block by block (:meth:`dense`), never forming ``u``."""
    query: np.ndarray         # (B, 1, E)
    keys: np.ndarray          # (B, T, E)
    query_keys: np.ndarray    # (B, T, E): q * k

    @classmethod
    def of(cls, query, keys):
        return cls(query, keys, query * keys)

    def dense(self, kernel, bias):
        """``u @ kernel + bias`` ``(B, T, H)``."""
        w_q, w_k, w_p = split_first_kernel(kernel)
        z = matmul_last(self.keys, w_k)                 # (B, T, H)
        z_product = matmul_last(self.query_keys, w_p)   # (B, T, H)
        z_query = self.query @ w_q + bias               # (B, 1, H), once per row, broadcast over T

        def rows(lo, hi):                               # accumulated in place, blocks of rows over the cores
            z[lo:hi] += z_product[lo:hi]
            z[lo:hi] += z_query[lo:hi]

        blocks.rows(rows, z.shape[0], 3 * z.size)      # two adds, one of them a broadcast
        return z

    def dense_backward(self, d_z, kernel):
        """``((d_query, d_keys), d_kernel)`` from ``d_z`` ``(B, T, H)``."""
        query, keys = self.query, self.keys
        w_q, w_k, w_p = split_first_kernel(kernel)
        e, n_hidden = query.shape[-1], d_z.shape[-1]
        d_z_sum_t = step_sums(d_z)                                   # (B, 1, H): q is the same for every t
        d_qk = matmul_last(d_z, w_p.T)                               # dL/d(q*k), (B, T, E)
        d_z2 = d_z.reshape(-1, n_hidden)
        d_kernel = merge_first_kernel_grad(query.reshape(-1, e).T @ d_z_sum_t.reshape(-1, n_hidden),
                                           transposed_product(keys.reshape(-1, e), d_z2),
                                           transposed_product(self.query_keys.reshape(-1, e), d_z2))
        d_query = d_z_sum_t @ w_q.T
        d_query += step_sums(d_qk * keys)
        d_keys = matmul_last(d_z, w_k.T)
        d_keys += d_qk * query
        return (d_query, d_keys), d_kernel


class QueryKeyUnits(NamedTuple):
    """``u`` on *units* (``docs/local_activation_unit.md``, shared padding): every position of
    a row whose keys differ, plus one unit standing for all of a row's shared positions.
    ``dense`` gives ``(1, U, H)`` (the MLP was built 3-D); ``dense_backward`` maps the units'
    summed gradients back to every ``(B, T)`` position."""
    query: np.ndarray         # (B, E): one query per row
    query_u: np.ndarray       # (U, E): the query of each unit's row
    keys_u: np.ndarray        # (U, E)
    query_keys_u: np.ndarray  # (U, E)
    rows_u: np.ndarray        # (U,) row of each unit, sorted
    row_starts: np.ndarray    # (B,) first unit of each row
    unit_of: np.ndarray       # (B*T,) unit of every position
    counts: np.ndarray        # (1, U, 1) positions per unit
    shape: tuple              # (B, T, E)

    @classmethod
    def of(cls, query, keys, shared_keys, dtype):
        """The units of ``query (B, 1, E)``, ``keys (B, T, E)`` with ``shared_keys`` ``(B, T)`` bool:
        positions whose keys are equal within their row (computed once per row)."""
        b, t, e = keys.shape
        shared_keys = shared_keys.reshape(b, t)
        first_shared = shared_keys & (np.cumsum(shared_keys, axis=1) == 1)
        is_unit = (~shared_keys | first_shared).reshape(-1)
        pos_u = np.flatnonzero(is_unit)                               # sorted: units in row order
        unit_id = np.cumsum(is_unit) - 1                              # unit at or before each position
        rows_u = pos_u // t
        rep_of_row = np.zeros(b, np.intp)
        has_shared = first_shared.any(axis=1)
        rep_of_row[has_shared] = unit_id[np.flatnonzero(first_shared.reshape(-1))]
        unit_of = np.where(shared_keys.reshape(-1), np.repeat(rep_of_row, t), unit_id)
        counts = np.ones((1, pos_u.size, 1), dtype=dtype)
        counts[0, rep_of_row[has_shared], 0] = shared_keys.sum(axis=1)[has_shared]
        row_starts = np.searchsorted(rows_u, np.arange(b))
        keys_u = keys.reshape(-1, e)[pos_u]
        query = query.reshape(b, e)
        query_u = query[rows_u]
        return cls(query, query_u, keys_u, query_u * keys_u, rows_u, row_starts, unit_of, counts, keys.shape)

    def dense(self, kernel, bias):
        """``u @ kernel + bias`` on the units, ``(1, U, H)``."""
        w_q, w_k, w_p = split_first_kernel(kernel)
        z = matmul_last(self.keys_u, w_k)
        z += matmul_last(self.query_keys_u, w_p)
        z += (self.query @ w_q + bias)[self.rows_u]
        return z[None]

    def dense_backward(self, d_z, kernel):
        """``((d_query (B, 1, E), d_keys (B, T, E)), d_kernel)`` from the units' ``d_z`` ``(1, U, H)``;
        a shared position's key gradient is its unit's divided by the count (they are all equal)."""
        b, t, e = self.shape
        d_z = d_z[0]
        w_q, w_k, w_p = split_first_kernel(kernel)
        d_kernel = merge_first_kernel_grad(transposed_product(self.query_u, d_z),
                                           transposed_product(self.keys_u, d_z),
                                           transposed_product(self.query_keys_u, d_z))
        d_qk = matmul_last(d_z, w_p.T)                                    # (U, E)
        d_query_u = matmul_last(d_z, w_q.T)
        d_query_u += d_qk * self.keys_u
        d_query = np.add.reduceat(d_query_u, self.row_starts, axis=0).reshape(b, 1, e)
        d_keys_u = matmul_last(d_z, w_k.T)
        d_keys_u += d_qk * self.query_u
        d_keys_u /= self.counts[0]
        return (d_query, d_keys_u[self.unit_of].reshape(b, t, e)), d_kernel


# -- masked attention weights -------------------------------------------------------------------
def attention_weights(scores, valid, weight_normalization):
    r"""The pooling weights :math:`w` from the scores ``(B, 1, T)`` and the ``valid`` mask
    (broadcastable): :math:`\mathrm{softmax}_T(\mathrm{where}(m, s, \text{SOFTMAX\_PAD}))` with
    weight normalization, else :math:`\mathrm{where}(m, s, 0)`. A row with no valid position
    gets :math:`1/T` each with weight normalization, 0 without."""
    if weight_normalization:
        return softmax(np.where(valid, scores, scores.dtype.type(SOFTMAX_PAD)))
    return np.where(valid, scores, 0)


def attention_weights_backward(d_weights, weights, valid, weight_normalization):
    """``d_scores`` from ``d_weights``: the softmax's backward (or the identity), then 0 at the
    masked positions, whose scores were replaced by constants."""
    d_scores = softmax_backward(d_weights, weights) if weight_normalization else d_weights
    return np.where(valid, d_scores, 0)
