"""Helpers for the DIEN recordings in tests/data/frameworks/dien/ (see its README.md and SEMANTICS.md).

npctr's DIEN is built from a recording's feature columns and constructor arguments, with the
recording's framework as its conventions profile, and loaded through the PUBLIC importers by the
framework's own weight names (``load_keras_weights`` / ``load_torch_state_dict``).
"""
import json
from pathlib import Path

import numpy as np

from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from npctr.interop import load_keras_weights, load_torch_state_dict, map_keras_names, map_torch_names
from npctr.models import DIEN

DATA = Path(__file__).parent / "data" / "frameworks" / "dien"
INDEX = json.loads((DATA / "_index.json").read_text())["cases"]
FILES = sorted(e["file"] for e in INDEX)
#: DeepCTR-Torch's DIEN defaults where they differ from DeepCTR's (the ``dflt`` cases rely on them)
TORCH_DEFAULTS = {"att_activation": "relu", "dnn_hidden_units": (256, 128)}


def load(file):
    with np.load(DATA / file) as z:
        data = {k: z[k] for k in z.files}
    return data, json.loads(str(data["meta"]))


def columns(meta):
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
    return cols


def build(meta, **kwargs):
    """npctr's DIEN for a recording: its columns, arguments (the framework's defaults for the
    rest) and its framework's conventions profile."""
    args = {k: v for k, v in meta["model"]["args"].items() if k not in ("dnn_feature_columns", "history_feature_list")}
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}
    if meta["framework"] == "torch":
        args = {**TORCH_DEFAULTS, **args}
    args.update(kwargs)
    args.setdefault("conventions", meta["framework"])
    return DIEN(columns(meta), meta["history_feature_list"], dtype=meta["dtype"], **args)


def names(data):
    return [str(n) for n in data["weight_names"]]


def recorded(data, prefix="w/", row=None):
    """``{framework name: array}`` of the recording (``row``: that row of a trajectory)."""
    out = {}
    for n in names(data):
        value = data[prefix + n]
        out[n] = value if row is None else value[row]
    return out


def load_recorded(model, meta, weights):
    """Load by the framework's names through the public importer."""
    if meta["framework"] == "torch":
        return load_torch_state_dict(model, weights)
    return load_keras_weights(model, weights)


def path_map(model, meta, weight_names):
    """``{framework name: npctr path}``."""
    if meta["framework"] == "torch":
        return map_torch_names(model, weight_names)
    return map_keras_names(model, weight_names)


def to_npctr(value, target_shape):
    """A framework array in npctr's layout: torch's ``(out, in)`` weights are transposed."""
    value = np.asarray(value)
    return value.T if value.shape != target_shape and value.T.shape == target_shape else value


def features(data, rows=None):
    x = {k[2:]: v for k, v in data.items() if k.startswith("x/")}
    return x if rows is None else {k: v[rows] for k, v in x.items()}
