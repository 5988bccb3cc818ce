"""Importers and exporters between npctr and other frameworks and runtimes, by name.

Each submodule imports its framework (onnx, h5py, torch, ...) only inside the functions that
need it, so importing ``npctr.interop`` stays NumPy-only.

* :func:`load_keras_weights` / :func:`to_keras_weights` (``npctr.interop.keras``): DeepCTR on
  tf.keras 2 or Keras 3 (live models and layers, dicts, ``.h5`` / ``.weights.h5`` / ``.keras``
  files via h5py);
* :func:`load_torch_state_dict` / :func:`to_torch_state_dict` (``npctr.interop.torch``):
  DeepCTR-Torch (``state_dict()``, modules, ``.pt`` / ``.pth`` via ``torch.load(weights_only=True)``);
* :func:`export_onnx`, :func:`onnx_inputs` (``npctr.interop.onnx``): the inference graphs of
  DIN, DIEN, DNNModel and DNN as ONNX (``docs/onnx.md``);
* ``python -m npctr golden`` / ``compare`` (``npctr.interop.golden``, ``npctr.interop.compare``):
  reference numbers for other backends, judged by :mod:`npctr.testing`'s normwise rule; the
  conformance suite built on them is :mod:`npctr.conformance` (``docs/verifying_backends.md``).

The importers refuse weights of one framework for a model of another's conventions profile when
the profile changes the model's numbers (``check_conventions=False`` overrides).
"""
from .keras import load_keras_weights, to_keras_weights, keras_spec, map_keras_names
from .torch import load_torch_state_dict, to_torch_state_dict, torch_spec, map_torch_names
from .onnx import export_onnx, onnx_inputs  # noqa: F401

__all__ = ["load_keras_weights", "to_keras_weights", "keras_spec", "map_keras_names",
           "load_torch_state_dict", "to_torch_state_dict", "torch_spec", "map_torch_names", "export_onnx", "onnx_inputs"]
