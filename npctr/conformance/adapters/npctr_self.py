"""npctr itself, in the case's dtype: the smallest complete adapter (a template) and a self-check.

In float64 it reproduces the reference bit for bit; in float32 it measures npctr's own float32
round-off against the float64 reference (``rtol`` 1e-5).
"""
import numpy as np

from ...interop.golden import record_quantities
from ..cases import GIVEN

NAME = "npctr (self-check)"


def run(case):
    target = case.build()
    named = {k: v for k, v in case.inputs.items()}
    if case.kind == "din":
        forward_input = {k: v for k, v in named.items() if k != "y"}
        float_names = [fc.name for fc in target.dense_columns]
    elif case.kind == "dnn":
        forward_input, float_names = named["x"], ["x"]
    elif case.kind == "lau" or "mask" in named:
        forward_input, float_names = [named["query"], named["keys"]], ["query", "keys"]
    else:
        forward_input = [named["query"], named["keys"], named["keys_length"]]
        float_names = ["query", "keys", None]
    arrays, _ = record_quantities(target, forward_input, named, float_names, np.random.default_rng(0),
                                  upstream=case.upstream)
    return {k: v for k, v in arrays.items() if not k.startswith(GIVEN)}
