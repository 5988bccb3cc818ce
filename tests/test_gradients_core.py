"""Finite-difference checks of every core layer's hand-written backward pass.

All checks run in float64 with ``npctr.assert_gradients_ok``'s default
tolerances (central differences, eps 1e-6, relative error <= 1e-7), on every
input and every parameter. Weights are randomised (alphas, gammas, moving
statistics away from their trivial initial values) so that every path carries
a non-zero gradient; inputs are kept away from the ReLU/PReLU kink and BN
columns have variances well away from 0.
"""
import numpy as np
import pytest

from npctr.ops.dense import dense_backward
from npctr import (DNN, Activation, BatchNormalization, Dense, Dice, Dropout, LocalActivationUnit,
                   PReLU, PredictionLayer, assert_gradients_ok, check_gradients)

KINK_MARGIN = 1e-4   # |pre-activation| of a ReLU/PReLU must stay above this (eps is 1e-6)
# Batch-statistics columns (BN, Dice's BN) need at least this variance: far above
# what a 1e-6 step changes in it, so 1/sqrt(var + eps) stays smooth on the scale
# of the finite difference (Dice's BN has eps 1e-9, so eps alone does not protect it).
MIN_BN_VARIANCE = 1e-4


def randomize(layer, seed=0, scale=0.5):
    """Give every weight a generic value: kernels/biases/alphas random, gamma near 1,
    moving means random, moving variances in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    for path, w in layer.params.items():
        if path.endswith("gamma"):
            w[...] = 1.0 + 0.3 * rng.standard_normal(w.shape)
        else:
            w[...] = scale * rng.standard_normal(w.shape)
    for path, w in layer.state.items():
        if path.endswith("moving_variance"):
            w[...] = rng.uniform(0.5, 1.5, w.shape)
        else:
            w[...] = 0.3 * rng.standard_normal(w.shape)
    return layer


def build(layer, inputs, seed=0):
    layer.forward(inputs, training=False)    # builds; inference changes no state
    return randomize(layer, seed)


def spy_inputs(layer, inputs, training):
    """Run one forward and report what the sensitive sub-layers saw.

    Returns ``(smallest |input| of any ReLU/PReLU, smallest column variance of any
    BatchNormalization in training mode, including the one inside Dice)``; the
    layer's state and generators are restored afterwards.
    """
    kink, variance = [np.inf], [np.inf]
    wrapped = []
    for _, sub in layer.sublayers():
        is_relu = isinstance(sub, PReLU) or (isinstance(sub, Activation) and sub.activation == "relu")
        if is_relu or isinstance(sub, BatchNormalization):
            original = sub.forward

            def spy(x, training=False, backprop=None, _orig=original, _relu=is_relu, _sub=sub):
                if _relu:
                    kink[0] = min(kink[0], float(np.min(np.abs(x))))
                elif training:
                    axes = tuple(a for a in range(x.ndim) if a != _sub._feature_axis)
                    variance[0] = min(variance[0], float(np.min(np.var(x, axis=axes))))
                return _orig(x, training=training, backprop=backprop)
            sub.forward = spy
            wrapped.append(sub)
    snap = layer.snapshot()
    try:
        layer.forward(inputs, training=training)
    finally:
        layer.restore(snap)
        for sub in wrapped:
            del sub.forward
    return kink[0], variance[0]


def check(layer, inputs, training=False, **kwargs):
    """assert_gradients_ok after asserting the inputs are away from every kink and
    every batch-normalised column has a clear spread."""
    kink, variance = spy_inputs(layer, inputs, training)
    assert kink > KINK_MARGIN, f"input within {kink:.2g} of a ReLU kink: pick another seed"
    assert variance > MIN_BN_VARIANCE, f"a batch-normalised column has variance {variance:.2g}: pick another seed"
    results = assert_gradients_ok(layer, inputs, training=training, **kwargs)
    n_inputs = len(inputs) if isinstance(inputs, list) else 1
    assert len(results) == n_inputs + len(layer.params)   # every input and every parameter was checked
    return results


def x_of(shape, seed=1, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


# --- Dense ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", [None, "linear", "relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)])
def test_dense(activation, use_bias, shape):
    x = x_of(shape, seed=3)
    layer = build(Dense(4, activation=activation, use_bias=use_bias, dtype="float64"), x, seed=2)
    pre = x @ layer.params["kernel"] + (layer.params["bias"] if use_bias else 0)
    assert np.min(np.abs(pre)) > KINK_MARGIN
    check(layer, x)


def test_dense_l2_regularization_gradient():
    x = x_of((4, 3))
    layer = build(Dense(2, l2_reg=0.3, dtype="float64"), x)
    kernel = layer.params["kernel"]
    layer.forward(x, training=True)
    layer.backward(np.zeros((4, 2)))
    layer.add_regularization_grads()
    np.testing.assert_allclose(layer.regularization_loss(), 0.3 * np.sum(kernel ** 2), rtol=1e-14)

    def loss():
        return layer.regularization_loss()
    from npctr import numerical_gradient
    # central differences, the module's criterion (round-off ~1e-10 at eps 1e-6); 5e-11 measured
    np.testing.assert_allclose(layer.grads["kernel"], numerical_gradient(loss, kernel), rtol=1e-7)


# --- Activations ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4)])
def test_activation(name, shape):
    x = x_of(shape, seed=4)
    check(Activation(name, dtype="float64"), x)


@pytest.mark.parametrize("shape,shared_axes", [((5, 3), None), ((2, 4, 3), None), ((2, 4, 3), [1]),
                                               ((2, 4, 3), 2), ((2, 3, 2, 2), [1, 2])])
def test_prelu(shape, shared_axes):
    x = x_of(shape, seed=5)
    check(build(PReLU(shared_axes=shared_axes, dtype="float64"), x), x)


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5)])
@pytest.mark.parametrize("training", [False, True])
def test_dice(shape, training):
    x = x_of(shape, seed=6, scale=2.0)
    layer = build(Dice(dtype="float64"), x, seed=7)
    # batch statistics need columns with a clear spread
    assert np.min(x.reshape(-1, shape[-1]).var(axis=0)) > 0.1
    check(layer, x, training=training)


# --- BatchNormalization ---------------------------------------------------------------
@pytest.mark.parametrize("shape,axis", [((6, 3), -1), ((3, 4, 3), -1), ((2, 3, 2, 3), -1),
                                        ((4, 3, 5), 1), ((2, 3, 2, 2), 1)])
@pytest.mark.parametrize("center,scale", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("training", [False, True])
def test_batch_normalization(shape, axis, center, scale, training):
    x = x_of(shape, seed=8) + 0.5
    layer = build(BatchNormalization(axis=axis, center=center, scale=scale, dtype="float64"), x, seed=9)
    reduce = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    assert np.min(x.var(axis=reduce)) > 0.05
    check(layer, x, training=training)


def test_batch_normalization_training_updates_moving_statistics_identically():
    """The checker restores moving statistics; one training forward moves them once."""
    x = x_of((6, 3), seed=8)
    layer = build(BatchNormalization(dtype="float64"), x)
    before = {k: v.copy() for k, v in layer.state.items()}
    check(layer, x, training=True)
    for k, v in layer.state.items():
        np.testing.assert_array_equal(v, before[k])


# --- Dropout --------------------------------------------------------------------------
@pytest.mark.parametrize("shape,noise_shape", [((5, 4), None), ((3, 4, 2), None), ((3, 4, 2), (None, 1, 2))])
def test_dropout_training_fixed_mask(shape, noise_shape):
    x = x_of(shape, seed=10)
    layer = Dropout(0.4, noise_shape=noise_shape, seed=3, dtype="float64")
    out = layer.forward(x, training=True)
    assert np.any(out == 0) and np.any(out != 0)    # the mask is not trivial
    check(layer, x, training=True)


def test_dropout_inference_is_identity_with_gradient_one():
    x = x_of((4, 3))
    check(Dropout(0.5, seed=1, dtype="float64"), x, training=False)


# --- DNN ------------------------------------------------------------------------------
ACTS = ["relu", "sigmoid", "tanh", "linear", "softmax", "dice", "prelu"]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_dnn_activations(activation, use_bn, training):
    x = x_of((6, 4), seed=11)
    layer = build(DNN((5, 4, 3), activation=activation, use_bn=use_bn, dtype="float64"), x, seed=12)
    check(layer, x, training=training)


@pytest.mark.parametrize("hidden_units", [(), (5,), (5, 4, 3)])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 4), (2, 2, 2, 4)])
@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_dnn_hidden_units_and_rank(hidden_units, shape, use_bn, training):
    x = x_of(shape, seed=13)
    layer = build(DNN(hidden_units, use_bn=use_bn, dtype="float64"), x, seed=14)
    check(layer, x, training=training)


@pytest.mark.parametrize("activation", ["relu", "dice"])
@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("shape", [(8, 4), (3, 3, 4)])
def test_dnn_dropout_training(activation, use_bn, shape):
    x = x_of(shape, seed=15)
    layer = build(DNN((5, 4), activation=activation, dropout_rate=0.3, use_bn=use_bn, dtype="float64"),
                  x, seed=16)
    # dropout really drops something in this forward
    snap = layer.snapshot()
    layer.forward(x, training=True, backprop=True)
    assert any(np.any(sub._cache.scaled_mask == 0) for _, sub in layer.sublayers() if isinstance(sub, Dropout))
    layer.restore(snap)
    check(layer, x, training=True)


@pytest.mark.parametrize("activation,output_activation", [("relu", "sigmoid"), ("relu", "linear"),
                                                           ("dice", "linear"), ("tanh", "softmax"),
                                                           ("sigmoid", "dice"), ("relu", "prelu")])
@pytest.mark.parametrize("training", [False, True])
def test_dnn_output_activation(activation, output_activation, training):
    x = x_of((6, 4), seed=17)
    layer = build(DNN((5, 3), activation=activation, output_activation=output_activation,
                      use_bn=True, dtype="float64"), x, seed=18)
    check(layer, x, training=training)


def test_dnn_activation_class():
    x = x_of((6, 4), seed=19)
    layer = build(DNN((5, 3), activation=PReLU, dtype="float64"), x, seed=20)
    assert "activation0/alpha" in layer.params
    check(layer, x, training=True)


def test_dnn_gradient_includes_l2_when_added():
    x = x_of((6, 4), seed=21)
    layer = build(DNN((3,), l2_reg=0.1, dtype="float64"), x)
    layer.forward(x, training=True)
    g = np.random.default_rng(0).standard_normal((6, 3))
    layer.backward(g)
    data_grad = layer.grads["kernel0"].copy()
    layer.add_regularization_grads()
    np.testing.assert_allclose(layer.grads["kernel0"] - data_grad, 0.2 * layer.params["kernel0"], rtol=1e-12)


# --- LocalActivationUnit --------------------------------------------------------------
def lau_inputs(b=3, t=4, e=3, seed=22):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, 1, e)), rng.standard_normal((b, t, e))]


@pytest.mark.parametrize("hidden_units", [(), (6,), (6, 3)])
@pytest.mark.parametrize("activation", ["sigmoid", "dice", "prelu"])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_local_activation_unit(hidden_units, activation, split, training):
    inputs = lau_inputs()
    layer = build(LocalActivationUnit(hidden_units, activation=activation, split=split, dtype="float64"),
                  inputs, seed=23)
    check(layer, inputs, training=training)


@pytest.mark.parametrize("activation", ["sigmoid", "dice", "prelu"])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_local_activation_unit_bn_dropout(activation, split, training):
    inputs = lau_inputs(seed=24)
    layer = build(LocalActivationUnit((6, 3), activation=activation, use_bn=True, dropout_rate=0.3,
                                      split=split, dtype="float64"), inputs, seed=25)
    check(layer, inputs, training=training)


# --- PredictionLayer ------------------------------------------------------------------
@pytest.mark.parametrize("task,shape", [("binary", (6, 1)), ("regression", (6, 1)), ("binary", (6,)),
                                        ("multiclass", (5, 4))])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_prediction_layer(task, shape, use_bias, training):
    x = x_of(shape, seed=26)
    layer = build(PredictionLayer(task, use_bias=use_bias, dtype="float64"), x, seed=27)
    check(layer, x, training=training)


# --- the checker catches wrong backward passes ----------------------------------------
class ScaledDense(Dense):
    """A Dense whose input gradient is 1% too large."""

    def backward(self, grad_output):
        return 1.01 * super().backward(grad_output)


class WrongKernelGradDense(Dense):
    """A Dense whose kernel gradient misses one entry."""

    def backward(self, grad_output):
        dx = super().backward(grad_output)
        self._grads["kernel"][0, 0] = 0.0
        return dx


class LAUMissingProductPath(LocalActivationUnit):
    """Explicit attention input, but backward forgets that q reaches u through q * k."""

    def backward(self, grad_output):
        cache, d_score = self._take_cache(grad_output)
        query, h = cache.query, cache.dnn_output
        dnn = self._layers["dnn"]
        d_h, self._grads["kernel"], self._grads["bias"] = dense_backward(d_score, h, self._params["kernel"])
        d_u = dnn.backward(d_h)
        d_q, d_k, d_diff, d_prod = np.split(d_u, 4, axis=-1)
        d_query = np.sum(d_q + d_diff, axis=1, keepdims=True)          # missing: d_prod * keys
        d_keys = d_k - d_diff + d_prod * query
        return [d_query, d_keys]


def _failed(results):
    return sorted(name for name, r in results.items() if not r.passed)


def test_checker_catches_scaled_input_gradient():
    x = x_of((4, 3))
    layer = build(ScaledDense(2, dtype="float64"), x)
    results = check_gradients(layer, x)
    assert _failed(results) == ["input"]
    assert results["input"].rel_error > 1e-3
    with pytest.raises(AssertionError, match="input"):
        assert_gradients_ok(layer, x)


def test_checker_catches_wrong_parameter_gradient():
    x = x_of((4, 3))
    layer = build(WrongKernelGradDense(2, dtype="float64"), x)
    assert _failed(check_gradients(layer, x)) == ["kernel"]


def test_checker_catches_dropped_path_in_lau():
    inputs = lau_inputs()
    good = build(LocalActivationUnit((6,), split=False, dtype="float64"), inputs, seed=23)
    check(good, inputs)
    bad = build(LAUMissingProductPath((6,), split=False, dtype="float64"), inputs, seed=23)
    results = check_gradients(bad, inputs)
    assert _failed(results) == ["input[0]"]     # only d_query is wrong
    assert results["input[0]"].rel_error > 1e-3
