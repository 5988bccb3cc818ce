r"""Embedding tables: lookup of integer ids and a row-sparse backward.

.. math::
    e = W[\mathrm{ids}] \in \mathbb R^{\mathrm{ids.shape} \times d}, \qquad
    \frac{\partial L}{\partial W_r} = \sum_{j:\ \mathrm{ids}_j = r} \frac{\partial L}{\partial e_j}

Repeated ids accumulate; the gradient is kept as the touched rows only
(:class:`npctr.sparse.RowGrad`), never a dense ``(vocabulary_size, embedding_dim)``
array per step.
"""
import numbers

import numpy as np

from .base import Layer, make_rng
from .. import initializers
from .dense import initializer_config_name
from ..sparse import RowGrad, scatter_rows
from .._validation import int_array, check_nonnegative, check_seed


_UNSIGNED = {np.dtype(t): np.dtype(t).str.replace("i", "u") for t in (np.int8, np.int16, np.int32, np.int64)}


def default_embeddings_initializer(rng, shape, dtype=np.float64):
    """DeepCTR's feature-column default: ``RandomNormal(mean=0, stddev=1e-4)``."""
    return initializers.random_normal(rng, shape, stddev=1e-4, dtype=dtype)


class Embedding(Layer):
    """tf.keras ``Embedding(input_dim, output_dim)`` with DeepCTR's defaults.

    Parameters
    ----------
    input_dim : int
        Vocabulary size; ids must lie in ``[0, input_dim)``.
    output_dim : int
        Embedding size.
    embeddings_initializer : str or callable, optional
        Default: normal(0, 1e-4), as DeepCTR's feature columns.
    l2_reg : float, default 0
        ``l2_reg * sum(W ** 2)`` over the whole table (Keras's ``embeddings_regularizer``).
    mask_zero : bool, default False
        Id 0 is padding: ``compute_mask`` returns ``ids != 0``.
    seed : int or None

    Input: integer ids of any shape; output ``ids.shape + (output_dim,)``.
    Weight: ``embeddings (input_dim, output_dim)``; its gradient is a ``RowGrad``.
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer=None, l2_reg=0.0, mask_zero=False,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = embeddings_initializer
        self._init = (default_embeddings_initializer if embeddings_initializer is None
                      else initializers.get(embeddings_initializer))
        self.l2_reg = check_nonnegative(l2_reg, "l2_reg")
        self.mask_zero = bool(mask_zero)
        self.seed = check_seed(seed)

    def build(self, input_shape=None):
        shape = (self.input_dim, self.output_dim)
        self.add_weight("embeddings", self._init(make_rng(self.seed), shape, dtype=self.dtype),
                        l2_reg=self.l2_reg)
        super().build(input_shape)

    def check_ids(self, ids, name):
        """``ids`` as an integer array, every id in ``[0, input_dim)``; else a ValueError naming
        ``name``, the first bad id and its row (first axis)."""
        ids = int_array(ids, name)
        # one reduction: viewed as unsigned, a negative id is larger than any vocabulary
        unsigned = ids.view(_UNSIGNED[ids.dtype]) if ids.dtype.kind == "i" else ids
        if ids.size and np.maximum.reduce(unsigned, axis=None) >= self.input_dim:
            at = int(np.argmax(((ids < 0) | (ids >= self.input_dim)).reshape(-1)))
            where = f" at row {np.unravel_index(at, ids.shape)[0]}" if ids.ndim else ""
            raise ValueError(f"{name} must lie in [0, {self.input_dim}) (vocabulary_size of {self.name}), "
                             f"got id {ids.reshape(-1)[at]}{where}")
        return ids

    def lookup(self, ids_list, training=False, backprop=None, names=None):
        """Look up several id arrays in this one table (a table shared by several features).

        One ``backward_many`` then accumulates all their gradients into one ``RowGrad``.
        """
        self._build_for(self.dtype or np.dtype(np.float64), None)     # ids carry no float dtype
        names = names or [f"ids[{i}]" for i in range(len(ids_list))]
        ids_list = [self.check_ids(ids, n) for ids, n in zip(ids_list, names)]
        table = self._params["embeddings"]
        outputs = [table[ids] for ids in ids_list]
        keep = self._keeps_cache(training, backprop)
        self._cache = ids_list if keep else None
        self._output_shapes = [o.shape for o in outputs]
        return outputs

    def backward_many(self, grad_outputs):
        """Set the table's ``RowGrad`` from the gradients of every output of ``lookup``."""
        ids_list = self._require_cache()
        if len(grad_outputs) != len(ids_list):
            raise ValueError(f"{self.name}: expected {len(ids_list)} gradients, got {len(grad_outputs)}")
        for g, shape in zip(grad_outputs, self._output_shapes):
            if np.shape(g) != shape:
                raise ValueError(f"grad_output of {self.name}.backward must have shape {shape}, "
                                 f"got {np.shape(g)}")
        ids = np.concatenate([i.reshape(-1) for i in ids_list])
        rows = np.concatenate([np.asarray(g, dtype=self.dtype).reshape(-1, self.output_dim)
                               for g in grad_outputs])
        self._grads["embeddings"] = scatter_rows(ids, rows, (self.input_dim, self.output_dim))

    def forward(self, inputs, training=False, backprop=None):
        return self.lookup([inputs], training, backprop, names=["inputs"])[0]

    def backward(self, grad_output):
        """Sets the table's gradient; integer ids have none, so this returns None."""
        self.backward_many([grad_output])
        return None

    def compute_mask(self, inputs, mask=None):
        return (np.asarray(inputs) != 0) if self.mask_zero else None

    def add_regularization_grads(self):
        # Keras regularizes the whole table, so the exact gradient 2 c W touches every row.
        c = self._l2_coefficients().get("embeddings")
        if not c:
            return
        g = self._grads["embeddings"]
        dense = (2.0 * c) * self._params["embeddings"]
        if isinstance(g, RowGrad):
            dense[g.indices] += g.values
        else:
            dense += g
        self._grads["embeddings"] = dense

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        init = self.embeddings_initializer
        init = None if init is default_embeddings_initializer else initializer_config_name(
            init, "embeddings_initializer")
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": init, "l2_reg": self.l2_reg, "mask_zero": self.mask_zero,
                "seed": self.seed}
