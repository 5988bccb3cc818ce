"""``model.loss_and_gradients(x, y, training=True, sample_weight=None)``: the training objective of
the model's profile and its gradient for every trainable weight, the model unchanged.

Proven three ways: central differences (float64) of ``compute_loss`` -- or, with sample weights,
of the weighted objective written out -- for DIN and DNNModel under the three profiles (Keras's
mean, DeepCTR-Torch's sum); equality with the losses and gradients recorded from the frameworks
(``tests/data/frameworks``); and the model (weights, moving statistics, dropout generators, the
optimizer) exactly as before.
"""
import numpy as np
import pytest

from npctr.models import DIN, DNNModel
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.gradcheck import numerical_gradient
from npctr.testing import assert_close
from npctr.training.optimizers import SGD

from framework_util import (cases, load, build_din, set_recorded_weights, features, mapping, to_npctr,
                            layer_of, layer_scales, tolerance)

PROFILES = ("tf_keras", "keras3", "torch")


def columns():
    """Small tables (every element is differentiated), a 2-dimensional dense feature, two
    histories sharing tables, lengths 0 and full."""
    return [SparseFeat("user", 4, embedding_dim=3), SparseFeat("item_id", 6, embedding_dim=3),
            SparseFeat("cate_id", 4, embedding_dim=2), DenseFeat("score", 2),
            VarLenSparseFeat(SparseFeat("hist_item_id", 6, embedding_dim=3, embedding_name="item_id"),
                             maxlen=4, length_name="seq_length"),
            VarLenSparseFeat(SparseFeat("hist_cate_id", 4, embedding_dim=2, embedding_name="cate_id"),
                             maxlen=4, length_name="seq_length")]


