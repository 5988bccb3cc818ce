"""Regression tests for the code-review fixes: Dropout noise_shape, loss gradient
normalisation, Dice/PReLU constructor validation, empty-batch Embedding backward,
and Dense/Embedding get_config with callable initializers."""
import numpy as np
import pytest

from npctr import initializers
from npctr.layers import Dense, Dice, Dropout, Embedding, PReLU
from npctr.sparse import RowGrad
from npctr.training.losses import BinaryCrossentropy, CategoricalCrossentropy


# --- 1. Dropout noise_shape -----------------------------------------------------------

@pytest.mark.parametrize("noise_shape, exc, fragment", [
    ((None, 0), ValueError, "0"),
    ((None, -2), ValueError, "-2"),
    ((None, 1.5), TypeError, "1.5"),
    ((None, True), TypeError, "True"),
    ((None, "4"), TypeError, "'4'"),
    (4, TypeError, "4"),
])
def test_dropout_noise_shape_entries_validated_at_construction(noise_shape, exc, fragment):
    with pytest.raises(exc) as info:
        Dropout(0.5, noise_shape=noise_shape)
    msg = str(info.value)
    assert "noise_shape" in msg and fragment in msg
    assert "None or" in msg                           # says what is expected


@pytest.mark.parametrize("training", [True, False])
def test_dropout_noise_shape_must_fit_input(training):
    layer = Dropout(0.5, noise_shape=(None, 4), seed=0, dtype="float64")
    with pytest.raises(ValueError) as info:
        layer.forward(np.ones((3, 1)), training=training)
    msg = str(info.value)
    assert "noise_shape" in msg and "(None, 4)" in msg      # the argument and its value
    assert "(3, 1)" in msg                                  # the actual input shape
    assert "None, 1 or 1" in msg                            # what axis 1 allows


def test_dropout_noise_shape_rank_mismatch_names_shapes():
    with pytest.raises(ValueError) as info:
        Dropout(0.5, noise_shape=(None, 1, 1), seed=0).forward(np.ones((3, 2)), training=True)
    msg = str(info.value)
    assert "noise_shape" in msg and "rank 2" in msg and "(3, 2)" in msg


@pytest.mark.parametrize("noise_shape", [(None, 1), (1, 4), (3, None), (3, 4), [None, None]])
def test_dropout_valid_noise_shapes_keep_input_shape(noise_shape):
    layer = Dropout(0.5, noise_shape=noise_shape, seed=0, dtype="float64")
    x = np.ones((3, 4))
    assert layer.forward(x, training=True).shape == (3, 4)
    assert layer.forward(x, training=False).shape == (3, 4)
    assert layer.noise_shape == tuple(noise_shape)


def test_dropout_noise_shape_one_shares_mask():
    layer = Dropout(0.5, noise_shape=(None, 1), seed=1, dtype="float64")
    y = layer.forward(np.ones((50, 4)), training=True)
    assert np.all(y == y[:, :1])


# --- 2. Loss gradients match the value (mean over every element) -----------------------

def _numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("shape", [(5, 1), (5, 3)])
def test_bce_grad_and_logit_grad_match_value(shape):
    rng = np.random.default_rng(0)
    loss = BinaryCrossentropy()
    y = rng.integers(0, 2, shape).astype(np.float64)
    p = rng.uniform(0.05, 0.95, shape)
    # central differences (h 1e-6): ~1e-10 absolute round-off; 6e-10 relative measured
    np.testing.assert_allclose(loss.grad(y, p), _numeric_grad(lambda q: loss.value(y, q), p),
                               rtol=1e-7, atol=1e-9)
    z = rng.normal(0, 2, shape)
    # logit_grad is the derivative of the unclipped BCE; far inside the clip range the
    # clipped value differs from it only by O(1e-7) relative (2.8e-8 measured).
    np.testing.assert_allclose(loss.logit_grad(y, z),
                               _numeric_grad(lambda w: loss.value(y, _sigmoid(w)), z),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(5, 1), (5, 3)])
