"""The DIEN framework recordings in tests/data/frameworks/dien/ are complete, loadable and self-consistent.

The recordings (DeepCTR 0.9.4 on tf.keras 2 and DeepCTR-Torch 0.3.0; see the folder's README.md and
SEMANTICS.md) are what npctr's DIEN will be compared against. These tests check the files themselves:
every case of the matrix exists for both frameworks, the meta parses, every weight has an initial value, a
gradient or a post-training buffer as its kind says, trajectories and intermediates have their shapes, the loss
parts add up, the recorded finite-difference check passed, the inputs are the same in every file, and the
facts the recordings document hold in the arrays (tf's untracked second-GRU variables never move in training,
torch's tied AUGRU biases are one array). The last test runs tools/check_dien_semantics.py: the equations of
SEMANTICS.md, written in NumPy, reproduce every recorded forward quantity.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "frameworks" / "dien"
INDEX = json.loads((DATA / "_index.json").read_text())["cases"]
FRAMEWORKS = ("tf_keras", "torch")
GRU_TYPES = ("GRU", "AIGRU", "AGRU", "AUGRU")
T, B, STEPS, H = 6, 16, 8, 8


def _load(entry):
    z = np.load(DATA / entry["file"])
    return z, json.loads(str(z["meta"]))


def _expected_cases():
    """(setting, gru_type, use_negsampling, dtype, optimizers) as tools/dien_common.py: cases() records them."""
    out = [("sig", g, n, d, ("sgd", "adam") if d == "float64" else ("adam",))
           for d in ("float64", "float32") for g in GRU_TYPES for n in (False, True)]
    out += [("dflt", g, False, "float64", ("adam",)) for g in GRU_TYPES]
    out += [("dflt", "AUGRU", True, "float64", ("adam",)), ("dflt", "AUGRU", True, "float32", ("adam",))]
    return out


def test_index_lists_every_file_and_the_whole_case_matrix():
    listed = {e["file"] for e in INDEX}
    present = {f"{p.parent.name}/{p.name}" for p in DATA.glob("*/*.npz")}
    assert listed == present
    for fw in FRAMEWORKS:
        got = {(e["setting"], e["gru_type"], e["use_negsampling"], e["dtype"]): e for e in INDEX
               if e["framework"] == fw}
        want = _expected_cases()
        assert set(got) == {c[:4] for c in want}, fw
        for (setting, gru, neg, dtype), e in got.items():
            # only DeepCTR-TF needs the auxiliary-loss patch, exactly where it cannot run unpatched
            assert e["aux_patched"] == (fw == "tf_keras" and neg and gru != "AUGRU")
            assert e["kind"] == "dien" and e["file"] == f"{fw}/{e['case']}.npz"
            assert ("_auxpatch_" in e["case"]) == e["aux_patched"]


ENTRIES = sorted(INDEX, key=lambda e: e["file"])


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_case_is_complete_and_self_consistent(entry):
    z, meta = _load(entry)
    for key in ("framework", "versions", "dtype", "kind", "case", "setting", "gru_type", "use_negsampling",
                "aux_patched", "model", "feature_columns", "history_feature_list", "seed", "batch_size", "steps",
                "traj_steps", "alpha", "patches", "optimizers", "order", "mid"):
        assert key in meta, key
    assert (meta["framework"], meta["dtype"], meta["case"], meta["gru_type"]) == \
        (entry["framework"], entry["dtype"], entry["case"], entry["gru_type"])
    assert meta["batch_size"] == B and meta["steps"] == STEPS
    dtype = np.dtype(meta["dtype"])
    neg = meta["use_negsampling"]
    names = [str(n) for n in z["weight_names"]]
    trainable, tracked, tied = z["trainable"], z["tracked"], [str(t) for t in z["tied_to"]]
    assert len(set(names)) == len(names) == len(trainable) == len(tracked) == len(tied)
    n_traj = len(meta["traj_steps"])
    for n, tr, tk, tie in zip(names, trainable, tracked, tied):
        w = z[f"w/{n}"]
        assert w.dtype == dtype and w.size > 0 and np.all(np.isfinite(w)), n
        assert (f"grad/{n}" in z.files) == bool(tr), n
        assert (f"after_train/{n}" in z.files) == (not tr), n
        if tr:
            assert z[f"grad/{n}"].shape == w.shape and np.all(np.isfinite(z[f"grad/{n}"]))
        for opt in meta["optimizers"]:
            traj = z[f"traj_{opt}/{n}"]
            assert traj.shape == (n_traj,) + w.shape and np.all(np.isfinite(traj)), (opt, n)
        if tie:
            # one tensor under two names: same value, gradient and trajectory
            assert tie in names and meta["framework"] == "torch"
            np.testing.assert_array_equal(w, z[f"w/{tie}"])
            np.testing.assert_array_equal(z[f"grad/{n}"], z[f"grad/{tie}"])
        if tr and not tk:
            # DeepCTR-TF's untracked AGRU/AUGRU variables: fit never changes them
            assert meta["framework"] == "tf_keras" and meta["gru_type"] in ("AGRU", "AUGRU")
            assert n.startswith("gru2/")
            for opt in meta["optimizers"]:
                assert np.array_equal(z[f"traj_{opt}/{n}"], np.stack([w] * n_traj)), (opt, n)
    untracked = [n for n, tk in zip(names, tracked) if not tk]
    if meta["framework"] == "tf_keras" and meta["gru_type"] in ("AGRU", "AUGRU"):
        assert sorted(untracked) == sorted(f"gru2/{p}:0" for p in
                                           ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"))
    else:
        assert untracked == []
    if meta["framework"] == "torch" and meta["gru_type"] == "AUGRU":
        assert tied.count("interest_evolution.interest_evolution.rnn.bias_ih") == 1
    # inputs: 128 rows, the lengths every batch must contain, neg histories only with negative sampling
    x = {k[2:]: z[k] for k in z.files if k.startswith("x/")}
    want = {"item_id", "cate_id", "pay_score", "hist_item_id", "hist_cate_id", "seq_length"}
    assert set(x) == (want | {"neg_hist_item_id", "neg_hist_cate_id"} if neg else want)
    L = x["seq_length"]
    assert L.shape == (B * STEPS,) and L.min() == 0 and L.max() == T
    for k in range(STEPS):
        assert {0, 1, T} <= set(L[k * B:(k + 1) * B].tolist())
    for name, v in x.items():
        assert v.shape == ((B * STEPS, T) if "hist" in name else (B * STEPS,)), name
    assert set(np.unique(z["y"])) == {0.0, 1.0} and z["y"].shape == (B * STEPS,)
    # outputs, losses
    for k in ("out_infer", "out_train"):
        assert z[k].shape == (B, 1) and np.all((z[k] > 0) & (z[k] < 1))
    alpha = meta["alpha"]
    parts = float(z["data_loss"]) + float(z["reg_loss"]) + float(z["aux_term"])
    # torch's total is float32 (a float32 accumulator), tf's is exact
    rtol = 1e-12 if (meta["framework"] == "tf_keras" and meta["dtype"] == "float64") else 1e-6
    np.testing.assert_allclose(float(z["loss"]), parts, rtol=rtol)
    np.testing.assert_allclose(float(z["aux_term"]), alpha * float(z["aux_loss"]), rtol=1e-12 if
                               meta["dtype"] == "float64" else 1e-6)
    if neg:
        assert float(z["aux_loss"]) > 0
    else:
        assert float(z["aux_loss"]) == 0 and float(z["aux_term"]) == 0
    for opt in meta["optimizers"]:
        assert z[f"traj_{opt}_loss"].shape == (STEPS,) and np.all(np.isfinite(z[f"traj_{opt}_loss"]))
    # intermediates
    att_shape = (B, 1, H) if meta["gru_type"] == "GRU" else (B, 1, T)
    evolved_shape = (B, T, H) if (meta["gru_type"] == "GRU" and meta["framework"] == "tf_keras") else (B, 1, H)
    assert z["mid/interests"].shape == (B, T, H)
    assert z["mid/attention"].shape == att_shape
    assert z["mid/evolved"].shape == evolved_shape
    # the recorder's finite-difference check of its own gradients (float64)
    if meta["dtype"] == "float64":
        fd = meta["fd_check"]
        assert fd["max_err"] <= 1e-6
        checked = set(fd["per_weight"])
        assert checked == {n for n, tr, tie in zip(names, trainable, tied) if tr and not tie}
    else:
        assert meta["fd_check"] is None


def test_every_file_has_the_same_inputs():
    """One set of inputs (seed 2026) for every case of both frameworks; negatives only where used."""
    ref = None
    for e in ENTRIES:
        z, _ = _load(e)
        x = {k: z[k] for k in z.files if k.startswith("x/") and "neg_hist" not in k}
        x["y"] = z["y"].astype(np.float64)
        x["x/pay_score"] = x["x/pay_score"].astype(np.float32)      # float32 files store it rounded
        if ref is None:
            ref = x
            continue
        assert x.keys() == ref.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], ref[k], err_msg=f"{e['file']} {k}")


def test_padding_ids_are_garbage_in_some_rows():
    """Rows 0, 4, 5 of every batch carry non-zero ids past their length (frameworks must mask by length)."""
    z, _ = _load(ENTRIES[0])
    L, hist = z["x/seq_length"], z["x/hist_item_id"]
    past = np.arange(T)[None, :] >= L[:, None]
    garbage_rows = np.unique(np.nonzero(past & (hist != 0))[0] % B)
    assert set(garbage_rows.tolist()) <= {0, 4, 5} and 0 in garbage_rows
    others = np.array([r % B not in (0, 4, 5) for r in range(len(L))])
    assert np.all(hist[others][past[others]] == 0)


def test_facts_files():
    tf = json.loads((DATA / "tf_keras" / "facts.json").read_text())
    for key, res in tf["leave_one_out"].items():
        if key.startswith("none"):
            assert res == {"float32": "ok", "float64": "ok"}
        elif key in ("gru_dtype", "aux_dtype", "dice_dtype"):
            assert res["float32"] == "ok" and res["float64"] != "ok", key
        else:
            assert res["float32"] != "ok" and res["float64"] != "ok", key
    for gru in ("GRU", "AIGRU", "AGRU"):
        assert "NoneType" in tf["negsampling_without_aux_patch"][gru]
    assert tf["embedding_tables"]["AUGRU_neg"][0].startswith("sparse_seq_emb_neg_hist_item_id")
    assert tf["default_args"]["att_activation"] == "'dice'"
    th = json.loads((DATA / "torch" / "facts.json").read_text())
    assert th["augru_bias_tie"]["bias_ih_is_bias_hh"] is True
    assert th["l2_reg_dnn_registered"] is False
    assert th["default_args"]["att_activation"] == "'relu'"
    assert th["all_rows_length_0"].startswith("ValueError")


def test_written_semantics_reproduce_every_recording():
    """tools/check_dien_semantics.py: SEMANTICS.md's equations in NumPy vs every recorded forward quantity."""
    script = Path(__file__).parent.parent / "tools" / "check_dien_semantics.py"
    r = subprocess.run([sys.executable, str(script), "--data", str(DATA)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count(" ok\n") == len(INDEX)
