#!/usr/bin/env python
"""Cost of the all-or-nothing training step (a script, not a test).

Times one demo-size DIN training step (the demo's model and data, batch 256) two ways,
interleaved call by call: ``model._train_step`` (snapshot of the moving statistics and
generators, gradient checks, SIGINT guard, update) against the bare work
(``_loss_and_gradients`` then ``optimizer.apply_gradients``), and times the transaction's
parts alone.

Usage::

    python benchmarks/bench_step.py [--repeat 60] [--batch-size 256]
"""
import argparse
import statistics
import time

import numpy as np

from npctr.demo import load_data, MODEL, DIN_ONLY
from npctr.models import DIN
from npctr.training import Adam
from npctr.training.atomic import StepGuard, check_update


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    (x, y), _, columns, history = load_data(4000, seed=2024)
    model = DIN(columns, history, **MODEL, **DIN_ONLY)
    model.compile(Adam(0.003), "binary_crossentropy")
    xa, n = model._check_x(x)
    ya = model._check_y(y, n)
    b = args.batch_size

    def batch(i):
        lo = (i * b) % (n - b)
        return {k: v[lo:lo + b] for k, v in xa.items()}, ya[lo:lo + b]

    def guarded(i):
        xb, yb = batch(i)
        model._train_step(xb, yb, (1, i + 1))

    def bare(i):
        xb, yb = batch(i)
        model._loss_and_gradients(xb, yb, (1, i + 1))
        model.optimizer.apply_gradients(model._trainable_params(), model.grads)

    def parts():
        t0 = time.perf_counter()
        snap = model.snapshot()
        t1 = time.perf_counter()
        model.restore(snap)
        t2 = time.perf_counter()
        check_update(model._trainable_params(), model.grads)
        t3 = time.perf_counter()
        with StepGuard() as guard:
            guard.commit()
        t4 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3

    for i in range(3):
        guarded(i), bare(i)
    times = {"guarded": [], "bare": []}
    for i in range(args.repeat):
        order = (("guarded", guarded), ("bare", bare)) if i % 2 == 0 else (("bare", bare), ("guarded", guarded))
        for name, fn in order:
            t = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t)
    p = np.array([parts() for _ in range(args.repeat)])
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"DIN demo model, batch {b}, {args.repeat} steps each, interleaved (median ms):")
    print(f"  bare step (loss+gradients, update)   {med['bare']:8.3f}")
    print(f"  all-or-nothing step (_train_step)    {med['guarded']:8.3f}   "
          f"({(med['guarded'] / med['bare'] - 1) * 100:+.1f}%)")
    for name, col in zip(("snapshot", "restore (only on failure)", "check_update", "StepGuard"), p.T):
        print(f"  {name:36s} {np.median(col) * 1e3:8.3f}")


if __name__ == "__main__":
    main()
