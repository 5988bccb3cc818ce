"""Parity of AttentionSequencePoolingLayer with DeepCTR 0.9.4 (golden vectors, ``asp_*`` cases).

Same procedure and tolerances as ``test_golden_core.py`` (see the reasons written
there): known weights, one inference call and one training call, outputs, the
gradients w.r.t. query, keys and every trainable weight, and the moving
statistics after the training call.

* ``tf_legacy/`` (tf.keras 2): ``set_weights(list)`` in the recorded
  ``get_weights()`` order, after asserting that npctr's ``weight_names()`` is
  that order;
* ``tf/`` (Keras 3): ``set_weights(dict)``, the neutral names mapped to npctr's
  paths (``lau.out.kernel`` -> ``local_att/kernel``,
  ``lau.dnn.dice0.moving_mean`` -> ``local_att/dnn/activation0/bn/moving_mean``, ...).

Every case uses ``keys_length = [6, 3, 1, 0]`` with T = 6: a full row, partial
rows and an empty row.
"""
import json

import numpy as np
import pytest

from npctr import AttentionSequencePoolingLayer

from test_golden_core import (GOLDEN, F32, F64, MOVING_LEGACY_REL, MOVING_KERAS3_F64, TF_KERAS_DECAY, _close,
                              _load, canon_to_path)

FOLDERS = ("tf_legacy", "tf")
CASES = [c["name"] for c in json.loads((GOLDEN / "tf" / "_index.json").read_text())["cases"]
         if c["name"].startswith("asp_")]


def asp_canon_to_path(canon):
    """``lau.<canon>`` -> ``local_att/<LocalActivationUnit path>``."""
    assert canon.startswith("lau."), canon
    return "local_att/" + canon_to_path(canon[len("lau."):])


def test_asp_cases_present():
    assert sorted(CASES) == ["asp_wn0_sigmoid", "asp_wn0_sigmoid_score", "asp_wn1_dice", "asp_wn1_sigmoid",
                             "asp_wn1_sigmoid_score"]
    for folder in FOLDERS:
        for name in CASES:
            assert (GOLDEN / folder / f"{name}.npz").is_file(), (folder, name)


