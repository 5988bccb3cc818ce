"""ONNX export: the exported graph, run in ONNX Runtime, equals ``model.predict`` for every option
of DNN, DIN and DNNModel (float64 to 1e-12, float32 to 1e-6), and refuses what it cannot export."""
import subprocess
import sys

import numpy as np
import pytest

import npctr
from npctr import DNN
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from npctr.layers.base import Layer
from npctr.models import DIN, DNNModel

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from npctr.interop.onnx import onnx_inputs  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-6}
T = 5


def _columns(pooling="mean", pooled_length=False):
    """Candidate a/b with histories hist_a/hist_b (shared tables), a pooled ``tags`` sequence,
    a user id and two dense features."""
    return [SparseFeat("user", 7, embedding_dim=3), SparseFeat("a", 11, embedding_dim=4),
            SparseFeat("b", 6, embedding_dim=2), DenseFeat("price", 1), DenseFeat("ctx", 3),
            VarLenSparseFeat(SparseFeat("hist_a", 11, embedding_dim=4, embedding_name="a"), T),
            VarLenSparseFeat(SparseFeat("hist_b", 6, embedding_dim=2, embedding_name="b"), T),
            VarLenSparseFeat(SparseFeat("tags", 9, embedding_dim=3), 4, combiner=pooling,
                             length_name="tags_len" if pooled_length else None)]


def _data(n=23, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, size=n)
    lengths[:3] = [0, T, 1]                       # an all-padding row, a full one, a single behaviour
    valid = np.arange(T) < lengths[:, None]
    tags = rng.integers(0, 9, size=(n, 4))
    tags[0] = 0                                   # an all-padding pooled row
    return {"user": rng.integers(0, 7, n), "a": rng.integers(1, 11, n), "b": rng.integers(1, 6, (n, 1)),
            "price": rng.normal(size=n), "ctx": rng.normal(size=(n, 3)),
            "hist_a": np.where(valid, rng.integers(1, 11, (n, T)), 0),
            "hist_b": np.where(valid, rng.integers(1, 6, (n, T)), 0),
            "tags": tags, "tags_len": rng.integers(0, 6, (n, 1)), "hist_len": rng.integers(0, T + 1, (n, 1))}


