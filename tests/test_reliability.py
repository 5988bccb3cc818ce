"""Issue 9's defects: a failed step damages nothing, bad input is refused, files and loading are safe."""
import os
import signal

import numpy as np
import pytest

from npctr.datasets import make_din_data
from npctr.feature_column import DenseFeat, register_transform
from npctr.io import load_model
from npctr.models import DIN
from npctr.models.base import NonFiniteLossError
from npctr.training import Adam

from toy_models import ToyDNNModel, toy_data


def small_din(**kw):
    x, y, columns, history = make_din_data(64, n_users=10, n_items=30, n_cates=6, maxlen=5, seed=3)
    kw = {"dnn_hidden_units": (8, 4), "att_hidden_size": (6, 4), "dnn_use_bn": True,
          "dnn_dropout": 0.1, **kw}
    return DIN(columns, history, **kw), x, y


def everything(model):
    """Every array a step may change: weights, moving statistics, generators, optimizer state."""
    rngs = {p: repr(layer._rng.bit_generator.state) for p, layer in model.sublayers()
            if getattr(layer, "_rng", None) is not None}
    return ({k: v.copy() for k, v in model.params.items()}, {k: v.copy() for k, v in model.state.items()},
            {k: np.copy(v) for k, v in model.optimizer.state().items()}, rngs)


def assert_same(a, b):
    for da, db in zip(a[:3], b[:3]):
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)
    assert a[3] == b[3]


