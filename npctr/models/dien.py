r"""DIEN, the Deep Interest Evolution Network (Zhou et al., AAAI 2019), as DeepCTR builds it.

One batch, with :math:`H` the summed embedding size of the history fields:

1. embeddings: the candidate :math:`q` ``(B, 1, H)``, the behaviours :math:`e` ``(B, T, H)`` and,
   with negative sampling, the sampled negatives :math:`e^-` (``hist_<x>`` / ``neg_hist_<x>``
   share their field's table); the length :math:`L` masks every step (``t < L``);
2. the interest extractor ``gru1`` (a ``DynamicGRU``): the interests :math:`o^{(1)}` ``(B, T, H)``;
3. with ``use_negsampling``, the auxiliary loss on :math:`(o^{(1)}_t, e_{t+1}, e^-_{t+1})`,
   weighted by ``alpha`` in the objective (``auxiliary_loss()``);
4. the interest evolving layer, by ``gru_type``: GRU (``gru2`` on the interests, then attention
   pooling), AIGRU (``gru2`` on the interests scaled by their attention scores), AGRU / AUGRU
   (``gru2``'s cells gated by the scores); its result is the final interest ``hist`` ``(B, 1, H)``;
5. the DNN input in the profile's order (``dien_dnn_input``), ``DNN``, ``Dense(1)``,
   ``PredictionLayer``.

Every framework difference is a conventions field (``docs/conventions.md``); the derivations are
``docs/dien.md``.
"""
import numbers
from typing import NamedTuple

import numpy as np

from .ctr import AttentionModel, _split_last
from .features import FeatureInputs, check_history_feature_list
from ..registry import register_model
from ..feature_column import feature_columns_to_config
from ..layers.auxiliary import AuxiliaryLoss
from ..layers.rnn import DynamicGRU, GRU_TYPES
from ..layers.sequence import AttentionSequencePoolingLayer
from .._validation import check_units

#: DeepCTR's auxiliary network sizes (hard-coded in both frameworks)
AUXILIARY_UNITS = (100, 50, 1)


class DIENCache(NamedTuple):
    """What the model's own backward reads (its layers keep their own caches)."""
    emb_shapes: dict         # feature name -> shape of its embeddings (gradients of unused ones are 0)
    interests: np.ndarray    # (B, T, H) gru1's outputs
    scores: np.ndarray       # (B, 1, T) the evolving layer's attention
    att_rows: object         # rows the attention ran on (None: every row)


