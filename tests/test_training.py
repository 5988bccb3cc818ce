"""compile / fit / evaluate / predict on toy models: losses, gradients, determinism, errors, callbacks."""
import io
import os

import numpy as np
import pytest

from npctr.layers.activation import sigmoid
from npctr.models.base import NonFiniteLossError
from npctr.sparse import RowGrad
from npctr.training import losses, SGD, Adagrad, Adam, EarlyStopping, ModelCheckpoint
from npctr.training.progress import ProgressBar
from npctr.io import load_model

from toy_models import ToyDNNModel, ToyBagModel, toy_data, bag_data, assert_param_gradients

DIMS = {"a": 3, "b": 2}


def make(**kw):
    return ToyDNNModel(DIMS, **kw)


# -- losses ----------------------------------------------------------------------------------
def test_bce_value_by_hand():
    y = np.array([[1.0], [0.0]])
    p = np.array([[0.9], [0.2]])
    eps = 1e-7
    by_hand = -(np.log(0.9 + eps) + np.log(1 - 0.2 + eps)) / 2
    assert losses.get("binary_crossentropy").value(y, p) == pytest.approx(by_hand, rel=1e-15)


def test_fused_logit_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3, size=(7, 1))
    y = rng.integers(0, 2, size=(7, 1)).astype(float)
    bce = losses.BinaryCrossentropy()

    def unclipped(z):   # the loss the fused gradient differentiates: mean(softplus(z) - y z)
        return np.mean(np.logaddexp(0, z) - y * z)

    def keras_value(z):
        return bce.value(y, sigmoid(z))

    g = bce.fused_logit_grad(y, z)
    h = 1e-6
    for i in range(z.shape[0]):
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        # central differences (h 1e-6): ~1e-10 relative round-off
        assert g[i, 0] == pytest.approx((unclipped(zp) - unclipped(zm)) / (2 * h), rel=1e-7, abs=1e-11)
        # Keras's clipped value differs from the unclipped BCE by O(eps) only
        assert g[i, 0] == pytest.approx((keras_value(zp) - keras_value(zm)) / (2 * h), rel=1e-5, abs=1e-9)


