"""Weights in from and out to the frameworks npctr mirrors, by name.

* :func:`load_keras_weights` / :func:`to_keras_weights`: DeepCTR on tf.keras 2 or Keras 3
  (live models and layers, dicts, ``.h5`` / ``.weights.h5`` / ``.keras`` files via h5py);
* :func:`load_torch_state_dict` / :func:`to_torch_state_dict`: DeepCTR-Torch (``state_dict()``,
  modules, ``.pt`` / ``.pth`` files via ``torch.load(weights_only=True)``).

Nothing here imports TensorFlow, Keras, torch or h5py at import time.
"""
from .keras import load_keras_weights, to_keras_weights, keras_spec, map_keras_names
from .torch import load_torch_state_dict, to_torch_state_dict, torch_spec

__all__ = ["load_keras_weights", "to_keras_weights", "keras_spec", "map_keras_names",
           "load_torch_state_dict", "to_torch_state_dict", "torch_spec"]
