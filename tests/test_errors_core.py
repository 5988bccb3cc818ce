"""Bad input to the core layers: the exception type, and a message that names the
argument and says what was expected and what was received."""
import re

import numpy as np
import pytest

from npctr import (DNN, Activation, BatchNormalization, Dense, Dice, Dropout, LocalActivationUnit, PReLU,
                   PredictionLayer, activation_layer)


def raises(exc, *fragments):
    """pytest.raises that also requires every fragment (literal text) in the message."""
    return pytest.raises(exc, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


def built_dnn(in_dim=3, units=(4,), **kwargs):
    layer = DNN(units, **kwargs)
    layer.forward(np.ones((2, in_dim)))
    return layer


def lau_inputs(b=2, t=5, e=3):
    return [np.ones((b, 1, e)), np.ones((b, t, e))]


# --- wrong rank -----------------------------------------------------------------------
@pytest.mark.parametrize("layer", [DNN((3,)), Dense(2), Dice(), PReLU()])
def test_rank_below_two(layer):
    with raises(ValueError, "inputs", "rank >= 2", "(3,)", "rank 1"):
        layer.forward(np.ones(3))


def test_lau_query_rank():
    with raises(ValueError, "query", "rank 3", "(2, 3)", "rank 2"):
        LocalActivationUnit((4,)).forward([np.ones((2, 3)), np.ones((2, 5, 3))])


def test_lau_keys_rank():
    with raises(ValueError, "keys", "rank 3", "(2, 5, 3, 1)", "rank 4"):
        LocalActivationUnit((4,)).forward([np.ones((2, 1, 3)), np.ones((2, 5, 3, 1))])


def test_multiclass_prediction_rank():
    with raises(ValueError, "inputs", "rank 2", "(2, 3, 1)"):
        PredictionLayer("multiclass").forward(np.ones((2, 3, 1)))


def test_binary_prediction_needs_one_value_per_sample():
    with raises(ValueError, "inputs", "(batch_size, 1)", "(5, 2, 1)"):
        PredictionLayer("binary").forward(np.ones((5, 2, 1)))


def test_batch_normalization_rank_changes_after_build():
    bn = BatchNormalization()
    bn.forward(np.ones((4, 3)))
    with raises(ValueError, "inputs", "rank 2", "3 features", "(4, 2, 3)"):
        bn.forward(np.ones((4, 2, 3)))


# --- LocalActivationUnit input structure ------------------------------------------------
def test_lau_mismatched_embedding_sizes():
    with raises(ValueError, "query and keys", "same embedding size", "(2, 1, 3)", "(2, 5, 4)"):
        LocalActivationUnit((4,)).forward([np.ones((2, 1, 3)), np.ones((2, 5, 4))])


def test_lau_query_time_axis_not_one():
    with raises(ValueError, "query", "(batch_size, 1, embedding_size)", "(2, 2, 3)"):
        LocalActivationUnit((4,)).forward([np.ones((2, 2, 3)), np.ones((2, 5, 3))])


def test_lau_batch_sizes_differ():
    with raises(ValueError, "query and keys", "same batch size", "(2, 1, 3)", "(3, 5, 3)"):
        LocalActivationUnit((4,)).forward([np.ones((2, 1, 3)), np.ones((3, 5, 3))])


@pytest.mark.parametrize("inputs,got", [([np.ones((2, 1, 3))], "got 1"),
                                        ([np.ones((2, 1, 3)), np.ones((2, 5, 3)), np.ones((2, 1))], "got 3")])
def test_lau_wrong_number_of_inputs(inputs, got):
    with raises(ValueError, "inputs", "list of 2 arrays", got):
        LocalActivationUnit((4,)).forward(inputs)


def test_lau_single_array_instead_of_list():
    with raises(TypeError, "inputs", "list of 2 arrays", "ndarray"):
        LocalActivationUnit((4,)).forward(np.ones((2, 1, 3)))


def test_dnn_list_instead_of_array():
    with raises(TypeError, "inputs", "one array", "list"):
        DNN((3,)).forward([np.ones((2, 3)), np.ones((2, 3))])


def test_lau_embedding_size_changes_after_build():
    layer = LocalActivationUnit((4,))
    layer.forward(lau_inputs(e=3))
    with raises(ValueError, "keys", "last dimension 3", "(2, 5, 4)"):
        layer.forward(lau_inputs(e=4))


# --- dropout_rate -----------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
@pytest.mark.parametrize("make", [lambda r: DNN((3,), dropout_rate=r),
                                  lambda r: LocalActivationUnit((3,), dropout_rate=r)])
def test_dropout_rate_outside_unit_interval(make, rate):
    with raises(ValueError, "dropout_rate", "[0, 1)", repr(rate)):
        make(rate)


@pytest.mark.parametrize("rate", [1.0, -0.5])
def test_dropout_layer_rate(rate):
    with raises(ValueError, "rate", "[0, 1)", repr(rate)):
        Dropout(rate)


def test_dropout_rate_not_a_number():
    with raises(TypeError, "dropout_rate", "number in [0, 1)", "'0.5'"):
        DNN((3,), dropout_rate="0.5")


# --- activations ------------------------------------------------------------------------
@pytest.mark.parametrize("name,hint", [("foo", ""), ("Relu", "use 'relu'"), ("DICE", "'Dice' or 'dice'"),
                                       ("Sigmoid", "use 'sigmoid'")])
@pytest.mark.parametrize("make", [lambda a: DNN((3,), activation=a),
                                  lambda a: DNN((3,), output_activation=a),
                                  lambda a: LocalActivationUnit((3,), activation=a),
                                  activation_layer])
def test_unknown_activation(make, name, hint):
    with raises(ValueError, "activation must be one of", "relu", "dice", f"got {name!r}", hint):
        make(name)


@pytest.mark.parametrize("name", ["Relu", "swish"])
def test_activation_layer_class_rejects_unknown_name(name):
    with raises(ValueError, "activation", "one of", "relu", repr(name)):
        Activation(name)
    with raises(ValueError, "activation", "relu", repr(name)):
        Dense(2, activation=name)


@pytest.mark.parametrize("bad,exc,got", [(None, TypeError, "None"), (np.tanh, TypeError, "ufunc"),
                                         (int, ValueError, "int")])
def test_activation_neither_name_nor_layer_class(bad, exc, got):
    # as DeepCTR: a class that is not a Layer -> ValueError, anything else -> TypeError
    with raises(exc, "activation", "Layer", got):
        DNN((3,), activation=bad)


# --- hidden units -----------------------------------------------------------------------
@pytest.mark.parametrize("units", [(3, 0), (-1,), (2, 2.5), (True,)])
@pytest.mark.parametrize("make", [DNN, LocalActivationUnit])
def test_non_positive_hidden_units(make, units):
    with raises(ValueError, "hidden_units", "positive integers", repr(tuple(units))):
        make(units)


@pytest.mark.parametrize("units", [3, "64"])
def test_hidden_units_not_a_sequence(units):
    with raises(TypeError, "hidden_units", "sequence of positive integers", repr(units)):
        DNN(units)


@pytest.mark.parametrize("units", [0, -2, 1.5])
def test_dense_units(units):
    with raises(ValueError, "units", "positive integer", repr(units)):
        Dense(units)


# --- set_weights ------------------------------------------------------------------------
def test_set_weights_wrong_count():
    layer = built_dnn()
    with raises(ValueError, "set_weights", "expects 2 weights", "kernel0", "bias0", "got 1"):
        layer.set_weights([np.ones((3, 4))])


def test_set_weights_before_build_with_weights():
    with raises(ValueError, "set_weights", "expects 0 weights", "got 2", "not built"):
        DNN((4,)).set_weights([np.ones((3, 4)), np.ones(4)])


def test_set_weights_wrong_shape():
    layer = built_dnn()
    with raises(ValueError, "set_weights", "'bias0'", "shape (4,)", "got (5,)"):
        layer.set_weights([np.ones((3, 4)), np.ones(5)])


def test_set_weights_wrong_shape_leaves_weights_untouched():
    layer = built_dnn()
    before = layer.get_weights()
    with pytest.raises(ValueError):
        layer.set_weights([np.zeros((3, 4)), np.ones(5)])
    for w, b in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(w, b)


def test_set_weights_dict_unknown_and_missing_names():
    layer = built_dnn()
    with raises(ValueError, "set_weights", "unknown weight names", "kernel9", "known", "kernel0"):
        layer.set_weights({"kernel9": np.ones((3, 4))})
    with raises(ValueError, "set_weights", "missing weights", "bias0"):
        layer.set_weights({"kernel0": np.ones((3, 4))})


def test_set_weights_dict_wrong_shape():
    layer = built_dnn()
    with raises(ValueError, "'kernel0'", "shape (3, 4)", "got (4, 3)"):
        layer.set_weights({"kernel0": np.ones((4, 3)), "bias0": np.ones(4)})


def test_set_weights_not_a_list():
    with raises(TypeError, "set_weights", "list or a dict", "ndarray"):
        built_dnn().set_weights(np.ones(3))


# --- backward ---------------------------------------------------------------------------
ALL_LAYERS = [lambda: DNN((3,)), lambda: LocalActivationUnit((3,)), lambda: PredictionLayer(), Dice, PReLU,
              BatchNormalization, lambda: Dense(2), lambda: Activation("relu"), lambda: Dropout(0.5)]


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_backward_before_forward(make):
    layer = make()
    with raises(RuntimeError, f"{layer.name}.backward", "without a forward", "training=True", "backprop=True"):
        layer.backward(np.ones((2, 1)))


def _inputs_for(layer):
    if isinstance(layer, LocalActivationUnit):
        return lau_inputs()
    if isinstance(layer, PredictionLayer):
        return np.ones((2, 1))
    return np.linspace(-1, 1, 6).reshape(2, 3)


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_backward_after_inference_forward(make):
    layer = make()
    inputs = _inputs_for(layer)
    out = layer.forward(inputs, training=True)
    layer.backward(np.ones_like(out))          # fine after a training forward
    out = layer.forward(inputs)                # inference: nothing cached
    with raises(RuntimeError, f"{layer.name}.backward", "without a forward that kept its cache"):
        layer.backward(np.ones_like(out))


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_backward_wrong_gradient_shape(make):
    layer = make()
    out = layer.forward(_inputs_for(layer), training=True)
    bad = np.ones(out.shape[:-1] + (out.shape[-1] + 1,))
    with raises(ValueError, "grad_output", f"shape {out.shape}", f"got {bad.shape}"):
        layer.backward(bad)


# --- PredictionLayer task -----------------------------------------------------------------
@pytest.mark.parametrize("task", ["multi", "Binary", "classification", None])
def test_prediction_layer_bad_task(task):
    with raises(ValueError, "task", "binary, multiclass or regression", repr(task)):
        PredictionLayer(task)


def test_multiclass_bias_size_changes_after_build():
    layer = PredictionLayer("multiclass")
    layer.forward(np.ones((2, 3)))
    with raises(ValueError, "inputs", "last dimension 3", "(2, 4)"):
        layer.forward(np.ones((2, 4)))


# --- last dimension after build -----------------------------------------------------------
def test_dnn_last_dim_mismatch_after_build():
    layer = built_dnn(in_dim=3)
    with raises(ValueError, "inputs", "last dimension 3", "(2, 5)"):
        layer.forward(np.ones((2, 5)))


def test_dense_last_dim_mismatch_after_build():
    layer = Dense(2)
    layer.forward(np.ones((2, 3)))
    with raises(ValueError, "inputs", "last dimension 3", "(2, 4)"):
        layer.forward(np.ones((2, 4)))


def test_dice_feature_count_after_build():
    layer = Dice()
    layer.forward(np.ones((2, 3)))
    with raises(ValueError, "inputs", "3 features", "(2, 4)"):
        layer.forward(np.ones((2, 4)))


# --- non-numeric input --------------------------------------------------------------------
@pytest.mark.parametrize("bad,dtype", [(np.array([["a", "b", "c"]]), "<U1"),
                                       (np.array([[None, 1.0, 2.0]]), "object"),
                                       ("abc", "<U3")])
@pytest.mark.parametrize("make", [lambda: DNN((3,)), Dice, PReLU, BatchNormalization, lambda: Dense(2),
                                  lambda: Activation("tanh"), lambda: Dropout(0.1), lambda: PredictionLayer()])
def test_non_numeric_input(make, bad, dtype):
    with raises(TypeError, "inputs", "numeric array", f"dtype {dtype}"):
        make().forward(bad)


def test_non_numeric_lau_inputs():
    with raises(TypeError, "query", "numeric array", "<U1"):
        LocalActivationUnit((3,)).forward([np.full((2, 1, 3), "x"), np.ones((2, 5, 3))])
    with raises(TypeError, "keys", "numeric array", "object"):
        LocalActivationUnit((3,)).forward([np.ones((2, 1, 3)), np.full((2, 5, 3), None)])


# --- other constructor arguments ----------------------------------------------------------
@pytest.mark.parametrize("l2", [-0.1, float("nan")])
def test_negative_l2_reg(l2):
    with raises(ValueError, "l2_reg", ">= 0", repr(l2)):
        DNN((3,), l2_reg=l2)


@pytest.mark.parametrize("seed", [-1, 1.5, "1"])
def test_bad_seed(seed):
    with raises(ValueError, "seed", "non-negative integer", repr(seed)):
        DNN((3,), seed=seed)


@pytest.mark.parametrize("dtype,exc", [("float16", ValueError), ("int32", ValueError), (object(), TypeError)])
def test_bad_dtype(dtype, exc):
    with raises(exc, "dtype", "'float32' or 'float64'"):
        DNN((3,), dtype=dtype)
