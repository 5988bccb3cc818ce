"""npctr's models, mirroring ``deepctr.models``; ``Model`` is their base class."""
from ..registry import register_model, MODEL_REGISTRY
from ..training.trainer import NonFiniteLossError
from .base import Model
from .ctr import DIN, DNNModel
from .dien import DIEN

__all__ = ["Model", "register_model", "MODEL_REGISTRY", "NonFiniteLossError", "DIN", "DNNModel", "DIEN"]
