"""The conformance suite (``npctr.conformance``, ``python -m npctr conformance``): cases, the judge,
the command, and the adapters.

The judge is proven on an independent implementation (``conformance_plain_torch``: the equations of
docs/ in float64 PyTorch autograd, its own round-off and operation order), on a backend with one
perturbed constant (it must fail exactly the cases that use that constant, and nothing else), and on
empty, partial and malformed results. The shipped adapters run against their real frameworks where
those are installed (DeepCTR-Torch in CI; TensorFlow runs are recorded in docs/verifying_backends.md).
"""
import importlib
import json

import numpy as np
import pytest

from npctr.__main__ import main as npctr_main
from npctr.conformance import check_case, conformance_cases, judge, load_adapter, run_suite
from npctr.conformance.adapters import npctr_self

CASES = 24          # 6 of each kind: every kind, the three profiles, both dtypes


def run(*argv):
    return npctr_main(["conformance", *map(str, argv)])


def uses_batch_norm(case):
    c = case.config
    return bool(c.get("use_bn") or c.get("dnn_use_bn"))


def uses_any_batch_statistics(case):
    """A BatchNormalization, or Dice's inner one."""
    c = case.config
    return uses_batch_norm(case) or "dice" in {c.get("activation"), c.get("att_activation"), c.get("dnn_activation")}


def test_cases_cover_every_option_and_are_reproducible():
    cases = conformance_cases(n=CASES, seed=0)
    assert [c.kind for c in cases[:4]] == ["dnn", "lau", "asp", "din"]
    assert {c.profile for c in cases} == {"tf_keras", "keras3", "torch"}
    assert {c.dtype for c in cases} == {"float64", "float32"}
    again = conformance_cases(n=8, seed=0)
    for a, b in zip(again, cases):
        assert a.describe() == b.describe()
        for key, value in a.reference.items():
            np.testing.assert_array_equal(value, b.reference[key])
    many = conformance_cases(n=200, seed=3)
    options = {(c.kind, k, str(v)) for c in many for k, v in c.config.items() if k != "dnn_feature_columns"}
    for kind, option in (("dnn", "use_bn"), ("lau", "use_bn"), ("asp", "weight_normalization"),
                         ("asp", "return_score"), ("asp", "supports_masking"), ("din", "att_weight_normalization"),
                         ("din", "dnn_use_bn")):
        assert {v for k_, o, v in options if (k_, o) == (kind, option)} == {"True", "False"}, (kind, option)
    assert {v for k_, o, v in options if o == "output_activation"} >= {"None", "sigmoid", "tanh", "linear"}
    assert {v for k_, o, v in options if o == "task"} == {"binary", "regression"}
    assert {c.inputs["x"].ndim for c in many if c.kind == "dnn"} == {2, 3}
    assert {v for k, o, v in options if o in ("activation", "att_activation")} >= {"relu", "sigmoid", "tanh", "linear",
                                                                                   "dice", "prelu"}
    lengths = np.concatenate([c.inputs["seq_length"] for c in many if c.kind == "din"])
    assert lengths.min() == 0 and any(c.inputs["seq_length"].max() == c.seq_len for c in many if c.kind == "din")
    # a float32 case holds float32 values, its reference is computed from them in float64
    case = next(c for c in cases if c.dtype == "float32")
    assert all(v.dtype == np.float32 for v in case.weights.values() if v.dtype.kind == "f")
    assert all(v.dtype == np.float64 for k, v in case.expected().items() if v.dtype.kind == "f")
    with pytest.raises(ValueError, match="kinds"):
        conformance_cases(kinds=["dnn", "gru"])
    with pytest.raises(ValueError, match="n must"):
        conformance_cases(n=-1)


def test_npctr_itself_passes_in_both_dtypes():
    reports = run_suite(npctr_self, n=CASES, seed=0)
    assert all(r.status == "pass" for r in reports), [r.message() for r in reports if r.failed]
    assert max(r.worst for r in reports if r.case.dtype == "float64") == 0.0
    assert 0 < max(r.worst for r in reports if r.case.dtype == "float32") < 1e-5


def test_an_independent_implementation_passes():
    plain = pytest.importorskip("conformance_plain_torch", exc_type=ImportError)
    reports = run_suite(plain, n=CASES, seed=0)
    assert len(reports) == CASES and all(r.case.profile == "tf_keras" for r in reports)
    assert all(r.status == "pass" for r in reports), [r.message() for r in reports if r.failed]
    # its own round-off: not npctr's bits, yet within 1e-12
    assert 0 < max(r.worst for r in reports) <= 1e-12


