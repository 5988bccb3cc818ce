"""Whole-DIEN parity with DeepCTR 0.9.4 (tf.keras 2) and DeepCTR-Torch 0.3.0 (tests/data/frameworks/dien/).

For every recorded case (both frameworks, all four ``gru_type``s, with and without negative sampling,
float64 and float32): npctr's DIEN with the recording's conventions profile, loaded through
``load_keras_weights`` / ``load_torch_state_dict`` by the framework's own weight names, must reproduce
the inference- and training-mode outputs, the intermediates (interests, attention, final interest), the
objective and each of its parts (data loss, regularisation, auxiliary loss and its weighted term), every
weight gradient of ``loss_and_gradients`` (the untracked TF ``gru2/...`` and torch's tied bias included),
the moving statistics after one training forward, and export back to the same names and values; then
the 8-step SGD and Adam trajectories of ``train_on_batch`` (every weight after steps 1 and 8, the
reported losses). Tolerance: 1e-12 relative (normwise, max|a-b|/max|b|) in float64, 1e-5 in float32.
Judged otherwise, with the reason next to each: a gradient that is exactly zero mathematically (the
attention's output bias under softmax normalisation) against its layer's gradient scale; torch's
float32-accumulated losses to a few float32 ulps; a weight whose only gradient is round-off, under Adam.
"""
import numpy as np
import pytest

from npctr.interop import to_keras_weights, to_torch_state_dict
from npctr.training.losses import probability
from npctr.training.optimizers import SGD, Adam
from framework_util import rel_error, layer_of, layer_scales, tolerance
from dien_util import FILES, load, build, names, recorded, load_recorded, path_map, to_npctr, features

#: a gradient below ZERO ulps of its layer's gradient scale is exactly zero up to round-off
ZERO = 1e3
#: torch accumulates its regularisation (and so its total) in a float32 tensor, also in float64
TORCH_F32_ULPS = 4 * np.finfo(np.float32).eps


def _setup(file):
    data, meta = load(file)
    model = build(meta)
    loaded = load_recorded(model, meta, recorded(data))
    assert sorted(loaded) == sorted(model.weight_names())          # every weight, by name
    return data, meta, model


def _assert_close(what, actual, expected, tol, scale=None):
    err = rel_error(actual, expected, scale)
    assert err <= tol, f"{what}: {err:.3g}"


@pytest.mark.parametrize("file", FILES)
def test_dien_matches_framework(file):
    data, meta, model = _setup(file)
    tol = tolerance(meta["dtype"])
    rows = slice(0, meta["batch_size"])
    x, y = features(data, rows), data["y"][rows]
    torch = meta["framework"] == "torch"

    # export back, before anything moves: the framework's names, the same values (exact)
    exported = to_torch_state_dict(model, numpy=True) if torch else to_keras_weights(model, like=names(data))
    assert sorted(exported) == sorted(names(data))
    for n in names(data):
        assert exported[n].shape == data["w/" + n].shape and np.array_equal(exported[n], data["w/" + n]), n

    # inference: predict (forward batch by batch, no auxiliary loss) and the intermediates
    _assert_close("out_infer", model.predict(x, batch_size=len(y)), data["out_infer"], tol)
    model.forward(x, training=False)
    valid = ~np.isnan(data["mid/interests"][:, 0, 0])             # torch leaves length-0 rows NaN
    _assert_close("mid/interests", model.interests[valid], data["mid/interests"][valid], tol)
    if meta["gru_type"] == "GRU":
        _assert_close("mid/attention (pooled)", model.final_interest[valid], data["mid/attention"][valid], tol)
    else:
        _assert_close("mid/attention (scores)", model.attention_scores[valid], data["mid/attention"][valid], tol)
    if data["mid/evolved"].shape == model.final_interest.shape:
        _assert_close("mid/evolved", model.final_interest, data["mid/evolved"], tol)

    # the objective and every gradient, as one training step computes them (state restored after)
    model.compile("sgd")
    total, grads = model.loss_and_gradients(x, y)
    path_of = path_map(model, meta, names(data))
    params = model.params
    expected = {path_of[n]: to_npctr(data["grad/" + n], params[path_of[n]].shape)
                for n in names(data) if "grad/" + n in data}
    assert sorted(expected) == sorted(grads) == sorted(params)
    scales = layer_scales(expected)
    for path, value in expected.items():
        zero = np.max(np.abs(value)) <= ZERO * np.finfo(meta["dtype"]).eps * scales[layer_of(path)]
        _assert_close(f"grad {path}", grads[path], value, tol, scales[layer_of(path)] if zero else None)

    # the training-mode forward: outputs, the objective's parts, the moving statistics it updates
    logits = model.forward_logits(x, training=True, backprop=False)
    p = probability(logits)
    _assert_close("out_train", p, data["out_train"], tol)
    aux_term = model.auxiliary_loss()
    _assert_close("aux_term", aux_term, data["aux_term"], tol)
    _assert_close("aux_loss", aux_term / model.alpha, data["aux_loss"], tol)
    reg = model.regularization_loss()
    data_loss = model.loss.value(y, p)
    if meta["dtype"] == "float64":
        _assert_close("data_loss", data_loss, data["data_loss"], tol)
    else:
        # float32: a saturated wrong-side sample makes the BCE ill-conditioned in p (test_frameworks_din):
        # the formula is checked on the framework's own probabilities
        framework = model.loss.value(y.astype(np.float32), data["out_train"].astype(np.float32))
        _assert_close("data_loss from the framework's p", framework, data["data_loss"], tol)
    if torch:       # float32 accumulators: reg and total are rounded once per term
        assert abs(reg - float(data["reg_loss"])) <= TORCH_F32_ULPS * abs(float(data["reg_loss"])), reg
        if meta["dtype"] == "float64":
            assert abs(total - float(data["loss"])) <= TORCH_F32_ULPS * abs(float(data["loss"])), total
    else:
        _assert_close("reg_loss", reg, data["reg_loss"], tol)
        if meta["dtype"] == "float64":
            _assert_close("loss", total, data["loss"], tol)
            _assert_close("loss parts", data_loss + reg + aux_term, data["loss"], tol)
    state = model.state
    for n in names(data):
        if "after_train/" + n in data:
            _assert_close(f"after_train {n}", state[path_of[n]], data["after_train/" + n], tol)

