"""What Keras and DeepCTR users reach for: summary, weights files, fit's arguments, callbacks, device."""
import numpy as np
import pytest

from npctr.datasets import make_din_data
from npctr.models import DIN, DNNModel
from npctr.training.arguments import DEFAULT_BATCH_SIZE
from npctr.training import SGD, Adam, EarlyStopping, ModelCheckpoint

from toy_models import ToyDNNModel, toy_data, assert_param_gradients

DIMS = {"a": 3, "b": 2}


def small_din(**kw):
    x, y, columns, history = make_din_data(64, n_users=10, n_items=30, n_cates=6, maxlen=5, seed=3)
    return DIN(columns, history, dnn_hidden_units=(8, 4), att_hidden_size=(6, 4), dnn_use_bn=True, **kw), x, y


# -- inspection ---------------------------------------------------------------------------------
def test_summary_count_params_and_layers():
    model, x, y = small_din()
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert text.startswith('Model: "din"')
    assert "dnn (DNN)" in text and "(None, 4)" in text and "prediction_layer (PredictionLayer)" in text
    assert "sparse_emb_item_id (Embedding)" in text and "multiple" in text     # shared by item and history
    n_state = sum(v.size for v in model.state.values())
    n_params = sum(v.size for v in model.params.values())
    assert model.count_params() == n_params + n_state
    assert f"Total params: {model.count_params():,}" in text
    assert f"Trainable params: {n_params:,}" in text and f"Non-trainable params: {n_state:,}" in text
    assert model.layers == list(model._layers.values())


def test_summary_leaves_a_training_forward_ready_for_backward():
    model, x, y = small_din()
    model.forward(x, training=True)
    scores = model.attention_scores
    model.summary(print_fn=lambda s: None)
    assert model.attention_scores is scores
    model.backward(np.ones((64, 1)))                  # the caches of the training forward survived


def test_save_and_load_weights_by_name(tmp_path):
    model, x, y = small_din()
    model.compile("adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    fresh, _, _ = small_din(seed=5)
    assert not np.array_equal(fresh.predict(x), model.predict(x))
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    model.save(tmp_path / "m.npz")                    # a model file's weights load too
    again, _, _ = small_din(seed=6)
    np.testing.assert_array_equal(again.load_weights(tmp_path / "m.npz").predict(x), model.predict(x))
    other = DNNModel(model.dnn_feature_columns, dnn_hidden_units=(8, 4))
    before = other.get_weights()
    with pytest.raises(ValueError, match="does not hold the weights of this DNNModel: missing"):
        other.load_weights(tmp_path / "w.npz")
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))


# -- fit's arguments ---------------------------------------------------------------------------------
def compiled(opt=None, **kw):
    return ToyDNNModel(DIMS, **kw).compile(opt or SGD(0.1), "binary_crossentropy")


def test_default_batch_size_is_32_as_keras():
    x, y = toy_data(100)
    history = compiled().fit(x, y, verbose=0)
    assert DEFAULT_BATCH_SIZE == 32 and history.params["steps"] == 4
    assert compiled().fit(x, y, batch_size=None, verbose=0).params["steps"] == 4


def test_sample_weight_is_keras_weighted_mean_over_batch_size():
    x, y = toy_data(40)
    w = np.random.default_rng(0).uniform(0, 2, 40)
    a, b = compiled(), compiled()
    loss = a.train_on_batch(x, y, sample_weight=w)
    per = b.loss.per_sample(y.reshape(-1, 1), b.predict(x, batch_size=40))
    assert loss == pytest.approx(float(np.sum(per.ravel() * w) / 40), rel=1e-12)
    # the gradient: duplicating a sample is the same as giving it weight 2 (SGD, one step)
    c, d = compiled(), compiled()
    w2 = np.ones(40)
    w2[3] = 2.0
    c.train_on_batch(x, y, sample_weight=w2 / 41 * 40)   # weights rescaled: 41 samples in d's batch
    xd = {k: np.concatenate([v, v[3:4]]) for k, v in x.items()}
    d.train_on_batch(xd, np.concatenate([y, y[3:4]]))
    for k in c.params:
        np.testing.assert_allclose(c.params[k], d.params[k], rtol=1e-12, atol=1e-15)