def _randomize(model, seed=1):
    """Weights and moving statistics of order one (so every term matters), variances > 0."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name in model.weight_names():
        shape = model._lookup(name).shape
        if name.endswith("moving_variance"):
            weights[name] = rng.uniform(0.5, 2.0, shape)
        else:
            weights[name] = rng.normal(scale=0.5, size=shape)
    model.set_weights(weights)
    return model


def _run(model, x, tmp_path):
    path = tmp_path / "model.onnx"
    npctr.export_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session, session.run(None, onnx_inputs(model, x))[0]


def _check(model, x, tmp_path):
    _, out = _run(model, x, tmp_path)
    expected = model.predict(x)
    tol = TOL[model.dtype.name]
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


def _features(model, x):
    return {n: x[n] for n in model.feature_names}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("att_activation, weight_normalization, split", [
    ("dice", False, True), ("dice", True, False), ("sigmoid", True, True), ("relu", False, False),
    ("prelu", True, True), ("tanh", False, True), ("linear", True, False)])
def test_din_matches_predict(dtype, att_activation, weight_normalization, split, tmp_path):
    model = _randomize(DIN(_columns(), ["a", "b"], dnn_hidden_units=(8, 5), att_hidden_size=(6, 4),
                           att_activation=att_activation, att_weight_normalization=weight_normalization,
                           split=split, dtype=dtype))
    x = _features(model, _data())
    _check(model, x, tmp_path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("dnn_activation, use_bn", [("relu", True), ("dice", True), ("prelu", False),
                                                    ("sigmoid", True), ("tanh", False), ("linear", True)])
def test_din_dnn_options_match_predict(dtype, dnn_activation, use_bn, tmp_path):
    model = _randomize(DIN(_columns(), ["a", "b"], dnn_hidden_units=(7, 3), att_hidden_size=(5,),
                           dnn_activation=dnn_activation, dnn_use_bn=use_bn, dnn_dropout=0.4, dtype=dtype))
    _check(model, _features(model, _data()), tmp_path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
@pytest.mark.parametrize("pooled_length", [False, True])
def test_pooled_sequences_match_predict(dtype, pooling, pooled_length, tmp_path):
    columns = _columns(pooling, pooled_length)
    x = _data()
    din = _randomize(DIN(columns, ["a", "b"], dnn_hidden_units=(6,), att_hidden_size=(4,), dtype=dtype))
    _check(din, _features(din, x), tmp_path)
    baseline = _randomize(DNNModel(columns, dnn_hidden_units=(6, 4), dnn_use_bn=True, dnn_activation="dice",
                                   task="regression", dtype=dtype))
    _check(baseline, _features(baseline, x), tmp_path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("conventions", ["keras3", "torch"])
def test_conventions_profiles_match_predict(conventions, dtype, tmp_path):
    """DeepCTR-Torch's profile: affine Dice BN, other epsilons, the history masked by its length
    (``hist_len`` here is drawn independently of the ids' padding, so the two masks differ)."""
    pytest.importorskip("npctr.conventions")
    columns = [SparseFeat("a", 11, embedding_dim=4), SparseFeat("b", 6, embedding_dim=2), DenseFeat("price", 1),
               VarLenSparseFeat(SparseFeat("hist_a", 11, embedding_dim=4, embedding_name="a"), T,
                                length_name="hist_len"),
               VarLenSparseFeat(SparseFeat("hist_b", 6, embedding_dim=2, embedding_name="b"), T,
                                length_name="hist_len")]
    for weight_normalization in (False, True):
        model = _randomize(DIN(columns, ["a", "b"], dnn_hidden_units=(6, 4), att_hidden_size=(5,), dnn_use_bn=True,
                               dnn_activation="dice", att_weight_normalization=weight_normalization,
                               conventions=conventions, dtype=dtype))
        _check(model, _features(model, _data()), tmp_path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_empty_hidden_units_and_regression(dtype, tmp_path):
    model = _randomize(DIN(_columns(), ["a", "b"], dnn_hidden_units=(), att_hidden_size=(), task="regression",
                           dtype=dtype))
    _check(model, _features(model, _data()), tmp_path)


def test_demo_din_after_training_matches_predict(tmp_path):
    """Moving statistics written by real training (BN in the DNN, Dice in the attention)."""
    from npctr.datasets import make_din_data
    x, y, columns, history = make_din_data(200, maxlen=8, seed=5)
    for dtype in ("float64", "float32"):
        model = DIN(columns, history, dnn_hidden_units=(16, 8), att_hidden_size=(8, 4), dnn_use_bn=True,
                    dtype=dtype)
        model.compile("adam", "binary_crossentropy")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        _check(model, x, tmp_path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dnn_layer_matches_forward(dtype, tmp_path):
    dnn = DNN((6, 4), activation="dice", use_bn=True, dtype=dtype)
    dnn.build((None, 5))
    _randomize(dnn)
    x = np.random.default_rng(2).normal(size=(9, 5)).astype(dtype)
    session, out = _run(dnn, x, tmp_path)
    np.testing.assert_allclose(out, dnn.forward(x), rtol=TOL[dtype], atol=TOL[dtype])
    assert [i.name for i in session.get_inputs()] == ["inputs"]


def test_graph_interface_is_deepctrs(tmp_path):
    model = DIN(_columns(pooled_length=True), ["a", "b"], dnn_hidden_units=(4,), att_hidden_size=(4,),
                dtype="float32")
    session, _ = _run(model, _features(model, _data()), tmp_path)
    inputs = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    assert list(inputs) == model.feature_names
    assert inputs["a"] == (["batch", 1], "tensor(int64)")
    assert inputs["hist_a"] == (["batch", T], "tensor(int64)")
    assert inputs["ctx"] == (["batch", 3], "tensor(float)")
    (output,) = session.get_outputs()
    assert (output.name, output.shape, output.type) == ("prediction_layer", ["batch", 1], "tensor(float)")


def test_batch_size_is_dynamic(tmp_path):
    model = _randomize(DIN(_columns(), ["a", "b"], dnn_hidden_units=(4,), att_hidden_size=(4,)))
    x = _features(model, _data(40))
    session, _ = _run(model, x, tmp_path)
    for n in (1, 7, 40):
        xn = {k: v[:n] for k, v in x.items()}
        out = session.run(None, onnx_inputs(model, xn))[0]
        np.testing.assert_allclose(out, model.predict(xn), rtol=1e-12, atol=1e-12)


class _Swish(Layer):
    def forward(self, inputs, training=False, backprop=None):
        x = self._input(inputs)
        return x / (1 + np.exp(-x))


def test_unsupported_models_and_layers_are_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="exports DIN, DIEN, DNNModel and DNN, got Dense"):
        npctr.export_onnx(npctr.Dense(3), tmp_path / "m.onnx")
    model = DIN(_columns(), ["a", "b"], dnn_hidden_units=(4,), att_hidden_size=(4,), dnn_activation=_Swish)
    with pytest.raises(TypeError, match=r"dnn/activation0 \(_Swish\).*supported activations"):
        npctr.export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ValueError, match="needs a built DNN"):
        npctr.export_onnx(DNN((3,)), tmp_path / "m.onnx")


def test_import_npctr_does_not_import_onnx():
    code = ("import sys, npctr; npctr.export_onnx; import npctr.interop; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


from hypothesis import given, strategies as st  # noqa: E402

_SESSIONS = {}


def _exported(weight_normalization, pooling, dtype, tmp_dir):
    """One exported model per configuration, shared by the property's examples."""
    key = (weight_normalization, pooling, dtype)
    if key not in _SESSIONS:
        model = _randomize(DIN(_columns(pooling, pooled_length=pooling == "mean"), ["a", "b"],
                               dnn_hidden_units=(6,), att_hidden_size=(5, 3), dnn_use_bn=True,
                               att_weight_normalization=weight_normalization, dtype=dtype))
        path = tmp_dir / f"din_{'_'.join(map(str, key))}.onnx"
        npctr.export_onnx(model, path)
        _SESSIONS[key] = model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@given(st.integers(1, 17), st.booleans(), st.sampled_from(["mean", "sum", "max"]),
       st.sampled_from(["float64", "float32"]), st.integers(0, 2 ** 16))
def test_property_any_batch_and_padding_matches_predict(onnx_dir, n, weight_normalization, pooling, dtype, seed):
    model, session = _exported(weight_normalization, pooling, dtype, onnx_dir)
    rows = np.random.default_rng(seed).permutation(n + 3)[:n]     # rows 0-2: all padding, full, one behaviour
    x = {k: v[rows] for k, v in _features(model, _data(n + 3, seed)).items()}
    out = session.run(None, onnx_inputs(model, x))[0]
    tol = TOL[dtype]
    np.testing.assert_allclose(out, model.predict(x), rtol=tol, atol=tol)


def test_export_onnx_command(tmp_path):
    from npctr.datasets import make_din_data
    from npctr.interop.onnx import random_inputs
    _, _, columns, history = make_din_data(10, maxlen=6, seed=1)
    for dtype in ("float32", "float64"):
        model = _randomize(DIN(columns, history, dnn_hidden_units=(8,), att_hidden_size=(4,), dnn_use_bn=True,
                               dtype=dtype))
        model.save(tmp_path / "m.npz")
        run = subprocess.run([sys.executable, "-m", "npctr", "export-onnx", str(tmp_path / "m.npz"),
                              str(tmp_path / "m.onnx"), "--check", "300"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "onnxruntime vs model.predict on 300 random rows" in run.stderr
        session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        x = random_inputs(model, 23, seed=4)
        np.testing.assert_allclose(session.run(None, onnx_inputs(model, x))[0], model.predict(x),
                                   rtol=TOL[dtype], atol=TOL[dtype])
    from npctr.interop.onnx import main
    assert main([str(tmp_path / "nope.npz"), str(tmp_path / "m.onnx")]) == 2
    (tmp_path / "bad.npz").write_bytes(b"PK junk")
    assert main([str(tmp_path / "bad.npz"), str(tmp_path / "m.onnx")]) == 1
