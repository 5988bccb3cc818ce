"""Importers and exporters between npctr and other frameworks and runtimes.

Each submodule imports its framework (onnx, h5py, torch, ...) only when used, so importing
``npctr.interop`` stays NumPy-only. ``npctr.interop.onnx.export_onnx``: ONNX export of the
inference graphs (``docs/onnx.md``).
"""


def export_onnx(model, path):
    """See :func:`npctr.interop.onnx.export_onnx` (imports onnx only when called)."""
    from .onnx import export_onnx as _export
    return _export(model, path)
