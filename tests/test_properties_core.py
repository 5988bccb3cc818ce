"""Hypothesis properties of the core layers (profile 'ci' from conftest.py: derandomized)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npctr import (DNN, BatchNormalization, Dense, Dice, Dropout, LocalActivationUnit, PReLU,
                   PredictionLayer)

ACTS = ["relu", "sigmoid", "tanh", "linear", "softmax", "dice", "prelu"]

small = st.integers(1, 5)
hidden = st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple)
activations = st.sampled_from(ACTS)
seeds = st.integers(0, 2 ** 16)


def normal(seed, shape, dtype=np.float64, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def random_weights(layer, seed):
    """Random values for ``layer.get_weights()`` (moving variances kept positive)."""
    rng = np.random.default_rng(seed)
    return [np.abs(w) + 0.5 if n.endswith("moving_variance") else w
            for n, w in ((n, rng.standard_normal(v.shape)) for n, v in zip(layer.weight_names(),
                                                                            layer.get_weights()))]


def no_cache_anywhere(layer):
    return all(sub._cache is None for _, sub in layer.sublayers())


@st.composite
def dnn_case(draw, min_rank=2, max_rank=4, acts=ACTS):
    rank = draw(st.integers(min_rank, max_rank))
    lead = tuple(draw(st.lists(small, min_size=rank - 1, max_size=rank - 1)))
    in_dim = draw(small)
    kwargs = dict(hidden_units=draw(hidden), activation=draw(st.sampled_from(acts)), use_bn=draw(st.booleans()),
                  dropout_rate=draw(st.sampled_from([0.0, 0.3])),
                  output_activation=draw(st.sampled_from([None, "sigmoid", "linear"])),
                  seed=draw(st.integers(0, 2000)))
    return lead + (in_dim,), kwargs, draw(seeds)


# --- shapes ---------------------------------------------------------------------------
@given(dnn_case(), st.booleans())
def test_dnn_output_shape(case, training):
    shape, kwargs, seed = case
    layer = DNN(**kwargs)
    x = normal(seed, shape)
    out = layer.forward(x, training=training)
    units = kwargs["hidden_units"]
    expected = shape if not units else shape[:-1] + (units[-1],)
    assert out.shape == expected
    assert layer.compute_output_shape(shape) == expected
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + expected[1:]


@given(small, st.integers(1, 6), st.integers(1, 4), hidden, st.sampled_from(["sigmoid", "dice", "prelu"]),
       st.booleans(), st.booleans(), st.booleans(), seeds)
def test_lau_output_shape(b, t, e, units, activation, use_bn, split, training, seed):
    layer = LocalActivationUnit(units, activation=activation, use_bn=use_bn, split=split)
    inputs = [normal(seed, (b, 1, e)), normal(seed + 1, (b, t, e))]
    out = layer.forward(inputs, training=training)
    assert out.shape == (b, t, 1)
    assert layer.compute_output_shape([(b, 1, e), (b, t, e)]) == (b, t, 1)
    assert layer.compute_output_shape([(None, 1, e), (None, t, e)]) == (None, t, 1)
    assert layer.params["kernel"].shape == ((units[-1] if units else 4 * e), 1)


@given(st.integers(1, 8), st.sampled_from(["binary", "regression"]), st.booleans(),
       st.sampled_from([(), (1,), (1, 1)]), seeds)
def test_prediction_output_shape(b, task, use_bias, tail, seed):
    layer = PredictionLayer(task, use_bias=use_bias)
    out = layer.forward(normal(seed, (b,) + tail))
    assert out.shape == (b, 1) == layer.compute_output_shape((b,) + tail)


@given(st.integers(1, 8), st.integers(2, 5), st.booleans(), seeds)
def test_prediction_multiclass_shape_and_rows_sum_to_one(b, c, use_bias, seed):
    layer = PredictionLayer("multiclass", use_bias=use_bias)
    out = layer.forward(normal(seed, (b, c), scale=3.0))
    assert out.shape == (b, c) == layer.compute_output_shape((b, c))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)


@given(st.lists(small, min_size=1, max_size=3).map(tuple), st.integers(1, 5), st.booleans(), seeds)
def test_elementwise_layers_keep_shape(lead, c, training, seed):
    shape = lead + (c,)
    x = normal(seed, shape)
    layers = [Dice(), PReLU(), Dropout(0.3, seed=1), Dense(3)]
    if len(shape) >= 2:
        layers.append(BatchNormalization())
    for layer in layers:
        if len(shape) < 2 and not isinstance(layer, (Dropout, BatchNormalization)):
            continue
        out = layer.forward(x, training=training)
        assert out.shape == layer.compute_output_shape(shape)


# --- DNN on nD == DNN on the flattened 2D input ---------------------------------------
# Not for 'prelu': Keras's PReLU (which npctr follows) has one alpha per position,
# shape input_shape[1:], so on (B, T, H) it has (T, H) alphas and on (B*T, H) only H.
ACTS_POSITIONLESS = [a for a in ACTS if a != "prelu"]


def nd_and_flat_dnns(kwargs, x, seed):
    """Two DNN(**kwargs) with the same random weights, built for ``x`` and for ``x`` flattened to 2D."""
    nd, flat = DNN(**kwargs), DNN(**kwargs)
    nd.forward(x)
    nd.set_weights(random_weights(nd, seed), order="tf_keras")
    flat.forward(x.reshape(-1, x.shape[-1]))
    flat.set_weights(nd.get_weights())
    return nd, flat


@given(dnn_case(min_rank=3, max_rank=4, acts=ACTS_POSITIONLESS))
def test_dnn_nd_equals_flattened_inference(case):
    shape, kwargs, seed = case
    x = normal(seed, shape)
    nd, flat = nd_and_flat_dnns(kwargs, x, seed)
    out = nd.forward(x)
    np.testing.assert_allclose(out.reshape(-1, out.shape[-1]), flat.forward(x.reshape(-1, shape[-1])),
                               rtol=1e-12, atol=1e-14)


@given(dnn_case(min_rank=3, max_rank=4, acts=ACTS_POSITIONLESS))
def test_dnn_nd_equals_flattened_training(case):
    # BN/Dice statistics pool every axis but the last, so they are the same for the
    # flattened input (up to summation order); dropout masks are drawn in C order
    # from the same generator, so they match too.
    shape, kwargs, seed = case
    x = normal(seed, shape)
    nd, flat = nd_and_flat_dnns(kwargs, x, seed)
    out = nd.forward(x, training=True)
    out2 = flat.forward(x.reshape(-1, shape[-1]), training=True)
    if not kwargs["use_bn"] and kwargs["activation"] != "dice" and kwargs["output_activation"] is None:
        tol = dict(rtol=1e-12, atol=1e-14)
    else:
        # batch statistics in a different summation order; a batch-normalised column of
        # near-constant values amplifies that round-off by 1/sqrt(var + eps)
        tol = dict(rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out.reshape(-1, out.shape[-1]), out2, **tol)
    for k, v in nd.state.items():
        np.testing.assert_allclose(v, flat.state[k], rtol=1e-9, atol=1e-12)


# --- inference: deterministic, nothing cached, no state touched -------------------------
@given(dnn_case())
def test_dnn_inference_deterministic_and_cacheless(case):
    shape, kwargs, seed = case
    layer = DNN(**kwargs)
    x = normal(seed, shape)
    first = layer.forward(x)
    state = {k: v.copy() for k, v in layer.state.items()}
    second = layer.forward(x, training=False)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(layer.call(x), first)
    assert no_cache_anywhere(layer)
    for k, v in layer.state.items():
        np.testing.assert_array_equal(v, state[k])


@given(small, st.integers(1, 6), st.integers(1, 4), hidden, st.sampled_from(["sigmoid", "dice", "prelu"]),
       st.booleans(), seeds)
def test_lau_inference_deterministic_and_cacheless(b, t, e, units, activation, use_bn, seed):
    layer = LocalActivationUnit(units, activation=activation, use_bn=use_bn, dropout_rate=0.5)
    inputs = [normal(seed, (b, 1, e)), normal(seed + 1, (b, t, e))]
    layer.forward(inputs, training=True)      # a training forward first: its cache must go
    first = layer.forward(inputs)
    assert no_cache_anywhere(layer)
    np.testing.assert_array_equal(first, layer.forward(inputs))


# --- PredictionLayer ------------------------------------------------------------------
@given(st.lists(st.floats(-30, 30), min_size=1, max_size=20), st.floats(-5, 5), st.booleans())
def test_binary_predictions_in_open_unit_interval(values, bias, use_bias):
    layer = PredictionLayer("binary", use_bias=use_bias)
    x = np.array(values).reshape(-1, 1)
    layer.forward(x)
    if use_bias:
        layer.set_weights([np.array([bias])])
    p = layer.forward(x)
    assert np.all(p > 0) and np.all(p < 1)


# --- float32 in, float32 out (and float32 gradients) -----------------------------------
def _assert_float32_everywhere(layer, inputs):
    out = layer.forward(inputs, training=True)
    assert out.dtype == np.float32
    grads = layer.backward(np.ones_like(out))
    for g in (grads if isinstance(grads, list) else [grads]):
        assert g.dtype == np.float32
    for k, g in layer.grads.items():
        assert np.asarray(g).dtype == np.float32, k
    for k, v in {**layer.params, **layer.state}.items():
        assert v.dtype == np.float32, k
    assert layer.forward(inputs).dtype == np.float32


@given(dnn_case())
def test_dnn_float32(case):
    shape, kwargs, seed = case
    _assert_float32_everywhere(DNN(**kwargs), normal(seed, shape, np.float32))


@given(small, st.integers(1, 6), st.integers(1, 4), hidden, st.sampled_from(["sigmoid", "dice", "prelu"]),
       st.booleans(), st.booleans(), seeds)
def test_lau_float32(b, t, e, units, activation, use_bn, split, seed):
    layer = LocalActivationUnit(units, activation=activation, use_bn=use_bn, split=split)
    _assert_float32_everywhere(layer, [normal(seed, (b, 1, e), np.float32), normal(seed, (b, t, e), np.float32)])


@given(st.integers(1, 8), st.sampled_from(["binary", "regression"]), st.booleans(), seeds)
def test_prediction_float32(b, task, use_bias, seed):
    _assert_float32_everywhere(PredictionLayer(task, use_bias=use_bias), normal(seed, (b, 1), np.float32))


@pytest.mark.parametrize("make", [Dice, PReLU, BatchNormalization, lambda: Dense(3, activation="tanh"),
                                  lambda: Dropout(0.5, seed=0)])
def test_elementwise_float32(make):
    _assert_float32_everywhere(make(), normal(0, (4, 3), np.float32))


# --- LAU: split first layer == explicit attention input ---------------------------------
@given(small, st.integers(1, 6), st.integers(1, 4), st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
       st.sampled_from(["sigmoid", "dice", "prelu"]), st.booleans(), st.booleans(), seeds)
def test_lau_split_equals_naive(b, t, e, units, activation, use_bn, training, seed):
    split = LocalActivationUnit(units, activation=activation, use_bn=use_bn, split=True)
    naive = LocalActivationUnit(units, activation=activation, use_bn=use_bn, split=False)
    inputs = [normal(seed, (b, 1, e)), normal(seed + 1, (b, t, e))]
    split.forward(inputs)
    naive.forward(inputs)
    rng = np.random.default_rng(seed)
    weights = [w + 0.3 * rng.standard_normal(w.shape) for w in split.get_weights()]
    weights = [np.abs(w) + 0.5 if n.endswith("moving_variance") else w
               for n, w in zip(split.weight_names(), weights)]
    split.set_weights(weights, order="tf_keras")
    naive.set_weights(weights, order="tf_keras")
    out_s = split.forward(inputs, training=training, backprop=True)
    out_n = naive.forward(inputs, training=training, backprop=True)
    tol = dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out_s, out_n, **tol)
    g = normal(seed + 2, out_s.shape)
    for a, c in zip(split.backward(g), naive.backward(g)):
        np.testing.assert_allclose(a, c, **tol)
    for k in split.params:
        np.testing.assert_allclose(split.grads[k], naive.grads[k], **tol, err_msg=k)
    for k in split.state:
        np.testing.assert_allclose(split.state[k], naive.state[k], **tol, err_msg=k)


# --- get_weights / set_weights round trip ---------------------------------------------
@given(dnn_case())
def test_dnn_weights_round_trip(case):
    shape, kwargs, seed = case
    x = normal(seed, shape)
    a = DNN(**kwargs)
    assert a.get_weights() == []
    a.set_weights([])
    a.forward(x)
    new = random_weights(a, seed)
    a.set_weights(new, order="tf_keras")
    got = a.get_weights()
    assert len(got) == len(new)
    for w, n in zip(got, new):
        np.testing.assert_array_equal(w, n)
    b = DNN(**{**kwargs, "seed": kwargs["seed"] + 1})
    b.forward(x)
    b.set_weights(got)
    np.testing.assert_array_equal(b.forward(x), a.forward(x))
    # by name
    c = DNN(**kwargs)
    c.forward(x)
    c.set_weights(dict(zip(a.weight_names(), got)))
    np.testing.assert_array_equal(c.forward(x), a.forward(x))
    # get_weights returns copies
    for w in a.get_weights():
        w[...] = 0
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


@given(small, st.integers(1, 6), st.integers(1, 4), hidden, st.sampled_from(["sigmoid", "dice", "prelu"]),
       st.booleans(), seeds)
def test_lau_weights_round_trip(b, t, e, units, activation, use_bn, seed):
    inputs = [normal(seed, (b, 1, e)), normal(seed + 1, (b, t, e))]
    a = LocalActivationUnit(units, activation=activation, use_bn=use_bn, seed=1)
    a.forward(inputs)
    new = random_weights(a, seed)
    a.set_weights(new, order="tf_keras")
    for w, n in zip(a.get_weights(), new):
        np.testing.assert_array_equal(w, n)
    other = LocalActivationUnit(units, activation=activation, use_bn=use_bn, seed=2)
    other.forward(inputs)
    other.set_weights(a.get_weights())
    np.testing.assert_array_equal(other.forward(inputs), a.forward(inputs))
