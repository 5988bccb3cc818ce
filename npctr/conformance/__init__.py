"""A conformance suite for other backends of DeepCTR's layers and DIN, as ONNX ships backend tests.

``python -m npctr conformance --adapter MODULE [--kinds dnn,lau,asp,din] [--cases N] [--seed S]
[--report out.json]`` draws cases over every option (:mod:`npctr.conformance.cases`), computes
npctr's reference for each, asks the adapter -- a small module that builds the case's model in the
backend, sets its weights and runs it (:mod:`npctr.conformance.adapters` documents the protocol) --
for the backend's numbers, and judges them with :mod:`npctr.testing`. In a backend's own pytest
suite::

    from npctr.conformance import conformance_cases, check_case

    @pytest.mark.parametrize("case", conformance_cases(kinds=["dnn", "asp"], n=20, seed=0), ids=str)
    def test_conforms(case):
        check_case(case, my_adapter.run(case))

Adapters shipped: :mod:`~npctr.conformance.adapters.deepctr_torch` (DeepCTR-Torch),
:mod:`~npctr.conformance.adapters.deepctr_keras` (DeepCTR on tf.keras 2 or Keras 3),
:mod:`~npctr.conformance.adapters.onnxruntime` (npctr's ONNX export in ONNX Runtime). The guide is
``docs/verifying_backends.md``.
"""
from .cases import Case, conformance_cases, draw_case, KINDS, DTYPES
from .check import CaseReport, check_case, judge
from .runner import load_adapter, run_suite

__all__ = ["Case", "CaseReport", "conformance_cases", "draw_case", "check_case", "judge", "load_adapter",
           "run_suite", "KINDS", "DTYPES"]