@pytest.mark.parametrize("constant", ["epsilon", "momentum"])
def test_a_perturbed_constant_fails_exactly_the_cases_that_use_it(constant, monkeypatch):
    plain = pytest.importorskip("conformance_plain_torch", exc_type=ImportError)
    if constant == "epsilon":        # BatchNormalization's 1e-3 (Dice's inner BN has its own 1e-9)
        monkeypatch.setattr(plain, "BN_EPSILON", 1e-3 * (1 + 1e-6))
        uses = uses_batch_norm
    else:                            # 0.99, every BatchNormalization and Dice's
        monkeypatch.setattr(plain, "BN_MOMENTUM", 0.99 - 1e-9)
        uses = uses_any_batch_statistics
    reports = run_suite(plain, n=CASES, seed=0)
    failing = {r.case.id for r in reports if r.failed}
    assert failing == {r.case.id for r in reports if uses(r.case)}
    assert failing and len(failing) < len(reports)
    for r in reports:
        if r.failed and constant == "momentum":   # only the moving statistics move differently
            assert {k.split("/")[0] + "/" + k.split("/")[1] for k, _, _, _ in r.failures()} == {"train/moving"}


def test_check_case_on_empty_partial_and_malformed_results():
    case = conformance_cases(kinds=["dnn"], n=1, seed=0)[0]
    good = npctr_self.run(case)
    assert check_case(case, good).status == "pass"
    assert check_case(case, {"infer/output": good["infer/output"]}).status == "pass"      # a backend may do less
    with pytest.raises(AssertionError, match="nothing compared"):
        check_case(case, {})
    with pytest.raises(AssertionError, match="required output"):
        check_case(case, {k: v for k, v in good.items() if k.endswith("grad_input/x")})
    with pytest.raises(AssertionError, match="only in A"):
        check_case(case, {**good, "train/grad_weight/no_such": np.zeros(1)})
    with pytest.raises(AssertionError, match="shape"):
        check_case(case, {**good, "infer/output": good["infer/output"][:-1]})
    with pytest.raises(AssertionError, match=r"infer/output: FAIL"):
        check_case(case, {**good, "infer/output": good["infer/output"] * (1 + 1e-9)})
    with pytest.raises(TypeError, match="complex"):
        check_case(case, {**good, "infer/output": good["infer/output"] + 1000j})
    with pytest.raises(TypeError, match="dict"):
        check_case(case, [good])
    # the failure message names the configuration
    try:
        check_case(case, {**good, "infer/output": -good["infer/output"]})
    except AssertionError as exc:
        assert case.describe() in str(exc) and "hidden_units" in str(exc)
    # a round-off result where the math says zero passes: judged at its group's scale
    report = judge(case, good)
    assert report.status == "pass"


