"""The input pipeline DeepCTR's models share, and the models built on it.

``FeatureModel`` turns a dict of feature arrays into the DNN input exactly as
DeepCTR's DIN graph does: one embedding table per ``embedding_name``, every
``SparseFeat`` embedded, non-history ``VarLenSparseFeat`` pooled by their
``combiner``, an optional history pooled by attention, all concatenated and
flattened, dense features appended; then ``DNN``, a bias-free ``Dense(1)`` and
``PredictionLayer``. ``DIN`` adds the attention; ``DNNModel`` (the baseline)
pools every sequence by its combiner.
"""
import numpy as np

from .base import Model
from ..registry import register_model
from ..feature_column import (SparseFeat, VarLenSparseFeat, DenseFeat, build_input_features,
                              feature_columns_to_config, feature_columns_from_config)
from ..layers.core import DNN, PredictionLayer
from ..layers.dense import Dense
from ..layers.embedding import Embedding
from ..layers.sequence import SequencePoolingLayer, AttentionSequencePoolingLayer
from ..ops.sequence import sequence_mask
from .._validation import (check_units, check_rate, check_nonnegative, check_seed, resolve_dtype, check_shape,
                           check_finite_rows, as_feature_dict, check_device)


def _split_last(d, sizes):
    """Split ``d`` along its last axis into pieces of the given sizes."""
    return np.split(d, np.cumsum(sizes)[:-1], axis=-1) if len(sizes) > 1 else [d]