def test_class_weight_equals_the_sample_weights_it_implies():
    x, y = toy_data(40)
    a, b = compiled(), compiled()
    a.fit(x, y, batch_size=8, epochs=2, verbose=0, class_weight={0: 0.5, 1: 3.0}, shuffle=False)
    b.fit(x, y, batch_size=8, epochs=2, verbose=0, sample_weight=np.where(y == 1, 3.0, 0.5), shuffle=False)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    with pytest.raises(ValueError, match=r"class_weight has no weight for the classes \[1\]"):
        compiled().fit(x, y, verbose=0, class_weight={0: 1.0})
    with pytest.raises(ValueError, match="sample_weight must hold one weight per sample"):
        compiled().fit(x, y, verbose=0, sample_weight=np.ones(3))


def test_soft_labels_for_binary_crossentropy():
    x, y = toy_data(40)
    soft = np.clip(y * 0.8 + 0.1, 0, 1)
    model = compiled()
    loss = model.train_on_batch(x, soft)
    p = compiled().predict(x, batch_size=40).ravel()
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    expected = -np.mean(soft * np.log(pc + eps) + (1 - soft) * np.log(1 - pc + eps))
    assert loss == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        compiled().fit(x, soft + 0.5, verbose=0)


def test_initial_epoch_and_validation_freq():
    x, y = toy_data(40)
    h = compiled().fit(x, y, epochs=5, initial_epoch=2, validation_split=0.25, validation_freq=2, verbose=0)
    assert h.epoch == [2, 3, 4]
    assert len(h.history["loss"]) == 3 and len(h.history["val_loss"]) == 1     # epoch 4 (1-based) only
    h = compiled().fit(x, y, epochs=4, validation_split=0.25, validation_freq=[1, 4], verbose=0)
    assert len(h.history["val_loss"]) == 2
    with pytest.raises(ValueError, match="validation_freq"):
        compiled().fit(x, y, validation_freq=0, verbose=0)


def test_evaluate_return_dict_predict_verbose():
    x, y = toy_data(40)
    model = ToyDNNModel(DIMS).compile("adam", metrics=["auc"])
    as_list = model.evaluate(x, y)
    as_dict = model.evaluate(x, y, return_dict=True)
    assert list(as_dict) == model.metrics_names and list(as_dict.values()) == as_list
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose="auto"))
    with pytest.raises(ValueError, match="verbose"):
        model.predict(x, verbose=5)


# -- callbacks ------------------------------------------------------------------------------------
def test_duck_typed_callback_gets_keras_hooks():
    class Recorder:                            # not an npctr Callback: only some hooks
        def __init__(self):
            self.calls = []

        def set_model(self, model):
            self.model = model

        def on_epoch_end(self, epoch, logs=None):
            self.calls.append(("epoch", epoch, sorted(logs)))

        def on_batch_end(self, batch, logs=None):   # Keras's alias of on_train_batch_end
            self.calls.append(("batch", batch))

    x, y = toy_data(40)
    rec = Recorder()
    model = compiled()
    model.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[rec])
    assert rec.model is model
    assert rec.calls == [("batch", 0), ("batch", 1), ("epoch", 0, ["loss"]),
                         ("batch", 0), ("batch", 1), ("epoch", 1, ["loss"])]
    with pytest.raises(TypeError, match="Keras callback methods"):
        model.fit(x, y, verbose=0, callbacks=[object()])


