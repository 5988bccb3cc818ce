"""The equations, as stateless NumPy functions: the bottom floor of npctr.

Every layer's ``forward`` / ``backward``, the Predictor and its small-batch path, and the
ONNX exporter compute with these functions and constants; none restates an equation.
This package imports NumPy and nothing else (``docs/architecture.md``).

* :mod:`~npctr.ops.dense`: ``x W + b`` on the last axis and its backward;
* :mod:`~npctr.ops.activations`: the activation table, PReLU, Dice (normalize and gate);
* :mod:`~npctr.ops.batch_norm`: batch and moving statistics, backward, inference folds;
* :mod:`~npctr.ops.attention`: the split first layer on ``[q, k, q - k, q * k]``, masked weights;
* :mod:`~npctr.ops.sequence`: sum / mean / max pooling over valid positions;
* :mod:`~npctr.ops.gru`: DIEN's GRU cells in both frameworks' layouts, the attention gates, the masked
  step and backpropagation through time;
* :mod:`~npctr.ops.losses`: binary log losses on probabilities (torch's clamped BCE, plain logs).
"""
from . import activations, attention, batch_norm, dense, gru, losses, sequence

__all__ = ["activations", "attention", "batch_norm", "dense", "gru", "losses", "sequence"]
