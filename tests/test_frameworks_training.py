"""8-step training trajectories against the real frameworks (tests/data/frameworks/ ``train_*``).

Every recorded optimizer x flavour x DIN variant x embedding L2, for tf.keras 2 (``keras``
and ``keras_legacy``), Keras 3 and DeepCTR-Torch: npctr's DIN with the recording's
conventions profile and the optimizer's ``flavor=``, trained with ``train_on_batch`` on the
same 8 batches, must hold every weight and moving statistic of the recording after each
step: 1e-12 relative (normwise) in float64, 1e-5 in float32. An array that is exactly
constant mathematically (a DNN bias in front of a BatchNormalization has a zero gradient,
and moves by round-off under Adam) is judged against its layer's scale.
"""
import numpy as np
import pytest

from npctr.training.optimizers import SGD, Adagrad, Adam, RMSprop
from framework_util import (cases, load, build_din, set_recorded_weights, features, mapping, to_npctr,
                            rel_error, layer_of, layer_scales, tolerance)

TRAIN_CASES = cases("train")

#: recorded hyperparameter names (framework spelling) -> npctr's
_NAMES = {"lr": "learning_rate", "learning_rate": "learning_rate", "momentum": "momentum",
          "beta_1": "beta_1", "beta_2": "beta_2", "epsilon": "epsilon", "eps": "epsilon"}
_CLASSES = {"SGD": SGD, "Adagrad": Adagrad, "Adam": Adam, "RMSprop": RMSprop}


def make_optimizer(spec):
    kwargs = {_NAMES[k]: v for k, v in spec["hyperparameters"].items()}
    return _CLASSES[spec["class"]](flavor=spec["flavour"], **kwargs)


@pytest.mark.parametrize("file", TRAIN_CASES)
def test_training_trajectory_matches_framework(file):
    data, meta = load(file)
    tol = tolerance(meta["dtype"])
    model = build_din(meta)
    set_recorded_weights(model, data, prefix="traj/", row=0)
    model.compile(make_optimizer(meta["optimizer"]), "binary_crossentropy")
    assert model.optimizer.flavor == meta["optimizer"]["flavour"]
    x, y = features(data), data["y"]
    batch = meta["batch_size"]
    arrays = {**model.params, **model.state}
    pairs = [(name, path, transpose) for name, path, transpose in mapping(data)]
    # torch reports total_loss.item() of a float32 accumulator (see test_frameworks_din)
    # The output DNN's biases in front of a BatchNormalization have a gradient exactly 0; what
    # reaches them is round-off (~1e-17 in float64, ~1e-8 in float32). SGD turns it into
    # round-off moves (judged by the layer's scale), but Adam, RMSprop and torch's Adagrad divide it by
    # its own size (sqrt(v) of the same noise, against an epsilon of 1e-7..1e-10), so each step
    # moves such a bias by a noise-driven amount up to ~lr, in the framework as in npctr: there
    # the bias (and the moving mean of the BN it feeds) is only held to that bound.
    n_hidden = len(model.dnn_hidden_units)
    zero_grad = {f"dnn/bias{i}" for i in range(n_hidden)} if model.dnn_use_bn else set()
    adaptive = meta["optimizer"]["class"] in ("Adam", "RMSprop") or (
        meta["optimizer"]["class"] == "Adagrad" and meta["framework"] == "torch") or meta["dtype"] == "float32"
    noise_driven = zero_grad | {f"dnn/bn{i}/moving_mean" for i in range(n_hidden)} if (
        zero_grad and adaptive) else set()
    lr = model.optimizer.learning_rate
    # the largest move one step can give such a bias, in either implementation: Adam's
    # |m_hat / sqrt(v_hat)| stays near 1 (4 lr allows for its bias corrections); RMSprop's
    # |g| / sqrt(s) is at most 1 / sqrt(1 - rho) (s >= (1 - rho) g^2), 10 lr for torch's rho 0.99
    step_bound = 4 * lr
    if meta["optimizer"]["class"] == "RMSprop":
        step_bound = 2 * lr / np.sqrt(1 - model.optimizer.rho)
    for step in range(meta["steps"]):
        rows = slice(step * batch, (step + 1) * batch)
        loss = model.train_on_batch(features(data, rows), y[rows])
        recorded_loss = float(data["traj_loss"][step])
        if meta["framework"] == "torch" and meta["dtype"] == "float64":   # reported as float32
            assert abs(loss - recorded_loss) <= 4 * np.finfo(np.float32).eps * abs(recorded_loss), (step, loss)
        elif meta["dtype"] == "float64":
            assert rel_error(loss, recorded_loss) <= tol, (step, loss, recorded_loss)
        expected = {path: to_npctr(data["traj/" + name][step + 1], transpose, arrays[path].shape)
                    for name, path, transpose in pairs}
        scales = layer_scales(expected)
        for path, value in expected.items():
            if path in noise_driven:
                bound = step_bound * (step + 1)
                assert np.max(np.abs(arrays[path] - value)) <= bound, f"step {step + 1}, {path}"
                continue
            # exactly constant but for round-off: judged by its layer's scale. Float32 RMSprop too (the
            # conformance suite's float32 rule): it rescales each entry's gradient by its own size, so the
            # float32 round-off of a gradient that is a sum of cancelling terms (the attention score's bias)
            # moves that weight by a step-sized amount; on NumPy 1.23's summation order the score bias
            # drifts to 2e-5 of itself, 2e-8 of its layer's scale
            by_layer = path in zero_grad or (meta["optimizer"]["class"] == "RMSprop" and meta["dtype"] == "float32")
            err = rel_error(arrays[path], value, scale=scales[layer_of(path)] if by_layer else None)
            assert err <= tol, f"step {step + 1}, {path}: {err:.3g}"


def test_every_flavour_recorded():
    flavours = {(load(f)[1]["framework"], load(f)[1]["optimizer"]["flavour"]) for f in TRAIN_CASES}
    assert flavours == {("tf_keras", "keras"), ("tf_keras", "keras_legacy"), ("keras3", "keras"),
                        ("torch", "torch")}


@pytest.mark.parametrize("file", ["torch/train_torch_adam_dice_embl2_f64.npz", "tf_keras/train_keras_adam_dice_embl2_f64.npz"])
def test_fit_reports_the_loss_the_framework_reports(file):
    """One epoch of ``fit`` over the recorded 8 batches (no shuffling): DeepCTR-Torch's fit reports
    ``sum of the batches' total_loss / sample count`` (its loss is sum-reduced), Keras the batch
    means weighted by batch size (issue 19: npctr reported the torch profile's loss batch_size
    times too large)."""
    data, meta = load(file)
    model = build_din(meta)
    set_recorded_weights(model, data, prefix="traj/", row=0)
    model.compile(make_optimizer(meta["optimizer"]), "binary_crossentropy")
    history = model.fit(features(data), data["y"], batch_size=meta["batch_size"], epochs=1, shuffle=False,
                        verbose=0)
    steps = data["traj_loss"]
    if meta["framework"] == "torch":
        expected = float(np.sum(steps)) / len(data["y"])
        # the recorded totals are float32 (tests/test_frameworks_din.py): a few float32 ulps
        assert abs(history.history["loss"][0] - expected) <= 4 * np.finfo(np.float32).eps * expected
    else:
        expected = float(np.mean(steps))            # 8 equal batches
        assert rel_error(history.history["loss"][0], expected) <= 1e-12
