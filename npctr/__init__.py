"""npctr: DeepCTR's layers and the DIN model in NumPy, with hand-written backward passes."""
__version__ = "0.1.0"

from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all
from .gradcheck import numerical_gradient, check_gradients, assert_gradients_ok

__all__ = list(_layers_all) + ["numerical_gradient", "check_gradients", "assert_gradients_ok"]
from .io import load_model, save_model  # noqa: E402
from . import training  # noqa: E402,F401

__all__ += ["load_model", "save_model", "training"]


def export_onnx(model, path):
    """Write ``model``'s inference graph (DIN, DNNModel or DNN) to ``path`` as ONNX; see
    :func:`npctr.interop.onnx.export_onnx` and ``docs/onnx.md``. Imports onnx only when called."""
    from .interop.onnx import export_onnx as _export
    return _export(model, path)


__all__ += ["export_onnx"]
