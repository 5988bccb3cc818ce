"""npctr's models, mirroring ``deepctr.models``; ``Model`` is their base class."""
from .base import Model, register_model, MODEL_REGISTRY, NonFiniteLossError
from .ctr import DIN, DNNModel

__all__ = ["Model", "register_model", "MODEL_REGISTRY", "NonFiniteLossError", "DIN", "DNNModel"]
