"""Live round trips with the real frameworks (skipped without them; run with /work/refenv).

DeepCTR 0.9.4 on tf.keras 2 (this module sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is
imported) and DeepCTR-Torch 0.3.0: build the framework's DIN, give it random weights, import them
into npctr (from the live model and, for Keras, from its ``.h5`` files), compare outputs and every
gradient, then export npctr's weights back with ``to_*`` into the framework's model and compare
again. Keras 3 files (``.weights.h5``, ``.keras``) are written by a Keras 3 subprocess.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from npctr.interop import (load_keras_weights, load_torch_state_dict, map_keras_names, to_keras_weights,
                           to_torch_state_dict, torch_spec)
from npctr.models import DIN

from test_interop_keras import din_columns, normwise

B = 6
RTOL_F64 = 1e-12


def features(seed=0):
    rng = np.random.default_rng(seed)
    length = np.array([4, 1, 3, 2, 4, 1][:B])
    hist = lambda vocab: np.where(np.arange(4) < length[:, None], rng.integers(1, vocab, (B, 4)), 0)  # noqa: E731
    return {"user": rng.integers(0, 3, B), "gender": rng.integers(0, 2, B), "item_id": rng.integers(1, 4, B),
            "cate_id": rng.integers(1, 3, B), "pay_score": rng.standard_normal(B),
            "hist_item_id": hist(4), "hist_cate_id": hist(3), "seq_length": length}


DIN_ARGS = dict(dnn_hidden_units=(4, 4), att_hidden_size=(8, 4))


def npctr_din(**kwargs):
    return DIN(din_columns(), ["item_id", "cate_id"], **{**DIN_ARGS, **kwargs})


def random_values(shapes, seed, names):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 1.5, s) if "moving_variance" in n or "running_var" in n
            else 0.5 * rng.standard_normal(s) for n, s in zip(names, shapes)]


# -- tf.keras 2 --------------------------------------------------------------------------------
def _tf():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    pytest.importorskip("deepctr")
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        pytest.skip("TensorFlow was imported with Keras 3; DeepCTR's DIN needs tf.keras 2")
    return tf


def keras_din(tf, **kwargs):
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr.models import DIN as KerasDIN
    from tf_keras import backend
    columns = din_columns(SparseFeat, DenseFeat, VarLenSparseFeat, dtype=backend.floatx())
    return KerasDIN(columns, ["item_id", "cate_id"], **{**DIN_ARGS, **kwargs})


def keras_outputs_and_grads(tf, model, x, g, training):
    inputs = {k: tf.constant(v) for k, v in x.items()}
    with tf.GradientTape() as tape:
        out = model(inputs, training=training)
        loss = tf.reduce_sum(out * tf.constant(g, dtype=out.dtype))
    grads = tape.gradient(loss, model.trainable_weights)
    return out.numpy(), {v.name: tf.convert_to_tensor(d).numpy() for v, d in zip(model.trainable_weights, grads)}


def compare_with_keras(tf, keras_model, ours, x, rtol):
    g = np.random.default_rng(5).standard_normal((B, 1))
    names = map_keras_names(ours, [v.name for v in keras_model.weights])
    for training in (False, True):
        snapshot = ours.snapshot()
        out, grads = keras_outputs_and_grads(tf, keras_model, x, g, training)
        mine = ours.forward(x, training=training, backprop=True)
        assert normwise(mine, out) <= rtol, training
        ours.backward(g)
        mine_grads = ours.grads
        overall = max(np.max(np.abs(v)) for v in grads.values())
        for name, value in grads.items():
            mine_g = mine_grads[names[name]]
            mine_g = mine_g.to_dense() if hasattr(mine_g, "to_dense") else mine_g
            # an exact-zero gradient (a DNN bias before a training-mode BN) is round-off on both
            # sides: judged at the scale of the model's gradients
            scale = np.max(np.abs(value))
            if scale <= 100 * np.finfo(value.dtype).eps * overall or value.dtype == np.float32:
                # float32: normwise over the whole gradient vector, since a sum of cancelling
                # terms (the attention score's bias) carries the round-off of its terms
                scale = overall
            assert np.max(np.abs(mine_g - value)) <= rtol * scale, (training, name)
        ours.restore(snapshot)


@pytest.mark.parametrize("variant", ["sigmoid_f64", "dice_bn_f32"])
def test_tf_keras_din_in_and_out(variant, tmp_path):
    tf = _tf()
    from tf_keras import backend
    dtype = "float64" if variant == "sigmoid_f64" else "float32"
    backend.set_floatx(dtype)
    try:
        kwargs = dict(att_activation="sigmoid", dnn_use_bn=True) if variant == "sigmoid_f64" \
            else dict(att_activation="dice", dnn_use_bn=True)
        keras_model = keras_din(tf, **kwargs)
        keras_model.set_weights(random_values([w.shape for w in keras_model.get_weights()], 1,
                                              [v.name for v in keras_model.weights]))
        x = features()
        rtol = RTOL_F64 if dtype == "float64" else 1e-5
        for source in ("live", "h5", "model_h5"):
            ours = npctr_din(dtype=dtype, **kwargs)
            if source == "live":
                load_keras_weights(ours, keras_model)
            elif source == "h5":
                keras_model.save_weights(tmp_path / "din.h5")
                load_keras_weights(ours, tmp_path / "din.h5")
            else:
                keras_model.save(tmp_path / "din_model.h5")
                load_keras_weights(ours, tmp_path / "din_model.h5")
            out = keras_model({k: tf.constant(v) for k, v in x.items()}, training=False).numpy()
            assert normwise(ours.predict(x), out) <= rtol, source
        compare_with_keras(tf, keras_model, ours, x, rtol)

        # and back: npctr's weights into the Keras model, by the Keras model's own names
        ours.set_weights({p: v for p, v in zip(ours.weight_names(),
                                               random_values([w.shape for w in ours.get_weights()], 2,
                                                             ours.weight_names()))})
        exported = to_keras_weights(ours, like=keras_model)
        keras_model.set_weights([exported[v.name] for v in keras_model.weights])
        compare_with_keras(tf, keras_model, ours, x, rtol)
    finally:
        backend.set_floatx("float32")


KERAS3_SCRIPT = r"""
import json, sys, numpy as np, keras
keras.config.set_floatx("float64")
from deepctr.layers import DNN, PredictionLayer
x = keras.Input((6,))
dnn = DNN((5, 3), activation="dice", use_bn=True)
model = keras.Model(x, PredictionLayer()(keras.layers.Dense(1, use_bias=False)(dnn(x))))
model(np.zeros((2, 6)))
rng = np.random.default_rng(3)
model.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else 0.5 * rng.standard_normal(w.shape)
                   for v, w in zip(model.weights, model.get_weights())])
