"""Conventions profiles: selection, propagation, config round trip, errors; finite-difference
checks (float64) and properties of every option a profile switches on; losses and optimizer
flavours (formulas, defaults, errors)."""
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npctr
from npctr import conventions, DNN, Dice, BatchNormalization, LocalActivationUnit, AttentionSequencePoolingLayer
from npctr.training import losses, optimizers
from npctr.training.optimizers import SGD, Adagrad, Adam
from npctr.models import DIN
from test_gradients_core import build, check
from framework_util import load, feature_columns, features

_CASE = load("torch/din_sig_embl2_f64.npz")


def make_din(conventions=None, **kwargs):
    meta = _CASE[1]
    args = dict(dnn_hidden_units=(4,), att_hidden_size=(4,), seed=3)
    args.update(kwargs)
    return DIN(feature_columns(meta), meta["history_feature_list"], conventions=conventions,
               **args)


def din_batch(model, n=6):
    x = features(_CASE[0], slice(0, n))
    return x, (np.arange(n) % 2).astype(float)


# --- profiles ---------------------------------------------------------------------------
def test_list_and_read_profiles():
    assert conventions.list_conventions() == ["keras3", "tf_keras", "torch"]
    torch = conventions.get("torch")
    assert (torch.bn_epsilon, torch.bn_momentum, torch.bn_momentum_convention) == (1e-5, 0.1, "torch")
    assert (torch.dice_epsilon, torch.dice_bn_affine, torch.bn_moving_variance) == (1e-8, True, "unbiased")
    assert conventions.get(None) is conventions.get("tf_keras")
    assert set(conventions.get("keras3").as_dict()) == set(conventions.FIELDS)
    with pytest.raises(Exception):
        torch.bn_epsilon = 1.0                                       # frozen


@pytest.mark.parametrize("make", [lambda c: DNN((3,), conventions=c), lambda c: Dice(conventions=c),
                                  lambda c: BatchNormalization(conventions=c),
                                  lambda c: LocalActivationUnit(conventions=c),
                                  lambda c: AttentionSequencePoolingLayer(conventions=c),
                                  lambda c: npctr.PredictionLayer(conventions=c)])
def test_unknown_profile_is_a_value_error_listing_the_known(make):
    with pytest.raises(ValueError, match=r"conventions must be one of \['keras3', 'tf_keras', 'torch'\].*'jax'"):
        make("jax")


def test_profile_flows_to_children_and_explicit_arguments_win():
    lau = LocalActivationUnit((4,), activation="dice", conventions="torch")
    lau.forward([np.ones((2, 1, 3)), np.random.default_rng(0).standard_normal((2, 5, 3))], training=False)
    dice = lau._layers["dnn"]._layers["activation0"]
    assert dice.conventions.name == "torch" and dice.epsilon == 1e-8
    assert sorted(dice.params) == ["bn/beta", "bn/gamma", "dice_alpha"]
    bn = dice._layers["bn"]
    assert bn.epsilon == 1e-8 and bn.momentum == pytest.approx(0.9, rel=1e-15)
    assert BatchNormalization(epsilon=0.5, conventions="torch").epsilon == 0.5
    assert BatchNormalization(conventions="torch").epsilon == 1e-5
    assert Dice(epsilon=1e-3, conventions="torch").epsilon == 1e-3


def test_config_records_the_profile_and_old_configs_load_as_tf_keras(tmp_path):
    model = make_din(conventions="torch")
    assert model.get_config()["conventions"] == "torch"
    model.save(tmp_path / "m.npz")
    assert npctr.load_model(tmp_path / "m.npz").conventions.name == "torch"
    config = DNN((3,)).get_config()
    assert "conventions" not in config                            # open: default tf_keras
    assert DNN.from_config(config).conventions.name == "tf_keras"


# --- BatchNormalization moving updates ----------------------------------------------------
X = np.random.default_rng(1).standard_normal((6, 3))


