"""One optimizer step equals the hand-computed tf.keras update; sparse == dense where exact.

The default flavour is ``"keras"`` (tf.keras >= 2.11): in float64 its momentum enters
float32-rounded (``f32``), Adam's betas only in the bias correction, and Adagrad divides
by ``sqrt(a + eps)``. tests/test_optimizer_flavors.py covers every flavour.
"""
import numpy as np
import pytest

from npctr.sparse import RowGrad, scatter_rows
from npctr.training import optimizers
from npctr.training.optimizers import SGD, Adagrad, Adam

W0 = [1.0, -2.0]


def f32(v):
    return float(np.float32(v))


G1 = [0.5, -1.0]
G2 = [1.0, 0.0]


def run(opt, *grads, w0=W0):
    params = {"dense/kernel": np.array(w0)}
    for g in grads:
        opt.apply_gradients(params, {"dense/kernel": np.array(g)})
    return params["dense/kernel"]


def test_sgd_plain():
    # w - lr * g = [1 - 0.1 * 0.5, -2 - 0.1 * (-1)]
    np.testing.assert_allclose(run(SGD(0.1), G1), [0.95, -1.9], rtol=1e-15)


def test_sgd_momentum_two_steps():
    # step 1: v = -0.1 * g1 = [-0.05, 0.1];             w = [0.95, -1.9]
    # step 2: v = 0.9 * v - 0.1 * g2 = [-0.145, 0.09];  w = [0.805, -1.81]
    opt = SGD(0.1, momentum=0.9)
    lr, mu = 0.1, f32(0.9)
    v1 = -lr * np.array(G1)
    v2 = mu * v1 - lr * np.array(G2)
    np.testing.assert_allclose(run(opt, G1, G2), np.array(W0) + v1 + v2, rtol=1e-14)
    np.testing.assert_allclose(opt.slots["momentum"]["dense/kernel"], v2, rtol=1e-14)
    # the hand-worked decimals use mu = 0.9; the optimizer's float32 mu (0.8999999762) moves them by ~2e-8
    np.testing.assert_allclose(v2, [-0.145, 0.09], rtol=1e-7)
    assert opt.iterations == 2


def test_sgd_nesterov_two_steps():
    # step 1: v = [-0.05, 0.1];   w += 0.9 v - 0.1 g1 = [-0.095, 0.19]   -> [0.905, -1.81]
    # step 2: v = [-0.145, 0.09]; w += 0.9 v - 0.1 g2 = [-0.2305, 0.081] -> [0.6745, -1.729]
    lr, mu = 0.1, f32(0.9)
    v1 = -lr * np.array(G1)
    w1 = np.array(W0) + mu * v1 - lr * np.array(G1)
    v2 = mu * v1 - lr * np.array(G2)
    w2 = w1 + mu * v2 - lr * np.array(G2)
    np.testing.assert_allclose(run(SGD(0.1, momentum=0.9, nesterov=True), G1, G2), w2, rtol=1e-14)
    np.testing.assert_allclose(w2, [0.6745, -1.729], rtol=1e-7)    # the decimals' mu = 0.9 vs float32 mu


def test_adagrad_two_steps():
    # step 1: acc = 0.1 + g1^2 = [0.35, 1.1];  w -= lr g1 / sqrt(acc + 1e-7)
    lr = 0.1
    w1 = [1.0 - lr * 0.5 / np.sqrt(0.35 + 1e-7), -2.0 + lr * 1.0 / np.sqrt(1.1 + 1e-7)]
    # step 2: acc = [1.35, 1.1]; the second element has g = 0 and does not move
    w2 = [w1[0] - lr * 1.0 / np.sqrt(1.35 + 1e-7), w1[1]]
    opt = Adagrad(0.1)
    np.testing.assert_allclose(run(opt, G1), w1, rtol=1e-15)
    np.testing.assert_allclose(run(Adagrad(0.1), G1, G2), w2, rtol=1e-15)
    np.testing.assert_allclose(opt.slots["accumulator"]["dense/kernel"], [0.35, 1.1], rtol=1e-15)


def test_adam_two_steps():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-7
    # step 1: m = 0.1 g1 = [0.05, -0.1]; v = 0.001 g1^2 = [0.00025, 0.001]
    #         lr_1 = 0.1 * sqrt(1 - 0.999) / (1 - 0.9)
    m1, v1 = np.array([0.05, -0.1]), np.array([0.00025, 0.001])
    # tf.keras: the betas float32 in the bias correction only
    c1, c2 = f32(b1), f32(b2)
    lr1 = lr * np.sqrt(1 - c2) / (1 - c1)
    w1 = np.array(W0) - lr1 * m1 / (np.sqrt(v1) + eps)
    # step 2: m = 0.9 m1 + 0.1 g2 = [0.145, -0.09]; v = 0.999 v1 + 0.001 g2^2 = [0.00124975, 0.000999]
    #         lr_2 = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.9^2)
    m2, v2 = np.array([0.145, -0.09]), np.array([0.00124975, 0.000999])
    lr2 = lr * np.sqrt(1 - c2 ** 2) / (1 - c1 ** 2)
    w2 = w1 - lr2 * m2 / (np.sqrt(v2) + eps)
    np.testing.assert_allclose(run(Adam(lr), G1), w1, rtol=1e-14)
    opt = Adam(lr)
    np.testing.assert_allclose(run(opt, G1, G2), w2, rtol=1e-13)
    np.testing.assert_allclose(opt.slots["m"]["dense/kernel"], m2, rtol=1e-14)
    np.testing.assert_allclose(opt.slots["v"]["dense/kernel"], v2, rtol=1e-14)


