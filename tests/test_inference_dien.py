"""DIEN's Predictor (``npctr.serving.dien``; ``model.inference()``, used by ``model.predict``) equals
``model.forward(x, training=False)``: 1e-12 relative in float64, 1e-5 in float32, for every ``gru_type``,
both profiles' cells, every length 0..T (and past T), with and without pooled sequences, dense features
and negative histories, every DNN / attention option, any chunking, thread count and request size
(the small-request path included); the attention weights it records are forward's; it follows weight
changes and reports bad input with the model's own errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npctr import Layer
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.models import DIEN
from npctr.serving.dien import DIENPredictor, pack
from npctr.serving.small_batch import SMALL_ROWS

RTOL = {"float64": 1e-12, "float32": 1e-5}
T = 6
GRU_TYPES = ["GRU", "AIGRU", "AGRU", "AUGRU"]
PROFILES = ["tf_keras", "torch"]


def columns(n_hist=2, dense=True, pooled=True, negatives=True):
    cols = [SparseFeat("user", 9, 2), SparseFeat("item_id", 11, 3), SparseFeat("cate_id", 5, 2)]
    if dense:
        cols += [DenseFeat("price", 1), DenseFeat("vec", 2)]
    hist = ["item_id", "cate_id"][:n_hist]
    for prefix in ("hist_", "neg_hist_") if negatives else ("hist_",):
        cols += [VarLenSparseFeat(SparseFeat(prefix + h, 11 if h == "item_id" else 5, 3 if h == "item_id" else 2,
                                             embedding_name=h), T, length_name="seq_length") for h in hist]
    if pooled:        # pooled into the DNN input by DeepCTR-TF (ignored by DeepCTR-Torch's DIEN)
        cols += [VarLenSparseFeat(SparseFeat("tags", 7, 2), 4, combiner="mean", length_name="tags_len"),
                 VarLenSparseFeat(SparseFeat("views", 6, 2), 3, combiner="max")]
    return cols, hist


def features(cols, n, rng, lengths=None):
    """Random ids everywhere (DIEN masks by the length only: ids past it are garbage on purpose)."""
    x = {}
    for fc in cols:
        if isinstance(fc, DenseFeat):
            x[fc.name] = rng.standard_normal((n, fc.dimension) if fc.dimension > 1 else n)
        elif isinstance(fc, SparseFeat):
            x[fc.name] = rng.integers(0, fc.vocabulary_size, size=n)
        else:
            x[fc.name] = rng.integers(0, fc.vocabulary_size, size=(n, fc.maxlen))
            if fc.length_name is not None and fc.length_name not in x:
                x[fc.length_name] = rng.integers(0, fc.maxlen + 1, size=(n, 1))
    if lengths is not None:
        x["seq_length"] = np.asarray(lengths).reshape(n, 1)
    return x


def lengths_of(n, rng):
    """Lengths 0..T in every batch, one past T (masked as T), the rest random."""
    lengths = rng.integers(0, T + 1, size=n)
    lengths[:min(n, T + 2)] = np.arange(T + 2)[:min(n, T + 2)]
    return lengths


def randomize(model, rng):
    for path, w in model.params.items():
        w[...] = 0.5 * rng.standard_normal(w.shape)
    for path, w in model.state.items():
        w[...] = rng.uniform(0.5, 1.5, w.shape) if path.endswith("moving_variance") \
            else 0.3 * rng.standard_normal(w.shape)
    model.weights_changed()
    return model


def dien(gru_type="AUGRU", conventions="tf_keras", dtype="float64", n_hist=2, dense=True, pooled=True,
         negatives=True, seed=0, **kw):
    cols, hist = columns(n_hist, dense, pooled, negatives)
    kw.setdefault("dnn_hidden_units", (8, 5))
    kw.setdefault("att_hidden_units", (6, 4))
    model = DIEN(cols, hist, gru_type=gru_type, use_negsampling=negatives, conventions=conventions, dtype=dtype,
                 **kw)
    return randomize(model, np.random.default_rng(seed)), cols


def assert_matches(model, x, predictor=None, **predict_kw):
    """Predictions and attention weights of the Predictor against forward's."""
    expected = model.forward(x, training=False)
    scores = model.attention_scores
    got, got_scores = (predictor or model.inference()).predict(x, return_attention=True, **predict_kw)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=RTOL[model.dtype.name], atol=0)
    assert got_scores.shape == scores.shape and got_scores.dtype == scores.dtype
    # normwise: an unnormalized score is a sum whose terms may cancel, rounded at the scale of its terms
    scale = float(np.max(np.abs(scores), initial=0.0))
    np.testing.assert_allclose(got_scores, scores, rtol=RTOL[model.dtype.name],
                               atol=RTOL[model.dtype.name] * scale + 1e-300)
    return got