@pytest.mark.parametrize("name", conventions.list_conventions())
def test_moving_update_formulas(name):
    bn = BatchNormalization(conventions=name, dtype="float64")
    bn.forward(X, training=False)
    before = {k: v.copy() for k, v in bn.state.items()}
    bn.forward(X, training=True)
    mean, var = X.mean(0), X.var(0)
    if name == "tf_keras":
        d = float(np.float32(1 - 0.99))
        expect_m, expect_v = before["moving_mean"] - (before["moving_mean"] - mean) * d, \
            before["moving_variance"] - (before["moving_variance"] - var) * d
    elif name == "keras3":
        expect_m = before["moving_mean"] * 0.99 + mean * (1 - 0.99)
        expect_v = before["moving_variance"] * 0.99 + var * (1 - 0.99)
    else:
        unbiased = X.var(0, ddof=1)
        expect_m = 0.1 * mean + 0.9 * before["moving_mean"]
        expect_v = 0.1 * unbiased + 0.9 * before["moving_variance"]
    np.testing.assert_allclose(bn.state["moving_mean"], expect_m, rtol=1e-15, atol=1e-17)
    np.testing.assert_allclose(bn.state["moving_variance"], expect_v, rtol=1e-15)


def test_unbiased_variance_needs_two_values():
    bn = BatchNormalization(conventions="torch")
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        bn.forward(np.ones((1, 3)), training=True)


@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 10 ** 6))
def test_property_torch_bn_training_output_is_normalised(n, c, seed):
    x = np.random.default_rng(seed).standard_normal((n, c)) * 3 + 1
    x[0] += 1.0                                                   # a spread in every column
    y = BatchNormalization(conventions="torch").forward(x, training=True)
    var = x.var(0)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(0), var / (var + 1e-5), rtol=1e-10)


# --- finite differences of the torch options (float64) ----------------------------------------
@pytest.mark.parametrize("shape", [(8, 4), (3, 5, 4)])
@pytest.mark.parametrize("training", [False, True])
def test_torch_dice_affine_bn_gradients(shape, training):
    x = np.random.default_rng(2).standard_normal(shape)
    layer = build(Dice(conventions="torch", dtype="float64"), x, seed=3)
    assert "bn/gamma" in layer.params and "bn/beta" in layer.params
    check(layer, x, training=training)


@pytest.mark.parametrize("training", [False, True])
def test_torch_dnn_bn_dice_gradients(training):
    x = np.random.default_rng(4).standard_normal((8, 5))
    layer = build(DNN((4, 3), activation="dice", use_bn=True, conventions="torch", dtype="float64"), x, seed=5)
    check(layer, x, training=training)


@pytest.mark.parametrize("name", conventions.list_conventions())
def test_din_gradients_under_every_profile(name):
    """The whole DIN's training gradient (Dice/BN per profile, the profile's history mask and
    loss) against central differences of ``compute_loss(training=True)``, float64."""
    model = make_din(name, dnn_use_bn=True, l2_reg_embedding=0.01)
    x, y = din_batch(model)
    loss = model._default_loss()
    snap = model.snapshot()
    z = model.forward_logits(x, training=True, backprop=True)
    model.backward_logits(loss.logit_grad(y.reshape(-1, 1), z))
    model.add_regularization_grads()
    model.restore(snap)
    from npctr.sparse import RowGrad
    grads = {k: (g.to_dense() if isinstance(g, RowGrad) else g.copy()) for k, g in model.grads.items()}
    params = model.params
    rng = np.random.default_rng(0)
    for key in ["dnn/kernel0", "dnn/bn0/gamma", "attention_sequence_pooling_layer/local_att/dnn/kernel0",
                "attention_sequence_pooling_layer/local_att/dnn/activation0/dice_alpha",
                "sparse_emb_item_id/embeddings"] + (
            ["attention_sequence_pooling_layer/local_att/dnn/activation0/bn/gamma"] if name == "torch" else []):
        w = params[key]
        for idx in [tuple(rng.integers(0, s) for s in w.shape) for _ in range(3)]:
            old = w[idx]
            vals = []
            for step in (1e-6, -1e-6):
                w[idx] = old + step
                snap2 = model.snapshot()
                vals.append(model.compute_loss(x, y, training=True))
                model.restore(snap2)
            w[idx] = old
            numeric = (vals[0] - vals[1]) / 2e-6
            # a central difference at h 1e-6 of a whole DIN's loss: ~1e-10 of round-off on entries
            # down to ~1e-5, so 1e-5 relative (tests/test_loss_and_gradients.py checks every entry at 1e-7
            # with the five-point stencil)
            assert grads[key][idx] == pytest.approx(numeric, rel=1e-5, abs=1e-9), (key, idx)


