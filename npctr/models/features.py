"""A model's inputs as DeepCTR's feature columns define them: which features exist, which
embedding table each reads, which sequences are pooled and which form DIN's history, and the
one validation of a request (shapes, dtypes, finite values) that every entry point shares."""
import numpy as np

from ..feature_column import SparseFeat, VarLenSparseFeat, DenseFeat, build_input_features
from ..ops.sequence import sequence_mask
from .._validation import check_finite_rows, as_feature_dict, as_array


def check_history_feature_list(history_feature_list):
    """DIN's and DIEN's ``history_feature_list``: a non-empty list of feature names."""
    if isinstance(history_feature_list, str) or not hasattr(history_feature_list, "__iter__"):
        raise TypeError(f"history_feature_list must be a list of feature names, got {history_feature_list!r}")
    if not list(history_feature_list):
        raise ValueError("history_feature_list must name at least one feature")


class FeatureInputs:
    """The feature plan of ``DIN`` / ``DNNModel`` / ``DIEN``, from the columns alone.

    Attributes (read-only by convention): ``names`` (feature names, DeepCTR's input order),
    ``by_name`` (name -> column; a ``length_name`` maps to its ``VarLenSparseFeat``),
    ``sparse``, ``dense``, ``pooled`` (sequences pooled by their combiner), ``history``
    (``hist_<x>`` sequences attended to), ``negative`` (DIEN's ``neg_hist_<x>`` sampled
    negatives, aligned with ``history``; empty unless ``negative_history``) and ``query`` (the
    candidate fields) columns, ``tables`` (embedding_name -> the column that defines the
    table), ``table_features`` (embedding_name -> the features looked up in it),
    ``masked_tables`` (tables read by a sequence: id 0 is padding) and ``history_length_name``.

    DIEN's options: ``negative_history`` (the ``neg_hist_<x>`` columns are negatives, never
    pooled), ``history_lengths`` (the history is masked by ITS ``length_name``, which every
    history column must share, whatever the profile's DIN rule) and ``sequence_mask_zero``
    (False: id 0 is an id like any other, DeepCTR's ``seq_mask_zero=False``).
    """

    def __init__(self, feature_columns, history_feature_list, conventions, negative_history=False,
                 history_lengths=False, sequence_mask_zero=True):
        self.history_mask_rule = "length" if history_lengths else conventions.history_mask

        self.by_name = build_input_features(feature_columns)
        self.names = list(self.by_name)
        cols = list(feature_columns)
        self.sparse = [fc for fc in cols if isinstance(fc, SparseFeat)]
        self.dense = [fc for fc in cols if isinstance(fc, DenseFeat)]
        varlen = [fc for fc in cols if isinstance(fc, VarLenSparseFeat)]
        hist_names = ["hist_" + n for n in history_feature_list]
        neg_names = ["neg_hist_" + n for n in history_feature_list] if negative_history else []
        self.history = [fc for fc in varlen if fc.name in hist_names]
        self.negative = [fc for fc in varlen if fc.name in neg_names]
        self.pooled = [fc for fc in varlen if fc.name not in hist_names and fc.name not in neg_names]
        self._check_history(history_feature_list, varlen)
        self._check_negative()
        if history_lengths:
            self.history_length_name = self._own_length_name()
        else:
            # DeepCTR-Torch masks the history by the first VarLenSparseFeat's length_name
            self.history_length_name = next((fc.length_name for fc in varlen if fc.length_name is not None), None)
        if self.history and self.history_mask_rule == "length" and self.history_length_name is None:
            raise ValueError(f"conventions {conventions.name!r} mask the history by a length feature "
                             "(DeepCTR-Torch's keys_length), but no VarLenSparseFeat has a length_name; "
                             "give the history VarLenSparseFeat a length_name")
        self._plan_tables(self.sparse + varlen)
        self.masked_tables = {fc.embedding_name for fc in varlen} if sequence_mask_zero else set()

    def _own_length_name(self):
        """The one ``length_name`` of the history columns (DIEN's ``seq_length``)."""
        names = {fc.name: fc.length_name for fc in self.history}
        if self.history and (None in names.values() or len(set(names.values())) > 1):
            raise ValueError(f"every history VarLenSparseFeat must have the same length_name (the length feature "
                             f"that masks the sequence, DeepCTR's 'seq_length'), got {names}")
        return next(iter(names.values()), None)

    def _check_negative(self):
        """Negative histories line up with the history field by field (DIEN's ``neg_hist_<x>``)."""
        if not self.negative:
            return
        by_field = {fc.name[len("neg_"):]: fc for fc in self.negative}
        order = [fc.name[len("neg_"):] for fc in self.negative]
        wanted = [fc.name for fc in self.history if fc.name in by_field]
        if order != wanted:
            raise ValueError(f"the negative histories {[fc.name for fc in self.negative]} must come in the order of "
                             f"the histories {[fc.name for fc in self.history]} (DeepCTR pairs them by position)")
        for fc in self.history:
            neg = by_field.get(fc.name)
            if neg is not None and (neg.embedding_dim, neg.maxlen) != (fc.embedding_dim, fc.maxlen):
                raise ValueError(f"{neg.name!r} must have the embedding_dim and maxlen of {fc.name!r} "
                                 f"({fc.embedding_dim}, {fc.maxlen}), got ({neg.embedding_dim}, {neg.maxlen})")

    def _check_history(self, history_feature_list, varlen):
        sparse_names = [fc.name for fc in self.sparse]
        known_sparse, varlen_names = set(sparse_names), {fc.name for fc in varlen}   # sets: linear in a long config
        for n in history_feature_list:
            if n not in known_sparse:
                raise ValueError(f"history_feature_list names {n!r}, which is not a SparseFeat of "
                                 f"dnn_feature_columns (SparseFeat names: {_first(sparse_names)})")
            if "hist_" + n not in varlen_names:
                raise ValueError(f"history_feature_list names {n!r} but dnn_feature_columns has no "
                                 f"VarLenSparseFeat named {'hist_' + n!r}")
        # DeepCTR takes query and keys in feature-column order: they must line up field by field
        history_names = set(history_feature_list)
        self.query = [fc for fc in self.sparse if fc.name in history_names]
        query_order = [fc.name for fc in self.query]
        keys_order = [fc.name[len("hist_"):] for fc in self.history]
        if query_order != keys_order:
            raise ValueError(f"the query fields {query_order} (SparseFeat column order) and the history fields "
                             f"{['hist_' + n for n in keys_order]} (VarLenSparseFeat column order) must come in "
                             "the same order; DeepCTR would pair them position by position")
        for q, k in zip(self.query, self.history):
            if q.embedding_dim != k.embedding_dim:
                raise ValueError(f"embedding_dim of {q.name!r} ({q.embedding_dim}) and {k.name!r} "
                                 f"({k.embedding_dim}) must match")
        if len({fc.maxlen for fc in self.history}) > 1:
            raise ValueError("every history VarLenSparseFeat must have the same maxlen, got "
                             f"{ {fc.name: fc.maxlen for fc in self.history} }")

    def _plan_tables(self, columns):
        """One table per embedding_name; DeepCTR silently keeps the last definition: npctr
        insists they agree."""
        self.tables, self.table_features = {}, {}
        for fc in columns:
            seen = self.tables.get(fc.embedding_name)
            if seen is not None and (seen.vocabulary_size, seen.embedding_dim) != (fc.vocabulary_size,
                                                                                   fc.embedding_dim):
                raise ValueError(f"features {seen.name!r} and {fc.name!r} share the embedding "
                                 f"{fc.embedding_name!r} but differ in vocabulary_size/embedding_dim: "
                                 f"({seen.vocabulary_size}, {seen.embedding_dim}) vs "
                                 f"({fc.vocabulary_size}, {fc.embedding_dim})")
            self.tables.setdefault(fc.embedding_name, fc)
            self.table_features.setdefault(fc.embedding_name, []).append(fc.name)

    # -- one request -------------------------------------------------------------------------
    def check(self, x, dtype, check_finite=True, name="x"):
        """Validate a request: the feature dict (or list in ``names`` order), every feature's
        dtype and shape, dense values finite (``check_finite``). Returns ``(batch_size,
        {name: array in canonical shape})``: ids ``(B, 1)`` / ``(B, maxlen)``, dense values
        ``(B, dimension)`` in ``dtype`` (before any ``transform_fn``: see ``transform_dense``).
        Checking the result again returns it unchanged."""
        x = as_feature_dict(x, self.names, name)
        missing = [n for n in self.names if n not in x]
        extra = [n for n in x if n not in self.by_name]
        if missing or extra:
            raise ValueError(f"{name} must hold exactly the features {self.names}; "
                             f"missing {missing}, unexpected {extra}")
        arrays = {n: as_array(x[n], f"{name}[{n!r}]") for n in self.names}
        sizes = {n: (a.shape[0] if a.ndim else None) for n, a in arrays.items()}
        batch = sizes[self.names[0]]
        if batch is None or any(s != batch for s in sizes.values()):
            raise ValueError(f"every feature must have the same batch size (first axis), got {sizes}")
        return batch, {n: self._canonical(n, a, batch, dtype, check_finite, name) for n, a in arrays.items()}

    def _canonical(self, n, a, batch, dtype, check_finite, name):
        """Feature ``n``'s array ``a`` checked and in its canonical shape and dtype."""
        fc = self.by_name[n]
        if isinstance(fc, DenseFeat):
            if a.dtype.kind not in "biuf":
                raise TypeError(f"feature {n!r} must be numeric, got dtype {a.dtype}")
            if a.shape not in ((batch, fc.dimension),) + (((batch,),) if fc.dimension == 1 else ()):
                raise ValueError(f"feature {n!r} must have shape (batch_size, {fc.dimension}), got {a.shape}")
            if check_finite:
                check_finite_rows(a, f"{name}[{n!r}]")
            return a.reshape(batch, fc.dimension).astype(dtype, copy=False)
        if a.dtype.kind not in "iu":
            raise TypeError(f"feature {n!r} must hold integer ids, got dtype {a.dtype}")
        if isinstance(fc, VarLenSparseFeat) and n == fc.name:
            if a.shape != (batch, fc.maxlen):
                raise ValueError(f"feature {n!r} must have shape (batch_size, maxlen) = "
                                 f"({batch}, {fc.maxlen}), got {a.shape}")
            return a
        # a SparseFeat id or a VarLen length
        if a.shape not in ((batch,), (batch, 1)):
            raise ValueError(f"feature {n!r} must have shape (batch_size, 1), got {a.shape}")
        if isinstance(fc, VarLenSparseFeat) and a.size and a.min() < 0:
            raise ValueError(f"feature {n!r} (the length of {fc.name!r}) must be >= 0, got {a.min()}")
        return a.reshape(batch, 1)

    def transform_dense(self, f):
        """The checked features ``f`` with every ``DenseFeat``'s ``transform_fn`` applied (``f``
        itself when there is none)."""
        transformed = [fc for fc in self.dense if fc.transform is not None]
        if not transformed:
            return f
        return {**f, **{fc.name: dense_values(fc, f[fc.name]) for fc in transformed}}

    def history_mask(self, f, rows=slice(None)):
        """Valid history positions ``(batch_size, T)`` of the checked features ``f`` (``rows`` of them)."""
        if self.history_mask_rule == "length":                  # DeepCTR-Torch: t < keys_length
            return sequence_mask(f[self.history_length_name][rows], self.history[0].maxlen)
        mask = f[self.history[0].name][rows] != 0               # Keras mask_zero: AND over fields
        for fc in self.history[1:]:
            mask &= f[fc.name][rows] != 0
        return mask

    def all_padding(self, f):
        """``(batch_size, T)``: history positions whose ids are all 0 (they all read the same keys)."""
        padding = f[self.history[0].name] == 0
        for fc in self.history[1:]:
            padding &= f[fc.name] == 0
        return padding

    def example(self, dtype):
        """One row of valid inputs (id 1 or 0, length 1, zeros), for ``summary``."""
        out = {}
        for n in self.names:
            fc = self.by_name[n]
            if isinstance(fc, DenseFeat):
                out[n] = np.zeros((1, fc.dimension), dtype=dtype)
            elif isinstance(fc, VarLenSparseFeat) and n == fc.name:
                out[n] = np.full((1, fc.maxlen), min(1, fc.vocabulary_size - 1), dtype=np.int64)
            else:
                out[n] = np.full((1, 1), 1 if isinstance(fc, VarLenSparseFeat) else 0, dtype=np.int64)
        return out


def _first(names, limit=20):
    """At most ``limit`` names for a message."""
    return names if len(names) <= limit else names[:limit] + [f"... and {len(names) - limit} more"]


def dense_values(fc, values):
    """The feature's ``transform_fn`` applied, checked to keep the shape and stay finite."""
    transform = fc.transform
    if transform is None:
        return values
    with np.errstate(all="ignore"):            # a value outside the domain is reported below
        out = np.asarray(transform(values), dtype=values.dtype)
    if out.shape != values.shape:
        raise ValueError(f"transform_fn of feature {fc.name!r} must keep the shape {values.shape}, "
                         f"returned {out.shape}")
    check_finite_rows(out, f"transform_fn of feature {fc.name!r} applied to its values",
                      hint="check the inputs against the transform's domain")
    return out
