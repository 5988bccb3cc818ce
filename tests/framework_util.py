"""Helpers for the framework recordings in tests/data/frameworks/ (see its README).

Weights are loaded by the recorded ``npctr_path`` (transposed where ``npctr_transpose``
says, reshaped to npctr's shape: torch's 3-D Dice alpha ``(E, 1)`` -> ``(E,)``). This is a
test helper only; the public importer is ``npctr.interop``.
"""
import json
from pathlib import Path

import numpy as np

from npctr.training.losses import probability
from npctr.sparse import RowGrad
from test_frameworks_data import npctr_din

FRAMEWORKS = Path(__file__).parent / "data" / "frameworks"


def cases(kind, framework=None):
    """File names (relative to FRAMEWORKS) of the recorded cases of ``kind``."""
    index = json.loads((FRAMEWORKS / "_index.json").read_text())
    return [c["file"] for c in index["cases"]
            if c["kind"] == kind and (framework is None or c["framework"] == framework)]


def load(file):
    with np.load(FRAMEWORKS / file) as z:
        data = {k: z[k] for k in z.files}
    return data, json.loads(str(data["meta"]))


def build_din(meta):
    """npctr's DIN for a recording, with the recording's framework as conventions profile."""
    return npctr_din(meta, conventions=meta["framework"])


def feature_columns(meta):
    """A recording's feature columns as npctr's."""
    return npctr_din(meta).dnn_feature_columns


def mapping(data):
    """``[(framework name, npctr path, transpose)]`` for every weight npctr has."""
    return [(str(n), str(p), bool(t)) for n, p, t in
            zip(data["weight_names"], data["npctr_path"], data["npctr_transpose"]) if str(p)]


def to_npctr(value, transpose, shape):
    value = np.asarray(value)
    if transpose:
        value = value.T
    return value.reshape(shape)


def set_recorded_weights(model, data, prefix="w/", row=None):
    """Load every mapped weight (``row``: that row of a ``traj/`` array) into ``model``."""
    arrays = {**model.params, **model.state}
    values = {}
    for name, path, transpose in mapping(data):
        value = data[prefix + name]
        if row is not None:
            value = value[row]
        values[path] = to_npctr(value, transpose, arrays[path].shape)
    model.set_weights(values, strict=True)


def features(data, rows=None):
    x = {k[2:]: v for k, v in data.items() if k.startswith("x/")}
    if rows is not None:
        x = {k: v[rows] for k, v in x.items()}
    return x


def training_gradients(model, x, y):
    """One training-mode forward/backward as the trainer does it, no update.

    Returns ``(training-mode probabilities, total loss, data loss, reg loss, {path: dense gradient})``.
    """
    loss = getattr(model, "loss", None) or model._default_loss()
    y = np.asarray(y, dtype=model.dtype).reshape(-1, 1)
    z = model.forward_logits(x, training=True, backprop=True)
    p = probability(z)
    data_loss = loss.value(y, p)
    reg = model.regularization_loss()
    model.backward_logits(loss.logit_grad(y, z))
    model.add_regularization_grads()
    grads = {k: (g.to_dense() if isinstance(g, RowGrad) else np.asarray(g)) for k, g in model.grads.items()}
    return p, data_loss + reg, data_loss, reg, grads


def rel_error(actual, expected, scale=None):
    """Normwise ``max|a - b| / max|b|``; ``scale`` replaces ``max|b|`` when given and larger."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    denom = float(np.max(np.abs(expected), initial=0.0))
    if scale is not None:
        denom = max(denom, scale)
    diff = float(np.max(np.abs(actual - expected), initial=0.0))
    return diff / denom if denom > 0 else diff


def layer_of(path):
    return path.rsplit("/", 1)[0] if "/" in path else ""


def layer_scales(arrays):
    """``layer path -> max |array|`` over the arrays of that layer (an exact-zero gradient's scale)."""
    scales = {}
    for path, value in arrays.items():
        layer = layer_of(path)
        scales[layer] = max(scales.get(layer, 0.0), float(np.max(np.abs(value), initial=0.0)))
    return scales


def tolerance(dtype):
    return 1e-12 if np.dtype(dtype) == np.float64 else 1e-5
