"""Hypothesis properties of DIN's layers and models (profile 'ci' from conftest.py: derandomized).

* shapes for random batch sizes, T, embedding sizes and feature sets;
* padded positions never influence the output (values behind the mask changed,
  inference mode);
* permuting the valid positions of a sequence leaves sum/mean/max/attention
  pooling unchanged (inference mode), and so DIN's output;
* rows whose every position is padding give no NaN, with and without weight
  normalization;
* float32 in, float32 out.

The one documented exception to "padding never matters": with weight
normalization, a row with NO valid position gets a uniform softmax over all T
positions (DeepCTR's -2**32 + 1 padding), i.e. the plain mean of its padded keys.
"""
import numpy as np
from hypothesis import given, assume, strategies as st

from npctr import AttentionSequencePoolingLayer, Embedding, SequencePoolingLayer
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.models import DIN, DNNModel

seeds = st.integers(0, 2 ** 16)
batch = st.integers(1, 5)
steps = st.integers(1, 6)
emb = st.integers(1, 4)
hidden = st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple)
act_modes = st.sampled_from([("sigmoid", False), ("dice", False)])   # inference: no batch coupling


def normal(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def random_mask(rng, b, t, allow_empty=True):
    mask = rng.random((b, t)) < 0.6
    if not allow_empty:
        mask[np.arange(b), rng.integers(0, t, size=b)] = True
    return mask


def randomize_state(layer, rng):
    """Moving statistics and Dice alphas away from their initial values."""
    for path, w in layer.state.items():
        w[...] = rng.uniform(0.5, 1.5, w.shape) if path.endswith("moving_variance") else normal(rng, w.shape)
    for path, w in layer.params.items():
        w[...] = 0.5 * normal(rng, w.shape)


def asp(rng, b, t, e, units, activation, wn, return_score=False, masking=True):
    layer = AttentionSequencePoolingLayer(units, activation, weight_normalization=wn, return_score=return_score,
                                          supports_masking=masking)
    query, keys = normal(rng, (b, 1, e)), normal(rng, (b, t, e))
    return layer, query, keys


def run_asp(layer, query, keys, mask, training=False):
    return layer.forward([query, keys], training=training, mask=mask)


# --- shapes ---------------------------------------------------------------------------
@given(batch, steps, emb, hidden, st.sampled_from(["sigmoid", "dice"]), st.booleans(), st.booleans(),
       st.booleans(), st.booleans(), seeds)
def test_asp_shapes(b, t, e, units, activation, wn, return_score, masking, training, seed):
    rng = np.random.default_rng(seed)
    layer, query, keys = asp(rng, b, t, e, units, activation, wn, return_score, masking)
    lengths = rng.integers(0, t + 1, size=(b, 1))
    if masking:
        out, scores = layer.forward_with_scores([query, keys], training=training, mask=np.arange(t) < lengths)
    else:
        out, scores = layer.forward_with_scores([query, keys, lengths], training=training)
    expected = (b, 1, t) if return_score else (b, 1, e)
    assert out.shape == expected
    assert scores.shape == (b, 1, t)
    shapes = [(b, 1, e), (b, t, e), (b, 1)]
    assert tuple(layer.compute_output_shape(shapes)) == expected
    assert np.all(np.isfinite(out))
    if wn:
        np.testing.assert_allclose(scores.sum(axis=-1), 1.0, rtol=1e-12)


@given(batch, steps, emb, st.sampled_from(["sum", "mean", "max"]), st.booleans(), seeds)
def test_sequence_pooling_shapes(b, t, e, mode, masking, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (b, t, e))
    layer = SequencePoolingLayer(mode, supports_masking=masking)
    if masking:
        out = layer.forward(x, mask=random_mask(rng, b, t))
        assert tuple(layer.compute_output_shape((b, t, e))) == (b, 1, e)
    else:
        out = layer.forward([x, rng.integers(0, t + 3, size=(b, 1))])
        assert tuple(layer.compute_output_shape([(b, t, e), (b, 1)])) == (b, 1, e)
    assert out.shape == (b, 1, e)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(1, 5), st.integers(1, 8), seeds)
