"""Parity with DeepCTR 0.9.4's TensorFlow layers (golden vectors in tests/data/golden/).

Each case sets known weights, runs one inference call and one training call, and
compares outputs, input gradients, weight gradients and the moving statistics
after the training call with the recording (see tests/data/golden/README.md).

* ``tf_legacy/`` (tf.keras 2) is loaded with ``set_weights(list)`` in the
  recorded ``get_weights()`` order: this checks npctr's weight order against DeepCTR's.
* ``tf/`` (Keras 3, a different order) is loaded with ``set_weights(dict)``
  after mapping each neutral ``weight_canon`` name to npctr's path.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from npctr import DNN, Dice, LocalActivationUnit, PredictionLayer
from npctr.interop.golden import exact_zero_gradients

GOLDEN = Path(__file__).parent / "data" / "golden"
FOLDERS = ("tf_legacy", "tf")


def _cases():
    """Every recorded case of both folders but the asp_* ones (tests/test_golden_asp.py has those)."""
    out = []
    for folder in FOLDERS:
        index = json.loads((GOLDEN / folder / "_index.json").read_text())
        for case in index["cases"]:
            if not case["name"].startswith("asp_"):
                out.append(pytest.param(folder, case["name"], id=f"{folder}-{case['name']}"))
    return out


# --- tolerances ---------------------------------------------------------------------------
# float64 recordings: both sides compute the same formulas in float64, in a
# different summation order, so they agree to a few ulps times the condition of
# the expression; 1e-10 relative leaves ample room for that and nothing else.
# The atol catches entries that are zero up to cancellation (e.g. BN-in-training
# bias gradients, which are exactly 0 mathematically and ~1e-17 numerically).
F64 = dict(rtol=1e-10, atol=1e-12)
# float32 recordings (tf.keras's Dice hard-codes a float32 weight, so those cases
# were recorded in float32): npctr also runs in float32, and the two differ by
# float32 round-off (eps ~ 1.2e-7) accumulated through a few layers, batch-norm
# divisions and sums of up to ~50 terms: 1e-5 relative / 1e-6 absolute covers
# that; an actual formula difference would be orders of magnitude larger.
# The absolute part scales with the array's largest entry: an entry that is a sum
# of cancelling terms (e.g. a BN gamma gradient of 0.083 from 20 terms of size ~1,
# next to entries of size 8) carries the round-off of its terms, not of its value
# (seen: npctr float32 0.0833355, TF float32 0.0833334, exact 0.0833348).
F32 = dict(rtol=1e-5, atol=1e-6, scaled_atol=True)
# Moving statistics: tf.keras 2 computes the decay (1 - momentum) in float32 even in
# a float64 layer (float32(0.01) = 0.009999999776 instead of 0.01) and Keras 3 in
# the layer's dtype; npctr's "tf_keras" profile (the default, used for tf_legacy/)
# and its "keras3" profile (used for tf/) reproduce each, so both are held to 1e-12.
MOVING_EXACT_F64 = dict(rtol=1e-12, atol=1e-14)
#: the conventions profile each folder was recorded under
FOLDER_CONVENTIONS = {"tf_legacy": "tf_keras", "tf": "keras3"}


def _load(folder, name):
    with np.load(GOLDEN / folder / f"{name}.npz") as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["meta"]))
    return data, meta


def _build_layer(case, dtype, conventions):
    kind = case["kind"]
    if kind == "dnn":
        return DNN(tuple(case["hidden"]), activation=case["act"], use_bn=case["bn"],
                   output_activation=case["out_act"], dtype=dtype, conventions=conventions)
    if kind == "lau":
        return LocalActivationUnit(tuple(case["hidden"]), activation=case["act"], dtype=dtype,
                                   conventions=conventions)
    if kind == "pred":
        return PredictionLayer(case["task"], use_bias=case["use_bias"], dtype=dtype, conventions=conventions)
    if kind == "dice":
        return Dice(dtype=dtype, conventions=conventions)
    raise AssertionError(f"unknown case kind {kind}")


_CANON_PART = {"kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta",
               "moving_mean": "moving_mean", "moving_var": "moving_variance"}


def canon_to_path(canon):
    """Map a recording's neutral weight name to npctr's parameter path."""
    if canon == "pred.bias":
        return "global_bias"
    if canon.startswith("dnn."):
        return "dnn/" + canon_to_path(canon[len("dnn."):])
    head, attr = canon.rsplit(".", 1)
    if head == "out":                          # LAU's final projection
        return attr
    if head == "dice":                         # a standalone Dice
        return "dice_alpha" if attr == "alpha" else f"bn/{_CANON_PART[attr]}"
    m = re.fullmatch(r"(dense|bn|dice)(\d+)", head)
    assert m, canon
    kind, i = m.groups()
    if kind == "dense":
        return f"{attr}{i}"                    # dense0.kernel -> kernel0
    if kind == "bn":
        return f"bn{i}/{_CANON_PART[attr]}"
    return f"activation{i}/dice_alpha" if attr == "alpha" else f"activation{i}/bn/{_CANON_PART[attr]}"


def _inputs(data, case):
    if case["kind"] == "lau":
        return [data["in_query"], data["in_keys"]], ["query", "keys"]
    return data["in_x"], ["x"]


def _close(actual, expected, tol, what, group_scale=None):
    """``group_scale``: for a gradient that is zero in exact arithmetic, the largest recorded gradient
    of its mode, which its round-off follows (the round-off-zero rule of ``npctr.testing``)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs recorded {expected.shape}"
    tol = dict(tol)
    if tol.pop("scaled_atol", False):
        own = float(np.max(np.abs(expected), initial=0.0))
        tol["atol"] *= max(1.0, own if group_scale is None else max(own, group_scale))
    np.testing.assert_allclose(actual, expected, err_msg=what, **tol)