def test_adam_amsgrad_uses_max_of_second_moments():
    # step 1 as Adam; step 2 with g = 0: v shrinks, vhat keeps step 1's v
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-7
    m1, v1 = 0.1 * np.array(G1), 0.001 * np.array(G1) ** 2
    c1, c2 = f32(b1), f32(b2)
    w1 = np.array(W0) - lr * np.sqrt(1 - c2) / (1 - c1) * m1 / (np.sqrt(v1) + eps)
    w2 = w1 - lr * np.sqrt(1 - c2 ** 2) / (1 - c1 ** 2) * (0.9 * m1) / (np.sqrt(v1) + eps)
    np.testing.assert_allclose(run(Adam(lr, amsgrad=True), G1, [0.0, 0.0]), w2, rtol=1e-13)


def test_defaults_are_keras():
    assert (SGD().learning_rate, SGD().momentum, SGD().nesterov) == (0.01, 0.0, False)
    a = Adagrad()
    assert (a.learning_rate, a.initial_accumulator_value, a.epsilon) == (0.001, 0.1, 1e-7)
    a = Adam()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon, a.amsgrad) == (0.001, 0.9, 0.999, 1e-7, False)
    assert Adam().get_config()["flavor"] is None


@pytest.mark.parametrize("name,cls", [("sgd", SGD), ("SGD", SGD), ("adagrad", Adagrad), ("Adam", Adam),
                                      ("adam", Adam)])
def test_get_by_name(name, cls):
    assert type(optimizers.get(name)) is cls
    opt = cls()
    assert optimizers.get(opt) is opt


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        optimizers.get("rmsprop_typo")
    with pytest.raises(ValueError, match="learning_rate"):
        SGD(learning_rate=-1)
    with pytest.raises(ValueError, match="momentum"):
        SGD(momentum=1.5)
    with pytest.raises(ValueError, match="beta_1"):
        Adam(beta_1=1.0)
    opt = SGD()
    with pytest.raises(ValueError, match="shape"):
        opt.apply_gradients({"w": np.zeros(2)}, {"w": np.zeros(3)})
    with pytest.raises(ValueError, match="no gradient"):
        opt.apply_gradients({"w": np.zeros(2)}, {})


def test_updates_in_place_and_float32():
    w = np.array([1.0, 2.0], dtype=np.float32)
    params = {"w": w}
    Adam(0.1).apply_gradients(params, {"w": np.array([0.1, 0.2], dtype=np.float32)})
    assert params["w"] is w and w.dtype == np.float32


# -- row-sparse gradients ----------------------------------------------------------------------
def _table_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(10, 3))
    # two steps touching different rows; ids repeat within a step
    g1 = scatter_rows(np.array([1, 4, 4, 7]), rng.normal(size=(4, 3)), table.shape)
    g2 = scatter_rows(np.array([2, 4]), rng.normal(size=(2, 3)), table.shape)
    return table, [g1, g2]


@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: Adagrad(0.1)], ids=["sgd", "adagrad"])
def test_lazy_sparse_updates_equal_dense_bit_for_bit(make):
    table, grads = _table_and_grads()
    sparse_p, dense_p = {"t/embeddings": table.copy()}, {"t/embeddings": table.copy()}
    o_sparse, o_dense = make(), make()
    for g in grads:
        assert isinstance(g, RowGrad)
        o_sparse.apply_gradients(sparse_p, {"t/embeddings": g})
        o_dense.apply_gradients(dense_p, {"t/embeddings": g.to_dense()})
    np.testing.assert_array_equal(sparse_p["t/embeddings"], dense_p["t/embeddings"])
    untouched = [0, 3, 5, 6, 8, 9]
    np.testing.assert_array_equal(sparse_p["t/embeddings"][untouched], table[untouched])


@pytest.mark.parametrize("make", [lambda: SGD(0.1, momentum=0.9), lambda: SGD(0.1, momentum=0.9, nesterov=True),
                                  lambda: Adam(0.1), lambda: Adam(0.1, amsgrad=True)],
                         ids=["momentum", "nesterov", "adam", "amsgrad"])
def test_non_lazy_sparse_updates_follow_dense_math(make):
    table, grads = _table_and_grads()
    sparse_p, dense_p = {"t/embeddings": table.copy()}, {"t/embeddings": table.copy()}
    o_sparse, o_dense = make(), make()
    for g in grads:
        o_sparse.apply_gradients(sparse_p, {"t/embeddings": g})
        o_dense.apply_gradients(dense_p, {"t/embeddings": g.to_dense()})
    np.testing.assert_allclose(sparse_p["t/embeddings"], dense_p["t/embeddings"], rtol=1e-14, atol=1e-15)
    # row 1 was touched only in step 1 and keeps moving in step 2 (momentum / moments)
    once = {"t/embeddings": table.copy()}
    make().apply_gradients(once, {"t/embeddings": grads[0]})
    assert not np.array_equal(sparse_p["t/embeddings"][1], once["t/embeddings"][1])
    # rows never touched do not move
    np.testing.assert_array_equal(sparse_p["t/embeddings"][[0, 9]], table[[0, 9]])


def test_rowgrad_shape_mismatch():
    g = scatter_rows(np.array([1]), np.ones((1, 3)), (5, 3))
    with pytest.raises(ValueError, match="dense_shape"):
        SGD().apply_gradients({"e": np.zeros((4, 3))}, {"e": g})