def test_categorical_grad_and_logit_grad_match_value(shape):
    rng = np.random.default_rng(1)
    loss = CategoricalCrossentropy()
    y = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    p = rng.uniform(0.1, 1.0, shape)
    if shape[1] > 1:      # with one class q == 1 is clipped and the value is flat: grad 0
        # central differences (h 1e-6): 1e-9 relative measured
        np.testing.assert_allclose(loss.grad(y, p), _numeric_grad(lambda q: loss.value(y, q), p),
                                   rtol=1e-7, atol=1e-9)
    else:
        assert np.all(loss.grad(y, p) == 0)
    z = rng.normal(0, 2, shape)
    if shape[1] > 1:
        numeric = _numeric_grad(lambda w: loss.value(y, _softmax(w)), z)
    else:
        numeric = np.zeros(shape)     # softmax of one logit is 1: the loss does not depend on z
    # central differences of a softmax then a clipped log (h 1e-6): 5.9e-8 measured
    np.testing.assert_allclose(loss.logit_grad(y, z), numeric, rtol=1e-6, atol=1e-8)


def test_bce_multi_output_grad_is_not_scaled_by_outputs():
    loss = BinaryCrossentropy()
    y = np.zeros((4, 3))
    z = np.zeros((4, 3))
    np.testing.assert_allclose(loss.fused_logit_grad(y, z), np.full((4, 3), 0.5 / 12), rtol=1e-15)


# --- 3. Dice / PReLU constructor validation --------------------------------------------

@pytest.mark.parametrize("axis", [1.5, "1", True, None])
def test_dice_axis_type(axis):
    with pytest.raises(TypeError) as info:
        Dice(axis=axis)
    msg = str(info.value)
    assert "axis" in msg and "int" in msg and repr(axis) in msg


@pytest.mark.parametrize("axis", [5, -4, 3])
def test_dice_axis_range_in_build(axis):
    layer = Dice(axis=axis, dtype="float64")
    with pytest.raises(ValueError) as info:
        layer.forward(np.ones((2, 3, 4)), training=True)
    msg = str(info.value)
    assert f"axis {axis}" in msg and "(2, 3, 4)" in msg and "[-3, 2]" in msg


@pytest.mark.parametrize("epsilon, exc", [(-1, ValueError), (0, ValueError), (float("nan"), ValueError),
                                          (float("inf"), ValueError), ("1e-9", TypeError),
                                          (True, TypeError)])
def test_dice_epsilon_positive(epsilon, exc):
    with pytest.raises(exc) as info:
        Dice(epsilon=epsilon)
    msg = str(info.value)
    assert "epsilon" in msg and "positive" in msg and repr(epsilon) in msg


def test_dice_valid_axis_still_works():
    x = np.random.default_rng(0).normal(size=(4, 3, 2))
    for axis in (-1, 2, 1, -2):
        assert Dice(axis=axis, dtype="float64").forward(x, training=True).shape == x.shape


@pytest.mark.parametrize("shared_axes", [True, 1.5, (1, True), [1, 2.0], "1"])
def test_prelu_shared_axes_must_be_ints(shared_axes):
    with pytest.raises(TypeError) as info:
        PReLU(shared_axes=shared_axes)
    msg = str(info.value)
    assert "shared_axes" in msg and "int" in msg and repr(shared_axes) in msg


@pytest.mark.parametrize("shared_axes, expected", [(None, None), (1, (1,)), ([1, 2], (1, 2)),
                                                   (np.int64(2), (2,)), ((np.int32(1),), (1,))])
def test_prelu_shared_axes_valid(shared_axes, expected):
    assert PReLU(shared_axes=shared_axes).shared_axes == expected


# --- 4. Embedding backward on an empty batch --------------------------------------------