xs = np.random.default_rng(4).standard_normal((5, 6))
model.save_weights(sys.argv[1] + "/m.weights.h5")
model.save(sys.argv[1] + "/m.keras")
np.save(sys.argv[1] + "/out.npy", np.asarray(model(xs, training=False)))
np.save(sys.argv[1] + "/x.npy", xs)
print(json.dumps([v.path for v in model.weights]))
"""


def test_keras3_weights_files(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("deepctr")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", KERAS3_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = json.loads(done.stdout.strip().splitlines()[-1])
    assert paths[0].startswith("dnn") and any("dice" in p for p in paths)
    from npctr import DNN, Dense, PredictionLayer
    xs, expected = np.load(tmp_path / "x.npy"), np.load(tmp_path / "out.npy")
    from npctr.interop.keras import read_keras_file
    for name in ("m.weights.h5", "m.keras"):
        weights = read_keras_file(str(tmp_path / name))
        dnn, dense, pred = DNN((5, 3), activation="dice", use_bn=True), Dense(1, use_bias=False), PredictionLayer()
        dnn.build((None, 6)), dense.build((None, 3)), pred.build((None, 1))
        load_keras_weights(dnn, weights, prefix=next(n for n in weights if n.startswith("dnn")).split("/")[0])
        load_keras_weights(dense, weights, prefix="dense")
        load_keras_weights(pred, weights, prefix="prediction_layer")
        out = pred.forward(dense.forward(dnn.forward(xs)))
        assert normwise(out, expected) <= RTOL_F64, name


# -- DeepCTR-Torch -----------------------------------------------------------------------------
def _torch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("deepctr_torch")
    return torch


def torch_din(torch, **kwargs):
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN as TorchDIN
    columns = din_columns(SparseFeat, DenseFeat, VarLenSparseFeat)
    torch.manual_seed(0)
    return TorchDIN(columns, ["item_id", "cate_id"], **{**DIN_ARGS, **kwargs}).double()


def torch_input(torch, model, x):
    columns = sorted(model.feature_index.items(), key=lambda item: item[1][0])
    return torch.cat([torch.tensor(np.asarray(x[name], dtype=np.float64).reshape(B, -1)) for name, _ in columns],
                     dim=-1)


def compare_with_torch(torch, torch_model, ours, x):
    g = np.random.default_rng(6).standard_normal((B, 1))
    spec = torch_spec(ours)
    params = dict(torch_model.named_parameters())
    for training in (False, True):
        torch_model.train(training)
        torch_model.zero_grad()
        snapshot = ours.snapshot()
        out = torch_model(torch_input(torch, torch_model, x))
        (out * torch.tensor(g)).sum().backward()
        mine = ours.forward(x, training=training, backprop=True)
        assert normwise(mine, out.detach().numpy()) <= RTOL_F64, training
        ours.backward(g)
        overall = max(np.max(np.abs(p.grad.numpy())) for p in params.values())
        for path, (name, layout) in spec.items():
            if name not in params:
                continue
            theirs = params[name].grad.numpy()
            theirs = theirs.T if layout == "linear" else theirs.reshape(ours._lookup(path).shape)
            mine_g = ours.grads[path]
            mine_g = mine_g.to_dense() if hasattr(mine_g, "to_dense") else mine_g
            scale = np.max(np.abs(theirs))
            if scale <= 100 * np.finfo(theirs.dtype).eps * overall:      # exact zero: round-off
                scale = overall
            assert np.max(np.abs(mine_g - theirs)) <= RTOL_F64 * scale, (training, path)
        ours.restore(snapshot)


@pytest.mark.parametrize("variant", ["sigmoid", "dice_bn"])
def test_torch_din_in_and_out(variant, tmp_path):
    """A DIN without BatchNorm or Dice is the same function in DeepCTR-Torch and npctr's default
    conventions (with histories that are non-zero exactly for t < seq_length); with Dice and
    BatchNorm it needs ``conventions="torch"`` (affine Dice BN, Torch's epsilons and momentum)."""
    torch = _torch()
    if variant == "sigmoid":      # the same forward, but a default-profile model: the override (issue 19)
        kwargs, ours_kwargs, check = dict(att_activation="sigmoid", dnn_use_bn=False), {}, False
    else:
        kwargs, ours_kwargs, check = dict(att_activation="Dice", dnn_use_bn=True), dict(conventions="torch"), True
    torch_model = torch_din(torch, **kwargs)
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            p.copy_(torch.tensor(0.5 * rng.standard_normal(tuple(p.shape))))
        for name, b in torch_model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.tensor(rng.uniform(0.5, 1.5, tuple(b.shape))))
            elif name.endswith("running_mean"):
                b.copy_(torch.tensor(0.2 * rng.standard_normal(tuple(b.shape))))
    x = features()
    for source in ("module", "state_dict", "pt"):
        ours = npctr_din(**kwargs, **ours_kwargs)
        if source == "module":
            load_torch_state_dict(ours, torch_model, check_conventions=check)
        elif source == "state_dict":
            load_torch_state_dict(ours, torch_model.state_dict(), check_conventions=check)
        else:
            torch.save(torch_model.state_dict(), tmp_path / "din.pt")
            load_torch_state_dict(ours, tmp_path / "din.pt", check_conventions=check)
        compare_with_torch(torch, torch_model, ours, x)

    ours.set_weights({p: (rng.uniform(0.5, 1.5, v.shape) if p.endswith("moving_variance")
                          else 0.5 * rng.standard_normal(v.shape)) for p, v in
                      ((p, ours._lookup(p)) for p in ours.weight_names())})
    torch_model.load_state_dict(to_torch_state_dict(ours))          # strict: every name, Torch's layouts
    compare_with_torch(torch, torch_model, ours, x)


def test_torch_pickles_are_refused(tmp_path):
    torch = _torch()
    torch.save({"weights": {"a": object}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_torch_state_dict(npctr_din(), tmp_path / "evil.pt")