def _trajectory_cases():
    out = []
    for file in FILES:
        _, meta = load(file)
        out += [(file, opt) for opt in meta["optimizers"]]
    return out


TRAJECTORIES = _trajectory_cases()


def _optimizer(meta, opt):
    spec = meta["optimizers"][opt]["hyperparameters"]
    lr = spec.get("learning_rate", spec.get("lr"))
    flavor = "torch" if meta["framework"] == "torch" else "keras"      # tf_keras >= 2.11 optimizers
    return (SGD if opt == "sgd" else Adam)(learning_rate=lr, flavor=flavor)


@pytest.mark.parametrize("file,opt", TRAJECTORIES, ids=[f"{f}-{o}" for f, o in TRAJECTORIES])
def test_dien_trajectory_matches_framework(file, opt):
    data, meta, model = _setup(file)
    tol = tolerance(meta["dtype"])
    if meta["framework"] == "tf_keras" and meta["gru_type"] in ("AGRU", "AUGRU"):
        # DeepCTR-TF's AGRU/AUGRU variables are not tracked by Keras: its fit never trains them.
        # npctr trains them; freezing the layer reproduces DeepCTR-TF (docs/dien.md)
        model.get_layer("gru2").trainable = False
    model.compile(_optimizer(meta, opt), "binary_crossentropy")
    path_of = path_map(model, meta, names(data))
    arrays = {**model.params, **model.state}
    batch = meta["batch_size"]
    y = data["y"]
    lr = model.optimizer.learning_rate
    # the attention's output bias has a gradient exactly 0 (softmax is shift-invariant): what reaches
    # it is round-off, which Adam divides by its own size, so in the framework as in npctr it moves by
    # a noise-driven amount up to lr per step (it changes no output): held to that bound
    noise_driven = {"attention_sequence_pooling_layer/local_att/bias"} if opt == "adam" else set()
    for step in range(meta["steps"]):
        rows = slice(step * batch, (step + 1) * batch)
        loss = model.train_on_batch(features(data, rows), y[rows])
        reported = float(data[f"traj_{opt}_loss"][step])
        if meta["dtype"] == "float64":
            if meta["framework"] == "torch":          # reported from a float32 accumulator
                assert abs(loss - reported) <= TORCH_F32_ULPS * abs(reported), (step, loss, reported)
            else:
                _assert_close(f"step {step + 1} loss", loss, reported, tol)
        if step + 1 not in meta["traj_steps"]:
            continue
        row = meta["traj_steps"].index(step + 1)
        for n in names(data):
            path = path_of[n]
            expected = to_npctr(data[f"traj_{opt}/{n}"][row], arrays[path].shape)
            if path in noise_driven:
                assert np.max(np.abs(arrays[path] - expected)) <= 2 * lr * (step + 1), (step, path)
                continue
            _assert_close(f"step {step + 1} {n}", arrays[path], expected, tol)
