"""A layer's declared dtype wins over its inputs', for outputs, weights and gradients, nested layers included."""
import numpy as np
import pytest

from npctr import (DNN, AttentionSequencePoolingLayer, BatchNormalization, Dense, Dice, LocalActivationUnit,
                   PReLU, PredictionLayer, SequencePoolingLayer)

rng = np.random.default_rng(0)
X = rng.standard_normal((4, 3))
Q, K, L = rng.standard_normal((4, 1, 3)), rng.standard_normal((4, 5, 3)), np.array([[5], [2], [1], [0]])

CASES = [
    (lambda dt: Dense(2, activation="tanh", dtype=dt), X),
    (lambda dt: BatchNormalization(dtype=dt), X),
    (lambda dt: Dice(dtype=dt), X),
    (lambda dt: PReLU(dtype=dt), X),
    (lambda dt: DNN((4, 2), activation="dice", use_bn=True, dtype=dt), X),
    (lambda dt: PredictionLayer(dtype=dt), X[:, :1]),
    (lambda dt: LocalActivationUnit((4,), activation="dice", dtype=dt), [Q, K]),
    (lambda dt: AttentionSequencePoolingLayer((4,), "dice", weight_normalization=True, dtype=dt), [Q, K, L]),
    (lambda dt: SequencePoolingLayer("mean", dtype=dt), [K, L]),
]


@pytest.mark.parametrize("make,inputs", CASES)
@pytest.mark.parametrize("dtype,other", [("float32", np.float64), ("float64", np.float32)])
def test_declared_dtype_wins(make, inputs, dtype, other):
    layer = make(dtype)
    cast = [x.astype(other) if x.dtype.kind == "f" else x for x in inputs] if isinstance(inputs, list) \
        else inputs.astype(other)
    y = layer.forward(cast, training=True)
    layer.backward(np.ones_like(y))
    assert y.dtype == dtype
    for name, arrays in (("params", layer.params), ("grads", layer.grads), ("state", layer.state)):
        wrong = {k: v.dtype for k, v in arrays.items() if v.dtype != dtype}
        assert not wrong, (name, wrong)
