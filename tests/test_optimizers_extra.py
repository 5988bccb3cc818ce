"""RMSprop, Ftrl, AdamW, clipnorm/clipvalue against recorded tf.keras trajectories; LazyAdam's semantics."""
from pathlib import Path

import numpy as np
import pytest

from npctr.sparse import RowGrad
from npctr.training import optimizers
from npctr.training.optimizers import SGD, Adam, RMSprop, Ftrl, AdamW, LazyAdam

DATA = np.load(Path(__file__).parent / "data" / "optimizers" / "tf_keras.npz")

CASES = {
    "rmsprop": lambda: RMSprop(0.01),
    "rmsprop_centered_momentum": lambda: RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
    "ftrl": lambda: Ftrl(0.05),
    "ftrl_regularized": lambda: Ftrl(0.05, learning_rate_power=-0.7, l1_regularization_strength=0.01,
                                     l2_regularization_strength=0.02, beta=0.3,
                                     l2_shrinkage_regularization_strength=0.01),
    "adamw": lambda: AdamW(0.01, weight_decay=0.1),
    "adam_clipnorm": lambda: Adam(0.01, clipnorm=0.5),
    "sgd_clipvalue": lambda: SGD(0.1, clipvalue=0.3),
    # issue 19: without momentum the legacy RMSprop adds epsilon outside the root
    "rmsprop_legacy": lambda: RMSprop(0.01, flavor="keras_legacy"),
    "rmsprop_legacy_momentum": lambda: RMSprop(0.01, momentum=0.5, flavor="keras_legacy"),
    "rmsprop_legacy_centered": lambda: RMSprop(0.01, rho=0.8, centered=True, flavor="keras_legacy"),
    "rmsprop_legacy_centered_momentum": lambda: RMSprop(0.01, rho=0.8, momentum=0.5, centered=True,
                                                        flavor="keras_legacy"),
}


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_tf_keras_trajectory(name, sparse):
    key = name + ("_sparse" if sparse else "")
    w = DATA[f"{key}/w0"].copy()
    rows = DATA[f"{key}/rows"]
    opt = CASES[name]()
    for g, expected in zip(DATA[f"{key}/g"], DATA[f"{key}/w"]):
        grad = RowGrad(rows.astype(np.int64), g[rows], w.shape) if sparse else g
        opt.apply_gradients({"w": w}, {"w": grad})
        np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)


def test_by_name_and_class():
    for name, cls in (("rmsprop", RMSprop), ("ftrl", Ftrl), ("adamw", AdamW), ("lazy_adam", LazyAdam),
                      ("LazyAdam", LazyAdam), ("RMSprop", RMSprop)):
        assert type(optimizers.get(name)) is cls


def test_no_torch_ftrl_or_lazy_adam():
    for cls in (Ftrl, LazyAdam):
        with pytest.raises(ValueError, match="no 'torch' flavour"):
            cls(flavor="torch")
        with pytest.raises(ValueError, match="no 'torch' flavour"):
            cls().set_flavor("torch")


def test_bad_arguments():
    with pytest.raises(ValueError, match="clipnorm must be a positive"):
        Adam(clipnorm=0)
    with pytest.raises(ValueError, match="learning_rate_power"):
        Ftrl(learning_rate_power=0.5)
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        AdamW(weight_decay=-1)


def test_lazy_adam_equals_adam_legacy_on_dense_gradients():
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(5, 3))
    w2 = w1.copy()
    lazy, exact = LazyAdam(0.01), Adam(0.01, flavor="keras_legacy")
    for _ in range(3):
        g = rng.normal(size=(5, 3))
        lazy.apply_gradients({"w": w1}, {"w": g})
        exact.apply_gradients({"w": w2}, {"w": g})
    np.testing.assert_array_equal(w1, w2)


def test_lazy_adam_moves_only_touched_rows_with_their_own_moments():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 2))
    start = w.copy()
    opt = LazyAdam(0.01)
    g1 = RowGrad(np.array([1, 4]), rng.normal(size=(2, 2)), (6, 2))
    g2 = RowGrad(np.array([4]), rng.normal(size=(1, 2)), (6, 2))
    opt.apply_gradients({"w": w}, {"w": g1})
    after1 = w.copy()
    opt.apply_gradients({"w": w}, {"w": g2})
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(w[untouched], start[untouched])
    np.testing.assert_array_equal(w[1], after1[1])               # row 1 keeps still at step 2 (lazy)
    # row 4 by hand: two Adam steps on its own gradients (float32 hyperparameters, as Addons)
    b1, b2, lr, eps = (float(np.float32(v)) for v in (0.9, 0.999, 0.01, 1e-7))
    eps = 1e-7
    m = v = np.zeros(2)
    x = start[4].copy()
    for t, g in ((1, g1.values[1]), (2, g2.values[0])):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(w[4], x, rtol=1e-13)
    assert opt.slots["m"]["w"][1].any() and not opt.slots["m"]["w"][untouched].any()


