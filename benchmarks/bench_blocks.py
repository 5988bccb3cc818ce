#!/usr/bin/env python
"""What ``npctr.ops.blocks`` and the per-feature sums buy, measured alone (docs/performance.md,
"Both cores in a training step").

Sections (``--only``):

* ``handover``: one ``blocks.run`` of two empty blocks: what handing a block to the pool costs;
* ``passes``: the large passes of DIN's attention with 1 and 2 threads (``set_num_threads``),
  block-alternated, OpenBLAS single-threaded as the Trainer runs it, at the sizes of a training
  step (6,656 rows: the shared-padding units of batch 256) and of the layer called on all 12,800
  positions of batch 256;
* ``sums``: per-feature sums over rows (``np.sum`` against ``ops.rows.column_sums``'s GEMV) and sums
  over the time steps (``np.sum(axis=1)`` against ``ops.rows.step_sums``);
* ``adam``: tf.keras Adam's update (``Adam.apply_gradients``) with the element-wise blocks of
  ``npctr.training.optimizers._BLOCK`` at 16,384 and 262,144 elements, one thread;
* ``train``: DIN ``fit`` (bench_frameworks.py's model and data, 20k rows, batch 256, Adam) with 1
  and 2 threads, epochs alternated.

Usage::

    python benchmarks/bench_blocks.py                  # ~2 min on 2 idle cores
    python benchmarks/bench_blocks.py --only passes,sums
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)

from npctr._blas import single_threaded_blas  # noqa: E402
from npctr.ops import blocks  # noqa: E402
from npctr.ops.activations import sigmoid  # noqa: E402
from npctr.ops.dense import matmul_last, transposed_product  # noqa: E402
from npctr.ops.rows import column_sums, per_feature, step_sums  # noqa: E402
from bench_serving import fmt_ms, load_line, time_blocks  # noqa: E402

SECTIONS = ("handover", "passes", "sums", "adam", "train")


def ratio_row(label, first, second, rounds, block_ms=60):
    """Time two callables block-alternated; print ``| label | first ms | second ms | ratio | load |``."""
    res = time_blocks({"first": first, "second": second}, rounds, block_ms)
    a, b = res["first"][0], res["second"][0]
    print(f"| {label} | {fmt_ms(a)} | {fmt_ms(b)} | {a / b:.2f} | {load_line()} |", flush=True)


def with_threads(fn, n):
    def call():
        blocks.set_num_threads(n)
        return fn()
    return call


def run_handover(args):
    blocks.set_num_threads(2)
    res = time_blocks({"run": lambda: blocks.run(lambda lo, hi: None, [(0, 1), (1, 2)])}, args.rounds, 60)
    print(f"\n## Hand-over\n\none `blocks.run` of two empty blocks (the caller takes one, a pool worker the other): "
          f"{1e6 * res['run'][0]:.1f} us median ({1e6 * res['run'][1]:.1f} min); load {load_line()}")


def run_passes(args):
    rng = np.random.default_rng(0)
    print("\n## Large passes, 1 and 2 threads (float32, OpenBLAS single-threaded)\n")
    print("| pass | rows | 1 thread ms | 2 threads ms | 1 / 2 | load |")
    print("|---|---:|---:|---:|---:|---|")
    for rows in (6656, 12800):
        x = rng.standard_normal((rows, 80)).astype(np.float32)
        keys = rng.standard_normal((rows, 16)).astype(np.float32)
        v = rng.standard_normal(80).astype(np.float32)
        w = rng.standard_normal((80, 40)).astype(np.float32)
        cases = {"sigmoid (rows, 80)": lambda: sigmoid(x),
                 "per_feature multiply (rows, 80)": lambda: per_feature(np.multiply, x, v),
                 "x W, (rows, 80) @ (80, 40)": lambda: matmul_last(x, w),
                 "weight gradient k^T dz, (16, rows) @ (rows, 80)": lambda: transposed_product(keys, x)}
        for name, fn in cases.items():
            with single_threaded_blas():
                ratio_row(f"{name} | {rows:,}", with_threads(fn, 1), with_threads(fn, 2), args.rounds)


def run_sums(args):
    rng = np.random.default_rng(0)
    print("\n## Sums (float32, one thread, OpenBLAS single-threaded)\n")
    print("| sum | NumPy ms | npctr ms | NumPy / npctr | load |")
    print("|---|---:|---:|---:|---|")
    units = rng.standard_normal((6656, 80)).astype(np.float32)
    cases = [("per-feature sum over (6656, 80) rows: np.sum(axis=0) vs column_sums",
              lambda: units.sum(axis=0), lambda: column_sums(units))]
    for h in (80, 16):
        a = rng.standard_normal((256, 50, h)).astype(np.float32)
        cases.append((f"sum over T of (256, 50, {h}): np.sum(axis=1) vs step_sums",
                      lambda a=a: a.sum(axis=1, keepdims=True), lambda a=a: step_sums(a)))
    blocks.set_num_threads(1)
    with single_threaded_blas():            # as the Trainer runs them
        for name, plain, ours in cases:
            ratio_row(name, plain, ours, args.rounds)


def run_adam(args):
    import npctr.training.optimizers as optimizers
    rng = np.random.default_rng(0)
    print("\n## Adam's update by block size (float32, one thread)\n")
    print("| elements | 16,384-element blocks ms | 262,144-element blocks ms | ratio | load |")
    print("|---:|---:|---:|---:|---|")
    blocks.set_num_threads(1)
    saved = optimizers._BLOCK
    try:
        for n in (400_000, 8_000_000):
            fns = {}
            for size in (16384, 262144):
                opt = optimizers.Adam()
                params = {"w": rng.standard_normal(n).astype(np.float32)}
                grads = {"w": 0.01 * rng.standard_normal(n).astype(np.float32)}

                def step(opt=opt, params=params, grads=grads, size=size):
                    optimizers._BLOCK = size
                    opt.apply_gradients(params, grads)
                fns[size] = step
            ratio_row(f"{n:,}", fns[16384], fns[262144], args.rounds, 100)
    finally:
        optimizers._BLOCK = saved


def run_train(args):
    import bench_frameworks as bf
    rng = np.random.default_rng(1)
    rows = args.train_rows
    x = bf.din_data(rows, rng)
    y = (rng.random(rows) < 0.3).astype(np.float32)
    model = bf.npctr_din()
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=False)      # warm-up
    rate = {1: [], 2: []}
    for r in range(2 * args.train_rounds):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            blocks.set_num_threads(n)
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=False)
            rate[n].append(rows / (time.perf_counter() - t0))
    print(f"\n## DIN fit, {rows:,} rows, batch 256, Adam, float32: 1 and 2 threads, epochs alternated\n")
    print("| threads | rows/s (best) | rows/s (median) | load |")
    print("|---:|---:|---:|---|")
    for n in (1, 2):
        print(f"| {n} | {max(rate[n]):,.0f} | {np.median(rate[n]):,.0f} | {load_line()} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--train-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    runners = {"handover": run_handover, "passes": run_passes, "sums": run_sums, "adam": run_adam,
               "train": run_train}
    print(f"load at start: {load_line()}; {os.cpu_count()} CPUs")
    threads = blocks.num_threads()
    for name in args.only.split(","):
        try:
            runners[name](args)
        finally:                # sections set the threads they compare: back to this process's own
            blocks.set_num_threads(threads)


if __name__ == "__main__":
    main()
