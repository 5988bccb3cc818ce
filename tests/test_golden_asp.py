"""Parity of AttentionSequencePoolingLayer with DeepCTR 0.9.4 (golden vectors, ``asp_*`` cases).

Same procedure and tolerances as ``test_golden_core.py``, through its
``check_golden`` (the reasons are written there): known weights, one inference
call and one training call, outputs, the gradients w.r.t. query, keys and every
trainable weight (keys_length's must be None), and the moving statistics after
the training call.

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

from test_golden_core import GOLDEN, _load, canon_to_path, check_golden, load_golden_weights, FOLDER_CONVENTIONS

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
    layer = AttentionSequencePoolingLayer(tuple(case["hidden"]), att_activation=case["act"],
                                          weight_normalization=case["wn"], return_score=case["return_score"],
                                          dtype=np.dtype(meta["dtype"]).name,
                                          conventions=FOLDER_CONVENTIONS[folder])
    inputs = [data["in_query"], data["in_keys"], data["in_keys_length"]]
    assert data["in_keys_length"].reshape(-1).tolist() == case["keys_length"] == [6, 3, 1, 0]
    # keys_length is integer: its gradient must be None.
    checked = check_golden(layer, data, meta, folder, inputs, ["query", "keys", None], to_path=asp_canon_to_path)
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
        load_golden_weights(layer, data, folder, [asp_canon_to_path(str(c)) for c in data["weight_canon"]])
        out = layer.forward(inputs)
        np.testing.assert_allclose(out[3, 0], expected, rtol=1e-12, atol=1e-15)