def test_fused_gradient_is_finite_for_extreme_logits():
    z = np.array([[1e4], [-1e4], [40.0], [-40.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    g = losses.BinaryCrossentropy().fused_logit_grad(y, z)
    np.testing.assert_allclose(g[:, 0], [0.25, -0.25, 0.0, 0.0], rtol=1e-15, atol=1e-17)


def test_probability_gradient_is_keras_autodiff_of_clipped_value():
    bce = losses.BinaryCrossentropy()
    y = np.array([[1.0], [0.0], [1.0]])
    p = np.array([[0.3], [0.6], [1.0]])    # the last is clipped: zero gradient, as tf.clip_by_value
    g = bce.grad(y, p)
    h = 1e-7
    for i in range(2):
        pp, pm = p.copy(), p.copy()
        pp[i] += h
        pm[i] -= h
        # central differences at h 1e-7 (round-off ~1e-9 relative): 1e-6 keeps a margin
        assert g[i, 0] == pytest.approx((bce.value(y, pp) - bce.value(y, pm)) / (2 * h), rel=1e-6)
    assert g[2, 0] == 0


def test_mse_value_and_gradient():
    mse = losses.get("mean_squared_error")
    y, p = np.array([[1.0], [2.0]]), np.array([[1.5], [0.0]])
    assert mse.value(y, p) == pytest.approx((0.25 + 4) / 2, rel=1e-15)
    np.testing.assert_allclose(mse.grad(y, p), [[0.5], [-2.0]], rtol=1e-15)
    assert type(losses.get("mse")) is type(mse)


def test_categorical_crossentropy_fused_gradient():
    cce = losses.get("categorical_crossentropy")
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(3, 4)), np.eye(4)[[0, 2, 3]]
    g = cce.logit_grad(y, z)
    h = 1e-6
    f = lambda z: np.mean(-np.sum(y * (z - np.log(np.exp(z).sum(1, keepdims=True))), axis=1))
    num = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        num[idx] = (f(zp) - f(zm)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-11)       # central differences (2.3e-9 measured)


# -- the whole training gradient (fused loss + L2) ------------------------------------------
def test_training_gradient_including_l2_matches_finite_differences():
    x, y = toy_data(20)
    model = make(l2_reg=0.05, hidden_units=(4,))
    model.compile("sgd", "binary_crossentropy")
    yb = y.reshape(-1, 1)
    bce = model.loss

    def objective():
        z = model.forward_logits(x, training=True, backprop=False)
        return np.mean(np.logaddexp(0, z) - yb * z) + model.regularization_loss()

    z = model.forward_logits(x, training=True, backprop=True)
    model.backward_logits(bce.fused_logit_grad(yb, z))
    model.add_regularization_grads()
    assert_param_gradients(model, {k: np.array(v) for k, v in model.grads.items()}, objective)


# -- fit ---------------------------------------------------------------------------------------
def test_fit_history_and_loss_falls():
    x, y = toy_data(300)
    model = make()
    model.compile(Adam(0.05), "binary_crossentropy", metrics=["auc", "binary_crossentropy", "accuracy"])
    hist = model.fit(x, y, batch_size=32, epochs=5, verbose=0, validation_split=0.2)
    assert list(hist.history) == ["loss", "auc", "binary_crossentropy", "accuracy", "val_loss", "val_auc",
                                  "val_binary_crossentropy", "val_accuracy"]
    assert all(len(v) == 5 for v in hist.history.values())
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["val_auc"][-1] > 0.7
    assert hist.epoch == [0, 1, 2, 3, 4]


def test_validation_split_holds_out_the_last_fraction():
    x, y = toy_data(100)
    model = make()
    model.compile("adam", "binary_crossentropy", metrics=["auc"])
    hist = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_split=0.25)
    last = {k: v[75:] for k, v in x.items()}
    assert model.evaluate(last, y[75:], batch_size=16) == [hist.history["val_loss"][0], hist.history["val_auc"][0]]


def test_epoch_loss_is_batch_size_weighted_mean_including_l2():
    x, y = toy_data(50)
    model = make(l2_reg=0.01)
    model.compile(SGD(0.1), "binary_crossentropy")
    twin = make(l2_reg=0.01)
    twin.compile(SGD(0.1), "binary_crossentropy")
    hist = model.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
    losses_ = [twin.train_on_batch({k: v[lo:lo + 20] for k, v in x.items()}, y[lo:lo + 20])
               for lo in (0, 20, 40)]
    assert hist.history["loss"][0] == pytest.approx((20 * losses_[0] + 20 * losses_[1] + 10 * losses_[2]) / 50,
                                                    rel=1e-14)
    # train_on_batch's loss is the data loss plus the L2 term (before the update)
    fresh = make(l2_reg=0.01)
    fresh.compile(SGD(0.1), "binary_crossentropy")
    xb = {k: v[:20] for k, v in x.items()}
    expected = losses.BinaryCrossentropy().value(y[:20].reshape(-1, 1), fresh.predict(xb)) + \
        fresh.regularization_loss()
    assert fresh.train_on_batch(xb, y[:20]) == pytest.approx(expected, rel=1e-14)


def test_same_seed_same_history_bit_for_bit():
    x, y = toy_data(200)

    def run(seed):
        model = make(seed=seed, dropout_rate=0.3, use_bn=True)
        model.compile("adam", "binary_crossentropy", metrics=["auc"])
        return model.fit(x, y, batch_size=32, epochs=3, verbose=0, validation_split=0.2).history

    a, b = run(11), run(11)
    assert a == b
    assert run(12)["loss"] != a["loss"]


def test_regression_with_mse():
    rng = np.random.default_rng(3)
    x = {"a": rng.normal(size=(200, 3)), "b": rng.normal(size=(200, 2))}
    y = x["a"] @ np.array([1.0, -2.0, 0.5]) + 0.3
    model = make(task="regression", hidden_units=(8,))
    model.compile(Adam(0.05), "mse", metrics=["mse"])
    hist = model.fit(x, y, batch_size=20, epochs=10, verbose=0)
    assert hist.history["loss"][-1] < 0.3 * hist.history["loss"][0]
    assert model.predict(x).shape == (200, 1)


def test_probability_path_used_without_logits(monkeypatch):
    """With mse on a binary model the trainer calls forward/backward, not the logits."""
    x, y = toy_data(40)
    model = make()
    model.compile("sgd", "mse")
    monkeypatch.setattr(model, "forward_logits", lambda *a, **k: pytest.fail("logits used"))
    model.fit(x, y, epochs=1, verbose=0)


def test_frozen_layer_is_not_updated():
    x, y = toy_data(60)
    model = make()
    model._layers["dnn"].trainable = False
    before = {k: v.copy() for k, v in model.params.items()}
    model.compile(Adam(0.1), "binary_crossentropy")
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)
    after = model.params
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith("dnn/"))
    assert not np.array_equal(before["dense/kernel"], after["dense/kernel"])


