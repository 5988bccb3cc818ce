"""Finite-difference checks of DIN's layers and of the whole DIN / DNNModel.

All checks run in float64 with ``npctr.assert_gradients_ok``'s default
tolerances (central differences, eps 1e-6, relative error <= 1e-7; the atol
floor is the round-off of a central difference), on every floating input and
every parameter. Beyond passing, ``check_all`` demands that each array passes on
its *relative* error (so the round-off floor never decides) unless it is listed
as a true zero, whose analytic gradient must then be 0 to round-off; each such
zero is explained where it is listed.

Layers: ``Embedding`` (repeated ids, ``RowGrad``, a table shared by two
lookups), ``SequencePoolingLayer`` (each mode, lengths or a mask, empty rows),
``AttentionSequencePoolingLayer`` (weight normalization, return_score,
sigmoid/Dice in both modes, masking, split first layer). Models: ``DIN`` and
``DNNModel`` with shared tables, Dice in training, BN, dropout, pooled
sequences and dense features.
"""
import numpy as np
import pytest

from npctr import (AttentionSequencePoolingLayer, Embedding, SequencePoolingLayer, assert_gradients_ok,
                   check_gradients)
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.models import DIN, DNNModel
from npctr.sparse import RowGrad

from test_gradients_core import KINK_MARGIN, MIN_BN_VARIANCE, randomize, spy_inputs

RTOL = 1e-7            # assert_gradients_ok's default rtol
ZERO = 1e-12           # |analytic gradient| of an array that is exactly zero mathematically


class Wrapped:
    """What the gradient checker sees of a wrapper around ``self.inner``: its
    ``built``, ``params``, ``grads``, ``snapshot()`` and ``restore()``. (Nothing
    more: ``state`` and ``sublayers`` are added by the wrappers that want them,
    since ``check_all`` treats a layer with ``sublayers`` differently.)"""

    def __init__(self, inner):
        self.inner = inner

    built = property(lambda self: self.inner.built)
    params = property(lambda self: self.inner.params)
    grads = property(lambda self: self.inner.grads)

    def snapshot(self):
        return self.inner.snapshot()

    def restore(self, snap):
        self.inner.restore(snap)


class WithMask(Wrapped):
    """Bind a keys mask to a ``supports_masking`` layer so the checker can call
    ``forward(inputs, training, backprop)``; everything else is the layer's."""

    def __init__(self, layer, mask):
        super().__init__(layer)
        self.layer, self.mask = layer, mask

    state = property(lambda self: self.layer.state)

    def sublayers(self):
        return self.layer.sublayers()

    def forward(self, inputs, training=False, backprop=None):
        return self.layer.forward(inputs, training=training, backprop=backprop, mask=self.mask)

    def backward(self, grad_output):
        return self.layer.backward(grad_output)


def float_leaves(inputs, prefix="input"):
    """Names the checker gives to the floating inputs (integer ids/lengths are not checked)."""
    if isinstance(inputs, dict):
        return [n for k, v in inputs.items() for n in float_leaves(v, f"{prefix}[{k!r}]")]
    if isinstance(inputs, (list, tuple)):
        return [n for i, v in enumerate(inputs) for n in float_leaves(v, f"{prefix}[{i}]")]
    return [prefix] if isinstance(inputs, np.ndarray) and inputs.dtype.kind == "f" else []


def check_all(layer, inputs, training=False, zero=(), **kwargs):
    """``assert_gradients_ok`` on every floating input and parameter, decided by the relative error.

    ``zero``: names whose gradient is exactly 0 mathematically; their analytic
    gradient must be 0 to round-off (the relative error of noise is meaningless).
    """
    if hasattr(layer, "sublayers"):
        kink, variance = spy_inputs(layer, inputs, training)
        assert kink > KINK_MARGIN, f"input within {kink:.2g} of a ReLU kink: pick another seed"
        assert variance > MIN_BN_VARIANCE, f"a batch-normalised column has variance {variance:.2g}"
    results = assert_gradients_ok(layer, inputs, training=training, **kwargs)
    assert set(results) == set(float_leaves(inputs)) | set(layer.params)   # everything was checked
    assert set(zero) <= set(results), sorted(set(zero) - set(results))
    grads = layer.grads
    for name, r in results.items():
        if name in zero:     # (the numeric side is round-off noise: the atol floor judged it)
            if name in grads:
                g = grads[name]
                g = g.to_dense() if isinstance(g, RowGrad) else g
                assert np.max(np.abs(g)) <= ZERO, name
        else:
            assert r.rel_error <= RTOL, f"{name}: passed on the atol floor only ({r})"
    return results