def test_embedding_shapes(id_shape, dim, vocab, seed):
    rng = np.random.default_rng(seed)
    layer = Embedding(vocab, dim, mask_zero=True)
    ids = rng.integers(0, vocab, size=tuple(id_shape))
    out = layer.forward(ids)
    assert out.shape == tuple(id_shape) + (dim,)
    np.testing.assert_array_equal(layer.compute_mask(ids), ids != 0)


# --- random DIN feature sets ----------------------------------------------------------
@st.composite
def din_case(draw, with_history=True):
    """Feature columns, a matching feature dict, and DIN's history_feature_list."""
    rng = np.random.default_rng(draw(seeds))
    b = draw(batch)
    maxlen = draw(steps)
    n_hist = draw(st.integers(1, 2)) if with_history else 0
    n_other = draw(st.integers(0 if with_history else 1, 2))
    cols, hist = [], []
    for i in range(n_hist):
        vocab, dim = draw(st.integers(2, 6)), draw(emb)
        cols.append(SparseFeat(f"h{i}", vocab, dim))
        hist.append(f"h{i}")
    for i in range(n_other):
        cols.append(SparseFeat(f"s{i}", draw(st.integers(1, 5)), draw(emb)))
    dense_dims = draw(st.lists(st.integers(1, 3), max_size=2))
    cols += [DenseFeat(f"d{i}", d) for i, d in enumerate(dense_dims)]
    for i in range(n_hist):
        base = cols[i]
        cols.append(VarLenSparseFeat(SparseFeat(f"hist_h{i}", base.vocabulary_size, base.embedding_dim,
                                                embedding_name=base.name), maxlen=maxlen))
    pooled = draw(st.lists(st.tuples(st.sampled_from(["sum", "mean", "max"]), st.booleans()), max_size=2))
    for i, (combiner, with_length) in enumerate(pooled):
        cols.append(VarLenSparseFeat(SparseFeat(f"v{i}", draw(st.integers(2, 5)), draw(emb)),
                                     maxlen=draw(steps), combiner=combiner,
                                     length_name=f"v{i}_len" if with_length else None))
    # history: random valid lengths (some rows possibly empty), ids != 0 exactly at valid positions
    lengths = rng.integers(0, maxlen + 1, size=b)
    valid = np.arange(maxlen) < lengths[:, None]
    x = {}
    for fc in cols:
        if isinstance(fc, DenseFeat):
            x[fc.name] = normal(rng, (b, fc.dimension))
        elif isinstance(fc, SparseFeat):
            lo = 1 if fc.name in hist and fc.vocabulary_size > 1 else 0
            x[fc.name] = rng.integers(lo, fc.vocabulary_size, size=b)
        elif fc.name.startswith("hist_"):
            x[fc.name] = np.where(valid, rng.integers(1, fc.vocabulary_size, size=(b, maxlen)), 0)
        else:
            n = rng.integers(0, fc.maxlen + 1, size=b)
            x[fc.name] = np.where(np.arange(fc.maxlen) < n[:, None],
                                  rng.integers(1, fc.vocabulary_size, size=(b, fc.maxlen)), 0)
            if fc.length_name is not None:
                x[fc.length_name] = n
    return cols, hist, x, b, maxlen


def randomize_model(model, rng):
    randomize_state(model, rng)
    for path, w in model.params.items():
        if path.endswith("embeddings"):
            w[...] = 0.5 * normal(rng, w.shape)


@given(din_case(), st.sampled_from(["binary", "regression"]), st.sampled_from(["sigmoid", "dice"]),
       st.booleans(), st.booleans(), st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple), seeds)