# --- losses ------------------------------------------------------------------------------------
@pytest.mark.parametrize("convention", losses.CONVENTIONS)
def test_exact_logit_gradient_is_the_derivative_of_the_value(convention):
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, (7, 1)).astype(np.float64)
    z = rng.normal(0, 3, (7, 1))
    loss = losses.BinaryCrossentropy(convention)
    g = loss.logit_grad(y, z)
    # central differences (h 1e-6): ~1e-10 absolute round-off; measured 2.5e-8 relative
    np.testing.assert_allclose(g, npctr.numerical_gradient(lambda: loss.value(y, losses.probability(z)), z),
                               rtol=1e-7, atol=1e-10)


def test_keras_clip_zeroes_the_gradient_and_fused_does_not():
    y, z = np.array([[0.0]]), np.array([[20.0]])                 # confidently wrong, clipped
    for convention in ("tf_keras", "keras3"):
        assert losses.BinaryCrossentropy(convention).logit_grad(y, z)[0, 0] == 0.0
        assert losses.BinaryCrossentropy(convention, gradient="fused").logit_grad(y, z)[0, 0] > 0.99
    assert losses.BinaryCrossentropy("torch").logit_grad(y, z)[0, 0] > 0.99    # torch: (p - y)


@given(st.lists(st.floats(-30, 30), min_size=1, max_size=8), st.integers(0, 2 ** 16))
def test_property_loss_reductions(zs, seed):
    z = np.array(zs).reshape(-1, 1)
    y = np.random.default_rng(seed).integers(0, 2, z.shape).astype(float)
    mean = losses.BinaryCrossentropy("keras3")
    total = losses.BinaryCrossentropy("keras3", reduction="sum")
    p = losses.probability(z)
    assert total.value(y, p) == pytest.approx(mean.value(y, p) * len(z), rel=1e-12)
    np.testing.assert_allclose(total.logit_grad(y, z), mean.logit_grad(y, z) * len(z), rtol=1e-12)
    torch = losses.BinaryCrossentropy("torch")
    assert np.isfinite(torch.value(y, p)) and torch.reduction == "sum"


def test_loss_errors():
    with pytest.raises(ValueError, match=r"convention must be one of \['tf_keras', 'keras3', 'torch'\]"):
        losses.BinaryCrossentropy("jax")
    with pytest.raises(ValueError, match="gradient must be 'exact' or 'fused'"):
        losses.BinaryCrossentropy(gradient="autodiff")
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.MeanSquaredError(reduction="none")


def test_compute_loss_is_the_training_objective():
    for name, reduce in (("tf_keras", np.mean), ("torch", np.sum)):
        model = make_din(conventions=name, l2_reg_embedding=0.01)
        x, y = din_batch(model)
        p = model.predict(x)
        expected = reduce(losses.binary_crossentropy_per_sample(y.reshape(-1, 1), p, name)) \
            + model.regularization_loss()
        assert model.compute_loss(x, y) == pytest.approx(expected, rel=1e-14)
        model.compile("adam")
        objective = model.compute_loss(x, y, training=True)
        assert model.train_on_batch(x, y) == pytest.approx(objective, rel=1e-14)


# --- optimizer flavours ------------------------------------------------------------------------
def test_unknown_flavour_is_a_value_error_listing_the_known():
    for cls in (SGD, Adagrad, Adam):
        with pytest.raises(ValueError, match=r"flavor must be one of \['keras', 'keras_legacy', 'torch'\]"):
            cls(flavor="mxnet")