def check_model(model, inputs, training=False, zero=()):
    """``check_all`` for a whole model, with the five-point stencil at step 1e-4.

    Deep inside DIN the attention network's gradients are small (1e-6 to 1e-3: its
    bias gradients sum terms of both signs over B*T positions) next to the scale of
    the loss, so a two-point difference at step 1e-6 measures them only to its
    round-off floor (~1e-11 absolute, a relative error of 1e-7..1e-5 depending on
    the seed). The O(eps^4) stencil allows step 1e-4 and a floor ~100x lower; the
    relative-error criterion itself is unchanged. The inputs are fixed by seeds, so
    a ReLU kink within the stencil's reach would fail deterministically (an O(1)
    error), never flakily; none is for these seeds.
    """
    return check_all(model, inputs, training=training, zero=zero, order=4, eps=1e-4)


def _failed(results):
    return sorted(name for name, r in results.items() if not r.passed)


# --- Embedding ------------------------------------------------------------------------
def embedding(vocab=6, dim=3, seed=0, **kwargs):
    layer = Embedding(vocab, dim, dtype="float64", seed=seed, **kwargs)
    layer.build()
    layer.params["embeddings"][...] = np.random.default_rng(seed).standard_normal((vocab, dim))
    return layer


def test_embedding_repeated_ids_accumulate():
    layer = embedding()
    ids = np.array([[1, 2, 1], [4, 1, 0]])
    check_all(layer, ids, training=True)
    g = np.random.default_rng(1).standard_normal((2, 3, 3))
    layer.forward(ids, training=True)
    assert layer.backward(g) is None                       # integer ids have no gradient
    rg = layer.grads["embeddings"]
    assert isinstance(rg, RowGrad)
    np.testing.assert_array_equal(rg.indices, [0, 1, 2, 4])   # touched rows only, unique and sorted
    assert rg.values.shape == (4, 3) and rg.dense_shape == (6, 3)
    np.testing.assert_allclose(rg.values[1], g[0, 0] + g[0, 2] + g[1, 1], rtol=1e-15)   # id 1, three times
    np.testing.assert_array_equal(rg.values[0], g[1, 2])
    dense = rg.to_dense()
    np.testing.assert_array_equal(dense[[3, 5]], 0.0)      # untouched rows


@pytest.mark.parametrize("shape", [(5,), (4, 1), (2, 3, 4)])
def test_embedding_ids_of_any_shape(shape):
    ids = np.random.default_rng(2).integers(0, 6, size=shape)
    check_all(embedding(seed=3), ids, training=True)


def test_rowgrad_sum_and_dense():
    a = RowGrad(np.array([1, 3]), np.array([[1.0, 2.0], [3.0, 4.0]]), (5, 2))
    b = RowGrad(np.array([0, 3]), np.array([[5.0, 6.0], [7.0, 8.0]]), (5, 2))
    np.testing.assert_array_equal((a + b).to_dense(), a.to_dense() + b.to_dense())
    np.testing.assert_array_equal((a + b).indices, [0, 1, 3])


class SharedLookup(Wrapped):
    """One table looked up by two id arrays (a query and its history): outputs stacked."""

    def __init__(self, table):
        super().__init__(table)
        self.table = table

    def forward(self, inputs, training=False, backprop=None):
        ids_query, ids_hist = inputs
        q, h = self.table.lookup([ids_query, ids_hist], training, backprop)
        self._split = q.size
        return np.concatenate([q.reshape(-1), h.reshape(-1)])

    def backward(self, g):
        self.table.backward_many([g[:self._split].reshape(-1, 1, self.table.output_dim),
                                  g[self._split:].reshape(-1, 4, self.table.output_dim)])
        return [None, None]


