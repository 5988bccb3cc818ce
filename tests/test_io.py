"""Model files: exact round trip, atomic writes, clear errors for damaged or foreign files."""
import json
import os

import numpy as np
import pytest

import npctr.io as npio
from npctr.io import save_model, load_model, FORMAT_VERSION
from npctr.models.base import Model

from toy_models import ToyDNNModel, ToyBagModel, toy_data, bag_data

DIMS = {"a": 3, "b": 2}


def trained(dtype="float64"):
    x, y = toy_data(80)
    model = ToyDNNModel(DIMS, hidden_units=(6, 4), use_bn=True, dropout_rate=0.2, dtype=dtype)
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)    # moving statistics move away from 0 / 1
    return model, x


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_predicts_exactly(tmp_path, dtype):
    model, x = trained(dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is ToyDNNModel and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_round_trip_embedding_model(tmp_path):
    x, y = bag_data()
    model = ToyBagModel()
    model.compile("adagrad", "binary_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "bag")
    assert os.path.exists(tmp_path / "bag")               # written exactly at the path given
    np.testing.assert_array_equal(load_model(tmp_path / "bag").predict(x), model.predict(x))


def test_file_contents_and_no_pickle(tmp_path):
    model, _ = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:
        names = set(data.files)
        assert names == {"__format__", "__npctr_version__", "__config__", *model.weight_names()}
        assert int(data["__format__"]) == FORMAT_VERSION
        meta = json.loads(str(data["__config__"]))
        assert all(data[k].dtype != object for k in data.files)
    assert meta == {"class": "ToyDNNModel", "config": json.loads(json.dumps(model.get_config()))}


def test_crash_mid_save_leaves_old_file_intact(tmp_path, monkeypatch):
    model, x = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    old_bytes = path.read_bytes()
    expected = model.predict(x)

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    model2, _ = trained()
    model2.set_weights([w * 0 for w in model2.get_weights()], order="tf_keras")
    monkeypatch.setattr(npio.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        model2.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["m.npz"]               # no temporary file left behind
    np.testing.assert_array_equal(load_model(path).predict(x), expected)


def test_truncated_file(tmp_path):
    model, _ = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 10, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable npctr model file|not an npctr model file"):
            load_model(path)


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("change,match", [
    (lambda a: a.pop("dnn/kernel0"), r"missing arrays \['dnn/kernel0'\]"),
    (lambda a: a.update(extra=np.zeros(2)), r"unexpected arrays \['extra'\]"),
    (lambda a: a.update({"dnn/kernel0": np.zeros((2, 2))}), r"dnn/kernel0: shape \(2, 2\), expected \(5, 6\)"),
    (lambda a: a.update({"dnn/bias0": a["dnn/bias0"].astype(np.float32)}), "dnn/bias0: dtype float32"),
    (lambda a: a.update(__config__=np.array("{not json")), "config"),
    (lambda a: a.update(__config__=np.array(json.dumps({"class": "Nope", "config": {}}))), "'Nope'.*not a registered"),
    (lambda a: a.update(__config__=np.array(json.dumps({"class": "ToyDNNModel", "config": {"bogus": 1}}))),
     "could not rebuild"),
    (lambda a: a.update(__format__=np.array(FORMAT_VERSION + 1)), "format version 2"),
    (lambda a: a.pop("__format__"), "not an npctr model file"),
])
def test_tampered_files_are_clear_errors(tmp_path, change, match):
    model, _ = trained()
    model.save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=match):
        load_model(tmp_path / "bad.npz")


def test_pickled_arrays_are_refused(tmp_path):
    model, _ = trained()
    model.save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "evil.npz",
             lambda a: a.update({"dnn/kernel0": np.array([{"x": 1}], dtype=object)}))
    with pytest.raises(ValueError, match="pickle"):
        load_model(tmp_path / "evil.npz")


def test_missing_file_and_unregistered_class(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.npz")

    class Unregistered(Model):
        pass

    with pytest.raises(ValueError, match="register_model"):
        save_model(Unregistered(), tmp_path / "u.npz")
    assert not os.listdir(tmp_path)
