"""Issue 19's RMSprop findings, reproduced on the recorded 8-step DIN trajectories (tests/data/frameworks).

    PYTHONPATH=$PWD python tools/rmsprop_findings.py

For every recorded RMSprop trajectory it trains npctr's DIN with the recording's profile and flavour and
prints the worst relative error of the reported loss and the worst normwise error of the weights over the
8 steps (the biases in front of a BatchNormalization excluded: their gradient is round-off, which RMSprop
divides by its own size; tests/test_frameworks_training.py bounds them), for

* ``npctr``: the current optimizer;
* ``legacy_as_keras``: ``keras_legacy`` with the ``keras`` formula ``lr g / sqrt(ms + eps)`` (npctr before
  issue 19; tf.keras's legacy RMSprop without momentum computes ``lr g / (sqrt(ms) + eps)``);
* ``float32_subtraction``: ``1 - rho`` as ``float32(1) - float32(rho)`` (npctr before issue 19; torch and
  Keras round the Python ``1 - rho`` once).
NumPy only.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import framework_util as fu  # noqa: E402
from npctr.training.optimizers import RMSprop  # noqa: E402


class LegacyAsKeras(RMSprop):
    formulas = {**RMSprop.formulas, "keras_legacy": "keras"}


class Float32Subtraction(RMSprop):
    def _denominator(self, key, param, grad, t):
        rho = self._h("rho", t)
        s = self._slot("velocity", key, param)
        s[...] = rho * s + (t(1) - rho) * (grad * grad)
        return s


def trajectory_errors(file, cls):
    data, meta = fu.load(file)
    model = fu.build_din(meta)
    fu.set_recorded_weights(model, data, prefix="traj/", row=0)
    hp = meta["optimizer"]["hyperparameters"]
    model.compile(cls(learning_rate=hp.get("lr", hp.get("learning_rate")), flavor=meta["optimizer"]["flavour"]),
                  "binary_crossentropy")
    arrays = {**model.params, **model.state}
    noise = set()
    if model.dnn_use_bn:
        for i in range(len(model.dnn_hidden_units)):
            noise |= {f"dnn/bias{i}", f"dnn/bn{i}/moving_mean"}
    batch, loss_err, weight_err = meta["batch_size"], 0.0, 0.0
    for step in range(meta["steps"]):
        rows = slice(step * batch, (step + 1) * batch)
        loss = model.train_on_batch(fu.features(data, rows), data["y"][rows])
        recorded = float(data["traj_loss"][step])
        loss_err = max(loss_err, abs(loss - recorded) / abs(recorded))
        for name, path, transpose in fu.mapping(data):
            if path not in noise:
                expected = fu.to_npctr(data["traj/" + name][step + 1], transpose, arrays[path].shape)
                weight_err = max(weight_err, fu.rel_error(arrays[path], expected))
    return loss_err, weight_err


def main():
    files = [f for f in fu.cases("train") if "_rmsprop_" in f]
    variants = {"npctr": RMSprop, "legacy_as_keras": LegacyAsKeras, "float32_subtraction": Float32Subtraction}
    print(f"{'recording':55s} " + "  ".join(f"{v:>27s}" for v in variants))
    print(f"{'':55s} " + "  ".join(f"{'loss':>13s} {'weights':>13s}" for _ in variants))
    for file in files:
        row = [trajectory_errors(file, cls) for cls in variants.values()]
        print(f"{file:55s} " + "  ".join(f"{a:13.1e} {b:13.1e}" for a, b in row))


if __name__ == "__main__":
    main()
