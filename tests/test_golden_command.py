"""``python -m npctr golden`` and ``python -m npctr compare``."""
import json

import numpy as np
import pytest

import npctr
from npctr.__main__ import main as npctr_main
from npctr.interop import load_keras_weights, load_torch_state_dict
from npctr.interop.compare import compare_arrays
from npctr.interop.golden import build_from_config, golden_vectors, read_golden

from test_interop_keras import din_columns
from npctr.feature_column import feature_columns_to_config

DIN_CONFIG = {"dnn_feature_columns": feature_columns_to_config(din_columns()),
              "history_feature_list": ["item_id", "cate_id"], "dnn_hidden_units": [4, 3],
              "att_hidden_size": [6, 4], "dnn_use_bn": True}
CONFIGS = {
    "dnn": {"class": "DNN", "config": {"hidden_units": [5, 3], "activation": "dice", "use_bn": True}, "input_dim": 6},
    "bn": {"class": "BatchNormalization", "config": {}, "input_dim": 3},
    "dice": {"class": "Dice", "config": {}, "input_dim": 3},
    "prediction": {"class": "PredictionLayer", "config": {"task": "binary"}},
    "lau": {"class": "LocalActivationUnit", "config": {"hidden_units": [6, 4], "activation": "dice"}, "input_dim": 4},
    "asp": {"class": "AttentionSequencePoolingLayer",
            "config": {"att_hidden_units": [6, 4], "weight_normalization": True}},
    "asp_masked": {"class": "AttentionSequencePoolingLayer", "config": {"supports_masking": True}},
    "din": {"class": "DIN", "config": DIN_CONFIG},
    "din_torch": {"class": "DIN", "config": {**DIN_CONFIG, "att_activation": "Dice", "conventions": "torch"}},
    "dnn_model": {"class": "DNNModel", "config": {"dnn_feature_columns": DIN_CONFIG["dnn_feature_columns"],
                                                  "dnn_hidden_units": [4]}},
}


def run(*argv):
    return npctr_main(list(map(str, argv)))


def write_config(tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(CONFIGS[name]))
    return path


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_file_is_self_describing_and_compares_with_itself(name, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert run("golden", write_config(tmp_path, name), "-o", out, "--seed", 3, "--batch-size", 5) == 0
    with np.load(out, allow_pickle=False) as data:       # no pickles
        files = set(data.files)
        index = json.loads(str(data["__index__"]))
    assert index["format"] == "npctr-golden" and index["seed"] == 3 and index["batch_size"] == 5
    assert set(index["quantities"]) == files - {"__index__"}
    for key in ("upstream", "infer/output", "train/output", "loss/value"):
        assert key in files
    target = build_from_config(CONFIGS[name])
    assert {f"weight/{p}" for p in index["weights"]} <= files
    if target.state or index["class"] in ("DIN", "DNNModel") and "dnn_use_bn" in CONFIGS[name]["config"]:
        assert any(k.startswith("train/moving/") for k in files)
    assert run("compare", out, out) == 0
    assert "OK" in capsys.readouterr().out

    arrays, _ = read_golden(out)
    arrays["infer/output"] = arrays["infer/output"] * (1 + 1e-9)
    perturbed = tmp_path / "p.npz"
    np.savez(perturbed, **arrays)
    assert run("compare", perturbed, out) == 1
    assert "infer/output  [FAIL]" in capsys.readouterr().out


def test_golden_numbers_are_npctrs_own(tmp_path):
    arrays, index = golden_vectors(build_from_config(CONFIGS["din"]), seed=1, batch_size=6)
    model = build_from_config(CONFIGS["din"])
    model.set_weights({p: arrays[f"weight/{p}"] for p in model.weight_names()})
    x = {k[len("input/"):]: v for k, v in arrays.items() if k.startswith("input/") and k != "input/y"}
    np.testing.assert_array_equal(model.forward(x, training=False), arrays["infer/output"])
    # predict runs the Predictor (folded weights): forward's numbers to round-off (docs/inference.md)
    np.testing.assert_allclose(model.predict(x), arrays["infer/output"], rtol=1e-12, atol=0)
    model.forward(x, training=True)
    for p, v in model.state.items():
        np.testing.assert_array_equal(v, arrays[f"train/moving/{p}"])
    # the weights under the frameworks' names load back to the same npctr weights
    for prefix, loader in (("keras/", load_keras_weights), ("torch/", load_torch_state_dict)):
        fresh = build_from_config(CONFIGS["din"])
        # a file's torch/ names are read as DeepCTR-Torch's: a default-profile DIN needs the override
        loader(fresh, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)},
               check_conventions=False)
        for p in fresh.weight_names():
            np.testing.assert_array_equal(fresh._lookup(p), arrays[f"weight/{p}"])
    assert index["weights"]["dnn/kernel0"] == {"trainable": True, "keras": "dnn/kernel0",
                                               "torch": "dnn.linears.0.weight", "torch_layout": "linear"}
    # the loss: the profile's binary cross-entropy of the training-mode output, plus L2
    y = arrays["input/y"].reshape(-1, 1)
    np.testing.assert_allclose(model.compute_loss(x, y, training=True), arrays["loss/value"], rtol=1e-14)
    np.testing.assert_allclose(arrays["loss/grad_output"], model._default_loss().grad(y, arrays["train/output"]),
                               rtol=1e-14)


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    config = write_config(tmp_path, "lau")
    for out, seed in (("a.npz", 0), ("b.npz", 0), ("c.npz", 1)):
        assert run("golden", config, "-o", tmp_path / out, "--seed", seed, "--seq-len", 7) == 0
    # the same seed gives the same bits (issue 19: --rtol 0 is now a usage error, so compare arrays directly)
    same_a, same_b = read_golden(tmp_path / "a.npz")[0], read_golden(tmp_path / "b.npz")[0]
    assert same_a.keys() == same_b.keys()
    for key in same_a:
        np.testing.assert_array_equal(same_a[key], same_b[key])
    assert run("compare", tmp_path / "a.npz", tmp_path / "b.npz") == 0
    assert run("compare", tmp_path / "a.npz", tmp_path / "c.npz") == 1
    arrays, index = read_golden(tmp_path / "a.npz")
    assert arrays["input/keys"].shape == (4, 7, 4) and index["seq_len"] == 7