def test_embedding_table_shared_by_two_lookups():
    table = embedding(vocab=5, dim=2, seed=4)
    ids_query = np.array([[1], [3], [2]])
    ids_hist = np.array([[1, 3, 0, 0], [3, 3, 2, 1], [4, 0, 0, 0]])
    shared = SharedLookup(table)
    check_all(shared, [ids_query, ids_hist], training=True)
    # both lookups accumulate into one RowGrad: it equals the sum of the two separate gradients
    g = np.random.default_rng(5).standard_normal(3 * 2 + 12 * 2)
    shared.forward([ids_query, ids_hist], training=True)
    shared.backward(g)
    both = table.grads["embeddings"].to_dense()
    table.forward(ids_query, training=True)
    table.backward(g[:6].reshape(3, 1, 2))
    alone_q = table.grads["embeddings"].to_dense()
    table.forward(ids_hist, training=True)
    table.backward(g[6:].reshape(3, 4, 2))
    alone_h = table.grads["embeddings"].to_dense()
    np.testing.assert_allclose(both, alone_q + alone_h, rtol=1e-15, atol=1e-15)


def test_embedding_l2_gradient_covers_the_whole_table():
    from npctr import numerical_gradient
    table = embedding(vocab=5, dim=2, seed=6, l2_reg=0.3)
    ids = np.array([[1, 1, 4]])
    g = np.random.default_rng(7).standard_normal((1, 3, 2))
    table.forward(ids, training=True)
    table.backward(g)
    table.add_regularization_grads()
    W = table.params["embeddings"]

    def total():
        return float(np.sum(table.forward(ids) * g)) + table.regularization_loss()
    # central differences, the module's criterion (round-off ~1e-10 at eps 1e-6); 8e-10 measured
    np.testing.assert_allclose(table.grads["embeddings"], numerical_gradient(total, W), rtol=1e-7)
    np.testing.assert_allclose(table.regularization_loss(), 0.3 * np.sum(W ** 2), rtol=1e-14)


# --- SequencePoolingLayer -------------------------------------------------------------
B, T, E = 4, 5, 3
# lengths: a full row, a partial row, an empty row and one longer than T
LENGTHS = np.array([[5], [2], [0], [7]])
# a mask that is not a prefix, with an empty row
MASK = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=bool)
# every row with at least one valid position, for max
MASK_NONEMPTY = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=bool)


def seq_values(seed=8, shape=(B, T, E)):
    x = np.random.default_rng(seed).standard_normal(shape)
    # no ties for max: distinct values along T, separated far more than eps
    s = np.sort(x, axis=1)
    assert np.min(np.diff(s, axis=1)) > 1e-4
    return x


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_sequence_pooling_lengths(mode):
    x = seq_values()
    layer = SequencePoolingLayer(mode, dtype="float64")
    check_all(layer, [x, LENGTHS], training=True)
    layer.forward([x, LENGTHS], training=True)
    dx, d_len = layer.backward(np.ones((B, 1, E)))
    assert d_len is None
    assert np.all(dx[2] == 0)                                    # empty row
    assert np.all(dx[1, 2:] == 0)                                # padded positions
    if mode == "mean":                                           # divides by the given length 7 > T
        # the divisor length + 1e-8 is formed in float32, as the frameworks do: exactly 7 (issue 19)
        np.testing.assert_allclose(dx[3], 1 / 7, rtol=1e-15)


def test_sequence_pooling_max_lengths():
    x = seq_values(seed=9)
    lengths = np.array([[5], [2], [1], [3]])
    layer = SequencePoolingLayer("max", dtype="float64")
    check_all(layer, [x, lengths], training=True)
    layer.forward([x, lengths], training=True)
    dx, _ = layer.backward(np.ones((B, 1, E)))
    assert np.all(dx.sum(axis=1) == 1)                           # all to the argmax, one per column
    assert np.all(dx[1, 2:] == 0)


