"""The Predictor's small-batch path (requests of at most ``SMALL_ROWS`` rows,
``npctr/_small_batch.py``) equals ``model.forward(x, training=False)`` (1e-12 relative in
float64, 1e-5 in float32) for every option, profile and padding pattern, at and around the
switch-over; it validates as completely as the general path, with the same errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npctr.feature_column import VarLenSparseFeat
from npctr.models import DIN, DNNModel
from npctr.serving.small_batch import SMALL_ROWS, SmallPlan
from test_inference import OPTIONS, assert_matches, columns, din, features, randomize

SIZES = [1, 2, 3, 7, SMALL_ROWS - 1, SMALL_ROWS, SMALL_ROWS + 1]


def uses_small_path(predictor, x):
    plan = predictor._weights().small
    return plan.check(x) is not None


class Spy:
    """Counts the small path's runs."""

    def __init__(self, monkeypatch):
        self.calls = 0
        run = SmallPlan.run

        def counted(plan, f, n, ws):
            self.calls += 1
            return run(plan, f, n, ws)
        monkeypatch.setattr(SmallPlan, "run", counted)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_small_batches_every_option(dtype, options, monkeypatch):
    model, cols = din(dtype, **options)
    x = features(cols, SMALL_ROWS + 1, np.random.default_rng(21))
    predictor = model.inference()
    spy = Spy(monkeypatch)
    for n in SIZES:
        xn = {k: v[:n] for k, v in x.items()}
        before = spy.calls
        assert_matches(model, xn, predictor)
        small = n <= SMALL_ROWS and not options.get("att_weight_normalization")
        assert (spy.calls > before) == small, (n, options)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("wn", [False, True])
@pytest.mark.parametrize("n", [1, 2, SMALL_ROWS])
def test_all_padding_rows(dtype, wn, n):
    model, cols = din(dtype, att_weight_normalization=wn, dnn_use_bn=True)
    x = features(cols, n, np.random.default_rng(22), empty_rows=1.0)
    assert_matches(model, x)
    x = features(cols, n, np.random.default_rng(23), empty_rows=0.5)
    assert_matches(model, x)


@pytest.mark.parametrize("conventions", ["tf_keras", "keras3", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 4, SMALL_ROWS])
def test_small_batches_every_profile(conventions, dtype, n):
    cols, hist = columns(pooled=False)
    cols = [VarLenSparseFeat(fc.sparsefeat, fc.maxlen, length_name="hist_len") if fc.name == "hist_item" else fc
            for fc in cols]
    model = randomize(DIN(cols, hist, dnn_hidden_units=(8, 5), att_hidden_size=(6, 4), dnn_use_bn=True,
                          dnn_activation="dice", dtype=dtype, conventions=conventions), np.random.default_rng(24))
    rng = np.random.default_rng(25)
    x = features(cols, n, rng)
    x["hist_len"] = rng.integers(0, 7, size=(n, 1))
    predictor = model.inference()
    assert uses_small_path(predictor, x)
    assert_matches(model, x, predictor)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [{}, {"dnn_use_bn": True, "dnn_activation": "dice"}, {"dnn_hidden_units": ()},
                                     {"task": "regression", "dnn_activation": "tanh"}])
def test_small_batches_dnn_model(dtype, options):
    cols, _ = columns()
    model = randomize(DNNModel(cols, dtype=dtype, dnn_hidden_units=options.pop("dnn_hidden_units", (8, 5)),
                               **options), np.random.default_rng(26))
    x = features(cols, SMALL_ROWS + 1, np.random.default_rng(27))
    for n in SIZES:
        assert_matches(model, {k: v[:n] for k, v in x.items()})


def test_zero_rows_is_an_error():
    model, cols = din()
    x = features(cols, 3, np.random.default_rng(28))
    with pytest.raises(ValueError, match="no samples"):
        model.inference().predict({k: v[:0] for k, v in x.items()})


def test_unusual_valid_inputs_take_the_full_check_and_match():
    """Lists, (n, 1) ids, int32 / uint8 ids and integer dense values are accepted as before."""
    model, cols = din()
    x = features(cols, 3, np.random.default_rng(29))
    expected = model.forward(x)
    variants = [
        {k: v.tolist() for k, v in x.items()},
        {k: (v.reshape(-1, 1) if v.ndim == 1 else v) for k, v in x.items()},
        {k: (v.astype(np.int32) if v.dtype.kind == "i" else v) for k, v in x.items()},
        {k: (v.astype(np.uint8) if v.dtype.kind == "i" else v) for k, v in x.items()},
        dict(x, price=np.round(x["price"] * 10).astype(np.int64)),
    ]
    for i, xv in enumerate(variants):
        want = expected if i < 4 else model.forward(xv)
        np.testing.assert_allclose(model.inference().predict(xv), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("change,message", [
    (lambda x: x.update(item=x["item"] + 100), "must lie in"),
    (lambda x: x.update(hist_cate=-x["hist_cate"] - 1), "must lie in"),
    (lambda x: x.update(user=np.array([-1])), "must lie in"),
    (lambda x: x.update(clicks_len=np.array([[-1]])), "must be >= 0"),
    (lambda x: x.update(item=x["item"].astype(float)), "integer ids"),
    (lambda x: x.update(hist_item=x["hist_item"][:, :3]), "hist_item"),
    (lambda x: x.update(vec=x["vec"][:, :1]), "vec"),
    (lambda x: x.update(price=np.array(["a"])), "numeric"),
    (lambda x: x.pop("price"), "missing"),
    (lambda x: x.update(extra=np.zeros(1)), "unexpected"),
    (lambda x: x.update(price=np.zeros(2)), "same batch size"),
])
def test_small_batch_errors_are_the_full_checks(change, message):
    model, cols = din()
    x = features(cols, 1, np.random.default_rng(30))
    change(x)
    with pytest.raises((ValueError, TypeError), match=message):
        model.inference().predict(x)


def test_nan_in_dense_features_is_reported_by_predict():
    model, cols = din()
    x = features(cols, 1, np.random.default_rng(31))
    x["price"] = np.array([np.nan])
    with pytest.raises(ValueError, match="price.*NaN"):
        model.predict(x)


def test_small_path_follows_weight_changes():
    model, cols = din()
    x = features(cols, 2, np.random.default_rng(32))
    predictor = model.inference()
    before = predictor.predict(x)
    model.params["dnn/kernel0"][...] *= 2.0
    model.weights_changed()
    after = assert_matches(model, x, predictor)
    assert not np.allclose(after, before)          # doubled weights: far beyond any tolerance


@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, SMALL_ROWS + 2), maxlen=st.integers(1, 7),
       empty=st.sampled_from([0.0, 0.5, 1.0]), dtype=st.sampled_from(["float64", "float32"]),
       att=st.sampled_from(["dice", "prelu", "sigmoid"]), dnn=st.sampled_from(["relu", "dice", "linear"]),
       bn=st.booleans(), n_hist=st.sampled_from([1, 2]))
