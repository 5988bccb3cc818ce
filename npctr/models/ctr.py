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
from ..feature_column import (SparseFeat, VarLenSparseFeat, DenseFeat, feature_columns_to_config,
                              feature_columns_from_config)
from ..layers.core import DNN, PredictionLayer
from ..layers.dense import Dense
from ..layers.embedding import Embedding
from ..layers.sequence import SequencePoolingLayer, AttentionSequencePoolingLayer
from .features import FeatureInputs, check_history_feature_list
from .._validation import (check_units, check_rate, check_nonnegative, check_seed, resolve_dtype, check_shape,
                           as_feature_dict, check_device)


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
        self._set_common(dnn_feature_columns, history_feature_list, dnn_hidden_units, dnn_activation, l2_reg_dnn,
                         l2_reg_embedding, dnn_dropout, seed, task, dtype, name, conventions, device)
        self.dnn_use_bn = bool(dnn_use_bn)
        self.att_hidden_size = check_units(att_hidden_size, "att_hidden_size")
        self.att_activation = att_activation
        self.att_weight_normalization = bool(att_weight_normalization)
        self.split = bool(split)
        self._plan()
        self.build()

    def _set_common(self, dnn_feature_columns, history_feature_list, dnn_hidden_units, dnn_activation, l2_reg_dnn,
                    l2_reg_embedding, dnn_dropout, seed, task, dtype, name, conventions, device):
        """The arguments every DeepCTR model of this family shares, checked and stored."""
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
        self.dnn_hidden_units = check_units(dnn_hidden_units, "dnn_hidden_units")
        self.dnn_activation = dnn_activation
        self.l2_reg_dnn = check_nonnegative(l2_reg_dnn, "l2_reg_dnn")
        self.l2_reg_embedding = check_nonnegative(l2_reg_embedding, "l2_reg_embedding")
        self.dnn_dropout = check_rate(dnn_dropout, "dnn_dropout")
        self.seed = check_seed(seed)
        if task not in ("binary", "regression"):
            raise ValueError(f"task must be 'binary' or 'regression', got {task!r} (DeepCTR's {type(self).__name__} "
                             "graph ends in Dense(1): one output per sample, so 'multiclass' has no meaning here)")
        self.task = task

    # -- the graph, from the feature columns alone ----------------------------------------
    def _feature_inputs(self):
        """The feature plan (``FeatureInputs``) of this model's columns."""
        return FeatureInputs(self.dnn_feature_columns, self.history_feature_list, self.conventions)

    def _plan(self):
        plan = self.features = self._feature_inputs()
        # the plan's parts under the names serving, interop and tests read
        self.feature_names, self.input_features = plan.names, plan.by_name
        self.sparse_columns, self.dense_columns, self.pooled_columns = plan.sparse, plan.dense, plan.pooled
        self.history_columns, self.query_columns = plan.history, plan.query
        self.table_features, self.history_length_name = plan.table_features, plan.history_length_name

    def build(self, input_shape=None):
        if self.built:
            return
        self._build_tables()
        self._build_pooling()
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
        self._build_output(sum(self._emb_sizes) + sum(self._dense_sizes), self.dnn_use_bn)
        self.built = True

    def _build_tables(self):
        """One ``Embedding`` per embedding_name (``sparse_emb_<embedding_name>``)."""
        for i, (emb_name, fc) in enumerate(self.features.tables.items()):
            table = Embedding(fc.vocabulary_size, fc.embedding_dim, fc.embeddings_initializer,
                              l2_reg=self.l2_reg_embedding, mask_zero=emb_name in self.features.masked_tables,
                              seed=None if self.seed is None else self.seed + 2020 + i, dtype=self.dtype,
                              name=f"sparse_emb_{emb_name}")
            table.trainable = fc.trainable
            self.add_layer(f"sparse_emb_{emb_name}", table, input_shape=(None,))

    def _build_pooling(self):
        """A ``SequencePoolingLayer`` per pooled (non-history) sequence."""
        for fc in self.pooled_columns:
            self.add_layer(f"sequence_pooling_{fc.name}", SequencePoolingLayer(
                fc.combiner, supports_masking=fc.length_name is None, dtype=self.dtype))

    def _build_output(self, dnn_input_dim, use_bn):
        """The output stack: ``DNN``, a bias-free ``Dense(1)``, ``PredictionLayer``."""
        self.add_layer("dnn", DNN(self.dnn_hidden_units, self.dnn_activation, self.l2_reg_dnn, self.dnn_dropout,
                                  use_bn, seed=self.seed, dtype=self.dtype, name="dnn"),
                       input_shape=(None, dnn_input_dim))
        self.add_layer("dense", Dense(1, use_bias=False, seed=self.seed, dtype=self.dtype, name="dense"),
                       input_shape=(None, self.dnn_hidden_units[-1] if self.dnn_hidden_units else dnn_input_dim))
        self.add_layer("prediction_layer", PredictionLayer(self.task, dtype=self.dtype, name="prediction_layer"),
                       input_shape=(None, 1))

    # -- inputs ---------------------------------------------------------------------------
    def check_features(self, x, check_finite=True, name="x", check_ids=True):
        """Validate a request once (``FeatureInputs.check``: names, dtypes, shapes, finite dense
        values) and, with ``check_ids``, every id against its table. Returns ``(batch_size,
        {name: array in canonical shape})``; checking the result again returns it unchanged."""
        batch, f = self.features.check(x, self.dtype, check_finite, name)
        if check_ids:
            for emb_name, names in self.table_features.items():
                table = self.get_layer(f"sparse_emb_{emb_name}")
                for n in names:          # ids of validation data are named as such
                    table.check_ids(f[n], n if name == "x" else f"{name}[{n!r}]")
        return batch, f

    def _check_x(self, x, name="x", check_finite=True):
        batch, f = self.check_features(x, check_finite, name)
        return f, batch

    def transform_dense(self, f):
        """The checked features ``f`` with every ``transform_fn`` applied (``FeatureInputs``)."""
        return self.features.transform_dense(f)

    def history_mask(self, f, rows=slice(None)):
        """Valid history positions ``(batch_size, T)`` of the checked features ``f`` (``rows`` of them)."""
        return self.features.history_mask(f, rows)

    def _example_input(self):
        return self.features.example(self.dtype)

    # -- forward / backward ---------------------------------------------------------------
    def _prepare(self, x, training):
        """``(x as a dict, batch_size, checked features with transforms applied)``; a training
        forward tells the Predictor that moving statistics move."""
        x = as_feature_dict(x, self.feature_names)
        batch, f = self.check_features(x, check_finite=False, check_ids=False)   # the tables check ids
        f = self.transform_dense(f)
        if training:
            self.weights_changed()          # moving statistics move
        return x, batch, f

    def _embed(self, f, training, backprop):
        """``{feature name: embeddings}``: every id feature looked up in its table."""
        emb = {}
        for emb_name, names in self.table_features.items():
            outs = self._layers[f"sparse_emb_{emb_name}"].lookup([f[n] for n in names], training, backprop,
                                                                 names=names)
            emb.update(zip(names, outs))
        return emb

    def _pool(self, emb, f, training, backprop):
        """The pooled sequences ``(B, 1, E)``, in column order."""
        pieces = []
        for fc in self.pooled_columns:
            layer = self._layers[f"sequence_pooling_{fc.name}"]
            if fc.length_name is None:
                pieces.append(layer.forward(emb[fc.name], training, backprop, mask=f[fc.name] != 0))
            else:
                pieces.append(layer.forward([emb[fc.name], f[fc.length_name]], training, backprop))
        return pieces

    def _run_output(self, x, deep, training, backprop):
        """``DNN`` and ``Dense(1)`` on the DNN input ``deep``; remembers the dense features'
        input shapes for their gradients."""
        self._dense_input_shapes = {fc.name: np.shape(x[fc.name]) for fc in self.dense_columns}
        h = self._layers["dnn"].forward(deep, training, backprop)
        return self._layers["dense"].forward(h, training, backprop)

    def _forward_logit(self, x, training, backprop):
        x, batch, f = self._prepare(x, training)
        emb = self._embed(f, training, backprop)
        pieces = [emb[fc.name] for fc in self.sparse_columns]                      # (B, 1, E_i)
        pieces += self._pool(emb, f, training, backprop)
        if self.history_columns:
            query = np.concatenate([emb[fc.name] for fc in self.query_columns], axis=-1)
            keys = np.concatenate([emb[fc.name] for fc in self.history_columns], axis=-1)
            mask = self.history_mask(f)
            # every position whose ids are all padding looks up the same key (row 0 of each table)
            shared_keys = self.features.all_padding(f)
            hist, scores = self._layers["attention_sequence_pooling_layer"].forward_with_scores(
                [query, keys], training, backprop, mask=mask, shared_keys=shared_keys)
            self.attention_scores = scores
            pieces.append(hist)
        # DeepCTR's combined_dnn_input: flattened embeddings first, dense values after
        flat = [np.concatenate(pieces, axis=-1).reshape(batch, sum(self._emb_sizes))] if pieces else []
        deep = np.concatenate(flat + [f[fc.name] for fc in self.dense_columns], axis=-1)
        # gradients w.r.t. dense features are returned in the shapes they came in
        return self._run_output(x, deep, training, backprop)

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

    def _output_backward(self, d_logit):
        """Backward through ``Dense(1)`` and the ``DNN``: the gradient at the DNN input."""
        d_h = self._layers["dense"].backward(d_logit)
        return self._layers["dnn"].backward(d_h)

    def _pool_backward(self, pieces, d_emb):
        """Add the pooled sequences' gradients (``pieces``, column order) to ``d_emb``."""
        for fc, p in zip(self.pooled_columns, pieces):
            d = self._layers[f"sequence_pooling_{fc.name}"].backward(p)
            d_emb[fc.name] = d if fc.length_name is None else d[0]

    def _tables_backward(self, d_emb):
        """Each table's gradient from ``{feature name: d embeddings}`` of every feature it served."""
        for emb_name, names in self.table_features.items():
            self._layers[f"sparse_emb_{emb_name}"].backward_many([d_emb[n] for n in names])

    def _dense_gradients(self, d_dense):
        """``{dense feature name: gradient}`` in the shapes the features came in."""
        out = {}
        for fc, d in zip(self.dense_columns, _split_last(d_dense, self._dense_sizes)):
            out[fc.name] = d.reshape(self._dense_input_shapes[fc.name])
        return out

    def _backward_logit(self, d_logit):
        d_deep = self._output_backward(d_logit)
        n_emb = sum(self._emb_sizes)
        d_emb_flat, d_dense = d_deep[:, :n_emb], d_deep[:, n_emb:]
        pieces = _split_last(d_emb_flat[:, None, :], self._emb_sizes) if self._emb_sizes else []
        d_emb = {fc.name: p for fc, p in zip(self.sparse_columns, pieces)}
        self._pool_backward(pieces[len(self.sparse_columns):], d_emb)
        if self.history_columns:
            d_query, d_keys = self._layers["attention_sequence_pooling_layer"].backward(pieces[-1])
            sizes = [fc.embedding_dim for fc in self.query_columns]
            for fc, d in zip(self.query_columns, _split_last(d_query, sizes)):
                d_emb[fc.name] = d_emb[fc.name] + d
            for fc, d in zip(self.history_columns, _split_last(d_keys, sizes)):
                d_emb[fc.name] = d
        self._tables_backward(d_emb)
        return self._dense_gradients(d_dense)

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


class AttentionModel(FeatureModel):
    """A feature model whose attention weights its predictions record (``attention_scores``):
    the Predictor returns them as it goes (a few microseconds)."""

    def _predict(self, x, batch_size, check_finite):
        pred, self.attention_scores = self._predictor().predict(x, batch_size, return_attention=True,
                                                               check_finite=check_finite)
        return pred

    def _predict_checked(self, f, n, batch_size):
        pred, self.attention_scores = self._predictor().predict_checked(f, n, batch_size, return_attention=True)
        return pred


@register_model
class DIN(AttentionModel):
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
        check_history_feature_list(history_feature_list)
        super().__init__(dnn_feature_columns, history_feature_list, dnn_use_bn, dnn_hidden_units,
                         dnn_activation, att_hidden_size, att_activation, att_weight_normalization, l2_reg_dnn,
                         l2_reg_embedding, dnn_dropout, seed, task, dtype, name, split, conventions, device)

    #: the attention weights ``(batch_size, 1, T)`` of the last forward or predict
    attention_scores = None

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