@pytest.mark.parametrize("mode,mask", [("sum", MASK), ("mean", MASK), ("max", MASK_NONEMPTY)])
def test_sequence_pooling_mask(mode, mask):
    x = seq_values(seed=10)
    layer = SequencePoolingLayer(mode, supports_masking=True, dtype="float64")
    check_all(WithMask(layer, mask), x, training=True)
    layer.forward(x, training=True, mask=mask)
    dx = layer.backward(np.random.default_rng(0).standard_normal((B, 1, E)))
    assert np.all(dx[~mask] == 0)                                # masked positions get zero gradient


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_sequence_pooling_mask_equals_lengths(mode):
    """A prefix mask and the matching lengths give the same output and gradient."""
    x = seq_values(seed=11)
    lengths = np.array([[5], [2], [0], [3]])
    a = SequencePoolingLayer(mode, dtype="float64")
    b = SequencePoolingLayer(mode, supports_masking=True, dtype="float64")
    g = np.random.default_rng(1).standard_normal((B, 1, E))
    ya = a.forward([x, lengths], training=True)
    yb = b.forward(x, training=True, mask=np.arange(T) < lengths)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(a.backward(g)[0], b.backward(g))


# --- AttentionSequencePoolingLayer ----------------------------------------------------
KEYS_LENGTH = np.array([[5], [2], [0], [1]])           # full, partial, empty, single
ATT_MASK = MASK                                        # non-prefix, with an empty row
ACT_MODES = [("sigmoid", False), ("dice", False), ("dice", True)]   # (att_activation, training)


def asp_case(weight_normalization, return_score, activation, supports_masking, split, seed=12):
    rng = np.random.default_rng(seed)
    query, keys = rng.standard_normal((B, 1, E)), rng.standard_normal((B, T, E))
    layer = AttentionSequencePoolingLayer((6, 4), activation, weight_normalization=weight_normalization,
                                          return_score=return_score, supports_masking=supports_masking,
                                          split=split, dtype="float64")
    if supports_masking:
        inputs, mask = [query, keys], ATT_MASK
        layer.forward(inputs, mask=mask)
        checked = WithMask(layer, mask)
    else:
        inputs, mask = [query, keys, KEYS_LENGTH], np.arange(T) < KEYS_LENGTH
        layer.forward(inputs)
        checked = layer
    randomize(layer, seed=13)        # alphas, moving statistics and kernels away from their initial values
    return layer, checked, inputs, mask


# The LocalActivationUnit's output bias c shifts every score of a row by the same
# amount, and the softmax over T is invariant to that: with weight normalization
# its gradient is exactly zero.
def asp_zero(weight_normalization):
    return ("local_att/bias",) if weight_normalization else ()


@pytest.mark.parametrize("activation,training", ACT_MODES)
@pytest.mark.parametrize("weight_normalization", [False, True])
@pytest.mark.parametrize("return_score", [False, True])
@pytest.mark.parametrize("supports_masking", [False, True])
@pytest.mark.parametrize("split", [True, False])
def test_attention_sequence_pooling(activation, training, weight_normalization, return_score,
                                    supports_masking, split):
    layer, checked, inputs, mask = asp_case(weight_normalization, return_score, activation, supports_masking,
                                            split)
    check_all(checked, inputs, training=training, zero=asp_zero(weight_normalization))


@pytest.mark.parametrize("activation,training", ACT_MODES)
@pytest.mark.parametrize("weight_normalization", [False, True])
@pytest.mark.parametrize("return_score", [False, True])
@pytest.mark.parametrize("supports_masking", [False, True])
def test_attention_masked_keys_get_zero_gradient(activation, training, weight_normalization, return_score,
                                                 supports_masking):
    """Keys behind the mask get exactly zero gradient when nothing couples positions
    (sigmoid, or Dice with its moving statistics). Dice in training mode normalises
    with batch statistics pooled over all B*T positions, padded ones included (as
    DeepCTR), so there padded keys DO get a gradient through the statistics.
    An empty row with weight normalization is the other exception: its softmax is
    uniform (1/T) over all positions, as DeepCTR, so its keys get dy / T."""
    layer, checked, inputs, mask = asp_case(weight_normalization, return_score, activation, supports_masking,
                                            split=True, seed=14)
    out = checked.forward(inputs, training=training, backprop=True)
    dy = np.random.default_rng(15).standard_normal(out.shape)
    d_query, d_keys = checked.backward(dy)[:2]
    empty = ~mask.any(axis=1)
    padded = ~mask & ~empty[:, None]
    if training and activation == "dice":
        assert np.min(np.abs(d_keys[padded]).max(axis=-1)) > 1e-6
        return
    assert np.all(d_keys[padded] == 0)
    if weight_normalization and not return_score:
        np.testing.assert_allclose(d_keys[empty], np.repeat(dy[empty] / T, T, axis=1), rtol=1e-14)
    else:
        assert np.all(d_keys[empty] == 0)
    assert np.all(d_query[empty] == 0)                           # an empty row does not depend on the query


