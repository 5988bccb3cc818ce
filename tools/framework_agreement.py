"""Worst normwise relative error of npctr against every framework recording, per framework and dtype.

    PYTHONPATH=$PWD python tools/framework_agreement.py

Runs the parity tests' comparisons (tests/test_frameworks_din.py, tests/test_frameworks_training.py)
and prints max|npctr - framework| / max|framework| over every compared array (exact-zero
gradients against their layer's scale, as the tests judge them). These are the numbers of the
"Measured agreement" table in docs/conventions.md. NumPy only.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import framework_util  # noqa: E402
import test_frameworks_din  # noqa: E402
import test_frameworks_training  # noqa: E402


def main():
    worst = {}
    original = framework_util.rel_error
    for kind, module, cases, test in (
            ("din", test_frameworks_din, test_frameworks_din.DIN_CASES,
             test_frameworks_din.test_din_matches_framework),
            ("train", test_frameworks_training, test_frameworks_training.TRAIN_CASES,
             test_frameworks_training.test_training_trajectory_matches_framework)):
        for file in cases:
            meta = framework_util.load(file)[1]
            key = (kind, meta["framework"], meta["dtype"])

            def spy(actual, expected, scale=None, _key=key):
                err = original(actual, expected, scale)
                worst[_key] = max(worst.get(_key, 0.0), err)
                return err
            module.rel_error = spy
            test(file)
        module.rel_error = original
    for (kind, framework, dtype), err in sorted(worst.items()):
        print(f"{kind:5s} {framework:8s} {dtype:7s} {err:.2g}")


if __name__ == "__main__":
    main()
