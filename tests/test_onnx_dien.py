"""ONNX export of a DIEN: the exported graph (the GRUs as ``Scan``s over time, a dynamic batch), run in ONNX
Runtime, equals ``model.predict`` for every ``gru_type``, both profiles' cells, lengths 0..T, with and without
pooled sequences, dense features and negatives (float64 to 1e-12, float32 to 1e-6, as ``--check``);
the negatives are not graph inputs; ``python -m npctr export-onnx`` exports and checks a saved DIEN."""
import subprocess
import sys

import numpy as np
import pytest

import npctr
from npctr.layers.rnn import DynamicGRU

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from npctr.interop.onnx import onnx_inputs, check_export, graph_inputs  # noqa: E402
from test_inference_dien import GRU_TYPES, PROFILES, T, dien, features, lengths_of  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-6}


def exported(model, tmp_path):
    path = tmp_path / "dien.onnx"
    npctr.export_onnx(model, path)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_matches(model, session, x):
    out = session.run(None, onnx_inputs(model, x))[0]
    expected = model.predict(x)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    tol = TOL[model.dtype.name]
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("gru_type", GRU_TYPES)
def test_every_gru_type_and_profile(gru_type, conventions, dtype, tmp_path):
    model, cols = dien(gru_type, conventions, dtype)
    session = exported(model, tmp_path)
    rng = np.random.default_rng(1)
    x = features(cols, 37, rng, lengths_of(37, rng))
    assert_matches(model, session, x)
    assert_matches(model, session, {k: v[:1] for k, v in x.items()})             # a dynamic batch
    assert_matches(model, session, features(cols, 5, rng, np.zeros(5, int)))      # every row empty


@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("options", [
    {"att_weight_normalization": False}, {"use_bn": True, "dnn_activation": "dice"},
    {"att_activation": "prelu", "dnn_activation": "prelu"}, {"att_activation": "sigmoid", "split": False},
    {"att_hidden_units": ()}, {"dnn_hidden_units": (), "task": "regression"},
    {"n_hist": 1, "dense": False, "pooled": False, "negatives": False},
    {"pooled": False, "negatives": False, "gru_type": "AGRU"},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_options(options, conventions, tmp_path):
    options = {"gru_type": "AUGRU", **options}
    for dtype in ("float64", "float32"):
        model, cols = dien(conventions=conventions, dtype=dtype, **options)
        session = exported(model, tmp_path)
        rng = np.random.default_rng(2)
        assert_matches(model, session, features(cols, 21, rng, lengths_of(21, rng)))


def test_graph_interface_leaves_the_negatives_out(tmp_path):
    model, cols = dien("AUGRU")
    proto = npctr.export_onnx(model, tmp_path / "m.onnx")
    names = [i.name for i in proto.graph.input]
    assert names == graph_inputs(model) == [n for n in model.feature_names if not n.startswith("neg_hist_")]
    assert [o.name for o in proto.graph.output] == ["prediction_layer"]
    assert sum(node.op_type == "Scan" for node in proto.graph.node) == 2
    assert {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in proto.graph.input}["hist_item_id"] == ["batch", T]
    session = exported(model, tmp_path)
    rng = np.random.default_rng(3)
    x = features(cols, 9, rng, lengths_of(9, rng))
    without = {k: v for k, v in x.items() if not k.startswith("neg_hist_")}
    np.testing.assert_array_equal(session.run(None, onnx_inputs(model, without))[0],
                                  session.run(None, onnx_inputs(model, x))[0])


def test_check_export_and_unsupported_layers(tmp_path):
    model, _ = dien("AGRU", "torch", "float32")
    npctr.export_onnx(model, tmp_path / "m.onnx")
    assert check_export(model, tmp_path / "m.onnx", n=200) <= 1e-6

    class OwnGRU(DynamicGRU):
        def forward(self, inputs, training=False, backprop=None):
            return super().forward(inputs, training, backprop)

    model._layers["gru2"].__class__ = OwnGRU
    with pytest.raises(TypeError, match="gru2 .OwnGRU."):
        npctr.export_onnx(model, tmp_path / "n.onnx")
    assert not (tmp_path / "n.onnx").exists()


def test_export_onnx_command(tmp_path):
    for dtype, conventions in (("float32", "tf_keras"), ("float64", "torch")):
        model, _ = dien("AUGRU", conventions, dtype)
        model.save(tmp_path / "m.npz")
        run = subprocess.run([sys.executable, "-m", "npctr", "export-onnx", str(tmp_path / "m.npz"),
                              str(tmp_path / "m.onnx"), "--check", "300"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "onnxruntime vs model.predict on 300 random rows" in run.stderr