def test_attention_empty_row_weight_normalization_output():
    """DeepCTR: an all-padding row with weight normalization is the plain mean of all keys; without, 0."""
    for wn in (False, True):
        layer, checked, inputs, mask = asp_case(wn, False, "sigmoid", False, True)
        out = checked.forward(inputs)
        keys = inputs[1]
        expected = keys[2].mean(axis=0) if wn else np.zeros(E)
        np.testing.assert_allclose(out[2, 0], expected, rtol=1e-14, atol=1e-300)
        assert np.all(np.isfinite(out))


def test_attention_split_equals_naive():
    for act, training in ACT_MODES:
        outs, grads = [], []
        for split in (True, False):
            layer, checked, inputs, _ = asp_case(True, False, act, False, split, seed=16)
            out = checked.forward(inputs, training=training, backprop=True)
            grads.append(checked.backward(np.ones_like(out))[:2] + [dict(layer.grads)])
            outs.append(out)
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12, atol=1e-14)
        for a, b in zip(grads[0][:2], grads[1][:2]):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
        for k in grads[0][2]:
            np.testing.assert_allclose(grads[0][2][k], grads[1][2][k], rtol=1e-11, atol=1e-13, err_msg=k)


class ASPForgetsDirectKeysPath(AttentionSequencePoolingLayer):
    """Keys reach the output twice (scores and ``w @ keys``): this backward drops ``w^T dy``."""

    def backward(self, grad_output):
        (keys, valid, w), dy = self._take_cache(grad_output)
        dw = dy @ np.swapaxes(keys, 1, 2)
        ds = np.where(valid, dw, 0)
        d_query, d_keys = self._layers["local_att"].backward(np.swapaxes(ds, 1, 2))
        return [d_query, d_keys, None]


def test_checker_catches_missing_keys_path():
    rng = np.random.default_rng(17)
    inputs = [rng.standard_normal((B, 1, E)), rng.standard_normal((B, T, E)), KEYS_LENGTH]
    bad = ASPForgetsDirectKeysPath((6, 4), dtype="float64")
    bad.forward(inputs)
    randomize(bad, seed=18)
    results = check_gradients(bad, inputs)
    assert _failed(results) == ["input[1]"]
    assert results["input[1]"].rel_error > 1e-3


# --- DIN and DNNModel -----------------------------------------------------------------
N = 5            # batch size of the model checks
HIST = ["item_id", "cate_id"]


def din_columns():
    """Candidate item/category sharing their tables with the history (``embedding_name``),
    a user id, two dense features, a sequence pooled by its mask (no ``length_name``) and
    one pooled by its length."""
    return [SparseFeat("user", 4, 3), SparseFeat("item_id", 7, 3), SparseFeat("cate_id", 4, 2),
            DenseFeat("pay", 2), DenseFeat("score", 1),
            VarLenSparseFeat(SparseFeat("hist_item_id", 7, 3, embedding_name="item_id"), maxlen=4),
            VarLenSparseFeat(SparseFeat("hist_cate_id", 4, 2, embedding_name="cate_id"), maxlen=4),
            VarLenSparseFeat(SparseFeat("tags", 5, 2), maxlen=3, combiner="mean"),
            VarLenSparseFeat(SparseFeat("genres", 5, 2), maxlen=3, combiner="sum", length_name="genres_len")]


