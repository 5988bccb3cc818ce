"""Importers and exporters between npctr and other frameworks and runtimes.

Each submodule imports its framework (onnx, h5py, torch, ...) only inside the functions that
need it, so importing ``npctr.interop`` stays NumPy-only.

* :func:`export_onnx`, :func:`onnx_inputs` (``npctr.interop.onnx``): the inference graphs of
  DIN, DNNModel and DNN as ONNX (``docs/onnx.md``).
"""
from .onnx import export_onnx, onnx_inputs  # noqa: F401
