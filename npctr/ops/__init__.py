"""The equations, as stateless NumPy functions: the bottom floor of npctr.

Every layer's ``forward`` / ``backward``, the Predictor and its small-batch path, and the
ONNX exporter compute with these functions and constants; none restates an equation.
This package imports NumPy and nothing else (``docs/architecture.md``), except the standard
library's threads and ``npctr._blas`` in :mod:`~npctr.ops.blocks`.

* :mod:`~npctr.ops.dense`: ``x W + b`` on the last axis and its backward;
* :mod:`~npctr.ops.activations`: the activation table, PReLU, Dice (normalize and gate);
* :mod:`~npctr.ops.batch_norm`: batch and moving statistics, backward, inference folds;
* :mod:`~npctr.ops.attention`: the split first layer on ``[q, k, q - k, q * k]``, masked weights;
* :mod:`~npctr.ops.sequence`: sum / mean / max pooling over valid positions;
* :mod:`~npctr.ops.gru`: DIEN's GRU cells in both frameworks' layouts, the attention gates, the masked
  step and backpropagation through time;
* :mod:`~npctr.ops.losses`: binary log losses on probabilities (torch's clamped BCE, plain logs);
* :mod:`~npctr.ops.rows` and :mod:`~npctr.ops.blocks`: layout devices, not equations: per-feature
  vectors and sums over rows as NumPy runs them fastest, and large passes in row blocks over the cores.
"""
from . import activations, attention, batch_norm, blocks, dense, gru, losses, rows, sequence

__all__ = ["activations", "attention", "batch_norm", "blocks", "dense", "gru", "losses", "rows", "sequence"]
