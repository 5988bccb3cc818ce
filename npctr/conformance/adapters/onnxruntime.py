"""npctr's ONNX export (``npctr.export_onnx``) run in ONNX Runtime: inference quantities.

The case's npctr model (a ``DNN`` layer or a ``DIN``, in the case's dtype, with its weights) is
exported and the graph is run in ``onnxruntime.InferenceSession`` (CPU) on the case's inputs;
``infer/output`` is judged. Any profile: the profile's constants are in the graph. What the exporter
does not cover is reported *blocked*: ``LocalActivationUnit`` and ``AttentionSequencePoolingLayer``
alone (the exporter writes whole DINs, DNNModels and DNN layers) and a DNN on a 3-D input (the DNN
graph takes ``(batch, input_dim)``).
"""
import os
import tempfile

import numpy as np

NAME = "ONNX Runtime (npctr's ONNX export)"
KINDS = ("dnn", "din")
DTYPES = ("float64", "float32")


def available():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnx and onnxruntime are needed ({exc}): pip install 'npctr[onnx]'"
    return None


def versions():
    import onnx
    import onnxruntime
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def skip_reason(case):
    if case.kind not in KINDS:
        return "npctr's ONNX export writes DIN, DNNModel and DNN layers, not a standalone " + case.spec["class"]
    if case.kind == "dnn" and case.inputs["x"].ndim != 2:
        return "npctr's ONNX graph of a DNN takes a (batch, input_dim) input, not a 3-D one"
    return None


def run(case):
    import onnxruntime
    from ...interop.onnx import export_onnx, onnx_inputs
    model = case.build()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "case.onnx")
        export_onnx(model, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        if case.kind == "din":
            feed = onnx_inputs(model, {k: v for k, v in case.inputs.items() if k != "y"})
        else:
            feed = onnx_inputs(model, case.inputs["x"])
        (out,) = session.run(None, feed)
    return {"infer/output": np.asarray(out).reshape(case.reference["infer/output"].shape)}