def test_predict_is_inference_and_caches_nothing():
    x, y = toy_data(30)
    model = make(dropout_rate=0.5)
    p1, p2 = model.predict(x, batch_size=7), model.predict(x, batch_size=30)
    np.testing.assert_array_equal(p1, model.predict(x, batch_size=7))       # no dropout, deterministic
    np.testing.assert_allclose(p1, p2, rtol=1e-14)   # BLAS may round differently per batch size
    assert model._layers["dnn"]._cache is None and model._layers["prediction"]._cache is None


def test_evaluate_returns_scalar_without_metrics():
    x, y = toy_data(30)
    model = make()
    model.compile("adam", "binary_crossentropy")
    assert isinstance(model.evaluate(x, y), float)
    model.compile("adam", "binary_crossentropy", metrics=["auc"])
    assert len(model.evaluate(x, y)) == 2 and model.metrics_names == ["loss", "auc"]


# -- sparse (RowGrad) training -------------------------------------------------------------------
@pytest.mark.parametrize("opt", [lambda: SGD(0.5), lambda: Adagrad(0.5)], ids=["sgd", "adagrad"])
def test_rowgrad_training_leaves_unseen_rows_alone(opt):
    x, y = bag_data(vocabulary_size=30)
    x["ids"] = x["ids"] % 20           # rows 20..29 never used
    model = ToyBagModel(vocabulary_size=30)
    before = model.params["embeddings"].copy()
    model.compile(opt(), "binary_crossentropy", metrics=["auc"])
    hist = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    after = model.params["embeddings"]
    np.testing.assert_array_equal(after[20:], before[20:])
    assert not np.array_equal(after[1:20], before[1:20])


def test_bag_model_gradient_is_rowgrad():
    x, y = bag_data(8)
    model = ToyBagModel()
    z = model.forward_logits(x, training=True)
    model.backward_logits(np.ones_like(z))
    assert isinstance(model.grads["embeddings"], RowGrad)


# -- errors before any work ----------------------------------------------------------------------
def _compiled():
    model = make()
    model.compile("adam", "binary_crossentropy")
    return model


@pytest.mark.parametrize("mutate,match", [
    (lambda x, y: (x, np.where(np.arange(len(y)) == 3, 2.0, y)), r"in \[0, 1\]"),   # soft labels allowed
    (lambda x, y: (x, y[:-1]), "one label per sample"),
    (lambda x, y: ({"a": x["a"], "b": x["b"][:-1]}, y), "same number of samples"),
    (lambda x, y: ({"a": x["a"]}, y), r"missing: \['b'\]"),
    (lambda x, y: ({**x, "c": x["a"]}, y), r"unexpected: \['c'\]"),
    (lambda x, y: (x, np.where(np.arange(len(y)) == 0, np.nan, y)), "NaN"),
])
def test_bad_input_is_a_clear_error_before_training(mutate, match):
    x, y = toy_data(20)
    model = _compiled()
    before = {k: v.copy() for k, v in model.params.items()}
    bx, by = mutate(x, y)
    with pytest.raises(ValueError, match=match):
        model.fit(bx, by, verbose=0)
    # bad validation data is also found before the first step
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, verbose=0, validation_data=(bx, by))
    assert all(np.array_equal(before[k], v) for k, v in model.params.items())


def test_other_argument_errors():
    x, y = toy_data(20)
    model = make()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y)
    model.compile("adam", "binary_crossentropy")
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0)
    with pytest.raises(TypeError, match="dict"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="loss"):
        model.compile("adam", "hinge")