@register_model
class DIEN(AttentionModel):
    """Deep Interest Evolution Network with DeepCTR's signature, defaults and graph.

    Parameters
    ----------
    dnn_feature_columns : list of SparseFeat, VarLenSparseFeat, DenseFeat
        The ``hist_<x>`` histories need a ``length_name`` (the same for all: DeepCTR's
        ``seq_length``); with ``use_negsampling``, a ``neg_hist_<x>`` for each (sharing ``<x>``'s
        table through ``embedding_name``).
    history_feature_list : list of str
        The candidate fields whose histories evolve (their embedding sizes add up to H).
    gru_type : {'GRU', 'AIGRU', 'AGRU', 'AUGRU'}, default 'GRU'
    use_negsampling : bool, default False
        Add the auxiliary loss (every ``gru_type``; DeepCTR-TF only builds it for AUGRU).
    alpha : float, default 1.0
        The auxiliary loss's weight in the objective.
    use_bn, dnn_hidden_units, dnn_activation, l2_reg_dnn, dnn_dropout, seed :
        The output DNN's arguments.
    att_hidden_units, att_activation, att_weight_normalization :
        The evolving layer's attention (``AttentionSequencePoolingLayer``).
    l2_reg_embedding : float, default 1e-6
    task : {'binary', 'regression'}
    dtype : 'float64' (default) or 'float32'
    name : str, default 'dien'
    split : bool, default True
        The LocalActivationUnit's split first layer (same result, less work).
    conventions : {'tf_keras', 'keras3', 'torch'}, optional
        Whose DIEN to reproduce: GRU cells, AUGRU's meaning, the auxiliary loss, the DNN input
        order, plus every DIN convention (``docs/conventions.md``).
    device : 'cpu'

    ``forward(x)`` takes the features (``feature_names``: the negatives included, as DeepCTR)
    and returns ``(batch_size, 1)``; afterwards ``attention_scores`` holds the evolving layer's
    attention ``(batch_size, 1, T)`` (GRU: the pooling weights over the evolved states),
    ``interests`` the extractor's outputs ``(batch_size, T, H)``, ``final_interest`` the evolving
    layer's result ``(batch_size, 1, H)`` and ``auxiliary_loss()`` the weighted auxiliary loss.
    ``predict`` runs the Predictor (``inference()``: packed sequences, no auxiliary loss) and leaves
    ``attention_scores`` for every row.
    """

    def __init__(self, dnn_feature_columns, history_feature_list, gru_type="GRU", use_negsampling=False, alpha=1.0,
                 use_bn=False, dnn_hidden_units=(256, 128, 64), dnn_activation="relu", att_hidden_units=(64, 16),
                 att_activation="dice", att_weight_normalization=True, l2_reg_dnn=0, l2_reg_embedding=1e-6,
                 dnn_dropout=0, seed=1024, task="binary", dtype="float64", name="dien", split=True,
                 conventions=None, device="cpu"):
        check_history_feature_list(history_feature_list)
        if gru_type not in GRU_TYPES:
            raise ValueError(f"gru_type must be one of {list(GRU_TYPES)}, got {gru_type!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not np.isfinite(alpha):
            raise TypeError(f"alpha must be a finite real number, got {alpha!r}")
        self._set_common(dnn_feature_columns, history_feature_list, dnn_hidden_units, dnn_activation, l2_reg_dnn,
                         l2_reg_embedding, dnn_dropout, seed, task, dtype, name, conventions, device)
        self.gru_type = gru_type
        self.use_negsampling = bool(use_negsampling)
        self.alpha = float(alpha)
        self.use_bn = bool(use_bn)
        self.att_hidden_units = check_units(att_hidden_units, "att_hidden_units")
        self.att_activation = att_activation
        self.att_weight_normalization = bool(att_weight_normalization)
        self.split = bool(split)
        self._plan()
        self._check_plan()
        self.build()

    #: the evolving layer's attention ``(batch_size, 1, T)`` of the last forward or predict
    attention_scores = None
    #: the interest extractor's outputs ``(batch_size, T, H)`` of the last forward
    interests = None
    #: the evolving layer's final interest ``(batch_size, 1, H)`` of the last forward (the DNN's ``hist``)
    final_interest = None

    def _feature_inputs(self):
        # DeepCTR's DIEN: sequences masked by the length only (seq_mask_zero=False), negatives apart
        return FeatureInputs(self.dnn_feature_columns, self.history_feature_list, self.conventions,
                             negative_history=True, history_lengths=True, sequence_mask_zero=False)

    def _check_plan(self):
        plan = self.features
        self.negative_columns = plan.negative
        if self.use_negsampling:
            missing = [f"neg_{fc.name}" for fc in plan.history if f"neg_{fc.name}" not in
                       {c.name for c in plan.negative}]
            if missing:
                raise ValueError(f"use_negsampling=True needs a negative history per history: no VarLenSparseFeat "
                                 f"named {missing} in dnn_feature_columns")
            if plan.history[0].maxlen < 2:
                raise ValueError(f"use_negsampling=True needs maxlen >= 2 (the auxiliary loss pairs each state "
                                 f"with the next behaviour), got maxlen {plan.history[0].maxlen}")

    @property
    def interest_size(self):
        """H: the GRU state size, the summed embedding size of the history fields."""
        return sum(fc.embedding_dim for fc in self.query_columns)

    # -- the graph -------------------------------------------------------------------------------
    def build(self, input_shape=None):
        if self.built:
            return
        self._build_tables()
        self._build_pooling()
        h, t = self.interest_size, self.history_columns[0].maxlen
        seed = self.seed
        self.add_layer("gru1", DynamicGRU(h, "GRU", return_sequence=True, seed=seed, dtype=self.dtype, name="gru1"),
                       input_shape=[(None, t, h), (None, 1)])
        if self.use_negsampling:
            self.add_layer("auxiliary_loss", AuxiliaryLoss(AUXILIARY_UNITS, "sigmoid", dtype=self.dtype,
                                                           name="auxiliary_loss"),
                           input_shape=[(None, t - 1, h), (None, t - 1, h)])
        att = AttentionSequencePoolingLayer(self.att_hidden_units, self.att_activation,
                                            weight_normalization=self.att_weight_normalization,
                                            return_score=self.gru_type != "GRU", supports_masking=False,
                                            split=self.split, dtype=self.dtype,
                                            name="attention_sequence_pooling_layer")
        self.add_layer("attention_sequence_pooling_layer", att)
        att._layers["local_att"]._build_for(self.dtype, [(None, 1, h), (None, t, h)])
        self.add_layer("gru2", DynamicGRU(h, self.gru_type, return_sequence=self.gru_type == "GRU",
                                          seed=None if seed is None else seed + 1, dtype=self.dtype, name="gru2"),
                       input_shape=[(None, t, h), (None, 1)])
        sizes = {"sparse": [fc.embedding_dim for fc in self.sparse_columns],
                 "pooled": [fc.embedding_dim for fc in self.pooled_columns], "hist": [h],
                 "dense": [fc.dimension for fc in self.dense_columns]}
        self._dense_sizes = sizes["dense"]
        #: the DNN input's pieces in order: (kind, index within the kind, size)
        self._dnn_layout = [(kind, i, size) for kind in self.conventions.dien_dnn_input
                            for i, size in enumerate(sizes[kind])]
        self._build_output(sum(size for _, _, size in self._dnn_layout), self.use_bn)
        self.built = True

    # -- forward ---------------------------------------------------------------------------------
    def _forward_logit(self, x, training, backprop, auxiliary=True):
        x, batch, f = self._prepare(x, training)
        emb = self._embed(f, training, backprop)
        length = f[self.history_length_name]                                          # (B, 1)
        query = np.concatenate([emb[fc.name] for fc in self.query_columns], axis=-1)  # (B, 1, H)
        keys = np.concatenate([emb[fc.name] for fc in self.history_columns], axis=-1)  # (B, T, H)
        interests = self._layers["gru1"].forward([keys, length], training, backprop)
        self.interests = interests
        self._aux_loss, self._aux_pending = 0.0, False
        if self.use_negsampling:
            aux = self._layers["auxiliary_loss"]
            aux._cache = None                # a forward without it leaves nothing for add_auxiliary_grads
            if auxiliary:
                negatives = np.concatenate([emb[fc.name] for fc in self.negative_columns], axis=-1)
                self._aux_loss = float(aux.forward([interests[:, :-1], keys[:, 1:], negatives[:, 1:],
                                                    np.maximum(length - 1, 0)], training, backprop))
        hist = self.final_interest = self._evolve(query, interests, length, training, backprop)   # (B, 1, H)
        keep = self._keeps_cache(training, backprop)
        self._cache = DIENCache({n: e.shape for n, e in emb.items()}, interests, self.attention_scores,
                                self._att_rows) if keep else None
        pieces = {"sparse": [emb[fc.name] for fc in self.sparse_columns],
                  "pooled": self._pool(emb, f, training, backprop), "hist": [hist],
                  "dense": [self._dense_input(f[fc.name]) for fc in self.dense_columns]}
        deep = np.concatenate([pieces[kind][i].reshape(batch, size) for kind, i, size in self._dnn_layout], axis=-1)
        return self._run_output(x, deep, training, backprop)

    def _dense_input(self, values):
        """A dense feature as the DNN reads it (``dien_dense_float32``: rounded to float32 first;
        its gradient passes the rounding unchanged, as torch's ``.float()``)."""
        if self.conventions.dien_dense_float32:
            return values.astype(np.float32).astype(self.dtype, copy=False)
        return values

    def _evolve(self, query, interests, length, training, backprop):
        """The interest evolving layer: the final interest ``(B, 1, H)``; records the scores."""
        gru2 = self._layers["gru2"]
        if self.gru_type == "GRU":
            evolved = gru2.forward([interests, length], training, backprop)
            hist, self.attention_scores = self._attend(query, evolved, length, training, backprop)
            return hist
        _, scores = self._attend(query, interests, length, training, backprop)          # (B, 1, T)
        self.attention_scores = scores
        if self.gru_type == "AIGRU":
            return gru2.forward([interests * np.swapaxes(scores, 1, 2), length], training, backprop)
        return gru2.forward([interests, length, np.swapaxes(scores, 1, 2)], training, backprop)

    def _attend(self, query, keys, length, training, backprop):
        """The attention on every row, or (``dien_attention_rows='nonempty'``) on the rows of
        length > 0 only, as DeepCTR-Torch, zeros elsewhere: ``(output, scores)``."""
        att = self._layers["attention_sequence_pooling_layer"]
        rows = None
        if self.conventions.dien_attention_rows == "nonempty" and not np.all(length > 0):
            rows = np.flatnonzero(length[:, 0] > 0)
        self._att_rows = rows
        # past a row's length its keys are all the zero state, and masked: in training the
        # LocalActivationUnit computes them once per row (the layer's shared_keys; same values)
        padding = np.arange(keys.shape[1]) >= length
        if rows is None:
            return att.forward_with_scores([query, keys, length], training, backprop, shared_keys=padding)
        batch, t = keys.shape[:2]
        y_shape = (batch, 1, t) if att.return_score else (batch, 1, keys.shape[-1])
        y, scores = np.zeros(y_shape, self.dtype), np.zeros((batch, 1, t), self.dtype)
        if rows.size:
            y[rows], scores[rows] = att.forward_with_scores([query[rows], keys[rows], length[rows]], training,
                                                            backprop, shared_keys=padding[rows])
        return y, scores

    # -- backward --------------------------------------------------------------------------------
    def _attend_backward(self, d_y, batch_shape, rows):
        """``(d_query, d_keys)`` of ``_attend`` (which ran on ``rows``; None: every row)."""
        att = self._layers["attention_sequence_pooling_layer"]
        if rows is None:
            d_query, d_keys, _ = att.backward(d_y)
            return d_query, d_keys
        (b, t, h) = batch_shape
        d_query, d_keys = np.zeros((b, 1, h), self.dtype), np.zeros((b, t, h), self.dtype)
        if rows.size:
            d_query[rows], d_keys[rows], _ = att.backward(d_y[rows])
        else:                        # the attention did not run: no gradient
            for path, layer in att.sublayers():
                layer._grads.update({k: np.zeros_like(v) for k, v in layer._params.items()})
        return d_query, d_keys

    def _evolve_backward(self, d_hist, cache):
        """``(d_query (B, 1, H), d_interests (B, T, H))`` from the final interest's gradient."""
        gru2 = self._layers["gru2"]
        shape = cache.interests.shape
        if self.gru_type == "GRU":
            d_query, d_evolved = self._attend_backward(d_hist, shape, cache.att_rows)
            return d_query, gru2.backward(d_evolved)[0]
        scores = np.swapaxes(cache.scores, 1, 2)                                       # (B, T, 1)
        if self.gru_type == "AIGRU":
            d_input = gru2.backward(d_hist)[0]                                         # d(o * a)
            d_interests = d_input * scores
            d_scores = np.sum(d_input * cache.interests, axis=-1)[:, None, :]          # (B, 1, T)
        else:
            d_interests, _, d_att = gru2.backward(d_hist)
            d_scores = np.swapaxes(d_att, 1, 2)
        d_query, d_keys = self._attend_backward(d_scores, shape, cache.att_rows)
        return d_query, d_interests + d_keys

    def _backward_logit(self, d_logit):
        cache = self._require_cache()
        d_deep = self._output_backward(d_logit)
        grads = {kind: {} for kind in ("sparse", "pooled", "hist", "dense")}
        for (kind, i, _), d in zip(self._dnn_layout, _split_last(d_deep, [s for _, _, s in self._dnn_layout])):
            grads[kind][i] = d
        d_emb = {fc.name: grads["sparse"][i].reshape(cache.emb_shapes[fc.name])
                 for i, fc in enumerate(self.sparse_columns) if i in grads["sparse"]}
        pooled = [grads["pooled"].get(i) for i in range(len(self.pooled_columns))]
        if all(p is not None for p in pooled):           # (the torch profile leaves them out)
            self._pool_backward([p[:, None, :] for p in pooled], d_emb)
        d_query, d_interests = self._evolve_backward(grads["hist"][0][:, None, :], cache)
        aux = self._layers["auxiliary_loss"] if self.use_negsampling else None
        fused = aux is not None and self._fuse_auxiliary and aux._cache is not None
        if fused:     # a training step: the auxiliary loss's gradient joins before gru1's one BPTT
            d_states, d_click, d_noclick, _ = aux.backward(np.asarray(self.alpha))
            d_interests[:, :-1] += d_states
        d_keys = self._layers["gru1"].backward(d_interests)[0]
        sizes = [fc.embedding_dim for fc in self.query_columns]
        if fused:
            d_keys[:, 1:] += d_click
            d_neg = np.zeros_like(d_keys)
            d_neg[:, 1:] = d_noclick
            d_emb.update(zip([fc.name for fc in self.negative_columns], _split_last(d_neg, sizes)))
        for fc, d in zip(self.query_columns, _split_last(d_query, sizes)):
            d_emb[fc.name] = d_emb[fc.name] + d if fc.name in d_emb else d
        for fc, d in zip(self.history_columns, _split_last(d_keys, sizes)):
            d_emb[fc.name] = d
        for name, shape in cache.emb_shapes.items():      # looked up, unused here (negatives: add_auxiliary_grads)
            if name not in d_emb:
                d_emb[name] = np.zeros(shape, self.dtype)
        self._tables_backward(d_emb)
        if aux is not None and not fused:       # the network is not on the output's path
            aux_dnn = aux._layers["dnn"]
            aux_dnn._grads.update({k: np.zeros_like(v) for k, v in aux_dnn._params.items()})
        self._aux_pending = aux is not None and not fused and aux._cache is not None
        dense = [grads["dense"][i] for i in range(len(self.dense_columns))]
        return self._dense_gradients(np.concatenate(dense, axis=-1) if dense else d_deep[:, :0])

    # -- the auxiliary loss in the objective ----------------------------------------------------
    #: set while a training step computes every gradient at once (``_backward_objective``)
    _fuse_auxiliary = False

    def _backward_objective(self, d, uses_logits):
        """The trainer's backward of the whole objective: the outputs' gradient and ``alpha`` x the
        auxiliary loss's meet at the interests, so ``gru1`` runs ONE BPTT of their sum (BPTT is linear
        in its upstream gradient: the same gradients as ``backward`` + ``add_auxiliary_grads``, which
        run two) and the tables get one scatter."""
        self._fuse_auxiliary = True
        try:
            super()._backward_objective(d, uses_logits)
        finally:
            self._fuse_auxiliary = False

    def auxiliary_loss(self):
        """``alpha`` x the auxiliary loss of the last forward (0.0 without negative sampling),
        as DeepCTR's ``model.add_loss(alpha * aux_loss)`` / DeepCTR-Torch's ``aux_loss``."""
        return self.alpha * self._aux_loss if self.use_negsampling else 0.0

    def add_auxiliary_grads(self):
        """Add the gradients of ``auxiliary_loss()`` (after ``backward``): the auxiliary
        network's, and through the interests (BPTT of ``gru1``) the tables'."""
        if not (self.use_negsampling and getattr(self, "_aux_pending", False)):
            return
        self._aux_pending = False
        d_states, d_click, d_noclick, _ = self._layers["auxiliary_loss"].backward(np.asarray(self.alpha))
        gru1 = self._layers["gru1"]
        d_interests = np.zeros(self._require_cache().interests.shape, self.dtype)
        d_interests[:, :-1] = d_states
        main = dict(gru1._grads)
        d_keys = gru1.backward(d_interests)[0]
        for k, g in main.items():                          # gradients add up over both paths
            gru1._grads[k] = g + gru1._grads[k]
        d_keys[:, 1:] += d_click
        d_neg = np.zeros_like(d_keys)
        d_neg[:, 1:] = d_noclick
        sizes = [fc.embedding_dim for fc in self.query_columns]
        extra = dict(zip([fc.name for fc in self.history_columns], _split_last(d_keys, sizes)))
        extra.update(zip([fc.name for fc in self.negative_columns], _split_last(d_neg, sizes)))
        for emb_name, names in self.table_features.items():
            table = self._layers[f"sparse_emb_{emb_name}"]
            used = [(ids, extra[n]) for n, ids in zip(names, table._require_cache()) if n in extra]
            if used:
                table.add_to_gradient([ids for ids, _ in used], [d for _, d in used])

    # -- inference: the Predictor ---------------------------------------------------------------
    def inference(self, threads=None, chunk_rows=None):
        """A ``npctr.serving.Predictor`` for this DIEN (``npctr.serving.dien``): the GRUs on packed
        sequences (each row's valid steps only), the attention on valid positions, prepared weights,
        chunks and threads; the same values as ``forward(x, training=False)`` to round-off, without the
        auxiliary loss (``docs/inference.md``)."""
        from ..serving.dien import DIENPredictor
        return DIENPredictor(self, threads=threads, chunk_rows=chunk_rows)

    def get_config(self):
        return {"dnn_feature_columns": feature_columns_to_config(self.dnn_feature_columns),
                "history_feature_list": list(self.history_feature_list), "gru_type": self.gru_type,
                "use_negsampling": self.use_negsampling, "alpha": self.alpha, "use_bn": self.use_bn,
                "dnn_hidden_units": list(self.dnn_hidden_units), "dnn_activation": self.dnn_activation,
                "att_hidden_units": list(self.att_hidden_units), "att_activation": self.att_activation,
                "att_weight_normalization": self.att_weight_normalization, "l2_reg_dnn": self.l2_reg_dnn,
                "l2_reg_embedding": self.l2_reg_embedding, "dnn_dropout": self.dnn_dropout, "seed": self.seed,
                "task": self.task, "dtype": self.dtype.name, "name": self.name, "split": self.split,
                "conventions": self._conventions_name}