@pytest.mark.parametrize("profile,flavor", [("tf_keras", "keras"), ("keras3", "keras"), ("torch", "torch")])
def test_compile_picks_the_profile_flavour_and_framework_defaults(profile, flavor):
    model = make_din(conventions=profile)
    for name in ("sgd", "adagrad", "adam"):
        model.compile(name)
        assert model.optimizer.flavor == flavor
    model.compile("sgd")
    assert model.optimizer.learning_rate == 0.01                 # DeepCTR-Torch's compile: SGD(lr=0.01)
    model.compile("adagrad")
    assert model.optimizer.learning_rate == (0.01 if flavor == "torch" else 0.001)
    model.compile("adam")
    assert model.optimizer.epsilon == (1e-8 if flavor == "torch" else 1e-7)
    explicit = Adam(flavor="keras_legacy")
    model.compile(explicit)
    assert model.optimizer.flavor == "keras_legacy"             # an explicit flavour wins


def _run(opt, grads, w0):
    params = {"w": np.array(w0, dtype=float)}
    for g in grads:
        opt.apply_gradients(params, {"w": np.array(g, dtype=float)})
    return params["w"]


G = [[0.3, -1.2], [-0.7, 0.4], [0.2, 0.9]]
W0 = [0.5, -0.25]
f32 = lambda v: float(np.float32(v))  # noqa: E731