class FeatureModel(Model):
    """Shared machinery of ``DIN`` and ``DNNModel`` (not used directly)."""

    def __init__(self, dnn_feature_columns, history_feature_list=(), dnn_use_bn=False,
                 dnn_hidden_units=(256, 128, 64), dnn_activation="relu", att_hidden_size=(80, 40),
                 att_activation="dice", att_weight_normalization=False, l2_reg_dnn=0, l2_reg_embedding=1e-6,
                 dnn_dropout=0, seed=1024, task="binary", dtype="float64", name=None, split=True,
                 conventions=None, device="cpu"):
        self.device = check_device(device)
        super().__init__(name=name, dtype=resolve_dtype(dtype) or np.dtype(np.float64),
                         conventions=conventions)
        if (isinstance(dnn_feature_columns, (SparseFeat, VarLenSparseFeat, DenseFeat))
                or not hasattr(dnn_feature_columns, "__iter__")):
            raise TypeError("dnn_feature_columns must be a list of feature columns")
        self.dnn_feature_columns = list(dnn_feature_columns)
        if not self.dnn_feature_columns:
            raise ValueError("dnn_feature_columns can not be an empty list")
        self.history_feature_list = list(history_feature_list)
        self.dnn_use_bn = bool(dnn_use_bn)
        self.dnn_hidden_units = check_units(dnn_hidden_units, "dnn_hidden_units")
        self.dnn_activation = dnn_activation
        self.att_hidden_size = check_units(att_hidden_size, "att_hidden_size")
        self.att_activation = att_activation
        self.att_weight_normalization = bool(att_weight_normalization)
        self.l2_reg_dnn = check_nonnegative(l2_reg_dnn, "l2_reg_dnn")
        self.l2_reg_embedding = check_nonnegative(l2_reg_embedding, "l2_reg_embedding")
        self.dnn_dropout = check_rate(dnn_dropout, "dnn_dropout")
        self.seed = check_seed(seed)
        if task not in ("binary", "regression"):
            raise ValueError(f"task must be 'binary' or 'regression', got {task!r} (DeepCTR's DIN graph ends "
                             "in Dense(1): one output per sample, so 'multiclass' has no meaning here)")
        self.task = task
        self.split = bool(split)
        self._plan()
        self.build()

    # -- the graph, from the feature columns alone ----------------------------------------
    def _plan(self):
        inputs = build_input_features(self.dnn_feature_columns)
        self.feature_names = list(inputs)
        #: feature name -> its column (a VarLenSparseFeat's length_name maps to that column)
        self.input_features = inputs
        cols = self.dnn_feature_columns
        self.sparse_columns = [fc for fc in cols if isinstance(fc, SparseFeat)]
        self.dense_columns = [fc for fc in cols if isinstance(fc, DenseFeat)]
        varlen = [fc for fc in cols if isinstance(fc, VarLenSparseFeat)]
        hist_names = ["hist_" + n for n in self.history_feature_list]
        self.history_columns = [fc for fc in varlen if fc.name in hist_names]
        self.pooled_columns = [fc for fc in varlen if fc.name not in hist_names]
        sparse_names = [fc.name for fc in self.sparse_columns]
        for n in self.history_feature_list:
            if n not in sparse_names:
                raise ValueError(f"history_feature_list names {n!r}, which is not a SparseFeat of "
                                 f"dnn_feature_columns (SparseFeat names: {sparse_names})")
            if "hist_" + n not in [fc.name for fc in varlen]:
                raise ValueError(f"history_feature_list names {n!r} but dnn_feature_columns has no "
                                 f"VarLenSparseFeat named {'hist_' + n!r}")
        # DeepCTR takes query and keys in feature-column order: they must line up field by field
        self.query_columns = [fc for fc in self.sparse_columns if fc.name in self.history_feature_list]
        query_order = [fc.name for fc in self.query_columns]
        keys_order = [fc.name[len("hist_"):] for fc in self.history_columns]
        if query_order != keys_order:
            raise ValueError(f"the query fields {query_order} (SparseFeat column order) and the history fields "
                             f"{['hist_' + n for n in keys_order]} (VarLenSparseFeat column order) must come in "
                             "the same order; DeepCTR would pair them position by position")
        for q, k in zip(self.query_columns, self.history_columns):
            if q.embedding_dim != k.embedding_dim:
                raise ValueError(f"embedding_dim of {q.name!r} ({q.embedding_dim}) and {k.name!r} "
                                 f"({k.embedding_dim}) must match")
        # DeepCTR-Torch masks the history by the first VarLenSparseFeat's length_name
        self.history_length_name = next((fc.length_name for fc in varlen if fc.length_name is not None), None)
        if (self.history_columns and self.conventions.history_mask == "length"
                and self.history_length_name is None):
            raise ValueError(f"conventions {self.conventions.name!r} mask the history by a length feature "
                             "(DeepCTR-Torch's keys_length), but no VarLenSparseFeat has a length_name; "
                             "give the history VarLenSparseFeat a length_name")
        if len({fc.maxlen for fc in self.history_columns}) > 1:
            raise ValueError("every history VarLenSparseFeat must have the same maxlen, got "
                             f"{ {fc.name: fc.maxlen for fc in self.history_columns} }")
        # one table per embedding_name; DeepCTR silently keeps the last definition: npctr insists they agree
        self._tables = {}
        for fc in self.sparse_columns + varlen:
            seen = self._tables.get(fc.embedding_name)
            if seen is not None and (seen.vocabulary_size, seen.embedding_dim) != (fc.vocabulary_size,
                                                                                   fc.embedding_dim):
                raise ValueError(f"features {seen.name!r} and {fc.name!r} share the embedding "
                                 f"{fc.embedding_name!r} but differ in vocabulary_size/embedding_dim: "
                                 f"({seen.vocabulary_size}, {seen.embedding_dim}) vs "
                                 f"({fc.vocabulary_size}, {fc.embedding_dim})")
            self._tables.setdefault(fc.embedding_name, fc)
        self._masked_tables = {fc.embedding_name for fc in varlen}
        #: embedding_name -> the features looked up in that table, in column order
        self.table_features = {}
        for fc in self.sparse_columns + varlen:
            self.table_features.setdefault(fc.embedding_name, []).append(fc.name)

    def build(self, input_shape=None):
        if self.built:
            return
        for i, (emb_name, fc) in enumerate(self._tables.items()):
            table = Embedding(fc.vocabulary_size, fc.embedding_dim, fc.embeddings_initializer,
                              l2_reg=self.l2_reg_embedding, mask_zero=emb_name in self._masked_tables,
                              seed=None if self.seed is None else self.seed + 2020 + i, dtype=self.dtype,
                              name=f"sparse_emb_{emb_name}")
            table.trainable = fc.trainable
            self.add_layer(f"sparse_emb_{emb_name}", table, input_shape=(None,))
        for fc in self.pooled_columns:
            self.add_layer(f"sequence_pooling_{fc.name}", SequencePoolingLayer(
                fc.combiner, supports_masking=fc.length_name is None, dtype=self.dtype))
        query_dim = sum(fc.embedding_dim for fc in self.query_columns)
        if self.history_columns:
            att = AttentionSequencePoolingLayer(self.att_hidden_size, self.att_activation,
                                                weight_normalization=self.att_weight_normalization,
                                                supports_masking=True, split=self.split, dtype=self.dtype,
                                                name="attention_sequence_pooling_layer")
            maxlen = self.history_columns[0].maxlen
            self.add_layer("attention_sequence_pooling_layer", att)
            att._layers["local_att"]._build_for(self.dtype, [(None, 1, query_dim), (None, maxlen, query_dim)])
        self._emb_sizes = ([fc.embedding_dim for fc in self.sparse_columns]
                           + [fc.embedding_dim for fc in self.pooled_columns]
                           + ([query_dim] if self.history_columns else []))
        self._dense_sizes = [fc.dimension for fc in self.dense_columns]
        dnn_input_dim = sum(self._emb_sizes) + sum(self._dense_sizes)
        self.add_layer("dnn", DNN(self.dnn_hidden_units, self.dnn_activation, self.l2_reg_dnn, self.dnn_dropout,
                                  self.dnn_use_bn, seed=self.seed, dtype=self.dtype, name="dnn"),
                       input_shape=(None, dnn_input_dim))
        self.add_layer("dense", Dense(1, use_bias=False, seed=self.seed, dtype=self.dtype, name="dense"),
                       input_shape=(None, self.dnn_hidden_units[-1] if self.dnn_hidden_units else dnn_input_dim))
        self.add_layer("prediction_layer", PredictionLayer(self.task, dtype=self.dtype, name="prediction_layer"),
                       input_shape=(None, 1))
        self.built = True

    # -- inputs ---------------------------------------------------------------------------
    def check_features(self, x, check_finite=True, name="x", check_ids=True):
        """Validate a request once: the feature dict (or list in ``feature_names`` order), every
        feature's dtype and shape, dense values finite (``check_finite``) and ids within their
        table (``check_ids``). Returns ``(batch_size, {name: array in canonical shape})``: ids
        ``(B, 1)`` / ``(B, maxlen)``, dense values ``(B, dimension)`` in the model's dtype
        (before any ``transform_fn``, see ``transform_dense``). Checking the result again
        returns it unchanged."""
        x = as_feature_dict(x, self.feature_names, name)
        missing = [n for n in self.feature_names if n not in x]
        extra = [n for n in x if n not in self.input_features]
        if missing or extra:
            raise ValueError(f"{name} must hold exactly the features {self.feature_names}; "
                             f"missing {missing}, unexpected {extra}")
        arrays = {n: np.asarray(x[n]) for n in self.feature_names}
        sizes = {n: (a.shape[0] if a.ndim else None) for n, a in arrays.items()}
        batch = sizes[self.feature_names[0]]
        if batch is None or any(s != batch for s in sizes.values()):
            raise ValueError(f"every feature must have the same batch size (first axis), got {sizes}")
        out = {n: self._canonical(n, a, batch, check_finite, name) for n, a in arrays.items()}
        if check_ids:
            for emb_name, names in self.table_features.items():
                table = self.get_layer(f"sparse_emb_{emb_name}")
                for n in names:
                    table.check_ids(out[n], n)
        return batch, out

    def _canonical(self, n, a, batch, check_finite, name):
        """Feature ``n``'s array ``a`` checked and in its canonical shape and dtype."""
        fc = self.input_features[n]
        if isinstance(fc, DenseFeat):
            if a.dtype.kind not in "biuf":
                raise TypeError(f"feature {n!r} must be numeric, got dtype {a.dtype}")
            if a.shape not in ((batch, fc.dimension),) + (((batch,),) if fc.dimension == 1 else ()):
                raise ValueError(f"feature {n!r} must have shape (batch_size, {fc.dimension}), got {a.shape}")
            if check_finite:
                check_finite_rows(a, f"{name}[{n!r}]")
            return a.reshape(batch, fc.dimension).astype(self.dtype, copy=False)
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

    def _check_x(self, x, name="x", check_finite=True):
        batch, f = self.check_features(x, check_finite, name)
        return f, batch

    def transform_dense(self, f):
        """The checked features ``f`` with every ``DenseFeat``'s ``transform_fn`` applied (``f``
        itself when there is none)."""
        transformed = [fc for fc in self.dense_columns if fc.transform is not None]
        if not transformed:
            return f
        return {**f, **{fc.name: self._dense_values(fc, f[fc.name]) for fc in transformed}}

    def history_mask(self, f, rows=slice(None)):
        """Valid history positions ``(batch_size, T)`` of the checked features ``f`` (``rows`` of them)."""
        if self.conventions.history_mask == "length":          # DeepCTR-Torch: t < keys_length
            maxlen = self.history_columns[0].maxlen
            return sequence_mask(f[self.history_length_name][rows], maxlen)
        mask = f[self.history_columns[0].name][rows] != 0       # Keras mask_zero: AND over fields
        for fc in self.history_columns[1:]:
            mask &= f[fc.name][rows] != 0
        return mask

    @staticmethod
    def _dense_values(fc, values):
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

    def _example_input(self):
        """One row of valid inputs (id 1 or 0, length 1, zeros), for ``summary``."""
        out = {}
        for n in self.feature_names:
            fc = self.input_features[n]
            if isinstance(fc, DenseFeat):
                out[n] = np.zeros((1, fc.dimension), dtype=self.dtype)
            elif isinstance(fc, VarLenSparseFeat) and n == fc.name:
                out[n] = np.full((1, fc.maxlen), min(1, fc.vocabulary_size - 1), dtype=np.int64)
            else:
                out[n] = np.full((1, 1), 1 if isinstance(fc, VarLenSparseFeat) else 0, dtype=np.int64)
        return out

    # -- forward / backward ---------------------------------------------------------------
    def _forward_logit(self, x, training, backprop):
        x = as_feature_dict(x, self.feature_names)
        batch, f = self.check_features(x, check_finite=False, check_ids=False)   # the tables check ids
        f = self.transform_dense(f)
        if training:
            self.weights_changed()          # moving statistics move
        emb = {}
        for emb_name, names in self.table_features.items():
            outs = self._layers[f"sparse_emb_{emb_name}"].lookup([f[n] for n in names], training, backprop,
                                                                 names=names)
            emb.update(zip(names, outs))
        pieces = [emb[fc.name] for fc in self.sparse_columns]                      # (B, 1, E_i)
        for fc in self.pooled_columns:
            layer = self._layers[f"sequence_pooling_{fc.name}"]
            if fc.length_name is None:
                pieces.append(layer.forward(emb[fc.name], training, backprop, mask=f[fc.name] != 0))
            else:
                pieces.append(layer.forward([emb[fc.name], f[fc.length_name]], training, backprop))
        if self.history_columns:
            query = np.concatenate([emb[fc.name] for fc in self.query_columns], axis=-1)
            keys = np.concatenate([emb[fc.name] for fc in self.history_columns], axis=-1)
            mask = self.history_mask(f)
            # every position whose ids are all padding looks up the same key (row 0 of each table)
            all_padding = f[self.history_columns[0].name] == 0
            for fc in self.history_columns[1:]:
                all_padding &= f[fc.name] == 0
            hist, scores = self._layers["attention_sequence_pooling_layer"].forward_with_scores(
                [query, keys], training, backprop, mask=mask, shared_keys=all_padding)
            self.attention_scores = scores
            pieces.append(hist)
        # DeepCTR's combined_dnn_input: flattened embeddings first, dense values after
        flat = [np.concatenate(pieces, axis=-1).reshape(batch, sum(self._emb_sizes))] if pieces else []
        deep = np.concatenate(flat + [f[fc.name] for fc in self.dense_columns], axis=-1)
        # gradients w.r.t. dense features are returned in the shapes they came in
        self._dense_input_shapes = {fc.name: np.shape(x[fc.name]) for fc in self.dense_columns}
        h = self._layers["dnn"].forward(deep, training, backprop)
        return self._layers["dense"].forward(h, training, backprop)

    def inference(self, threads=None, chunk_rows=None):
        """A ``npctr.serving.Predictor`` for this model: what a server holds.

        Same values as ``forward(x, training=False)`` to round-off, prepared weights,
        valid-position attention, chunked and threaded (see ``docs/inference.md``).
        """
        from ..serving.predictor import Predictor
        return Predictor(self, threads=threads, chunk_rows=chunk_rows)

    def _predict(self, x, batch_size, check_finite):
        # the Predictor validates the request once (its small-batch path most cheaply)
        return self._predictor().predict(x, batch_size, check_finite=check_finite)

    def _predict_checked(self, f, n, batch_size):
        return self._predictor().predict_checked(f, n, batch_size)

    def forward(self, x, training=False, backprop=None):
        """Predictions ``(batch_size, 1)`` for the feature dict ``x``."""
        logit = self._forward_logit(x, training, backprop)
        return self._layers["prediction_layer"].forward(logit, training, backprop)

    def forward_logits(self, x, training=False, backprop=None):
        """The sigmoid's input ``logit + global_bias`` ``(batch_size, 1)`` (binary task)."""
        logit = self._forward_logit(x, training, backprop)
        bias = self._layers["prediction_layer"]._params.get("global_bias")
        return logit if bias is None else logit + bias

    def backward(self, grad_output):
        """Set every gradient; return ``{dense feature name: gradient}``."""
        return self._backward_logit(self._layers["prediction_layer"].backward(grad_output))

    def backward_logits(self, d_logits):
        """Backward from ``d L / d(logit + global_bias)`` (pairs with ``forward_logits``)."""
        prediction = self._layers["prediction_layer"]
        d_logits = np.asarray(d_logits, dtype=self.dtype)
        check_shape(d_logits, "d_logits", self._layers["dense"]._output_shape)   # the logits' (B, 1)
        if prediction.use_bias:
            prediction._grads["global_bias"] = d_logits.sum(axis=0)
        return self._backward_logit(d_logits)

    def _backward_logit(self, d_logit):
        d_h = self._layers["dense"].backward(d_logit)
        d_deep = self._layers["dnn"].backward(d_h)
        n_emb = sum(self._emb_sizes)
        d_emb_flat, d_dense = d_deep[:, :n_emb], d_deep[:, n_emb:]
        pieces = _split_last(d_emb_flat[:, None, :], self._emb_sizes) if self._emb_sizes else []
        d_emb = {fc.name: p for fc, p in zip(self.sparse_columns, pieces)}
        for fc, p in zip(self.pooled_columns, pieces[len(self.sparse_columns):]):
            d = self._layers[f"sequence_pooling_{fc.name}"].backward(p)
            d_emb[fc.name] = d if fc.length_name is None else d[0]
        if self.history_columns:
            d_query, d_keys = self._layers["attention_sequence_pooling_layer"].backward(pieces[-1])
            sizes = [fc.embedding_dim for fc in self.query_columns]
            for fc, d in zip(self.query_columns, _split_last(d_query, sizes)):
                d_emb[fc.name] = d_emb[fc.name] + d
            for fc, d in zip(self.history_columns, _split_last(d_keys, sizes)):
                d_emb[fc.name] = d
        for emb_name, names in self.table_features.items():
            self._layers[f"sparse_emb_{emb_name}"].backward_many([d_emb[n] for n in names])
        out = {}
        for fc, d in zip(self.dense_columns, _split_last(d_dense, self._dense_sizes)):
            out[fc.name] = d.reshape(self._dense_input_shapes[fc.name])
        return out

    def compute_output_shape(self, input_shape=None):
        return (None, 1)

    def get_config(self):
        return {"dnn_feature_columns": feature_columns_to_config(self.dnn_feature_columns),
                "dnn_use_bn": self.dnn_use_bn, "dnn_hidden_units": list(self.dnn_hidden_units),
                "dnn_activation": self.dnn_activation, "l2_reg_dnn": self.l2_reg_dnn,
                "l2_reg_embedding": self.l2_reg_embedding, "dnn_dropout": self.dnn_dropout, "seed": self.seed,
                "task": self.task, "dtype": self.dtype.name, "name": self.name, "split": self.split,
                "conventions": self._conventions_name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["dnn_feature_columns"] = feature_columns_from_config(config["dnn_feature_columns"])
        return cls(**config)


@register_model
class DIN(FeatureModel):
    """Deep Interest Network with DeepCTR's signature, defaults and graph.

    Parameters
    ----------
    dnn_feature_columns : list of SparseFeat, VarLenSparseFeat, DenseFeat
    history_feature_list : list of str
        Candidate features whose ``hist_<name>`` sequences are attended to.
    dnn_use_bn, dnn_hidden_units, dnn_activation, l2_reg_dnn, dnn_dropout, seed :
        The output DNN's arguments.
    att_hidden_size, att_activation, att_weight_normalization :
        The attention's ``LocalActivationUnit`` and score normalisation.
    l2_reg_embedding : float, default 1e-6
        L2 on every embedding table (whole table, as Keras).
    task : {'binary', 'regression'}
    dtype : 'float64' (default) or 'float32'
    split : bool, default True
        The LocalActivationUnit's split first layer (same result, less work).
    conventions : {'tf_keras', 'keras3', 'torch'}, optional
        Whose numbers to reproduce (``npctr.conventions``, ``docs/conventions.md``):
        BatchNormalization/Dice constants, the history mask, the loss and the
        optimizer flavour ``compile`` picks. Default ``"tf_keras"``.
    device : 'cpu'
        Accepted as DeepCTR-Torch users write it; anything else is a ``ValueError``.

    ``forward(x)`` takes a dict of arrays keyed by ``feature_names`` and returns
    ``(batch_size, 1)``; afterwards ``attention_scores`` holds the attention
    weights ``(batch_size, 1, T)`` of that forward.
    """

    def __init__(self, dnn_feature_columns, history_feature_list, dnn_use_bn=False,
                 dnn_hidden_units=(256, 128, 64), dnn_activation="relu", att_hidden_size=(80, 40),
                 att_activation="dice", att_weight_normalization=False, l2_reg_dnn=0, l2_reg_embedding=1e-6,
                 dnn_dropout=0, seed=1024, task="binary", dtype="float64", name="din", split=True,
                 conventions=None, device="cpu"):
        if isinstance(history_feature_list, str) or not hasattr(history_feature_list, "__iter__"):
            raise TypeError(f"history_feature_list must be a list of feature names, got {history_feature_list!r}")
        if not list(history_feature_list):
            raise ValueError("history_feature_list must name at least one feature")
        super().__init__(dnn_feature_columns, history_feature_list, dnn_use_bn, dnn_hidden_units,
                         dnn_activation, att_hidden_size, att_activation, att_weight_normalization, l2_reg_dnn,
                         l2_reg_embedding, dnn_dropout, seed, task, dtype, name, split, conventions, device)

    #: the attention weights ``(batch_size, 1, T)`` of the last forward or predict
    attention_scores = None

    def _predict(self, x, batch_size, check_finite):
        # the fast path records the attention weights as it goes (a few microseconds)
        pred, self.attention_scores = self._predictor().predict(x, batch_size, return_attention=True,
                                                               check_finite=check_finite)
        return pred

    def _predict_checked(self, f, n, batch_size):
        pred, self.attention_scores = self._predictor().predict_checked(f, n, batch_size, return_attention=True)
        return pred

    def get_config(self):
        return {**super().get_config(), "history_feature_list": list(self.history_feature_list),
                "att_hidden_size": list(self.att_hidden_size), "att_activation": self.att_activation,
                "att_weight_normalization": self.att_weight_normalization}


@register_model
class DNNModel(FeatureModel):
    """A plain DNN on the features: DIN's graph without attention.

    Every ``VarLenSparseFeat`` (the behaviour history included) is pooled by its
    ``combiner`` (mean by default). This is the baseline DIN is measured against.
    Arguments as ``DIN`` without the attention ones.
    """

    def __init__(self, dnn_feature_columns, dnn_use_bn=False, dnn_hidden_units=(256, 128, 64),
                 dnn_activation="relu", l2_reg_dnn=0, l2_reg_embedding=1e-6, dnn_dropout=0, seed=1024,
                 task="binary", dtype="float64", name="dnn_model", split=True, conventions=None, device="cpu"):
        super().__init__(dnn_feature_columns, (), dnn_use_bn, dnn_hidden_units, dnn_activation,
                         l2_reg_dnn=l2_reg_dnn, l2_reg_embedding=l2_reg_embedding, dnn_dropout=dnn_dropout,
                         seed=seed, task=task, dtype=dtype, name=name, split=split, conventions=conventions,
                         device=device)