def load_golden_weights(layer, data, folder, paths):
    """Set the recorded weights on a built ``layer``, checking npctr's names against ``paths``."""
    if folder == "tf_legacy":
        # DeepCTR's get_weights() order must be npctr's, name for name
        assert layer.weight_names() == paths
        layer.set_weights([data[f"w{i}"] for i in range(len(paths))], order="tf_keras")
    else:
        assert sorted(layer.weight_names()) == sorted(paths)
        layer.set_weights({p: data[f"w{i}"] for i, p in enumerate(paths)})


def check_golden(layer, data, meta, folder, inputs, input_names, to_path=canon_to_path):
    """The golden comparison of one recorded case on a fresh (unbuilt) ``layer``.

    ``input_names``: the recording's name of each input's gradient (``grad_<mode>_in_<name>``),
    in ``backward``'s order; ``None`` marks an integer input, whose gradient must be None.
    ``to_path`` maps the recording's neutral weight names to npctr's paths.
    Returns the number of moving statistics checked (all of ``layer.state``).
    """
    dtype = np.dtype(meta["dtype"])
    tol = F64 if dtype == np.float64 else F32
    moving_tol = F32 if dtype == np.float32 else MOVING_EXACT_F64
    assert layer.conventions.name == FOLDER_CONVENTIONS[folder]

    canon = [str(c) for c in data["weight_canon"]]
    trainable = [bool(t) for t in data["weight_trainable"]]
    paths = [to_path(c) for c in canon]

    layer.forward(inputs, training=False)      # build (inference: no state changes)
    assert layer.dtype == dtype
    load_golden_weights(layer, data, folder, paths)
    for i, p in enumerate(paths):
        assert (p in layer.params) == trainable[i], p
    upstream = data["upstream"]

    for mode, training in (("infer", False), ("train", True)):
        out = layer.forward(inputs, training=training, backprop=True)
        assert out.dtype == dtype
        _close(out, data[f"out_{mode}"], tol, f"out_{mode}")
        grads = layer.backward(upstream.astype(dtype))
        if not isinstance(grads, list):
            grads = [grads]
        assert len(grads) == len(input_names), (len(grads), input_names)
        for g, n in zip(grads, input_names):
            if n is None:
                assert g is None                   # integer inputs (ids, lengths) have no gradient
                continue
            assert g.dtype == dtype
            _close(g, data[f"grad_{mode}_in_{n}"], tol, f"grad_{mode}_in_{n}")
        layer_grads = layer.grads
        zeros = exact_zero_gradients(layer, training)
        scale = max((float(np.max(np.abs(data[f"grad_{mode}_w{i}"]))) for i in range(len(paths)) if trainable[i]),
                    default=0.0)
        for i, p in enumerate(paths):
            key = f"grad_{mode}_w{i}"
            if trainable[i]:
                # Keras 3 keeps Dice's alpha a float32 variable even in a float64
                # layer, so its recorded gradient is rounded to float32
                wtol = F32 if data[key].dtype == np.float32 else tol
                _close(layer_grads[p], data[key], wtol, f"{key} ({p})", scale if p in zeros else None)
            else:
                assert key not in data

    # moving statistics after exactly one training-mode call
    state = layer.state
    checked = 0
    for i, p in enumerate(paths):
        if trainable[i]:
            continue
        recorded = data[f"w{i}_after_train"]
        what = f"w{i}_after_train ({p})"
        _close(state[p], recorded, moving_tol, what)
        checked += 1
    assert checked == len(state)
    return checked


@pytest.mark.parametrize("folder,name", _cases())
def test_golden(folder, name):
    data, meta = _load(folder, name)
    case = meta["case"]
    inputs, input_names = _inputs(data, case)
    layer = _build_layer(case, np.dtype(meta["dtype"]).name, FOLDER_CONVENTIONS[folder])
    check_golden(layer, data, meta, folder, inputs, input_names)


def test_canon_mapping():
    assert canon_to_path("dense1.kernel") == "kernel1"
    assert canon_to_path("dense0.bias") == "bias0"
    assert canon_to_path("bn1.moving_var") == "bn1/moving_variance"
    assert canon_to_path("dice0.alpha") == "activation0/dice_alpha"
    assert canon_to_path("dice1.moving_mean") == "activation1/bn/moving_mean"
    assert canon_to_path("dnn.dice0.moving_var") == "dnn/activation0/bn/moving_variance"
    assert canon_to_path("out.kernel") == "kernel"
    assert canon_to_path("dice.alpha") == "dice_alpha"
    assert canon_to_path("dice.moving_mean") == "bn/moving_mean"
    assert canon_to_path("pred.bias") == "global_bias"