def test_float32_and_saved_models(tmp_path):
    config = write_config(tmp_path, "din")
    assert run("golden", config, "-o", tmp_path / "f32.npz", "--dtype", "float32") == 0
    arrays, index = read_golden(tmp_path / "f32.npz")
    assert index["dtype"] == "float32" and arrays["infer/output"].dtype == np.float32
    model = build_from_config(CONFIGS["din"])
    model.set_weights({p: np.full(model._lookup(p).shape, 0.5) for p in model.weight_names()})
    npctr.save_model(model, tmp_path / "din.npz")
    assert run("golden", tmp_path / "din.npz", "-o", tmp_path / "saved.npz") == 0
    arrays, index = read_golden(tmp_path / "saved.npz")
    assert not index["weights_randomized"]
    np.testing.assert_array_equal(arrays["weight/dnn/kernel0"], model._lookup("dnn/kernel0"))


def test_compare_folders_marks_exact_zeros_and_missing(tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    base = {"train/grad_weight/bias0": np.zeros(3), "train/grad_weight/kernel0": np.full((2, 3), 4.0),
            "out": np.array([1.0, 2.0])}
    np.savez(tmp_path / "a" / "x.npz", **{**base, "train/grad_weight/bias0": np.full(3, 1e-15)})
    np.savez(tmp_path / "b" / "x.npz", **base)
    assert run("compare", tmp_path / "a", tmp_path / "b") == 0
    out = capsys.readouterr().out
    assert "exact zero" in out and "2.50e-16" in out                  # 1e-15 judged at the group's 4.0
    np.savez(tmp_path / "b" / "y.npz", **base)
    assert run("compare", tmp_path / "a", tmp_path / "b") == 0            # a backend may do less
    assert "y.npz: only in B, not compared" in capsys.readouterr().out
    assert run("compare", tmp_path / "a", tmp_path / "b", "--all") == 1
    rows, ok, _ = compare_arrays({"out": np.ones(2)}, {"out": np.ones(2), "extra": np.ones(1)})
    assert ok and ("extra", None, None, "not in A, not compared") in rows
    rows, ok, _ = compare_arrays({"out": np.ones(2)}, {"out": np.ones(2), "extra": np.ones(1)}, require_all=True)
    assert not ok
    rows, ok, _ = compare_arrays({"out": np.ones(2), "new": np.ones(1)}, {"out": np.ones(2)})
    assert not ok and ("new", None, None, "only in A, FAIL") in rows


def test_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"class": "NoSuchLayer"}')
    assert run("golden", bad) == 2
    assert "unknown class 'NoSuchLayer'" in capsys.readouterr().err
    bad.write_text("not json")
    assert run("golden", bad) == 2
    assert "neither an npctr model file" in capsys.readouterr().err
    pickled = tmp_path / "p.npz"
    np.savez(pickled, x=np.array([object()], dtype=object))
    assert run("compare", pickled, pickled) == 2
    assert "pickled objects are refused" in capsys.readouterr().err