def test_torch_formulas():
    lr, mu, b1, b2, eps = 0.05, 0.9, 0.9, 0.999, 1e-8
    w, b = np.array(W0), None
    for g in map(np.array, G):
        b = g.copy() if b is None else mu * b + g
        w = w - lr * b
    np.testing.assert_allclose(_run(SGD(lr, momentum=mu, flavor="torch"), G, W0), w, rtol=1e-15)
    w, a = np.array(W0), np.zeros(2)
    for g in map(np.array, G):
        a = a + g * g
        w = w - lr * g / (np.sqrt(a) + 1e-10)
    np.testing.assert_allclose(_run(Adagrad(lr, flavor="torch"), G, W0), w, rtol=1e-15)
    w, m, v = np.array(W0), np.zeros(2), np.zeros(2)
    for t, g in enumerate(map(np.array, G), 1):
        m = m + (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
    np.testing.assert_allclose(_run(Adam(lr, flavor="torch"), G, W0), w, rtol=1e-14)


def test_keras_legacy_formulas_round_lr_and_betas():
    lr, mu = 0.05, 0.9
    w, v = np.array(W0), np.zeros(2)
    for g in map(np.array, G):
        v = f32(mu) * v - f32(lr) * g
        w = w + v
    np.testing.assert_allclose(_run(SGD(lr, momentum=mu, flavor="keras_legacy"), G, W0), w, rtol=1e-15)
    w, a = np.array(W0), np.full(2, 0.1)
    for g in map(np.array, G):
        a = a + g * g
        w = w - f32(lr) * g / (np.sqrt(a) + 1e-7)
    np.testing.assert_allclose(_run(Adagrad(lr, flavor="keras_legacy"), G, W0), w, rtol=1e-15)
    b1, b2 = f32(0.9), f32(0.999)
    w, m, v = np.array(W0), np.zeros(2), np.zeros(2)
    for t, g in enumerate(map(np.array, G), 1):
        alpha = f32(lr) * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        w = w - m * alpha / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(_run(Adam(lr, flavor="keras_legacy"), G, W0), w, rtol=1e-14)


@pytest.mark.parametrize("flavor", optimizers.FLAVORS)
@pytest.mark.parametrize("make", [lambda f: SGD(0.1, flavor=f), lambda f: Adagrad(0.1, flavor=f)])
def test_row_sparse_fast_path_equals_dense_in_every_flavour(flavor, make):
    from npctr.sparse import RowGrad
    rng = np.random.default_rng(7)
    table = rng.standard_normal((6, 2))
    rows = RowGrad(np.array([1, 4]), rng.standard_normal((2, 2)), (6, 2))
    sparse_opt, dense_opt = make(flavor), make(flavor)
    a, b = {"e": table.copy()}, {"e": table.copy()}
    for _ in range(2):
        sparse_opt.apply_gradients(a, {"e": rows})
        dense_opt.apply_gradients(b, {"e": rows.to_dense()})
    np.testing.assert_array_equal(a["e"], b["e"])


@pytest.mark.parametrize("flavor", optimizers.FLAVORS)
def test_flavours_run_in_float32(flavor):
    for opt in (SGD(0.1, momentum=0.9, flavor=flavor), Adagrad(0.1, flavor=flavor), Adam(0.1, flavor=flavor)):
        out = _run_f32(opt)
        assert out.dtype == np.float32 and np.all(np.isfinite(out))


def _run_f32(opt):
    params = {"w": np.array(W0, dtype=np.float32)}
    for g in G:
        opt.apply_gradients(params, {"w": np.array(g, dtype=np.float32)})
    return params["w"]


def test_torch_history_mask_needs_a_length_feature():
    from npctr.feature_column import SparseFeat, VarLenSparseFeat
    cols = [SparseFeat("item", 10, 4), VarLenSparseFeat(SparseFeat("hist_item", 10, 4, embedding_name="item"), 3)]
    DIN(cols, ["item"], dnn_hidden_units=(2,), att_hidden_size=(2,))                 # Keras: id mask
    with pytest.raises(ValueError, match="length_name"):
        DIN(cols, ["item"], dnn_hidden_units=(2,), att_hidden_size=(2,), conventions="torch")


def test_torch_history_mask_is_the_length_not_the_ids():
    """DeepCTR-Torch masks t >= seq_length even where the id is non-zero; Keras masks id 0."""
    torch_model, keras_model = make_din("torch", att_activation="sigmoid"), make_din("keras3", att_activation="sigmoid")
    keras_model.set_weights(torch_model.get_weights())
    x, _ = din_batch(torch_model)
    assert np.array_equal(torch_model.predict(x), keras_model.predict(x))      # ids agree with lengths
    x = dict(x, seq_length=np.maximum(x["seq_length"] - 1, 0))
    torch_model.predict(x)
    keras_model.predict(x)
    t_scores, k_scores = torch_model.attention_scores, keras_model.attention_scores
    lengths = x["seq_length"].reshape(-1)
    for b, n in enumerate(lengths):
        assert np.all(t_scores[b, 0, n:] == 0)
    assert not np.array_equal(t_scores, k_scores)


def test_dnn_model_takes_conventions():
    from npctr.models import DNNModel
    model = DNNModel(feature_columns(_CASE[1]), dnn_hidden_units=(4,), dnn_use_bn=True, conventions="torch")
    assert model._layers["dnn"]._layers["bn0"].epsilon == 1e-5
    assert model.get_config()["conventions"] == "torch"


def test_l2_reg_dnn_is_ignored_under_torch_as_deepctr_torch():
    assert make_din("torch", l2_reg_dnn=0.5).regularization_loss() == \
        make_din("torch", l2_reg_dnn=0.0).regularization_loss()
    assert make_din("keras3", l2_reg_dnn=0.5).regularization_loss() > \
        make_din("keras3", l2_reg_dnn=0.0).regularization_loss()


@given(st.sampled_from(optimizers.FLAVORS), st.sampled_from(["sgd", "adagrad", "adam", "momentum"]),
       st.integers(0, 2 ** 16))
def test_property_every_flavour_row_sparse_equals_dense(flavor, kind, seed):
    """The RowGrad path (lazy or densified) gives what the dense gradient gives, in every flavour."""
    from npctr.sparse import RowGrad
    make = {"sgd": lambda: SGD(0.1, flavor=flavor), "momentum": lambda: SGD(0.1, momentum=0.9, flavor=flavor),
            "adagrad": lambda: Adagrad(0.1, flavor=flavor), "adam": lambda: Adam(0.1, flavor=flavor)}[kind]
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((7, 3))
    a, b = {"e": table.copy()}, {"e": table.copy()}
    sparse_opt, dense_opt = make(), make()
    for _ in range(3):
        rows = np.unique(rng.integers(0, 7, 3))
        g = RowGrad(rows, rng.standard_normal((len(rows), 3)), (7, 3))
        sparse_opt.apply_gradients(a, {"e": g})
        dense_opt.apply_gradients(b, {"e": g.to_dense()})
    np.testing.assert_allclose(a["e"], b["e"], rtol=1e-15, atol=1e-15)
