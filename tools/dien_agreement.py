"""Worst normwise relative error of npctr's DIEN against every DIEN recording, per framework, dtype and quantity.

    PYTHONPATH=$PWD python tools/dien_agreement.py

Runs the comparisons of tests/test_frameworks_dien.py (every recorded case of DeepCTR-TF and
DeepCTR-Torch, tests/data/frameworks/dien/) and prints max|npctr - framework| / max|framework| per
quantity: outputs (both modes and the intermediates), the objective and its parts, every gradient,
the moving statistics, the 8-step trajectories (every weight after steps 1 and 8, and the reported
losses). Comparisons the tests make otherwise are reported apart: torch's float32-accumulated
losses (in float32 ulps), float32 attention gradients (at the attention's gradient scale, against the
framework or the exact gradient) and float32 Adam on the attention (as a fraction of the bound).
These are the numbers of docs/dien.md's "Measured agreement". NumPy only.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_frameworks_dien as t  # noqa: E402
from dien_util import load  # noqa: E402

QUANTITIES = (("outputs", ("out_", "mid/")), ("objective", ("data_loss", "reg_loss", "loss", "aux_")),
              ("gradients", ("grad ",)), ("moving statistics", ("after_train",)), ("trajectories", ("step ",)))


def quantity(what):
    if what.startswith("step ") and what.endswith(" loss"):
        return "reported losses"
    for name, prefixes in QUANTITIES:
        if what.startswith(prefixes):
            return name
    return what


def main():
    worst = {}
    original = t._assert_close

    def spy(what, actual, expected, tol, scale=None):
        err = t.rel_error(actual, expected, scale)
        key = (framework, dtype, quantity(what))
        worst[key] = max(worst.get(key, 0.0), err)
        return original(what, actual, expected, tol, scale)

    def note(what, value):
        key = (framework, dtype, what)
        worst[key] = max(worst.get(key, 0.0), float(value))

    t._assert_close, t._note = spy, note
    for file in t.FILES:
        meta = load(file)[1]
        framework, dtype = meta["framework"], meta["dtype"]
        t.test_dien_matches_framework(file)
        for opt in meta["optimizers"]:
            t.test_dien_trajectory_matches_framework(file, opt)
    t._assert_close = original
    for (framework, dtype, name), err in sorted(worst.items()):
        print(f"{framework:8s} {dtype:7s} {name:55s} {err:.2g}")
    print(f"(float32 tolerance {np.float32(1e-5):.0e}, float64 {1e-12:.0e}; see the test's docstring for the rest)")


if __name__ == "__main__":
    main()
