"""The framework recordings in tests/data/frameworks/ are complete and loadable; a first parity smoke check.

The recordings (DeepCTR on tf.keras 2 and Keras 3, DeepCTR-Torch; see the folder's README) are what the
parity tests compare npctr against. These tests check the files themselves: every case the index lists
exists, its JSON meta parses, every weight has an initial value of a plausible shape, gradients and buffers
are where the kind says, trajectories have 9 rows, and the frameworks' recordings of one case start from
the same weights and inputs. The smoke check: npctr's default DIN (tf_keras conventions) with the recorded
weights reproduces the recorded DIN outputs in inference mode (tf_keras and Keras 3, and DeepCTR-Torch's
sigmoid DIN) to 1e-12 relative.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from npctr.models import DIN

DATA = Path(__file__).parent / "data" / "frameworks"
INDEX = json.loads((DATA / "_index.json").read_text())["cases"]
FRAMEWORKS = ("tf_keras", "keras3", "torch")
KINDS = ("din", "train", "layer")


def _load(entry):
    z = np.load(DATA / entry["file"])
    return z, json.loads(str(z["meta"]))


def _ids(entries):
    return [e["file"] for e in entries]


def test_index_lists_every_file_and_only_existing_ones():
    listed = {e["file"] for e in INDEX}
    present = {f"{p.parent.name}/{p.name}" for p in DATA.glob("*/*.npz")}
    assert listed == present
    assert {e["framework"] for e in INDEX} == set(FRAMEWORKS)
    for e in INDEX:
        assert e["kind"] in KINDS and e["dtype"] in ("float64", "float32")
        assert e["file"] == f"{e['framework']}/{e['case']}.npz"


@pytest.mark.parametrize("entry", INDEX, ids=_ids(INDEX))
def test_case_is_self_consistent(entry):
    z, meta = _load(entry)
    for key in ("framework", "kind", "dtype", "case", "versions", "model", "seed", "patches"):
        assert key in meta, key
    assert (meta["framework"], meta["kind"], meta["dtype"], meta["case"]) == \
        (entry["framework"], entry["kind"], entry["dtype"], entry["case"])
    names = [str(n) for n in z["weight_names"]]
    paths = [str(p) for p in z["npctr_path"]]
    transpose = z["npctr_transpose"]
    trainable = z["trainable"]
    assert len(set(names)) == len(names)
    assert len(paths) == len(names) == len(transpose) == len(trainable)
    assert len({p for p in paths if p}) == len([p for p in paths if p]), "two weights map to one npctr path"
    dtype = np.dtype(meta["dtype"])
    for n, p, t, tr in zip(names, paths, transpose, trainable):
        w = z[f"w/{n}"]
        if p == "":
            assert n.endswith("num_batches_tracked"), n
            continue
        assert w.dtype == dtype, (n, w.dtype)
        assert np.all(np.isfinite(w)) and w.size > 0
        assert not t or w.ndim == 2, n
        if meta["kind"] == "din":
            assert (f"grad/{n}" in z.files) == bool(tr), n
            assert (f"after_train/{n}" in z.files) == (not tr), n
            if tr:
                assert z[f"grad/{n}"].shape == w.shape
        elif meta["kind"] == "train":
            traj = z[f"traj/{n}"]
            assert traj.shape == (meta["steps"] + 1,) + w.shape == (9,) + w.shape
            np.testing.assert_array_equal(traj[0], w)
        else:
            for mode in ("infer", "train"):
                if tr:
                    assert z[f"grad_{mode}/{n}"].shape == w.shape
    if meta["kind"] in ("din", "train"):
        n_rows = len(z["y"])
        assert set(np.unique(z["y"])) == {0.0, 1.0}
        for f in meta["feature_columns"]:
            x = z[f"x/{f['name']}"]
            assert x.shape[0] == n_rows and x.ndim == (2 if f["type"] == "VarLenSparseFeat" else 1)
        assert n_rows == (16 if meta["kind"] == "din" else 128)
    if meta["kind"] == "din":
        for k in ("out_infer", "out_train"):
            # float32 probabilities may round to exactly 1 (one sample's logit is ~19.6 on purpose)
            assert z[k].shape == (16, 1) and np.all((z[k] > 0) & (z[k] <= 1))
        np.testing.assert_allclose(float(z["loss"]), float(z["data_loss"]) + float(z["reg_loss"]), rtol=1e-6)
    if meta["kind"] == "train":
        assert z["traj_loss"].shape == (8,) and np.all(np.isfinite(z["traj_loss"]))
        assert meta["optimizer"]["flavour"] in ("keras", "keras_legacy", "torch")


def _same_case_groups():
    """Cases recorded by more than one framework (same case name): [(case, [entries])]."""
    by_case = {}
    for e in INDEX:
        key = e["case"].replace("_keras_legacy_", "_X_").replace("_keras_", "_X_").replace("_torch_", "_X_")
        by_case.setdefault(key, []).append(e)
    return [(k, v) for k, v in sorted(by_case.items()) if len(v) > 1]


GROUPS = _same_case_groups()


@pytest.mark.parametrize("case,entries", GROUPS, ids=[g[0] for g in GROUPS])
def test_frameworks_start_from_the_same_weights_and_inputs(case, entries):
    """The README's promise: one initial value per npctr path, shared by every framework's recording."""
    first = None
    for e in entries:
        z, meta = _load(e)
        weights = {p: w.reshape(-1) for p, w in recorded_weights(z).items()}
        inputs = {k: z[k] for k in z.files if k.startswith("x/")}
        if first is None:
            first = (weights, inputs, z["y"])
            continue
        common = set(weights) & set(first[0])
        assert len(common) >= 10
        for p in common:
            np.testing.assert_array_equal(weights[p], first[0][p], err_msg=f"{e['file']} {p}")
        assert inputs.keys() == first[1].keys()
        for k in inputs:
            np.testing.assert_array_equal(inputs[k], first[1][k])
        np.testing.assert_array_equal(z["y"], first[2])


# -- parity smoke check ---------------------------------------------------------------------------
def npctr_din(meta, **kwargs):
    """npctr's DIN built from a recording's feature columns and constructor arguments
    (``kwargs``, e.g. ``conventions=``, are passed on to ``DIN``)."""
    cols = []
    for f in meta["feature_columns"]:
        if f["type"] == "SparseFeat":
            cols.append(SparseFeat(f["name"], f["vocabulary_size"], f["embedding_dim"],
                                   embedding_name=f["embedding_name"]))
        elif f["type"] == "DenseFeat":
            cols.append(DenseFeat(f["name"], f["dimension"]))
        else:
            cols.append(VarLenSparseFeat(SparseFeat(f["name"], f["vocabulary_size"], f["embedding_dim"],
                                                    embedding_name=f["embedding_name"]),
                                         maxlen=f["maxlen"], combiner=f["combiner"], length_name=f["length_name"]))
    args = {k: v for k, v in meta["model"]["args"].items() if k not in ("dnn_feature_columns", "history_feature_list")}
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}
    return DIN(cols, meta["history_feature_list"], dtype=meta["dtype"], **args, **kwargs)


def recorded_weights(z):
    """{npctr path: array} of a recording (transposed where flagged)."""
    out = {}
    for n, p, t in zip(z["weight_names"], z["npctr_path"], z["npctr_transpose"]):
        if str(p):
            w = z[f"w/{n}"]
            out[str(p)] = w.T if t else w
    return out


# npctr's default conventions are tf.keras 2's; Keras 3's DIN forward is the same math (its outputs equal
# tf.keras's bit for bit here), and DeepCTR-Torch's sigmoid DIN without BN/Dice is too on these inputs
# (history ids are non-zero exactly for t < seq_length, so torch's length mask equals TF's id mask).
SMOKE = [e for e in INDEX if e["kind"] == "din" and e["dtype"] == "float64"
         and (e["framework"] in ("tf_keras", "keras3") or e["case"].startswith("din_sig_"))]


@pytest.mark.parametrize("entry", SMOKE, ids=_ids(SMOKE))
def test_npctr_default_din_reproduces_recorded_inference(entry):
    z, meta = _load(entry)
    model = npctr_din(meta)
    model.set_weights(recorded_weights(z))
    x = {k[2:]: z[k] for k in z.files if k.startswith("x/")}
    out = model.forward(x, training=False)
    ref = z["out_infer"]
    assert np.max(np.abs(out - ref)) <= 1e-12 * np.max(np.abs(ref))