def test_din_shapes(case, task, activation, wn, training, units, seed):
    cols, hist, x, b, maxlen = case
    model = DIN(cols, hist, dnn_hidden_units=units, att_hidden_size=(3,), att_activation=activation,
                att_weight_normalization=wn, task=task)
    randomize_model(model, np.random.default_rng(seed))
    out = model.forward(x, training=training, backprop=True)
    assert out.shape == (b, 1)
    assert model.attention_scores.shape == (b, 1, maxlen)
    assert np.all(np.isfinite(out))
    if task == "binary":     # (0 and 1 are reachable: 'max' of an all-padding row is about -1e9)
        assert np.all((out >= 0) & (out <= 1))
    d_dense = model.backward(np.ones((b, 1)))
    assert set(d_dense) == {fc.name for fc in cols if isinstance(fc, DenseFeat)}
    for name, g in d_dense.items():
        assert g.shape == x[name].shape
    for name, g in model.grads.items():
        g = g.to_dense() if hasattr(g, "to_dense") else g
        assert g.shape == model.params[name].shape and np.all(np.isfinite(g)), name


@given(din_case(with_history=False), st.booleans(), seeds)
def test_dnn_model_shapes(case, training, seed):
    cols, _, x, b, _ = case
    model = DNNModel(cols, dnn_hidden_units=(3,))
    out = model.forward(x, training=training)
    # (0 and 1 are reachable: DeepCTR's 'max' of an all-padding row is about -1e9)
    assert out.shape == (b, 1) and np.all((out >= 0) & (out <= 1))


# --- padding never influences the output (inference) ----------------------------------
@given(batch, steps, emb, hidden, act_modes, st.booleans(), st.booleans(), seeds)
def test_asp_values_behind_mask_do_not_matter(b, t, e, units, act_mode, wn, return_score, seed):
    activation, training = act_mode
    rng = np.random.default_rng(seed)
    layer, query, keys = asp(rng, b, t, e, units, activation, wn, return_score)
    mask = random_mask(rng, b, t)
    out = run_asp(layer, query, keys, mask)
    randomize_state(layer, rng)
    out = run_asp(layer, query, keys, mask)
    changed = keys.copy()
    changed[~mask] = 100 * normal(rng, changed[~mask].shape)
    out2 = run_asp(layer, query, changed, mask)
    nonempty = mask.any(axis=1)
    rows = slice(None) if not wn else nonempty      # (the documented exception: empty rows under softmax)
    np.testing.assert_array_equal(out2[rows], out[rows])


@given(batch, steps, emb, st.sampled_from(["sum", "mean", "max"]), st.booleans(), seeds)
def test_sequence_pooling_values_behind_mask_do_not_matter(b, t, e, mode, masking, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (b, t, e))
    layer = SequencePoolingLayer(mode, supports_masking=masking)
    lengths = rng.integers(0 if mode != "max" else 1, t + 1, size=(b, 1))
    mask = random_mask(rng, b, t, allow_empty=mode != "max") if masking else np.arange(t) < lengths

    def run(v):
        return layer.forward(v, mask=mask) if masking else layer.forward([v, lengths])
    changed = x.copy()
    changed[~mask] = 100 * normal(rng, changed[~mask].shape)
    np.testing.assert_array_equal(run(changed), run(x))


@given(din_case(), st.sampled_from(["sigmoid", "dice"]), seeds)
def test_din_padding_row_values_do_not_matter(case, activation, seed):
    """Row 0 of every shared table is only ever read as padding (candidates here are >= 1 when
    the vocabulary allows): changing it changes nothing, in inference, without weight normalization."""
    cols, hist, x, b, maxlen = case
    for name in hist:
        assume(np.all(x[name] != 0))
    model = DIN(cols, hist, dnn_hidden_units=(3,), att_hidden_size=(3,), att_activation=activation)
    rng = np.random.default_rng(seed)
    randomize_model(model, rng)
    out = model.forward(x)
    for name in hist:
        table = model.params[f"sparse_emb_{name}/embeddings"]
        table[0] = 100 * normal(rng, table[0].shape)
    np.testing.assert_array_equal(model.forward(x), out)


