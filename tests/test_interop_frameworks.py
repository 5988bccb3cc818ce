"""The importers against the framework recordings of tests/data/frameworks (DeepCTR on tf.keras 2
and Keras 3, DeepCTR-Torch): each recorded DIN's weights are loaded by their framework names,
with ``load_keras_weights`` / ``load_torch_state_dict``, into an npctr DIN built with that
framework's conventions. The importer's mapping must reproduce the recording's ``npctr_path``
column (an independent cross-check: the recorder mapped by hand), and the model the recorded
outputs in both modes and the moving statistics after one training call.
"""
import numpy as np
import pytest

from npctr.interop import keras_spec, load_keras_weights, load_torch_state_dict, map_keras_names, torch_spec

from framework_util import layer_of, layer_scales, rel_error, training_gradients
from test_frameworks_data import INDEX, _ids, _load, npctr_din
from test_interop_keras import normwise

DIN_CASES = [e for e in INDEX if e["kind"] == "din"]


def _model(meta):
    """npctr's DIN with the recording framework's profile."""
    model = npctr_din(meta)
    config = model.get_config()
    config["conventions"] = meta["framework"]
    return type(model).from_config(config)


@pytest.mark.parametrize("entry", DIN_CASES, ids=_ids(DIN_CASES))
def test_recorded_din_imports_by_name(entry):
    z, meta = _load(entry)
    framework = meta["framework"]
    names = [str(n) for n in z["weight_names"]]
    recorded_paths = [str(p) for p in z["npctr_path"]]
    source = {n: z[f"w/{n}"] for n in names}
    model = _model(meta)
    if framework == "torch":
        loaded = load_torch_state_dict(model, source)
        spec = {name: path for path, (name, _) in torch_spec(model).items()}
        mapped = [spec.get(n, "") for n in names]
    else:
        loaded = load_keras_weights(model, source)
        assert len(keras_spec(model)) == len(loaded)
        mapped = [p or "" for p in map_keras_names(model, names).values()]
    assert mapped == recorded_paths
    assert sorted(loaded) == sorted(model.weight_names())
    for n, p, t in zip(names, recorded_paths, z["npctr_transpose"]):
        if p:
            w = z[f"w/{n}"]
            target = model._lookup(p)
            np.testing.assert_array_equal(target, (w.T if t else w).reshape(target.shape).astype(target.dtype))



@pytest.mark.parametrize("entry", DIN_CASES, ids=_ids(DIN_CASES))
def test_imported_din_reproduces_the_recording(entry):
    z, meta = _load(entry)
    model = _model(meta)
    names = [str(n) for n in z["weight_names"]]
    source = {n: z[f"w/{n}"] for n in names}
    if meta["framework"] == "torch":
        load_torch_state_dict(model, source)
    else:
        load_keras_weights(model, source)
    recorded_paths = [str(p) for p in z["npctr_path"]]
    rtol = 1e-12 if meta["dtype"] == "float64" else 1e-5
    x = {k[2:]: z[k] for k in z.files if k.startswith("x/")}
    assert normwise(model.forward(x, training=False), z["out_infer"]) <= rtol
    assert normwise(model.forward(x, training=True), z["out_train"]) <= rtol
    for n, p in zip(names, recorded_paths):
        if p and p in model.state:
            assert normwise(model.state[p], z[f"after_train/{n}"]) <= rtol, p

    # the recorded gradients of the framework's loss, matched to npctr's by the importer's names
    model = _model(meta)
    (load_torch_state_dict if meta["framework"] == "torch" else load_keras_weights)(model, source)
    _, _, _, _, grads = training_gradients(model, x, z["y"])
    if meta["framework"] == "torch":
        path_of = {name: path for path, (name, _) in torch_spec(model).items()}
        layouts = {path: layout for path, (_, layout) in torch_spec(model).items()}
    else:
        path_of, layouts = map_keras_names(model, names), {}
    recorded = {}
    for n in names:
        if f"grad/{n}" in z.files:
            path = path_of[n]
            g = z[f"grad/{n}"]
            recorded[path] = (g.T if layouts.get(path) == "linear" else g).reshape(grads[path].shape)
    assert sorted(recorded) == sorted(model.params)
    scales = layer_scales(recorded)
    for path, expected in recorded.items():
        err = rel_error(grads[path], expected)
        if np.max(np.abs(expected)) <= 1e3 * np.finfo(meta["dtype"]).eps * scales[layer_of(path)]:
            err = rel_error(grads[path], expected, scale=scales[layer_of(path)])   # an exact-zero gradient
        assert err <= rtol, (path, err)