# -- every gru_type, profile, dtype, feature set -------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("gru_type", GRU_TYPES)
def test_every_gru_type_and_profile(gru_type, conventions, dtype):
    model, cols = dien(gru_type, conventions, dtype)
    rng = np.random.default_rng(1)
    x = features(cols, 41, rng, lengths_of(41, rng))
    assert_matches(model, x, model.inference(chunk_rows=6, threads=2))
    assert_matches(model, x, model.inference(threads=1))
    for n in (1, 2, 5, SMALL_ROWS):                    # the small-request path
        assert_matches(model, {k: v[:n] for k, v in x.items()})


@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("n_hist,dense,pooled,negatives", [(1, False, False, False), (1, True, False, True),
                                                           (2, False, True, False), (2, True, True, True)])
def test_feature_sets(conventions, n_hist, dense, pooled, negatives):
    model, cols = dien("AUGRU", conventions, n_hist=n_hist, dense=dense, pooled=pooled, negatives=negatives)
    rng = np.random.default_rng(2)
    x = features(cols, 23, rng, lengths_of(23, rng))
    assert_matches(model, x, model.inference(chunk_rows=4))
    assert_matches(model, {k: v[:3] for k, v in x.items()})


OPTIONS = [
    {"att_weight_normalization": False},
    {"use_bn": True},
    {"use_bn": True, "dnn_activation": "dice"},
    {"att_activation": "sigmoid"},
    {"att_activation": "relu", "dnn_activation": "sigmoid"},
    {"att_activation": "prelu", "dnn_activation": "prelu", "use_bn": True},
    {"att_activation": "tanh", "dnn_activation": "tanh"},
    {"att_hidden_units": ()},
    {"att_hidden_units": (), "att_weight_normalization": False},
    {"dnn_hidden_units": ()},
    {"task": "regression"},
    {"split": False},
    {"dnn_dropout": 0.4},
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("gru_type", ["GRU", "AUGRU"])
def test_options(gru_type, options, dtype):
    for conventions in PROFILES:
        model, cols = dien(gru_type, conventions, dtype, **options)
        rng = np.random.default_rng(3)
        x = features(cols, 19, rng, lengths_of(19, rng))
        assert_matches(model, x, model.inference(chunk_rows=7, threads=2))
        assert_matches(model, {k: v[:4] for k, v in x.items()})


# -- lengths, padding, rows --------------------------------------------------------------------
@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("gru_type", GRU_TYPES)
@pytest.mark.parametrize("n", [1, 3, 40])
def test_every_row_empty(gru_type, conventions, n):
    """No valid step anywhere: final interest 0; the weights TF's softmax gives (1/T), torch's 0."""
    model, cols = dien(gru_type, conventions)
    x = features(cols, n, np.random.default_rng(4), np.zeros(n, int))
    assert_matches(model, x)
    scores = model.inference().predict(x, return_attention=True)[1]
    np.testing.assert_allclose(scores, 0.0 if conventions == "torch" else 1.0 / T, rtol=1e-15)


@pytest.mark.parametrize("length", list(range(T + 2)))
@pytest.mark.parametrize("gru_type", GRU_TYPES)
def test_one_row_of_every_length(gru_type, length):
    for conventions in PROFILES:
        model, cols = dien(gru_type, conventions)
        x = features(cols, 1, np.random.default_rng(length), [length])
        assert_matches(model, x)


@pytest.mark.parametrize("gru_type", GRU_TYPES)
def test_ids_past_the_length_and_negatives_never_matter(gru_type):
    model, cols = dien(gru_type)
    rng = np.random.default_rng(5)
    lengths = lengths_of(30, rng)
    x = features(cols, 30, rng, lengths)
    y = {k: v.copy() for k, v in x.items()}
    past = np.arange(T) >= np.minimum(lengths, T)[:, None]
    for name in ("hist_item_id", "hist_cate_id"):
        y[name][past] = rng.integers(0, 5, size=past.sum())
    for name in ("neg_hist_item_id", "neg_hist_cate_id"):
        y[name] = rng.integers(0, 5, size=y[name].shape)
    predictor = model.inference()
    np.testing.assert_array_equal(predictor.predict(y), predictor.predict(x))


def test_results_do_not_depend_on_threads():
    model, cols = dien("AUGRU", dtype="float32")
    rng = np.random.default_rng(6)
    x = features(cols, 300, rng, lengths_of(300, rng))
    one = model.inference(threads=1, chunk_rows=37).predict(x)
    two = model.inference(threads=2, chunk_rows=37).predict(x)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("batch_size", [1, 3, SMALL_ROWS, 17, 25])
def test_batch_size_steps(batch_size):
    model, cols = dien("AGRU", "torch")
    rng = np.random.default_rng(7)
    x = features(cols, 50, rng, lengths_of(50, rng))
    assert_matches(model, x, batch_size=batch_size)


def test_model_predict_records_the_attention_of_every_row():
    model, cols = dien("AIGRU")
    rng = np.random.default_rng(8)
    x = features(cols, 45, rng, lengths_of(45, rng))
    expected = model.forward(x)
    scores = model.attention_scores.copy()
    model.attention_scores = None
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    np.testing.assert_allclose(model.attention_scores, scores, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model.predict({k: v[:2] for k, v in x.items()}), expected[:2], rtol=1e-12)
    assert model.attention_scores.shape == (2, 1, T)
    np.testing.assert_allclose(model.predict(x, batch_size=7), expected, rtol=1e-12)
    assert isinstance(model.inference(), DIENPredictor)


def test_follows_weight_changes_and_training():
    model, cols = dien("AUGRU")
    rng = np.random.default_rng(9)
    x = features(cols, 20, rng, lengths_of(20, rng))
    predictor = model.inference()
    before = predictor.predict(x)
    model.get_layer("gru2").params["kernel_ih" if "kernel_ih" in model.get_layer("gru2").params
                                   else "candidate_kernel"][...] *= 1.5
    model.weights_changed()
    # the predictions must move with the weights (by far more than any round-off)
    assert not np.allclose(predictor.predict(x), before)
    assert_matches(model, x, predictor)
    model.compile("adam")
    model.fit(x, rng.integers(0, 2, 20).astype(float), batch_size=8, epochs=1, verbose=0)
    assert_matches(model, x, predictor)


def test_dense_transform_and_unusual_inputs():
    cols, hist = columns()
    cols = [DenseFeat("price", 1, transform_fn=np.log1p) if getattr(fc, "name", None) == "price" else fc
            for fc in cols]
    model = randomize(DIEN(cols, hist, gru_type="AUGRU", use_negsampling=True, dnn_hidden_units=(4,),
                           att_hidden_units=(3,), conventions="torch"), np.random.default_rng(10))
    rng = np.random.default_rng(10)
    x = features(cols, 9, rng, lengths_of(9, rng))
    x["price"] = np.abs(x["price"])
    assert_matches(model, x)
    assert_matches(model, {k: v[:2] for k, v in x.items()})
    y = {k: (v.astype(np.int32) if v.dtype.kind == "i" else v) for k, v in x.items()}   # other id dtypes
    y["seq_length"] = y["seq_length"].reshape(-1).astype(np.uint16)
    assert_matches(model, y)
    assert_matches(model, {k: v[:3] for k, v in y.items()})


class Swish(Layer):
    """An activation with no prepared form: the Predictor falls back to forward."""

    def forward(self, inputs, training=False, backprop=None):
        return inputs / (1 + np.exp(-inputs))


def test_unknown_activation_falls_back_to_forward():
    model, cols = dien("GRU", dnn_activation=Swish)
    rng = np.random.default_rng(11)
    x = features(cols, 12, rng, lengths_of(12, rng))
    assert not model.inference()._weights().supported
    assert_matches(model, x, model.inference(chunk_rows=5))


@pytest.mark.parametrize("change,message", [
    (lambda x: x.update(hist_item_id=x["hist_item_id"] + 20), "hist_item_id"),
    (lambda x: x.update(neg_hist_cate_id=-x["neg_hist_cate_id"] - 1), "neg_hist_cate_id"),
    (lambda x: x.update(seq_length=-np.ones_like(x["seq_length"])), "seq_length"),
    (lambda x: x.pop("neg_hist_item_id"), "neg_hist_item_id"),
    (lambda x: x.update(price=np.full_like(x["price"], np.nan)), "price"),
])
@pytest.mark.parametrize("n", [1, 30])
def test_errors_are_the_models(change, message, n):
    model, cols = dien("AUGRU")
    x = features(cols, n, np.random.default_rng(12), np.ones(n, int))
    change(x)
    if message != "price":           # forward does not check values for NaN; predict does
        with pytest.raises((ValueError, TypeError), match=message):
            model.forward(x)
    with pytest.raises((ValueError, TypeError), match=message):
        model.predict(x)


def test_pack_lays_out_valid_steps_time_major():
    pk = pack(np.array([2, 0, 3, 9, 1]), 4)
    assert pk.order.tolist() == [3, 2, 0, 4, 1] and pk.lengths.tolist() == [4, 3, 2, 1, 0]
    assert pk.steps == [(0, 4), (4, 3), (7, 2), (9, 1)] and pk.v == 10 and pk.vp % 64 == 0
    assert pk.rows[:10].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 0]
    assert pk.ts[:10].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert pk.flat.tolist() == [12, 8, 0, 16, 13, 9, 1, 14, 10, 15]
    assert pk.nonempty == 4 and pk.last.tolist() == [9, 8, 6, 3]
    for length, expected in ((3, 3), (0, 0), (7, 4)):              # one row
        pk = pack(np.array([length]), 4)
        assert pk.v == expected and pk.vp % 64 == 0 and pk.ts[:expected].tolist() == list(range(expected))
        assert pk.flat.tolist() == list(range(expected)) and pk.nonempty == (expected > 0)
        assert pk.steps == [(t, 1) for t in range(expected)] and pk.last.tolist() == [expected - 1][:pk.nonempty]


@settings(max_examples=30)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 40), gru_type=st.sampled_from(GRU_TYPES),
       conventions=st.sampled_from(PROFILES), dtype=st.sampled_from(["float64", "float32"]),
       chunk=st.integers(1, 50))
def test_property_matches_forward(seed, n, gru_type, conventions, dtype, chunk):
    model, cols = MODELS[(gru_type, conventions, dtype)]
    rng = np.random.default_rng(seed)
    x = features(cols, n, rng, rng.integers(0, T + 2, size=n))
    assert_matches(model, x, model.inference(chunk_rows=chunk))


MODELS = {(g, c, d): dien(g, c, d, seed=13) for g in GRU_TYPES for c in PROFILES for d in ("float64", "float32")}
