"""DeepCTR's own layer tests, carried over to npctr.

From DeepCTR's ``tests/layers/core_test.py`` and ``tests/layers/activations_test.py``
(constants from ``interaction_test.py``: BATCH_SIZE 5, EMBEDDING_SIZE 3,
SEQ_LENGTH 10), with ``tests/utils.py::layer_test`` ported to
``tests/layer_test_util.py``. Same layers, arguments and shapes.

Differences from DeepCTR's versions:
* DeepCTR returns early for ``LocalActivationUnit`` with a Dice/PReLU activation
  class on TensorFlow >= 1.13, so only 'sigmoid' runs there; all of them run here.
* DeepCTR marks PredictionLayer on ``(5, 2, 1)`` as xfail (the output would be
  ``(10, 1)``, not ``compute_output_shape``'s ``(5, 1)``); npctr rejects that input
  with a ValueError, which is tested instead.
"""
import numpy as np
import pytest

from npctr import DNN, Dice, LocalActivationUnit, PReLU, PredictionLayer

from layer_test_util import layer_test

BATCH_SIZE = 5
EMBEDDING_SIZE = 3
SEQ_LENGTH = 10


@pytest.mark.parametrize("hidden_units,activation",
                         [(hidden_units, activation) for hidden_units in [(), (10,)]
                          for activation in ["sigmoid", Dice, PReLU]])
def test_LocalActivationUnit(hidden_units, activation):
    out = layer_test(LocalActivationUnit,
                     kwargs={"hidden_units": hidden_units, "activation": activation, "dropout_rate": 0.5},
                     input_shape=[(BATCH_SIZE, 1, EMBEDDING_SIZE), (BATCH_SIZE, SEQ_LENGTH, EMBEDDING_SIZE)])
    assert out.shape == (BATCH_SIZE, SEQ_LENGTH, 1)


@pytest.mark.parametrize("hidden_units,use_bn",
                         [(hidden_units, use_bn) for hidden_units in [(), (10,)]
                          for use_bn in [True, False]])
def test_DNN(hidden_units, use_bn):
    layer_test(DNN, kwargs={"hidden_units": hidden_units, "use_bn": use_bn, "dropout_rate": 0.5},
               input_shape=(BATCH_SIZE, EMBEDDING_SIZE))


@pytest.mark.parametrize("task,use_bias",
                         [(task, use_bias) for task in ["binary", "regression"]
                          for use_bias in [True, False]])
def test_PredictionLayer(task, use_bias):
    out = layer_test(PredictionLayer, kwargs={"task": task, "use_bias": use_bias}, input_shape=(BATCH_SIZE, 1))
    if task == "binary":
        assert np.all((out > 0) & (out < 1))


def test_test_PredictionLayer_invalid():
    # DeepCTR: @pytest.mark.xfail(reason="dim size must be 1 except for the batch size dim")
    with pytest.raises(ValueError, match=r"inputs.*\(batch_size, 1\).*\(5, 2, 1\)"):
        layer_test(PredictionLayer, kwargs={"use_bias": True}, input_shape=(BATCH_SIZE, 2, 1))


def test_dice():
    layer_test(Dice, kwargs={}, input_shape=(2, 3))


def test_layer_test_checks_output_shape():
    """The helper itself fails when compute_output_shape disagrees with the output."""

    class WrongShapeDNN(DNN):
        def compute_output_shape(self, input_shape):
            return tuple(input_shape[:-1]) + (7,)

    with pytest.raises(AssertionError, match="expected_shape"):
        layer_test(WrongShapeDNN, kwargs={"hidden_units": (4,)}, input_shape=(BATCH_SIZE, EMBEDDING_SIZE))


def test_layer_test_none_batch_dimension():
    out = layer_test(DNN, kwargs={"hidden_units": (4,)}, input_shape=(None, EMBEDDING_SIZE))
    assert out.shape[1] == 4 and 1 <= out.shape[0] <= 3