def test_the_command(tmp_path, capsys, monkeypatch):
    assert run("--adapter", "npctr_self", "--cases", 8, "--seed", 2) == 0
    out = capsys.readouterr().out
    assert out.count("\nok ") + out.startswith("ok ") == 8 and "OK: npctr (self-check): 8 cases: 8 pass" in out
    report = tmp_path / "r.json"
    assert run("--adapter", "npctr.conformance.adapters.npctr_self", "--kinds", "asp,dnn", "--cases", 3,
               "--report", report) == 0
    document = json.loads(report.read_text())
    assert document["ok"] and [c["kind"] for c in document["cases"]] == ["asp", "dnn", "asp"]
    assert set(document["cases"][0]) >= {"id", "config", "profile", "dtype", "status", "quantities", "worst"}
    capsys.readouterr()
    # usage errors: exit 2, one line
    for argv, message in ((("--adapter", "no_such_adapter"), "no adapter module"),
                          (("--adapter", "npctr_self", "--kinds", "dnn,gru"), "--kinds"),
                          (("--adapter", "npctr_self", "--cases", 0), "--cases"),
                          (("--adapter", "npctr_self", "--seed", -1), "--seed"),
                          (("--cases", 3), "required")):
        assert run(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # an adapter that cannot run here, one that raises, one that blocks everything
    fake = tmp_path / "fake_adapter.py"
    fake.write_text("def available():\n    return 'its framework is not installed'\n\ndef run(case):\n    return {}\n")
    assert run("--adapter", fake) == 2
    assert "its framework is not installed" in capsys.readouterr().err
    fake.write_text("KINDS = ('dnn',)\n\ndef run(case):\n    return {}\n")
    assert run("--adapter", fake, "--kinds", "lau") == 2
    assert "runs none of --kinds lau" in capsys.readouterr().err
    fake.write_text("def run(case):\n    raise RuntimeError('backend crashed')\n")
    assert run("--adapter", fake, "--cases", 2) == 1
    out = capsys.readouterr().out
    assert "the adapter raised: RuntimeError: backend crashed" in out and "FAILED" in out
    fake.write_text("def skip_reason(case):\n    return 'a framework bug'\n\ndef run(case):\n    return {}\n")
    assert run("--adapter", fake, "--cases", 2) == 1
    out = capsys.readouterr().out
    assert "BLOCKED" in out and "a framework bug" in out and "nothing was compared" in out


def test_the_command_fails_a_perturbed_backend(capsys, monkeypatch):
    plain = pytest.importorskip("conformance_plain_torch", exc_type=ImportError)
    monkeypatch.setattr(plain, "BN_EPSILON", 1e-3 * (1 + 1e-6))
    assert run("--adapter", "conformance_plain_torch", "--cases", 8, "-q") == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "use_bn=True" in out and "infer/output: FAIL" in out


def test_onnxruntime_adapter():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    adapter = load_adapter("onnxruntime")
    reports = run_suite(adapter, n=12, seed=0)
    assert {r.case.kind for r in reports} == {"dnn", "din"}
    assert all(not r.failed for r in reports), [r.message() for r in reports if r.failed]
    assert sum(r.status == "pass" for r in reports) >= 8
    assert max(r.worst for r in reports if r.case.dtype == "float64") <= 1e-12


def test_deepctr_torch_adapter():
    """DeepCTR-Torch itself (CI installs it with torch): every case it can run agrees, and each
    case it cannot names the framework's reason."""
    pytest.importorskip("deepctr_torch")
    adapter = load_adapter("deepctr_torch")
    reports = run_suite(adapter, n=48, seed=0)
    assert all(not r.failed for r in reports), [r.message() for r in reports if r.failed]
    assert sum(r.status == "pass" for r in reports) >= 16
    assert {r.case.kind for r in reports if r.status == "pass"} == {"dnn", "lau", "asp", "din"}
    assert all(r.reason for r in reports if r.status == "blocked")


def test_deepctr_keras_adapter():
    """DeepCTR on tf.keras 2, as tests/test_interop_live.py runs it (TF_USE_LEGACY_KERAS is read when
    TensorFlow is first imported, so it is set first; the adapter reads it when imported)."""
    import os
    import sys
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    pytest.importorskip("tensorflow")
    pytest.importorskip("deepctr")
    adapter = importlib.reload(load_adapter("deepctr_keras"))
    reports = run_suite(adapter, n=8, seed=0)
    assert all(not r.failed for r in reports), [r.message() for r in reports if r.failed]
    assert any(r.status == "pass" for r in reports)


def test_every_shipped_adapter_imports_without_its_framework():
    for name in ("deepctr_torch", "deepctr_keras", "onnxruntime", "npctr_self"):
        module = importlib.import_module(f"npctr.conformance.adapters.{name}")
        assert callable(module.run) and (getattr(module, "available", lambda: None)() is None
                                         or isinstance(module.available(), str))


def test_float64_results_are_judged_array_by_array():
    """Only float32 results are judged at their group's scale: a float64 error of 3e-12 relative in a
    small array fails even though it is far below 1e-12 of its group's largest entry."""
    case = next(c for c in conformance_cases(kinds=["dnn"], n=4, seed=0) if c.dtype == "float64")
    good = npctr_self.run(case)
    grads = {k: v for k, v in good.items() if k.startswith("train/grad_weight/") and np.abs(v).max() > 0}
    group = max(np.abs(v).max() for v in grads.values())
    key = min(grads, key=lambda k: np.abs(grads[k]).max())
    assert np.abs(grads[key]).max() < 0.3 * group
    bad = dict(good, **{key: grads[key] * (1 + 3e-12)})
    with pytest.raises(AssertionError, match=key):
        check_case(case, bad)
    as32 = {k: v.astype(np.float32) for k, v in bad.items()}
    assert check_case(case, as32).status == "pass"            # the float32 rule is the group's