def compiled_din():
    model, x, y = small_din()
    model.compile(Adam(0.01), "binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)      # slots exist, statistics moved
    return model, x, y


# -- 1. a failed step leaves everything as before ------------------------------------------------------
def test_nan_batch_leaves_moving_statistics_and_weights_untouched():
    model, x, y = compiled_din()
    before = everything(model)
    clean = model.predict(x)
    bad = {k: v.copy() for k, v in x.items()}
    bad["pay_score"] = bad["pay_score"].astype(np.float64)
    bad["pay_score"][20] = np.nan
    with pytest.raises(NonFiniteLossError, match="batch 2"):
        model.fit(bad, y, batch_size=16, epochs=1, shuffle=False, verbose=0, check_finite=False)
    # batch 1 was applied; rebuild the expectation: a fresh model trained on batch 1 only
    ref, _, _ = compiled_din()
    ref.fit({k: v[:16] for k, v in bad.items()}, y[:16], batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert_same(everything(model), everything(ref))
    assert np.isfinite(model.predict(x)).all()
    # a rejected first batch changes nothing at all
    model2, _, _ = compiled_din()
    with pytest.raises(NonFiniteLossError):
        model2.train_on_batch({k: v[16:32] for k, v in bad.items()}, y[16:32], check_finite=False)
    assert_same(everything(model2), before)
    np.testing.assert_array_equal(model2.predict(x), clean)


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_exception_inside_the_step_rolls_back(where, monkeypatch):
    model, x, y = compiled_din()
    before = everything(model)
    layer = model._layers["dnn"]
    original = getattr(layer, where)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        original(*args, **kwargs)              # the forward has moved the statistics by now
        raise KeyboardInterrupt

    monkeypatch.setattr(layer, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert calls
    assert_same(everything(model), before)


def _truncate(grads):
    grads["kernel"] = grads["kernel"][:-1]


def _poison(grads):
    grads["kernel"][0, 0] = np.inf


@pytest.mark.parametrize("damage,error,match", [(_truncate, ValueError, "dense/kernel.*shape"),
                                                (_poison, NonFiniteLossError, "gradient of 'dense/kernel'")])
def test_bad_gradient_is_refused_before_any_write(damage, error, match, monkeypatch):
    model, x, y = compiled_din()
    before = everything(model)
    layer = model._layers["dense"]
    original = layer.backward

    def damaged(d):
        out = original(d)
        damage(layer._grads)
        return out

    monkeypatch.setattr(layer, "backward", damaged)
    with pytest.raises(error, match=match):
        model.train_on_batch({k: v[:16] for k, v in x.items()}, y[:16])
    assert_same(everything(model), before)


class InterruptedAdam(Adam):
    """Adam that receives a Ctrl-C while writing its first parameter's update."""

    def _dense_keras(self, key, param, grad):
        if not getattr(self, "_sent", False):
            self._sent = True
            os.kill(os.getpid(), signal.SIGINT)
        super()._dense_keras(key, param, grad)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_ctrl_c_during_the_update_completes_the_step_then_interrupts():
    x, y = toy_data(32)
    model = ToyDNNModel({"a": 3, "b": 2}, use_bn=True).compile(InterruptedAdam(0.01))
    ref = ToyDNNModel({"a": 3, "b": 2}, use_bn=True).compile(Adam(0.01))
    ref.train_on_batch(x, y)
    with pytest.raises(KeyboardInterrupt):
        model.train_on_batch(x, y)
    for k, v in ref.params.items():           # every parameter got its update: all, not half
        np.testing.assert_array_equal(model.params[k], v, err_msg=k)
    assert model.optimizer.iterations == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- 3. NaN / inf in dense features ------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_dense_feature_names_feature_and_row(value):
    model, x, y = small_din()
    model.compile("adam")
    x = {k: v.copy() for k, v in x.items()}
    x["pay_score"][7] = value
    for call in (lambda: model.predict(x), lambda: model.evaluate(x, y),
                 lambda: model.fit(x, y, verbose=0), lambda: model.train_on_batch(x, y)):
        with pytest.raises(ValueError, match=r"x\['pay_score'\].*row 7.*check_finite=False"):
            call()
    before = everything(model)
    assert np.isnan(model.predict(x, check_finite=False)[7, 0])    # the escape: raw speed, raw result
    assert_same(everything(model), before)


# -- 2. DenseFeat(transform_fn) -----------------------------------------------------------------------
def din_with_transform(transform_fn):
    x, y, columns, history = make_din_data(32, n_users=10, n_items=30, n_cates=6, maxlen=5, seed=3)
    columns = [DenseFeat(fc.name, fc.dimension, transform_fn=transform_fn) if isinstance(fc, DenseFeat) else fc
               for fc in columns]
    return DIN(columns, history, dnn_hidden_units=(8,), att_hidden_size=(4,)), x, y


def test_transform_fn_is_applied():
    plain, x, _ = din_with_transform(None)
    model, _, _ = din_with_transform(np.log1p)
    named, _, _ = din_with_transform("log1p")
    x_logged = {**x, "pay_score": np.log1p(x["pay_score"].astype(np.float64))}
    np.testing.assert_array_equal(model.predict(x), plain.predict(x_logged))
    np.testing.assert_array_equal(named.predict(x), plain.predict(x_logged))
    assert not np.array_equal(model.predict(x), plain.predict(x))


def test_registered_transform_is_saved_by_name(tmp_path):
    fn = register_transform("times_two_for_test", lambda v: 2 * v)
    for spec in (fn, "times_two_for_test", np.log1p):
        model, x, _ = din_with_transform(spec)
        model.save(tmp_path / "m.npz")
        loaded = load_model(tmp_path / "m.npz")
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
        dense = [fc for fc in loaded.dnn_feature_columns if isinstance(fc, DenseFeat)]
        assert [fc.transform_fn for fc in dense] == ["times_two_for_test" if spec is not np.log1p else "log1p"]


def test_unregistered_transform_is_refused_at_save(tmp_path):
    model, x, _ = din_with_transform(lambda v: v * 3)
    model.predict(x)                                         # usable...
    with pytest.raises(ValueError, match="'pay_score'.*not a registered transform.*register_transform"):
        model.save(tmp_path / "m.npz")                      # ...but not saveable
    assert not list(tmp_path.iterdir())


def test_bad_transforms_are_clear_errors():
    with pytest.raises(ValueError, match="transform_fn of 'd'.*'nope'"):
        DenseFeat("d", transform_fn="nope")
    with pytest.raises(TypeError, match="transform_fn of 'd'"):
        DenseFeat("d", transform_fn=3)
    model, x, _ = din_with_transform(lambda v: v[:, :0])
    with pytest.raises(ValueError, match="transform_fn of feature 'pay_score' must keep the shape"):
        model.predict(x)
    model, x, _ = din_with_transform("log1p")
    with pytest.raises(ValueError, match="transform_fn of feature 'pay_score'.*row 2"):
        model.predict({**x, "pay_score": np.where(np.arange(32) == 2, -1.0, 0.5)})
    with pytest.raises(ValueError, match="registered"):
        register_transform("log1p", np.exp)


# -- 4. model file modes and temp files ---------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_saved_file_gets_the_umask_mode_or_the_replaced_files(tmp_path):
    model, _, _ = small_din()
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "m.npz")
        assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        model.save(tmp_path / "new.npz")
        assert (tmp_path / "new.npz").stat().st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "m.npz", 0o604)
        model.save(tmp_path / "m.npz")                         # replacing keeps the old mode
        assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(old)


def test_temp_files_match_gitignore_and_stale_ones_are_removed(tmp_path, monkeypatch):
    import fnmatch
    from npctr import io as npctr_io
    model, _, _ = small_din()
    patterns = [line.strip() for line in open(os.path.join(os.path.dirname(__file__), "..", ".gitignore"))]
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        raise KeyboardInterrupt                                # killed mid-save
    monkeypatch.setattr(npctr_io.os, "replace", spy)
    with pytest.raises(KeyboardInterrupt):
        model.save(tmp_path / "m.npz")
    assert any(fnmatch.fnmatch(seen[0], p) for p in patterns), seen[0]
    assert list(tmp_path.iterdir()) == []                      # an exception cleans up after itself
    monkeypatch.setattr(npctr_io.os, "replace", real_replace)
    # a save killed outright (no cleanup) by a process that is gone, and one of a live process
    dead = tmp_path / ".m.npz.999999999.0badc0de.npz.tmp"
    live = tmp_path / f".m.npz.{os.getppid()}.0badc0de.npz.tmp"
    other = tmp_path / ".other.npz.999999999.0badc0de.npz.tmp"
    for f in (dead, live, other):
        f.write_bytes(b"partial")
    model.save(tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.npz", live.name, other.name])


# -- 5. load_model checks before it allocates, and draws nothing ----------------------------------------
def _rewrite_config(src, dst, edit):
    import json
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__config__"]))
    edit(meta["config"])
    arrays["__config__"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


def test_config_claiming_a_huge_table_is_rejected_without_allocating(tmp_path):
    model, _, _ = small_din()
    model.save(tmp_path / "m.npz")

    def huge(config):       # ~128 GB of float64 for the item table (and its history column)
        for fc in config["dnn_feature_columns"]:
            inner = fc["config"].get("sparsefeat", {}).get("config", fc["config"])
            if inner.get("embedding_name") == "item_id":
                inner["vocabulary_size"] = 2 * 10 ** 9
    _rewrite_config(tmp_path / "m.npz", tmp_path / "bad.npz", huge)
    with pytest.raises(ValueError, match=r"sparse_emb_item_id/embeddings: shape \(31, 8\), expected \(2000000000, 8\)"):
        load_model(tmp_path / "bad.npz")


def test_loaded_weights_are_the_files_arrays_and_train(tmp_path, monkeypatch):
    from npctr import initializers
    model, x, y = small_din()
    model.save(tmp_path / "m.npz")
    drawn = []
    real = initializers.random_normal.__wrapped__

    def spy(*args, **kwargs):
        drawn.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(initializers.random_normal, "__wrapped__", spy)   # only to count draws
    loaded = load_model(tmp_path / "m.npz")
    for name in loaded.weight_names():
        w = loaded._lookup(name)
        assert w.flags.writeable and w.flags.owndata or w.base is not None
        assert 0 not in w.strides or w.size <= 1, name
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for m in (loaded, model):
        m.compile(Adam(0.01))
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_placeholder_build_draws_nothing():
    from npctr import initializers
    with initializers.placeholders():
        model, _, _ = small_din()
    table = model._lookup("sparse_emb_item_id/embeddings")
    assert table.strides == (0, 0) and not table.flags.writeable


# -- 6. loader errors say what the file is --------------------------------------------------------------
@pytest.mark.parametrize("content,looks_like", [
    (b"", "empty"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "HDF5"),
    (b"hello, this is text\n", "text file starting with 'hello"),
    (b"\x80\x04\x95" + b"\0" * 20, "pickle"),
    (b"\x00\x01\x02\x03garbage", "binary data"),
])
def test_non_npz_files_are_not_npctr_model_files(tmp_path, content, looks_like):
    path = tmp_path / "model.h5"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"not an npctr model file.*looks like.*{looks_like}") as info:
        load_model(path)
    assert "would run code" not in str(info.value)


def test_npy_file_is_a_value_error(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single NumPy .npy array"):
        load_model(tmp_path / "w.npy")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


# -- 7. edge cases ------------------------------------------------------------------------------------
def test_forward_on_zero_rows_and_on_lists():
    model, x, _ = small_din()
    assert model.forward({k: v[:0] for k, v in x.items()}).shape == (0, 1)
    as_list = [x[n] for n in model.feature_names]
    np.testing.assert_array_equal(model.forward(as_list), model.forward(x))
    np.testing.assert_array_equal(model.forward(as_list), model.predict(as_list))
    with pytest.raises(ValueError, match=f"list must hold {len(model.feature_names)} arrays"):
        model.forward(as_list[:-1])


def test_attention_scores_after_a_chunked_predict_hold_every_row():
    model, x, _ = small_din()
    model.forward(x)
    whole = model.attention_scores
    model.predict(x, batch_size=10)
    assert model.attention_scores.shape == whole.shape == (64, 1, 5)
    np.testing.assert_allclose(model.attention_scores, whole, rtol=1e-12)


def test_too_few_demo_samples_is_a_clear_error(capsys):
    from npctr import demo
    with pytest.raises(SystemExit) as info:
        demo.main(["--samples", "10"])
    assert info.value.code == 2
    assert "--samples" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_samples"):
        demo.load_data(10, 2024)


@pytest.mark.parametrize("value", [np.inf, np.nan, -1.0])
def test_infinite_l2_is_refused(value):
    with pytest.raises(ValueError, match="l2_reg_embedding must be (finite|>= 0)"):
        small_din(l2_reg_embedding=value)
    with pytest.raises(ValueError, match="l2_reg_dnn must be (finite|>= 0)"):
        small_din(l2_reg_dnn=value)


def test_float32_overflow_is_a_clear_error_not_silent_nan():
    model, x, y = small_din(dtype="float32", dnn_use_bn=False, dnn_dropout=0)
    for k, v in model.params.items():
        if "kernel" in k:
            v *= 1e12                        # hidden activations overflow float32 to inf; inf - inf = nan
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match="overflowed float32.*dtype='float64'"):
            model.predict(x)
        model.compile("adam")
        with pytest.raises(FloatingPointError, match="overflowed float32"):
            model.evaluate(x, y)
    wide, _, _ = small_din(dnn_use_bn=False, dnn_dropout=0)
    wide.set_weights({k: model._lookup(k).astype(np.float64) for k in wide.weight_names()})
    assert np.isfinite(wide.predict(x)).all()                  # float64 saturates cleanly


# -- 8. dependencies as declared ---------------------------------------------------------------------
OPTIONAL = {"scipy", "h5py", "onnx", "onnxruntime", "dask", "distributed", "pyarrow", "matplotlib",
            "torch", "tensorflow", "pandas"}


def test_numpy_is_the_only_runtime_dependency(tmp_path):
    import configparser
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(__file__), "..")
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(root, "setup.cfg"))
    requires = [r.strip() for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    assert [r.split(">")[0].split("=")[0].split("<")[0] for r in requires] == ["numpy"]
    model, x, _ = small_din()
    model.save(tmp_path / "m.npz")
    code = ("import sys, npctr; m = npctr.load_model(sys.argv[1]); m.compile('adam'); "
            "print(sorted({k.split('.')[0] for k in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.npz")], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.path.abspath(root)}).stdout
    imported = set(eval(out))
    assert not imported & OPTIONAL, imported & OPTIONAL
