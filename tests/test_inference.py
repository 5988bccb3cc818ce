"""The Predictor (``model.inference()``, used by ``Model.predict``) equals
``model.forward(x, training=False)``: 1e-12 relative in float64, 1e-5 in float32, for every
DIN option, DNNModel, any lengths, batch sizes, chunkings and padding; it follows weight
changes; it validates its input once, with the layers' error messages."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npctr import Layer
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.serving import Predictor
from npctr.layers.activation import Activation
from npctr.models import DIN, DNNModel

RTOL = {"float64": 1e-12, "float32": 1e-5}


def columns(n_hist=2, dense=True, pooled=True, maxlen=6, emb=3):
    cols = [SparseFeat("user", 9, embedding_dim=2), SparseFeat("item", 11, embedding_dim=emb),
            SparseFeat("cate", 5, embedding_dim=emb)]
    if dense:
        cols += [DenseFeat("price", 1), DenseFeat("vec", 2)]
    hist = ["item", "cate"][:n_hist]
    cols += [VarLenSparseFeat(SparseFeat(f"hist_{h}", 11 if h == "item" else 5, embedding_dim=emb,
                                         embedding_name=h), maxlen=maxlen) for h in hist]
    if pooled:
        cols += [VarLenSparseFeat(SparseFeat("tags", 7, embedding_dim=2), maxlen=4, combiner="mean"),
                 VarLenSparseFeat(SparseFeat("clicks", 6, embedding_dim=2), maxlen=3, combiner="sum",
                                  length_name="clicks_len"),
                 VarLenSparseFeat(SparseFeat("views", 6, embedding_dim=2), maxlen=3, combiner="max")]
    return cols, hist


def features(cols, n, rng, lengths=None, empty_rows=0.2):
    """Random ids; histories padded at the end with random lengths (some rows all padding)."""
    x = {}
    hist_len = None
    for fc in cols:
        if isinstance(fc, DenseFeat):
            x[fc.name] = rng.standard_normal((n, fc.dimension) if fc.dimension > 1 else n)
        elif isinstance(fc, SparseFeat):
            x[fc.name] = rng.integers(1, fc.vocabulary_size, size=n)
        else:
            t = fc.maxlen
            if fc.name.startswith("hist_"):
                if hist_len is None:
                    hist_len = rng.integers(0, t + 1, size=n) if lengths is None else np.asarray(lengths)
                    hist_len[rng.random(n) < empty_rows] = 0
                length = hist_len
            else:
                length = rng.integers(0, t + 1, size=n)
            ids = rng.integers(1, fc.vocabulary_size, size=(n, t))
            ids[np.arange(t) >= length[:, None]] = 0
            x[fc.name] = ids
            if fc.length_name is not None:
                x[fc.length_name] = length.reshape(n, 1)
    if hist_len is not None and "hist_cate" in x:      # a behaviour whose category alone is padding
        rows = np.flatnonzero(hist_len > 1)[:2]
        x["hist_cate"][rows, 0] = 0
    return x


def randomize(model, rng):
    """Weights, Dice/PReLU alphas and moving statistics away from their initial values."""
    for path, w in model.params.items():
        w[...] = 0.5 * rng.standard_normal(w.shape)
    for path, w in model.state.items():
        w[...] = rng.uniform(0.5, 1.5, w.shape) if path.endswith("moving_variance") \
            else 0.3 * rng.standard_normal(w.shape)
    model.weights_changed()
    return model


def din(dtype="float64", n_hist=2, dense=True, pooled=True, maxlen=6, seed=0, **kw):
    cols, hist = columns(n_hist, dense, pooled, maxlen)
    kw.setdefault("dnn_hidden_units", (8, 5))
    kw.setdefault("att_hidden_size", (6, 4))
    model = DIN(cols, hist, dtype=dtype, **kw)
    return randomize(model, np.random.default_rng(seed)), cols


def assert_matches(model, x, predictor=None, **predict_kw):
    expected = model.forward(x, training=False)
    got = (predictor or model.inference()).predict(x, **predict_kw)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=RTOL[model.dtype.name], atol=0)
    return got


OPTIONS = [
    {},
    {"att_weight_normalization": True},
    {"dnn_use_bn": True},
    {"dnn_use_bn": True, "att_weight_normalization": True, "dnn_activation": "dice"},
    {"att_activation": "sigmoid"},
    {"att_activation": "relu", "dnn_activation": "sigmoid"},
    {"att_activation": "prelu", "dnn_activation": "prelu", "dnn_use_bn": True},
    {"att_activation": "tanh", "dnn_activation": "tanh"},
    {"att_hidden_size": ()},
    {"att_hidden_size": (), "att_weight_normalization": True},
    {"att_hidden_size": (7,), "dnn_hidden_units": (6,)},
    {"dnn_hidden_units": ()},
    {"task": "regression"},
    {"split": False},
    {"dnn_dropout": 0.4},
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_din_options(dtype, options):
    model, cols = din(dtype, **options)
    x = features(cols, 37, np.random.default_rng(1))
    assert_matches(model, x, model.inference(chunk_rows=5, threads=2))
    assert_matches(model, x, model.inference(threads=1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_hist,dense,pooled", [(1, False, False), (1, True, False), (2, False, True)])
def test_din_feature_sets(dtype, n_hist, dense, pooled):
    model, cols = din(dtype, n_hist=n_hist, dense=dense, pooled=pooled)
    assert_matches(model, features(cols, 23, np.random.default_rng(2)), model.inference(chunk_rows=4))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [{}, {"dnn_use_bn": True, "dnn_activation": "dice"}, {"dnn_hidden_units": ()}])
def test_dnn_model(dtype, options):
    cols, _ = columns()
    model = randomize(DNNModel(cols, dtype=dtype, dnn_hidden_units=options.pop("dnn_hidden_units", (8, 5)),
                               **options), np.random.default_rng(3))
    assert_matches(model, features(cols, 41, np.random.default_rng(4)), model.inference(chunk_rows=6))


@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 9), maxlen=st.integers(1, 7),
       chunk_rows=st.integers(1, 4), threads=st.sampled_from([1, 2]), wn=st.booleans(),
       empty=st.sampled_from([0.0, 0.5, 1.0]), dtype=st.sampled_from(["float64", "float32"]))
def test_property_any_lengths_batches_chunks_and_padding(seed, n, maxlen, chunk_rows, threads, wn, empty, dtype):
    rng = np.random.default_rng(seed)
    model, cols = din(dtype, maxlen=maxlen, seed=seed, att_weight_normalization=wn, dnn_use_bn=True)
    x = features(cols, n, rng, empty_rows=empty)
    assert_matches(model, x, Predictor(model, threads=threads, chunk_rows=chunk_rows))


@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 12), batch_size=st.integers(1, 5))
def test_property_predict_batches_match_forward(seed, n, batch_size):
    model, cols = din(seed=seed, att_weight_normalization=bool(seed % 2))
    assert_matches(model, features(cols, n, np.random.default_rng(seed)), batch_size=batch_size)


def test_padding_values_behind_the_mask_do_not_matter():
    """Values at padded positions: exactly what the layer gives them (no attention work there)."""
    model, cols = din(att_weight_normalization=False)
    x = features(cols, 20, np.random.default_rng(5), empty_rows=0.0)
    p = model.inference().predict(x)
    x2 = {k: v.copy() for k, v in x.items()}
    x2["hist_item"][x["hist_cate"] == 0] = 3          # invalid positions (cate is padding) change ids
    np.testing.assert_array_equal(model.inference().predict(x2), p)


def test_threads_and_chunking_are_deterministic():
    model, cols = din("float32")
    x = features(cols, 300, np.random.default_rng(6))
    one = model.inference(threads=1, chunk_rows=16).predict(x)
    two = model.inference(threads=2, chunk_rows=16)
    np.testing.assert_array_equal(two.predict(x), one)
    np.testing.assert_array_equal(two.predict(x), one)


def test_model_predict_uses_the_predictor_and_matches_forward():
    model, cols = din()
    x = features(cols, 50, np.random.default_rng(7))
    assert isinstance(model._predictor(), Predictor)
    np.testing.assert_allclose(model.predict(x, batch_size=16), model.forward(x), rtol=1e-12, atol=0)


def test_predictor_follows_weight_changes():
    model, cols = din()
    rng = np.random.default_rng(8)
    x = features(cols, 30, rng)
    y = rng.integers(0, 2, size=30)
    predictor = model.inference()
    assert_matches(model, x, predictor)
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)                   # weights and moving stats move
    assert_matches(model, x, predictor)
    model.train_on_batch(x, y)
    assert_matches(model, x, predictor)
    model.set_weights({k: 0.9 * v for k, v in zip(model.weight_names(), model.get_weights())})
    assert_matches(model, x, predictor)
    model.forward(x, training=True)                                       # BN / Dice moving statistics
    assert_matches(model, x, predictor)
    for w in model.params.values():                                       # by hand: must be announced
        w *= 1.1
    model.weights_changed()
    assert_matches(model, x, predictor)


def test_predictor_leaves_the_model_untouched():
    model, cols = din(dnn_use_bn=True)
    x = features(cols, 30, np.random.default_rng(9))
    weights = [w.copy() for w in model.get_weights()]
    model.inference().predict(x)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    assert all(layer._cache is None for _, layer in model.sublayers())


class Swish(Layer):
    """An activation class with no prepared form: the Predictor falls back to forward."""

    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs)
        return x / (1 + np.exp(-x))


def test_unknown_activation_class_falls_back_to_forward():
    model, cols = din(att_activation=Swish)
    assert_matches(model, features(cols, 9, np.random.default_rng(10)), batch_size=4)


def test_activation_names_reach_the_prepared_path():
    model, _ = din(att_activation="sigmoid")
    assert model.inference()._weights().supported
    assert isinstance(model._layers["dnn"]._layers["activation0"], Activation)


@pytest.mark.parametrize("change,message", [
    (lambda x: x.update(item=x["item"] + 100), "must lie in"),
    (lambda x: x.update(hist_cate=-x["hist_cate"] - 1), "must lie in"),
    (lambda x: x.update(item=x["item"].astype(float)), "integer ids"),
    (lambda x: x.update(hist_item=x["hist_item"][:, :3]), "hist_item"),
    (lambda x: x.pop("price"), "missing"),
    (lambda x: x.update(price=x["price"][:-1]), "same batch size"),
])
def test_bad_input_gets_the_layers_clear_errors(change, message):
    model, cols = din()
    x = features(cols, 8, np.random.default_rng(11))
    change(x)
    with pytest.raises((ValueError, TypeError), match=message):
        model.inference().predict(x)


def test_bad_arguments():
    model, cols = din()
    with pytest.raises(ValueError, match="threads"):
        model.inference(threads=0)
    with pytest.raises(ValueError, match="chunk_rows"):
        model.inference(chunk_rows=-1)
    with pytest.raises(ValueError, match="batch_size"):
        model.inference().predict(features(cols, 3, np.random.default_rng(0)), batch_size=0)


def test_query_fields_apart_in_the_column_order():
    """The query is a view of the DNN input when its fields are adjacent, a copy otherwise."""
    cols, hist = columns()
    cols = [cols[1], cols[0], cols[2]] + cols[3:]              # item, user, cate
    model = randomize(DIN(cols, hist, dnn_hidden_units=(8,), att_hidden_size=(4,)), np.random.default_rng(12))
    assert model.inference()._weights().query_slice is None
    assert_matches(model, features(cols, 15, np.random.default_rng(13)), model.inference(chunk_rows=4))


@pytest.mark.parametrize("conventions", ["tf_keras", "keras3", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conventions_profiles(conventions, dtype):
    """Length-masked history (torch), affine Dice BN (torch), float32 dice_alpha (keras3)."""
    cols, hist = columns(pooled=False)
    cols = [VarLenSparseFeat(fc.sparsefeat, fc.maxlen, length_name="hist_len") if fc.name == "hist_item" else fc
            for fc in cols]
    model = randomize(DIN(cols, hist, dnn_hidden_units=(8, 5), att_hidden_size=(6, 4), dnn_use_bn=True,
                          dnn_activation="dice", dtype=dtype, conventions=conventions), np.random.default_rng(14))
    rng = np.random.default_rng(15)
    x = features(cols, 33, rng)
    x["hist_len"] = rng.integers(0, 7, size=(33, 1))
    assert_matches(model, x, model.inference(chunk_rows=7))


def test_models_and_predictors_deepcopy():
    """A model that cached a predictor (threads, locks) still copies; copies build their own."""
    import copy
    model, cols = din()
    x = features(cols, 40, np.random.default_rng(18))
    expected = model.predict(x)
    np.testing.assert_array_equal(copy.deepcopy(model).predict(x), expected)
    predictor = copy.deepcopy(model.inference(threads=2, chunk_rows=8))
    assert (predictor.threads, predictor.chunk_rows) == (2, 8)
    np.testing.assert_allclose(predictor.predict(x), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("wn", [False, True])
def test_attention_weights(wn):
    """``return_attention=True`` gives forward's attention weights; ``predict`` leaves those of
    every row in ``model.attention_scores``, as its forward path does."""
    model, cols = din(att_weight_normalization=wn)
    x = features(cols, 23, np.random.default_rng(19))
    model.forward(x)
    expected = model.attention_scores.copy()
    for n in (1, 23):
        xn = {k: v[:n] for k, v in x.items()}
        p, w = model.inference(chunk_rows=4).predict(xn, return_attention=True)
        np.testing.assert_allclose(w, expected[:n], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(p, model.forward(xn), rtol=1e-12, atol=0)
    model.attention_scores = None
    model.predict(x, batch_size=10)
    np.testing.assert_allclose(model.attention_scores, expected, rtol=1e-12, atol=1e-15)