def test_early_stopping_baseline_and_verbose(capsys):
    x, y = toy_data(40)
    cb = EarlyStopping(monitor="loss", patience=1, baseline=-1.0, verbose=1)   # never beaten
    compiled().fit(x, y, epochs=10, verbose=0, callbacks=[cb])
    assert cb.stopped_epoch == 1
    assert "Epoch 2: early stopping" in capsys.readouterr().out
    with pytest.raises(ValueError, match="baseline"):
        EarlyStopping(baseline="x")


def test_model_checkpoint_save_weights_only(tmp_path):
    x, y = toy_data(40)
    model = compiled()
    cb = ModelCheckpoint(tmp_path / "w-{epoch}.npz", monitor="loss", save_weights_only=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    fresh = compiled(seed=99).load_weights(tmp_path / "w-2.npz")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    with np.load(tmp_path / "w-2.npz") as data:
        assert "__config__" not in data.files


# -- device -----------------------------------------------------------------------------------------
def test_device_cpu_accepted_anything_else_refused():
    model, _, _ = small_din(device="cpu")
    assert model.device == "cpu"
    small_din(device="CPU")
    with pytest.raises(ValueError, match="device must be 'cpu'.*'cuda'"):
        small_din(device="cuda")
    columns = make_din_data(8, n_users=10, n_items=30, n_cates=6, maxlen=5, seed=3)[2]
    assert DNNModel(columns, device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device must be 'cpu'.*'cuda:0'"):
        DNNModel(columns, device="cuda:0")


# -- the weighted loss's gradient: finite differences and properties -----------------------------------
def test_weighted_training_gradient_matches_finite_differences():
    from npctr.layers.activation import sigmoid
    x, y = toy_data(20)
    w = np.random.default_rng(3).uniform(0, 3, 20)
    model = ToyDNNModel(DIMS, l2_reg=0.05, hidden_units=(4,)).compile("sgd", "binary_crossentropy")
    xa, n = model._check_x(x)
    ya = model._check_y(y, n)

    def objective():
        z = model.forward_logits(xa, training=True, backprop=False)
        return model._loss_value(ya, sigmoid(z), w) + model.regularization_loss()

    model._loss_and_gradients(xa, ya, (1, 1), w)
    assert_param_gradients(model, {k: np.array(v) for k, v in model.grads.items()}, objective)


from hypothesis import given, strategies as st  # noqa: E402


@given(st.floats(0.1, 10.0), st.integers(0, 2 ** 16))
def test_constant_sample_weight_scales_loss_and_data_gradient(c, seed):
    x, y = toy_data(16, seed=seed % 97)
    a, b = ToyDNNModel(DIMS).compile("sgd"), ToyDNNModel(DIMS).compile("sgd")
    xa, n = a._check_x(x)
    ya = a._check_y(y, n)
    la, _ = a._loss_and_gradients(xa, ya, (1, 1), np.full(16, c))
    lb, _ = b._loss_and_gradients(xa, ya, (1, 1), None)
    assert la == pytest.approx(c * lb, rel=1e-12)
    for k in a.grads:
        np.testing.assert_allclose(a.grads[k], c * b.grads[k], rtol=1e-10, atol=1e-16)


@given(st.integers(1, 6), st.integers(0, 2 ** 16))
def test_lazy_adam_equals_adam_when_every_row_is_touched(steps, seed):
    from npctr.sparse import RowGrad
    from npctr.training.optimizers import LazyAdam
    rng = np.random.default_rng(seed)
    w_lazy = rng.normal(size=(4, 3))
    w_adam = w_lazy.copy()
    lazy, adam = LazyAdam(0.01), Adam(0.01, flavor="keras_legacy")
    for _ in range(steps):
        g = rng.normal(size=(4, 3))
        lazy.apply_gradients({"e": w_lazy}, {"e": RowGrad(np.arange(4), g, (4, 3))})
        adam.apply_gradients({"e": w_adam}, {"e": g})
    np.testing.assert_allclose(w_lazy, w_adam, rtol=1e-13, atol=1e-16)