@given(din_case(), seeds)
def test_din_ids_beyond_length_do_not_matter(case, seed):
    """A pooled sequence with ``length_name`` ignores the ids after its length."""
    cols, hist, x, b, maxlen = case
    model = DIN(cols, hist, dnn_hidden_units=(3,), att_hidden_size=(3,))
    randomize_model(model, np.random.default_rng(seed))
    out = model.forward(x)
    rng = np.random.default_rng(seed + 1)
    x2 = dict(x)
    for fc in cols:
        if isinstance(fc, VarLenSparseFeat) and fc.length_name is not None:
            beyond = np.arange(fc.maxlen) >= x[fc.length_name][:, None]
            x2[fc.name] = np.where(beyond, rng.integers(0, fc.vocabulary_size, size=beyond.shape), x[fc.name])
    np.testing.assert_array_equal(model.forward(x2), out)


# --- permutations of the valid positions ----------------------------------------------
def permute_valid(rng, arrays, mask):
    """Shuffle, per row, the valid positions of every array in ``arrays`` (the same shuffle for all)."""
    out = [a.copy() for a in arrays]
    for i in range(mask.shape[0]):
        pos = np.flatnonzero(mask[i])
        perm = rng.permutation(pos)
        for a, src in zip(out, arrays):
            a[i, pos] = src[i, perm]
    return out


@given(batch, steps, emb, hidden, act_modes, st.booleans(), seeds)
def test_asp_permuting_valid_positions(b, t, e, units, act_mode, wn, seed):
    activation, _ = act_mode
    rng = np.random.default_rng(seed)
    layer, query, keys = asp(rng, b, t, e, units, activation, wn)
    mask = random_mask(rng, b, t)
    run_asp(layer, query, keys, mask)
    randomize_state(layer, rng)
    out = run_asp(layer, query, keys, mask)
    (shuffled,) = permute_valid(rng, [keys], mask)
    np.testing.assert_allclose(run_asp(layer, query, shuffled, mask), out, rtol=1e-12, atol=1e-14)


@given(batch, steps, emb, st.sampled_from(["sum", "mean", "max"]), seeds)
def test_sequence_pooling_permuting_valid_positions(b, t, e, mode, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (b, t, e))
    mask = random_mask(rng, b, t, allow_empty=mode != "max")
    layer = SequencePoolingLayer(mode, supports_masking=True)
    (shuffled,) = permute_valid(rng, [x], mask)
    np.testing.assert_allclose(layer.forward(shuffled, mask=mask), layer.forward(x, mask=mask),
                               rtol=1e-12, atol=1e-14)


@given(din_case(), st.sampled_from(["sigmoid", "dice"]), st.booleans(), seeds)
def test_din_permuting_history(case, activation, wn, seed):
    """Shuffling the behaviours (all hist_ fields together) leaves DIN's prediction unchanged."""
    cols, hist, x, b, maxlen = case
    model = DIN(cols, hist, dnn_hidden_units=(3,), att_hidden_size=(3,), att_activation=activation,
                att_weight_normalization=wn)
    rng = np.random.default_rng(seed)
    randomize_model(model, rng)
    out = model.forward(x)
    names = [f"hist_{n}" for n in hist]
    mask = x[names[0]] != 0
    shuffled = permute_valid(rng, [x[n] for n in names], mask)
    np.testing.assert_allclose(model.forward({**x, **dict(zip(names, shuffled))}), out, rtol=1e-12, atol=1e-14)


# --- all-padding rows -----------------------------------------------------------------
@given(batch, steps, emb, hidden, st.sampled_from(["sigmoid", "dice"]), st.booleans(), st.booleans(),
       st.booleans(), seeds)