def test_asp_canon_mapping():
    assert asp_canon_to_path("lau.out.kernel") == "local_att/kernel"
    assert asp_canon_to_path("lau.out.bias") == "local_att/bias"
    assert asp_canon_to_path("lau.dnn.dense0.kernel") == "local_att/dnn/kernel0"
    assert asp_canon_to_path("lau.dnn.dense1.bias") == "local_att/dnn/bias1"
    assert asp_canon_to_path("lau.dnn.dice0.alpha") == "local_att/dnn/activation0/dice_alpha"
    assert asp_canon_to_path("lau.dnn.dice0.moving_mean") == "local_att/dnn/activation0/bn/moving_mean"
    assert asp_canon_to_path("lau.dnn.dice1.moving_var") == "local_att/dnn/activation1/bn/moving_variance"


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("name", CASES)
def test_golden_asp(folder, name):
    data, meta = _load(folder, name)
    case = meta["case"]
    assert case["kind"] == "asp"
    dtype = np.dtype(meta["dtype"])
    tol = F64 if dtype == np.float64 else F32
    legacy64 = folder == "tf_legacy" and dtype == np.float64
    moving_tol = F32 if dtype == np.float32 else MOVING_KERAS3_F64

    layer = AttentionSequencePoolingLayer(tuple(case["hidden"]), att_activation=case["act"],
                                          weight_normalization=case["wn"], return_score=case["return_score"],
                                          dtype=dtype.name)
    inputs = [data["in_query"], data["in_keys"], data["in_keys_length"]]
    assert data["in_keys_length"].reshape(-1).tolist() == case["keys_length"] == [6, 3, 1, 0]
    canon = [str(c) for c in data["weight_canon"]]
    trainable = [bool(t) for t in data["weight_trainable"]]
    paths = [asp_canon_to_path(c) for c in canon]
    n_w = len(canon)

    layer.forward(inputs, training=False)      # build (inference: no state changes)
    assert layer.dtype == dtype
    if folder == "tf_legacy":
        assert layer.weight_names() == paths
        layer.set_weights([data[f"w{i}"] for i in range(n_w)])
    else:
        assert sorted(layer.weight_names()) == sorted(paths)
        layer.set_weights({p: data[f"w{i}"] for i, p in enumerate(paths)})
    for i, p in enumerate(paths):
        assert (p in layer.params) == trainable[i], p
    upstream = data["upstream"]
    state_before = {k: v.copy() for k, v in layer.state.items()}

    for mode, training in (("infer", False), ("train", True)):
        out = layer.forward(inputs, training=training, backprop=True)
        assert out.dtype == dtype
        _close(out, data[f"out_{mode}"], tol, f"out_{mode}")
        d_query, d_keys, d_len = layer.backward(upstream.astype(dtype))
        assert d_len is None                   # integer lengths have no gradient
        for g, n in ((d_query, "query"), (d_keys, "keys")):
            assert g.dtype == dtype
            _close(g, data[f"grad_{mode}_in_{n}"], tol, f"grad_{mode}_in_{n}")
        layer_grads = layer.grads
        for i, p in enumerate(paths):
            key = f"grad_{mode}_w{i}"
            if trainable[i]:
                # Keras 3 keeps Dice's alpha a float32 variable even in a float64 layer
                wtol = F32 if data[key].dtype == np.float32 else tol
                _close(layer_grads[p], data[key], wtol, f"{key} ({p})")
            else:
                assert key not in data

    state = layer.state
    checked = 0
    for i, p in enumerate(paths):
        if trainable[i]:
            continue
        recorded = data[f"w{i}_after_train"]
        what = f"w{i}_after_train ({p})"
        if legacy64:   # (no float64 tf_legacy case has moving statistics today; kept for symmetry)
            scale = float(np.max(np.abs(recorded)))
            _close(state[p], recorded, dict(rtol=0, atol=MOVING_LEGACY_REL * scale), what)
            batch_minus_before = (state[p] - state_before[p]) / (1.0 - 0.99)
            tf_keras_update = state_before[p] + TF_KERAS_DECAY * batch_minus_before
            _close(tf_keras_update, recorded, dict(rtol=0, atol=1e-12 * scale), what + " (float32 decay)")
        else:
            _close(state[p], recorded, moving_tol, what)
        checked += 1
    assert checked == len(state)
    if case["act"] == "dice":
        assert checked == 4                    # two Dice layers, mean and variance each


@pytest.mark.parametrize("folder", FOLDERS)
def test_golden_asp_empty_row(folder):
    """keys_length 0 (row 3): with weight normalization the softmax is uniform over all
    T positions (output = plain mean of all keys); without, the output is 0."""
    for name, wn in (("asp_wn1_sigmoid", True), ("asp_wn0_sigmoid", False)):
        data, _ = _load(folder, name)
        expected = data["in_keys"][3].mean(axis=0) if wn else np.zeros(data["in_keys"].shape[-1])
        np.testing.assert_allclose(data["out_infer"][3, 0], expected, rtol=1e-12, atol=1e-15)
        layer = AttentionSequencePoolingLayer((8, 4), weight_normalization=wn, dtype="float64")
        inputs = [data["in_query"], data["in_keys"], data["in_keys_length"]]
        layer.forward(inputs)
        layer.set_weights([data[f"w{i}"] for i in range(len(data["weight_canon"]))] if folder == "tf_legacy"
                          else {asp_canon_to_path(str(c)): data[f"w{i}"]
                                for i, c in enumerate(data["weight_canon"])})
        out = layer.forward(inputs)
        np.testing.assert_allclose(out[3, 0], expected, rtol=1e-12, atol=1e-15)
