"""npctr: DeepCTR's layers and the DIN model in NumPy, with hand-written backward passes.

The package is built in floors (``docs/architecture.md``): :mod:`npctr.ops` (the equations)
under :mod:`npctr.layers`, under :mod:`npctr.models` (with the trainer of
:mod:`npctr.training` and the Predictor of :mod:`npctr.serving`), under :mod:`npctr.interop`.
"""
from ._version import __version__
from . import _memory
from . import layers, models, training
from .layers import *  # noqa: F401,F403
from .gradcheck import numerical_gradient, check_gradients, assert_gradients_ok
from .io import load_model, save_model
from .serving import Predictor

__all__ = [*layers.__all__, "numerical_gradient", "check_gradients", "assert_gradients_ok", "load_model",
           "save_model", "Predictor", "export_onnx", "training", "models"]


_memory.configure()       # the layers' MiB-sized temporaries reused, not page-faulted in (npctr._memory)


def export_onnx(model, path):
    """Write ``model``'s inference graph (DIN, DNNModel or DNN) to ``path`` as ONNX; see
    :func:`npctr.interop.onnx.export_onnx` and ``docs/onnx.md``. Imports onnx only when called."""
    from .interop.onnx import export_onnx as _export
    return _export(model, path)