def din_features(seed=0, empty_history=True):
    """Candidate ids are never 0, so row 0 of the shared tables is reached only as history padding.
    Item 6 appears only in the history: its gradient comes through the attention alone."""
    rng = np.random.default_rng(seed)
    hist_item = np.array([[1, 2, 6, 5], [3, 2, 0, 0], [0, 0, 0, 0], [4, 0, 0, 0], [5, 6, 3, 0]])
    hist_cate = np.array([[1, 2, 3, 2], [3, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [2, 1, 3, 0]])
    if not empty_history:
        hist_item[2, :2], hist_cate[2, :2] = [2, 6], [3, 1]
    return {"user": np.array([0, 1, 2, 3, 1]), "item_id": np.array([1, 2, 3, 4, 5]),
            "cate_id": np.array([1, 2, 3, 1, 2]), "pay": rng.standard_normal((N, 2)),
            "score": rng.standard_normal(N), "hist_item_id": hist_item, "hist_cate_id": hist_cate,
            "tags": np.array([[1, 2, 0], [0, 0, 0], [3, 0, 0], [4, 4, 1], [2, 0, 0]]),
            "genres": np.array([[1, 2, 3], [4, 0, 0], [1, 1, 0], [2, 3, 4], [3, 0, 0]]),
            "genres_len": np.array([3, 1, 0, 2, 1])}


def randomize_model(model, seed):
    """``randomize`` plus embeddings of 0.5 * normal (DeepCTR's 1e-4 would make every gradient tiny)."""
    randomize(model, seed)
    rng = np.random.default_rng(seed + 100)
    for path, w in model.params.items():
        if path.endswith("embeddings"):
            w[...] = 0.5 * rng.standard_normal(w.shape)
    return model


def din(seed=6, **kwargs):
    kwargs = {"dnn_hidden_units": (4, 3), "att_hidden_size": (4,), "seed": 1, **kwargs}
    return randomize_model(DIN(din_columns(), HIST, **kwargs), seed)


def model_zero(model, training):
    """Gradients that are exactly zero mathematically: a DNN bias followed by batch norm in
    training mode (the batch mean removes it), and the attention's output bias under the
    softmax of weight normalization (it shifts every score of a row equally)."""
    zero = []
    if getattr(model, "att_weight_normalization", False) and model.history_columns:
        zero.append("attention_sequence_pooling_layer/local_att/bias")
    if model.dnn_use_bn and training:
        zero += [f"dnn/bias{i}" for i in range(len(model.dnn_hidden_units))]
    return zero


# (att_activation, training) x weight normalization x (dnn_use_bn, dnn_dropout, task)
DNN_OPTIONS = [(False, 0.0, "binary"), (True, 0.3, "regression"), (True, 0.0, "binary"),
               (False, 0.3, "regression")]


@pytest.mark.parametrize("activation,training", ACT_MODES)
@pytest.mark.parametrize("weight_normalization", [False, True])
@pytest.mark.parametrize("use_bn,dropout,task", DNN_OPTIONS[:2])
def test_din(activation, training, weight_normalization, use_bn, dropout, task):
    model = din(att_activation=activation, att_weight_normalization=weight_normalization, dnn_use_bn=use_bn,
                dnn_dropout=dropout, task=task)
    x = din_features()
    check_model(model, x, training=training, zero=model_zero(model, training))


@pytest.mark.parametrize("use_bn,dropout,task", DNN_OPTIONS[2:])
@pytest.mark.parametrize("split", [True, False])
def test_din_dice_training_bn_dropout(use_bn, dropout, task, split):
    model = din(att_activation="dice", dnn_use_bn=use_bn, dnn_dropout=dropout, task=task, split=split)
    x = din_features()
    if dropout:   # the dropout masks really drop something
        snap = model.snapshot()
        model.forward(x, training=True)
        assert any(np.any(sub._cache.scaled_mask == 0) for p, sub in model.sublayers() if p.startswith("dnn/dropout"))
        model.restore(snap)
    check_model(model, x, training=True, zero=model_zero(model, True))


def test_din_checks_every_parameter_and_shares_tables():
    model = din()
    names = set(model.params)
    # one table per embedding_name: the history has no table of its own
    assert {n for n in names if n.startswith("sparse_emb_")} == {
        f"sparse_emb_{t}/embeddings" for t in ("user", "item_id", "cate_id", "tags", "genres")}
    x = din_features()
    results = check_model(model, x, training=True)
    assert set(results) == names | {"input['pay']", "input['score']"}
    model.forward(x, training=True)
    d_dense = model.backward(np.ones((N, 1)))
    assert set(d_dense) == {"pay", "score"}
    assert d_dense["pay"].shape == (N, 2) and d_dense["score"].shape == (N,)   # shapes they came in


def test_din_history_reaches_the_shared_table():
    """Item 6 is never a candidate: its gradient comes from the history (keys) alone."""
    model = din(att_activation="sigmoid")
    x = din_features()
    model.forward(x, training=True)
    model.backward(np.ones((N, 1)))
    g = model.grads["sparse_emb_item_id/embeddings"]
    assert isinstance(g, RowGrad)
    assert 6 in g.indices and np.max(np.abs(g.to_dense()[6])) > 1e-3
    assert 6 not in x["item_id"]


def _padding_row_grad(model, x, training):
    snap = model.snapshot()
    model.forward(x, training=training, backprop=True)
    model.backward(np.random.default_rng(4).standard_normal((N, 1)))
    model.restore(snap)
    return {t: model.grads[f"sparse_emb_{t}/embeddings"].to_dense()[0] for t in ("item_id", "cate_id")}


@pytest.mark.parametrize("weight_normalization", [False, True])
def test_din_padding_row_gets_zero_gradient_in_inference(weight_normalization):
    """Id 0 is padding: with Dice on its moving statistics (or sigmoid) nothing reaches row 0.
    (Candidates are never 0 here.) With weight normalization an all-padding history row would
    average its padded keys (DeepCTR's uniform softmax), so that case keeps every row non-empty."""
    model = din(att_activation="dice", att_weight_normalization=weight_normalization)
    x = din_features(empty_history=not weight_normalization)
    for g in _padding_row_grad(model, x, training=False).values():
        assert np.all(g == 0)
    # inference-mode check of the same model, to be sure the gradient itself is right
    check_model(model, x, training=False, zero=model_zero(model, False))


def test_din_padding_row_gets_gradient_with_uniform_softmax_of_empty_row():
    """DeepCTR: weight normalization on an all-padding history row gives each padded key 1/T."""
    model = din(att_activation="sigmoid", att_weight_normalization=True)
    for g in _padding_row_grad(model, din_features(empty_history=True), training=False).values():
        assert np.max(np.abs(g)) > 1e-6


def test_din_padding_row_gets_gradient_from_dice_training_statistics():
    """DeepCTR's Dice pools its batch statistics over every (B, T) position, padded ones
    included, so in training mode the padding row 0 of a shared table DOES get a gradient
    (through the mean and variance), even without weight normalization. npctr keeps this."""
    model = din(att_activation="dice")
    x = din_features()
    for g in _padding_row_grad(model, x, training=True).values():
        assert np.max(np.abs(g)) > 1e-6
    # and that gradient is the true one
    check_model(model, x, training=True)


def dnn_model(seed=5, **kwargs):
    kwargs = {"dnn_hidden_units": (4, 3), "seed": 1, **kwargs}
    return randomize_model(DNNModel(din_columns(), **kwargs), seed)


@pytest.mark.parametrize("use_bn,dropout,task", DNN_OPTIONS)
@pytest.mark.parametrize("training", [False, True])
def test_dnn_model(use_bn, dropout, task, training):
    model = dnn_model(dnn_use_bn=use_bn, dnn_dropout=dropout, task=task)
    assert not model.history_columns and len(model.pooled_columns) == 4   # the history is pooled by its mean
    check_model(model, din_features(seed=2), training=training, zero=model_zero(model, training))


@pytest.mark.parametrize("cls", [DIN, DNNModel])
def test_every_weight_exists_before_the_first_forward(cls):
    """Regression: BN/Dice weights inside the DNN and the attention used to appear only at the
    first forward, so a snapshot taken before it (the gradient checker's) could not be restored
    and ``get_weights()`` changed length after one call."""
    kwargs = {"att_activation": "dice", "att_hidden_size": (4,)} if cls is DIN else {}
    args = (din_columns(), HIST) if cls is DIN else (din_columns(),)
    model = cls(*args, dnn_use_bn=True, dnn_hidden_units=(4, 3), **kwargs)
    names = model.weight_names()
    assert "dnn/bn0/moving_mean" in names
    if cls is DIN:
        assert "attention_sequence_pooling_layer/local_att/dnn/activation0/dice_alpha" in names
        assert model.attention_scores is None
    randomize_model(model, 7)
    x = din_features()
    check_model(model, x, training=True, zero=model_zero(model, True))    # snapshot/restore on a fresh model
    assert model.weight_names() == names