def test_asp_all_padding_rows_no_nan(b, t, e, units, activation, wn, return_score, training, seed):
    rng = np.random.default_rng(seed)
    layer, query, keys = asp(rng, b, t, e, units, activation, wn, return_score, masking=False)
    lengths = np.zeros((b, 1), dtype=np.int64)
    lengths[rng.random(b) < 0.3] = t                # some rows may be full, most are empty
    out = layer.forward([query, keys, lengths], training=training, backprop=True)
    grads = layer.backward(np.ones_like(out))
    assert np.all(np.isfinite(out))
    assert all(np.all(np.isfinite(g)) for g in grads[:2])
    assert all(np.all(np.isfinite(g)) for g in layer.grads.values())
    empty = lengths[:, 0] == 0
    if wn:
        expected = np.full((t,), 1.0 / t) if return_score else None
        if return_score:
            np.testing.assert_allclose(out[empty, 0], np.broadcast_to(expected, (empty.sum(), t)), rtol=1e-12)
        else:
            np.testing.assert_allclose(out[empty, 0], keys[empty].mean(axis=1), rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_array_equal(out[empty], 0)


@given(din_case(), st.sampled_from(["sigmoid", "dice"]), st.booleans(), st.booleans(), seeds)
def test_din_empty_history_no_nan(case, activation, wn, training, seed):
    cols, hist, x, b, maxlen = case
    x = {**x, **{f"hist_{n}": np.zeros_like(x[f"hist_{n}"]) for n in hist}}
    model = DIN(cols, hist, dnn_hidden_units=(3,), att_hidden_size=(3,), att_activation=activation,
                att_weight_normalization=wn)
    randomize_model(model, np.random.default_rng(seed))
    out = model.forward(x, training=training, backprop=True)
    assert np.all(np.isfinite(out))
    model.backward(np.ones_like(out))
    for name, g in model.grads.items():
        g = g.to_dense() if hasattr(g, "to_dense") else g
        assert np.all(np.isfinite(g)), name
    scores = model.attention_scores
    np.testing.assert_allclose(scores, 1.0 / maxlen if wn else 0.0, rtol=1e-12)


# --- float32 ---------------------------------------------------------------------------
@given(batch, steps, emb, st.sampled_from(["sigmoid", "dice"]), st.booleans(), st.booleans(), seeds)
def test_asp_float32(b, t, e, activation, wn, training, seed):
    rng = np.random.default_rng(seed)
    layer, query, keys = asp(rng, b, t, e, (3,), activation, wn, masking=False)
    q32, k32 = query.astype(np.float32), keys.astype(np.float32)
    lengths = rng.integers(0, t + 1, size=(b, 1))
    out = layer.forward([q32, k32, lengths], training=training, backprop=True)
    assert out.dtype == np.float32
    dq, dk, _ = layer.backward(np.ones_like(out))
    assert dq.dtype == np.float32 and dk.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


@given(batch, steps, emb, st.sampled_from(["sum", "mean", "max"]), st.booleans(), seeds)
def test_sequence_pooling_float32(b, t, e, mode, masking, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (b, t, e), np.float32)
    layer = SequencePoolingLayer(mode, supports_masking=masking)
    mask = random_mask(rng, b, t)
    out = layer.forward(x, training=True, mask=mask) if masking else \
        layer.forward([x, mask.sum(axis=1, keepdims=True)], training=True)
    assert out.dtype == np.float32
    d = layer.backward(np.ones_like(out))
    assert (d if masking else d[0]).dtype == np.float32


@given(din_case(), st.booleans(), seeds)
def test_din_float32(case, training, seed):
    cols, hist, x, b, maxlen = case
    model = DIN(cols, hist, dnn_hidden_units=(3,), att_hidden_size=(3,), dtype="float32")
    out = model.forward(x, training=training, backprop=True)
    assert out.dtype == np.float32
    d_dense = model.backward(np.ones_like(out))
    assert all(g.dtype == np.float32 for g in d_dense.values())
    for name, g in model.grads.items():
        g = g.values if hasattr(g, "to_dense") else g
        assert g.dtype == np.float32, name
    table = Embedding(4, 2, dtype="float32")
    assert table.forward(np.array([1, 2])).dtype == np.float32