def test_property_small_batches_match_forward(seed, n, maxlen, empty, dtype, att, dnn, bn, n_hist):
    rng = np.random.default_rng(seed)
    model, cols = din(dtype, n_hist=n_hist, maxlen=maxlen, seed=seed, att_activation=att, dnn_activation=dnn,
                      dnn_use_bn=bn)
    x = features(cols, n, rng, empty_rows=empty)
    assert_matches(model, x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [{}, {"att_activation": "prelu"}, {"att_hidden_size": ()},
                                     {"att_activation": "sigmoid", "dnn_activation": "dice"}])
def test_one_row_without_the_query_map(dtype, options, monkeypatch):
    """One-row requests build the first-layer kernel from the query either with the prepared
    ``query_map`` GEMV or, for attention too wide for it, element-wise: the same values."""
    import npctr.serving.small_batch as small
    model, cols = din(dtype, **options)
    x = features(cols, 1, np.random.default_rng(33), empty_rows=0.0)
    assert model.inference()._weights().small.query_map is not None
    with_map = assert_matches(model, x)
    monkeypatch.setattr(small, "QUERY_MAP_LIMIT", 0)
    predictor = model.inference()
    assert predictor._weights().small.query_map is None
    np.testing.assert_allclose(assert_matches(model, x, predictor), with_map, rtol=1e-12 if dtype == "float64"
                               else 1e-6, atol=0)


def test_one_row_sigmoid_at_the_float_range():
    """The one-row sigmoid in Python floats: exactly 0 (and 1) where forward's overflows."""
    model, cols = din(dnn_hidden_units=())
    x = features(cols, 1, np.random.default_rng(34))
    for bias in (-1e4, 1e4, 0.3):
        model.params["prediction_layer/global_bias"][...] = bias
        model.weights_changed()
        with np.errstate(over="ignore"):
            expected = model.forward(x)
        assert_matches(model, x)
        assert expected[0, 0] in (0.0, 1.0) or bias == 0.3


@pytest.mark.parametrize("n", [1, 5])
def test_query_fields_apart_small(n):
    cols, hist = columns()
    cols = [cols[1], cols[0], cols[2]] + cols[3:]              # item, user, cate: the query is a copy
    model = randomize(DIN(cols, hist, dnn_hidden_units=(8,), att_hidden_size=(4,)), np.random.default_rng(35))
    predictor = model.inference()
    x = features(cols, n, np.random.default_rng(36))
    assert predictor._weights().query_slice is None and uses_small_path(predictor, x)
    assert_matches(model, x, predictor)


@pytest.mark.parametrize("n", [1, 3, SMALL_ROWS])
def test_model_predict_of_a_dnn_model_takes_the_small_path(n, monkeypatch):
    cols, _ = columns()
    model = randomize(DNNModel(cols, dnn_hidden_units=(8, 5)), np.random.default_rng(37))
    x = features(cols, n, np.random.default_rng(38))
    spy = Spy(monkeypatch)
    np.testing.assert_allclose(model.predict(x), model.forward(x), rtol=1e-12, atol=0)
    assert spy.calls == 1


@pytest.mark.parametrize("batch_size", [1, 3, SMALL_ROWS])
def test_small_batch_steps_score_as_requests_of_their_rows_alone(batch_size, monkeypatch):
    # predict(x, batch_size=b) with a small b runs each step as a request of b rows would: a row's
    # score is the same bits whether it comes in a file of 1,000 rows or alone (the CLI's chunks)
    cols, _ = columns()
    model = randomize(DNNModel(cols, dnn_hidden_units=(8, 5)), np.random.default_rng(41))
    n = 5 * batch_size + 2
    x = features(cols, n, np.random.default_rng(42))
    spy = Spy(monkeypatch)
    whole = model.predict(x, batch_size=batch_size)
    assert spy.calls == -(-n // batch_size)
    for lo in range(0, n, batch_size):
        part = {k: v[lo:lo + batch_size] for k, v in x.items()}
        np.testing.assert_array_equal(whole[lo:lo + batch_size], model.predict(part, batch_size=batch_size))
    np.testing.assert_allclose(whole, model.forward(x), rtol=1e-12, atol=0)
