"""Serving: scoring with a trained model, NumPy only at run time.

* :class:`Predictor` (``model.inference()``): prepared weights, a small-batch path for 1-16
  rows, cache-sized chunks on a thread pool for large batches (``docs/inference.md``); a DIEN's
  is :class:`DIENPredictor` (:mod:`npctr.serving.dien`: the GRUs on packed sequences);
* ``python -m npctr predict`` (:mod:`npctr.serving.batch_predict`): score ``.npz`` / ``.csv`` /
  ``.parquet`` files chunk by chunk, with the readers of :mod:`npctr.serving.tabular`;
* :func:`npctr.serving.dask.predict` (also ``npctr.dask.predict``): score a Dask data frame.

The batch and Dask modules import their optional packages (pyarrow, dask) only when used.
"""
from .predictor import Predictor, PAIRS_PER_CHUNK, ROWS_PER_CHUNK
from .small_batch import SMALL_ROWS
from .dien import DIENPredictor, DIEN_ROWS_PER_CHUNK

__all__ = ["Predictor", "DIENPredictor", "PAIRS_PER_CHUNK", "ROWS_PER_CHUNK", "DIEN_ROWS_PER_CHUNK", "SMALL_ROWS"]