def test_nan_loss_names_epoch_and_batch():
    x, y = toy_data(100)
    x["a"][45, 0] = np.nan                    # sample 45 is in batch 3 of 20 (no shuffling)
    model = _compiled()
    with pytest.raises(FloatingPointError, match="epoch 1, batch 3") as info:
        model.fit(x, y, batch_size=20, epochs=2, shuffle=False, verbose=0, check_finite=False)
    assert isinstance(info.value, NonFiniteLossError) and (info.value.epoch, info.value.batch) == (1, 3)
    assert all(np.isfinite(v).all() for v in model.params.values())   # the bad batch did not update


# -- callbacks --------------------------------------------------------------------------------------
class FakeModel:
    def __init__(self):
        self.w = 0
        self.stop_training = False

    def get_weights(self):
        return self.w

    def set_weights(self, w):
        self.w = w


def drive(cb, values, monitor="val_loss"):
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        model.w = epoch            # "weights" after this epoch
        cb.on_epoch_end(epoch, {monitor: v})
        if model.stop_training:
            break
    return model


def test_early_stopping_patience_and_restore():
    cb = EarlyStopping(patience=2, restore_best_weights=True)
    model = drive(cb, [1.0, 0.5, 0.6, 0.7, 0.1])
    assert cb.stopped_epoch == 3 and cb.best == 0.5 and cb.best_epoch == 1
    assert model.w == 1           # best epoch's weights restored


def test_early_stopping_min_delta_and_mode():
    cb = EarlyStopping(monitor="val_auc", min_delta=0.01, patience=1)     # auto -> max for *auc
    drive(cb, [0.70, 0.705, 0.72], monitor="val_auc")
    assert cb.stopped_epoch == 1   # +0.005 is not an improvement of more than 0.01
    cb = EarlyStopping(monitor="loss", mode="max", patience=0)
    drive(cb, [3.0, 2.0, 1.0], monitor="loss")
    assert cb.stopped_epoch == 1   # never at epoch 0, as Keras
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


def test_early_stopping_in_fit_restores_best_weights():
    x, y = toy_data(60)
    model = make()
    model.compile(Adam(0.05), "binary_crossentropy")
    cb = EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)
    snapshots = []

    class Spy(EarlyStopping.__mro__[1]):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    hist = model.fit(x, y, batch_size=10, epochs=10, verbose=0, callbacks=[Spy(), cb])
    assert len(hist.history["loss"]) == 2 and cb.stopped_epoch == 1
    for a, b in zip(model.get_weights(), snapshots[0]):   # the loss is highest after epoch 0
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_every_epoch_and_best_only(tmp_path):
    x, y = toy_data(60)
    model = make()
    model.compile(Adam(0.05), "binary_crossentropy", metrics=["auc"])
    every = ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}.npz", monitor="val_loss")
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, validation_split=0.3, callbacks=[every])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.npz", "ckpt-02.npz"]
    np.testing.assert_array_equal(load_model(tmp_path / "ckpt-02.npz").predict(x), model.predict(x))

    best = ModelCheckpoint(tmp_path / "best.npz", monitor="val_loss", save_best_only=True)
    fake = FakeModel()
    fake.save = lambda path: best.saved.append(("saved", path))
    best.set_model(fake)
    for epoch, v in enumerate([0.5, 0.6, 0.4]):
        best.on_epoch_end(epoch, {"val_loss": v})
    assert [s for s in best.saved if isinstance(s, tuple)] == [("saved", str(tmp_path / "best.npz"))] * 2


# -- progress ------------------------------------------------------------------------------------
def test_verbose_output(capsys):
    x, y = toy_data(40)
    model = _compiled()
    model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, batch_size=10, epochs=2, verbose=1, validation_split=0.25)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "3/3 [" in out and " - val_loss: " in out
    assert "\r" not in out                    # not a terminal: no redrawn bar
    model.fit(x, y, batch_size=10, epochs=1, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/1" and out[1].startswith("4/4 - ") and " - loss: " in out[1] and len(out) == 2


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = ProgressBar(epochs=1, steps=4, verbose=1, stream=stream, min_interval=0)
    bar.epoch_begin(0)
    for b in range(4):
        bar.batch_end(b + 1, {"loss": 0.5})
    bar.epoch_end({"loss": 0.5, "auc": 0.75})
    out = stream.getvalue()
    assert "\r1/4 [" in out and "ETA" in out and out.rstrip().endswith("auc: 0.7500\x1b[K")