def test_clipnorm_is_per_variable_and_clipvalue_elementwise():
    g_big, g_small = np.full((2, 2), 3.0), np.full(3, 0.01)
    wa, wb = np.zeros((2, 2)), np.zeros(3)
    SGD(1.0, clipnorm=1.0).apply_gradients({"a": wa, "b": wb}, {"a": g_big, "b": g_small})
    np.testing.assert_allclose(np.linalg.norm(wa), 1.0, rtol=1e-15)    # rescaled to the norm
    np.testing.assert_array_equal(wb, -g_small)                       # the other variable untouched
    w = np.zeros(3)
    SGD(1.0, clipvalue=0.5).apply_gradients({"w": w}, {"w": np.array([2.0, -0.2, -9.0])})
    np.testing.assert_array_equal(w, [-0.5, 0.2, 0.5])


def test_new_optimizers_train_a_model():
    from toy_models import ToyDNNModel, toy_data
    x, y = toy_data(200)
    for opt in (RMSprop(0.01), Ftrl(0.5), AdamW(0.01), LazyAdam(0.01), Adam(0.01, clipnorm=1.0)):
        model = ToyDNNModel({"a": 3, "b": 2}).compile(opt, "binary_crossentropy")
        h = model.fit(x, y, epochs=5, verbose=0)
        assert h.history["loss"][-1] < h.history["loss"][0], type(opt).__name__


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("flavor", ["keras", "keras_legacy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_blocked_update_is_bit_identical(monkeypatch, amsgrad, flavor, dtype):
    """A large table is updated block by block (cache-sized); the result is bit for bit the
    whole-array update."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(9_001, 8)).astype(dtype)          # not a whole number of blocks
    grads = [rng.normal(size=start.shape).astype(dtype) for _ in range(3)]
    results = []
    for block in (optimizers._BLOCK, 10 ** 9):
        monkeypatch.setattr(optimizers, "_BLOCK", block)
        opt = optimizers.Adam(amsgrad=amsgrad, flavor=flavor)
        w = start.copy()
        for g in grads:
            opt.apply_gradients({"w": w}, {"w": g})
        results.append((w, *(table["w"] for table in opt.slots.values())))
    for blocked, whole in zip(*results):
        np.testing.assert_array_equal(blocked, whole)


def test_legacy_rmsprop_without_momentum_puts_epsilon_outside_the_root():
    """tf.keras's optimizer_v2 RMSprop: lr g / (sqrt(ms) + eps) without momentum (its Python
    path), lr g / sqrt(ms + eps) with momentum (the fused kernel); one step from ms = 0 tells
    them apart by orders of magnitude where g^2 is far below epsilon."""
    g = np.array([1e-6, 1.0])
    lr, rho = float(np.float32(1e-3)), float(np.float32(0.9))     # float32 hyperparameters in legacy
    steps = {}
    for momentum in (0.0, 0.5):
        w = np.zeros(2)
        RMSprop(1e-3, momentum=momentum, epsilon=1e-7, flavor="keras_legacy").apply_gradients({"w": w}, {"w": g})
        ms = (1 - rho) * g * g
        expected = lr * g / ((np.sqrt(ms) + 1e-7) if momentum == 0 else np.sqrt(ms + 1e-7))
        np.testing.assert_allclose(-w, expected, rtol=1e-15)
        steps[momentum] = -w[0]
    assert steps[0.0] > 100 * steps[0.5]     # outside the root ~2.4e-3, inside ~3.2e-6


def test_one_minus_rho_is_rounded_once_from_the_python_value():
    """torch's ``addcmul_(g, g, value=1 - alpha)`` and Keras's ``(1 - rho) * g^2`` form 1 - rho in
    Python (double) and round it once to float32: float32(0.01), not float32(1) - float32(0.99)
    (9.3e-7 relative lower), which drifted npctr's float32 RMSprop off DeepCTR-Torch's."""
    for flavor, rho in (("torch", 0.99), ("keras", 0.9)):
        w = np.zeros(1, dtype=np.float32)
        opt = RMSprop(1.0, rho=rho, flavor=flavor)
        opt.apply_gradients({"w": w}, {"w": np.ones(1, dtype=np.float32)})
        assert opt.slots["velocity"]["w"][0] == np.float32(1 - rho)
        assert opt.slots["velocity"]["w"][0] != np.float32(1) - np.float32(rho)
    w = np.zeros(1, dtype=np.float32)                   # legacy: 1 - rho of the float32 variable rho
    opt = RMSprop(1.0, flavor="keras_legacy")
    opt.apply_gradients({"w": w}, {"w": np.ones(1, dtype=np.float32)})
    assert opt.slots["velocity"]["w"][0] == np.float32(1) - np.float32(0.9)
