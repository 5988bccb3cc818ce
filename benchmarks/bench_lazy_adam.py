#!/usr/bin/env python
"""LazyAdam against Adam on one large embedding table (a script, not a test).

One ``apply_gradients`` step on a ``--rows`` x ``--dim`` table (default 1M x 16, float32 and
float64) with a row-sparse gradient (``RowGrad``) touching ``--touched`` rows (default 4096, a
batch of 256 with ~16 ids each), after warm-up steps; Adam (tf.keras's dense math: every
moment row decays, every row moves) and LazyAdam (the touched rows only) interleaved call by
call. Median and minimum over ``--repeat`` steps.

Usage::

    python benchmarks/bench_lazy_adam.py [--rows 1000000] [--dim 16] [--touched 4096] [--repeat 20]
"""
import argparse
import statistics
import time

import numpy as np

from npctr.sparse import RowGrad
from npctr.training.optimizers import Adam, LazyAdam


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--touched", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"table {args.rows} x {args.dim}, {args.touched} touched rows per step, {args.repeat} steps each")
    print(f"{'dtype':8s} {'optimizer':10s} {'median ms':>10s} {'min ms':>8s}")
    for dtype in (np.float32, np.float64):
        tables = {name: rng.normal(size=(args.rows, args.dim)).astype(dtype) for name in ("adam", "lazy")}
        opts = {"adam": Adam(0.001), "lazy": LazyAdam(0.001)}
        times = {"adam": [], "lazy": []}

        def grad():
            rows = np.unique(rng.integers(0, args.rows, args.touched))
            return RowGrad(rows.astype(np.int64), rng.normal(size=(rows.size, args.dim)).astype(dtype),
                           (args.rows, args.dim))

        for i in range(args.repeat + 2):
            g = grad()
            for name in (("adam", "lazy") if i % 2 == 0 else ("lazy", "adam")):
                t = time.perf_counter()
                opts[name].apply_gradients({"e": tables[name]}, {"e": g})
                if i >= 2:
                    times[name].append(time.perf_counter() - t)
        for name, label in (("adam", "Adam"), ("lazy", "LazyAdam")):
            print(f"{np.dtype(dtype).name:8s} {label:10s} {statistics.median(times[name]) * 1e3:10.2f} "
                  f"{min(times[name]) * 1e3:8.2f}")


if __name__ == "__main__":
    main()