def inputs(n, seed):
    rng = np.random.default_rng(seed)
    length = rng.integers(0, 5, n)
    length[:2] = [0, 4]
    valid = np.arange(4) < length[:, None]
    x = {"user": rng.integers(0, 4, n), "item_id": rng.integers(1, 6, n), "cate_id": rng.integers(1, 4, n),
         "score": rng.standard_normal((n, 2)), "hist_item_id": rng.integers(1, 6, (n, 4)) * valid,
         "hist_cate_id": rng.integers(1, 4, (n, 4)) * valid, "seq_length": length}
    y = np.zeros(n)
    y[: n // 2] = 1
    return x, rng.permutation(y)


def make_model(kind, profile, **kwargs):
    common = dict(dnn_hidden_units=(5, 3), dnn_activation="sigmoid", l2_reg_embedding=0.05, l2_reg_dnn=0.02,
                  dnn_use_bn=True, dnn_dropout=0.3, seed=3, conventions=profile, **kwargs)
    if kind == "din":
        model = DIN(columns(), ["item_id", "cate_id"], att_hidden_size=(4, 3), att_activation="dice", **common)
    else:
        model = DNNModel(columns(), **common)
    rng = np.random.default_rng(11)
    # weights of order 1 (fresh embeddings are 1e-4), moving statistics away from their start
    model.set_weights({p: (rng.uniform(0.5, 1.5, v.shape) if p.endswith("moving_variance")
                           else 0.6 * rng.standard_normal(v.shape)) for p, v in
                       {**model.params, **model.state}.items()})
    return model


def check_against_differences(model, objective, grads):
    """Every element of every trainable weight: central differences of ``objective()``."""
    scales = {}
    numeric = {}
    for path, w in model.params.items():
        # the five-point stencil at eps 1e-4: the attention's gradients are ~1e-4 of the objective,
        # where a central difference at eps 1e-6 has ~1e-6 relative round-off (docs/gradient_checking.md)
        numeric[path] = numerical_gradient(objective, w, eps=1e-4, order=4)
    for path, g in numeric.items():
        scales[layer_of(path)] = max(scales.get(layer_of(path), 0.0), float(np.max(np.abs(g))))
    assert sorted(grads) == sorted(numeric)
    for path in numeric:
        # 1e-7: the stencil on an objective of order 1..B carries ~1e-12 of round-off and
        # truncation, below 1e-8 of these gradients' scales (measured worst: 2.4e-8). A
        # gradient that is zero in exact arithmetic (a DNN bias in front of a training-mode BN) is
        # FD noise on one side and round-off on the other: judged at its layer's scale.
        assert_close(grads[path], numeric[path], 1e-7, scale=scales[layer_of(path)])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", ["din", "dnn_model"])
def test_gradient_is_that_of_compute_loss(kind, profile):
    model = make_model(kind, profile)
    x, y = inputs(8, seed=1)
    snap = model.snapshot()

    def objective():
        model.restore(snap)                  # the same dropout masks in every evaluation
        return model.compute_loss(x, y, training=True)

    loss, grads = model.loss_and_gradients(x, y)
    assert loss == objective()
    check_against_differences(model, objective, grads)


@pytest.mark.parametrize("profile", PROFILES)
def test_gradient_with_sample_weights(profile):
    """Keras: sum_i w_i l_i / B (``SUM_OVER_BATCH_SIZE``); DeepCTR-Torch's sum: sum_i w_i l_i."""
    model = make_model("din", profile)
    x, y = inputs(7, seed=2)
    w = np.random.default_rng(5).uniform(0.2, 3.0, 7)
    snap = model.snapshot()
    loss_fn = model._default_loss()

    def objective():
        model.restore(snap)
        pred = model.forward(x, training=True, backprop=False)
        per = loss_fn.per_sample(y.reshape(-1, 1), pred).ravel() * w
        data = per.sum() if profile == "torch" else per.mean()
        return float(data) + model.regularization_loss()

    loss, grads = model.loss_and_gradients(x, y, sample_weight=w)
    assert loss == pytest.approx(objective(), rel=1e-14)
    check_against_differences(model, objective, grads)


def test_inference_mode_regression_and_compiled_loss():
    """``training=False``: moving statistics, no dropout; a compiled loss is the one differentiated."""
    model = make_model("dnn_model", "tf_keras", task="regression")
    model.compile("sgd", "mse")
    x, y = inputs(6, seed=3)
    y = y + np.random.default_rng(1).standard_normal(6)

    def objective():
        return model.compute_loss(x, y, training=False)

    loss, grads = model.loss_and_gradients(x, y, training=False)
    assert loss == objective()
    check_against_differences(model, objective, grads)


def _everything(model):
    return ({k: v.copy() for k, v in {**model.params, **model.state}.items()},
            {p: layer._rng.bit_generator.state for p, layer in model.sublayers()
             if getattr(layer, "_rng", None) is not None})


def test_model_unchanged_and_what_an_optimizer_receives():
    model, twin = make_model("din", "tf_keras"), make_model("din", "tf_keras")
    model.compile(SGD(0.1), "binary_crossentropy")
    twin.compile(SGD(0.1), "binary_crossentropy")
    x, y = inputs(8, seed=4)
    model.train_on_batch(x, y)                      # optimizer state and iterations exist
    twin.train_on_batch(x, y)
    before, rngs = _everything(model)
    iterations = model.optimizer.iterations
    loss, grads = model.loss_and_gradients(x, y)
    after, rngs_after = _everything(model)
    assert before.keys() == after.keys() and rngs == rngs_after
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    assert model.optimizer.iterations == iterations
    # the model behaves exactly as its twin that never computed them: a training step (dropout
    # draws, moving statistics) and the predictions, bit for bit
    assert model.train_on_batch(x, y) == twin.train_on_batch(x, y)
    np.testing.assert_array_equal(model.predict(x), twin.predict(x))
    for k, v in {**twin.params, **twin.state}.items():
        np.testing.assert_array_equal(model._lookup(k), v)
    # an SGD step is w - lr * gradient: loss_and_gradients is what the optimizer receives
    start = {k: v.copy() for k, v in model.params.items()}
    loss, grads = model.loss_and_gradients(x, y)
    assert model.train_on_batch(x, y) == loss
    for k, g in grads.items():
        np.testing.assert_array_equal(model.params[k], start[k] + (-g * 0.1))


def test_frozen_layers_have_no_gradient_and_bad_input_is_refused():
    model = make_model("din", "torch")
    model.get_layer("attention_sequence_pooling_layer").trainable = False
    x, y = inputs(5, seed=6)
    _, grads = model.loss_and_gradients(x, y)
    assert grads and not any(k.startswith("attention_sequence_pooling_layer/") for k in grads)
    with pytest.raises(ValueError, match="sample_weight"):
        model.loss_and_gradients(x, y, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="holds no samples"):
        model.loss_and_gradients({k: v[:0] for k, v in x.items()}, y[:0])


@pytest.mark.parametrize("file", cases("din"))
def test_equals_the_frameworks_recordings(file):
    """The recorded ``loss`` and ``grad/<name>`` (GradientTape over Keras's compute_loss; torch's
    ``total_loss.backward()``) at the recorded weights."""
    data, meta = load(file)
    tol = tolerance(meta["dtype"])
    model = build_din(meta)
    set_recorded_weights(model, data)
    x, y = features(data), data["y"]
    loss, grads = model.loss_and_gradients(x, y)
    if meta["dtype"] == "float64":
        # DeepCTR-Torch's total loss is a float32 tensor (tests/test_frameworks_din.py): 4 ulps
        loss_tol = 4 * np.finfo(np.float32).eps if meta["framework"] == "torch" else tol
        assert abs(loss - float(data["loss"])) <= loss_tol * abs(float(data["loss"])), (loss, float(data["loss"]))
    params = model.params
    recorded = {path: to_npctr(data["grad/" + name], transpose, params[path].shape)
                for name, path, transpose in mapping(data) if path in params}
    assert sorted(recorded) == sorted(grads)
    scales = layer_scales(recorded)
    for path, expected in recorded.items():
        assert_close(grads[path], expected, tol, scale=scales[layer_of(path)])