@pytest.mark.parametrize("ids_shape", [(0,), (0, 1), (0, 5)])
def test_embedding_backward_empty_batch(ids_shape):
    layer = Embedding(6, 3, seed=0, dtype="float64")
    ids = np.zeros(ids_shape, dtype=np.int64)
    out = layer.forward(ids, training=True)
    assert out.shape == ids_shape + (3,)
    assert layer.backward(np.zeros(out.shape)) is None
    g = layer.grads["embeddings"]
    assert isinstance(g, RowGrad)
    assert g.indices.shape == (0,) and g.values.shape == (0, 3) and g.dense_shape == (6, 3)
    assert np.array_equal(g.to_dense(), np.zeros((6, 3)))


# --- 5. get_config with a callable initializer ------------------------------------------

def _custom_init(rng, shape, dtype=np.float64):
    return np.full(shape, 0.5, dtype=dtype)


def test_dense_get_config_refuses_unregistered_callable():
    with pytest.raises(ValueError) as info:
        Dense(2, kernel_initializer=_custom_init).get_config()
    msg = str(info.value)
    assert "kernel_initializer" in msg and "_custom_init" in msg and "glorot_uniform" in msg


def test_embedding_get_config_refuses_unregistered_callable():
    with pytest.raises(ValueError) as info:
        Embedding(5, 2, embeddings_initializer=_custom_init).get_config()
    msg = str(info.value)
    assert "embeddings_initializer" in msg and "_custom_init" in msg and "random_normal" in msg


def test_registered_callable_initializers_round_trip_by_name():
    cfg = Dense(2, kernel_initializer=initializers.zeros).get_config()
    assert cfg["kernel_initializer"] == "zeros"
    assert Dense.from_config(cfg).kernel_initializer == "zeros"
    cfg = Embedding(5, 2, embeddings_initializer=initializers.ones).get_config()
    assert cfg["embeddings_initializer"] == "ones"
    assert Embedding.from_config(cfg).embeddings_initializer == "ones"


def test_names_and_defaults_unchanged_in_config():
    assert Dense(2).get_config()["kernel_initializer"] == "glorot_uniform"
    assert Dense(2, kernel_initializer="glorot_normal").get_config()["kernel_initializer"] == "glorot_normal"
    assert Embedding(5, 2).get_config()["embeddings_initializer"] is None
    assert Embedding(5, 2, embeddings_initializer="zeros").get_config()["embeddings_initializer"] == "zeros"


@pytest.mark.parametrize("shape", [(5,), (5, 1), (5, 3)])
def test_mse_grad_matches_its_value_for_every_shape(shape):
    from npctr.gradcheck import numerical_gradient
    from npctr.training.losses import MeanSquaredError
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.random(shape), rng.random(shape)
    loss = MeanSquaredError()
    numeric = numerical_gradient(lambda: loss.value(y_true, y_pred), y_pred)
    np.testing.assert_allclose(loss.grad(y_true, y_pred), numeric, rtol=1e-7, atol=1e-10)   # central differences


@pytest.mark.parametrize("kwargs,exc,message", [
    ({"momentum": "0.9"}, TypeError, "momentum must be a number in [0, 1], got '0.9'"),
    ({"momentum": 1.5}, ValueError, "momentum must be in [0, 1], got 1.5"),
    ({"epsilon": "1e-3"}, TypeError, "epsilon must be a positive number, got '1e-3'"),   # None: the profile's
    ({"epsilon": 0.0}, ValueError, "epsilon must be a positive finite number, got 0.0"),
])
def test_batch_normalization_arguments_are_named(kwargs, exc, message):
    from npctr.layers import BatchNormalization
    with pytest.raises(exc) as info:
        BatchNormalization(**kwargs)
    assert message in str(info.value)


def test_optimizer_arguments_share_the_library_checks():
    from npctr.training.optimizers import Adagrad, SGD
    with pytest.raises(TypeError, match="learning_rate must be a positive number, got 'x'"):
        SGD("x")
    with pytest.raises(ValueError, match="initial_accumulator_value must be >= 0, got -1"):
        Adagrad(initial_accumulator_value=-1)
