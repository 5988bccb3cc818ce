"""``npctr.dask.predict``: Dask batch scoring, kept at this public path; the code is
:mod:`npctr.serving.dask` (the optional ``dask`` extra is imported only when used)."""
from .serving.dask import predict, cached_model, SCORE, DEFAULT_BATCH_SIZE, _MODELS  # noqa: F401

__all__ = ["predict", "cached_model", "SCORE", "DEFAULT_BATCH_SIZE"]
