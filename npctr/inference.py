"""The Predictor's former module path: see :mod:`npctr.serving.predictor`."""
from .serving.predictor import Predictor, PAIRS_PER_CHUNK, ROWS_PER_CHUNK  # noqa: F401

__all__ = ["Predictor", "PAIRS_PER_CHUNK", "ROWS_PER_CHUNK"]
