"""Contracts every layer and model keeps: inference caches nothing, the global NumPy random
state is never touched, and inference is a pure function of the inputs."""
import numpy as np
import pytest

from npctr import DNN, LocalActivationUnit, AttentionSequencePoolingLayer, Dropout
from npctr.datasets import make_din_data
from npctr.models import DIN, DNNModel


def _models():
    x, y, columns, history = make_din_data(64, maxlen=6, seed=3)
    return x, y, [DIN(columns, history, dnn_hidden_units=(8, 4), att_hidden_size=(6,), dnn_use_bn=True,
                      dnn_dropout=0.3),
                  DNNModel(columns, dnn_hidden_units=(8, 4), dnn_use_bn=True, dnn_dropout=0.3)]


def test_inference_caches_nothing_anywhere():
    x, _, models = _models()
    for model in models:
        model.forward(x, training=True)                      # leaves caches behind ...
        model.forward(x, training=False)                     # ... which inference clears
        kept = [prefix or "<model>" for prefix, layer in model.sublayers() if layer._cache is not None]
        assert not kept, kept


def test_inference_is_a_pure_function_of_the_inputs():
    x, _, models = _models()
    for model in models:
        state = {k: v.copy() for k, v in model.state.items()}
        first = model.predict(x)
        assert np.array_equal(model.predict(x), first)
        assert all(np.array_equal(v, state[k]) for k, v in model.state.items())   # no BN update


def test_global_random_state_is_never_used():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    x, y, models = _models()
    q, k = np.ones((2, 1, 3)), np.ones((2, 4, 3))
    DNN((4,), dropout_rate=0.5, seed=None).forward(np.ones((3, 5)), training=True)
    LocalActivationUnit((4,), seed=None).forward([q, k], training=True)
    AttentionSequencePoolingLayer((4,)).forward([q, k, np.array([[2], [4]])], training=True)
    Dropout(0.5).forward(np.ones((4, 4)), training=True)
    for model in models:
        model.compile("adam", "binary_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("seed", [0, 7])
def test_same_seed_same_weights_and_dropout_masks(seed):
    x = np.ones((6, 5))
    a, b = DNN((4, 3), dropout_rate=0.5, seed=seed), DNN((4, 3), dropout_rate=0.5, seed=seed)
    assert np.array_equal(a.forward(x, training=True), b.forward(x, training=True))
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
