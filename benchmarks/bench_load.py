#!/usr/bin/env python
"""Loading a large model file: ``npctr.load_model`` against a plain ``np.load`` (a script, not a test).

Writes a ``DNNModel`` whose embedding table dominates the file (``--rows`` x ``--dim``,
float64 by default), then, each in a fresh subprocess (``--repeat`` times, alternating):

* ``np.load(path)`` reading every array (the floor: the bytes must be read);
* ``npctr.load_model(path)``;
* importing npctr and NumPy only (the baseline the other two are measured above).

Peak memory is the child's peak resident set, ``VmHWM`` in ``/proc/self/status`` (Linux; after
an exec, ``ru_maxrss`` still holds the forking parent's peak, so it is only the fallback);
"above baseline" subtracts the import-only child's peak. Targets (issue 9): load time at most
1.5x ``np.load``'s, peak memory at most 1.2x the file size plus a small constant.

Usage::

    python benchmarks/bench_load.py                         # 2M x 16 float64: a 256 MB file
    python benchmarks/bench_load.py --rows 12000000 --dim 16 # 1.5 GB
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import resource, sys, time
    import numpy as np
    import npctr
    what, path = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    if what == "np.load":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    elif what == "load_model":
        model = npctr.load_model(path)
    seconds = time.perf_counter() - t
    try:    # the peak RSS of this process image (ru_maxrss would include the forking parent's)
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(seconds, peak)
""")


def run_child(what, path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))] + sys.path)}
    out = subprocess.run([sys.executable, "-c", CHILD, what, path], check=True, capture_output=True,
                         text=True, env=env).stdout.split()
    return float(out[0]), int(out[1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temp dir)")
    args = parser.parse_args()

    from npctr.feature_column import SparseFeat, DenseFeat
    from npctr.models import DNNModel
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "big.npz")
        model = DNNModel([SparseFeat("item", args.rows, embedding_dim=args.dim), SparseFeat("cate", 100),
                          DenseFeat("score")], dnn_hidden_units=(64, 32), dtype=args.dtype)
        model.save(path)
        del model
        size = os.path.getsize(path)
        results = {"np.load": [], "load_model": [], "baseline": []}
        for i in range(args.repeat):
            order = ["np.load", "load_model", "baseline"]
            for what in (order if i % 2 == 0 else order[::-1]):
                results[what].append(run_child(what, path))
    base_peak = min(p for _, p in results["baseline"])
    mb = 2 ** 20
    print(f"file: {args.rows} x {args.dim} {args.dtype} table, {size / mb:.1f} MiB; "
          f"{args.repeat} runs each, fresh process per run")
    print(f"import-only peak RSS (baseline): {base_peak / mb:.1f} MiB")
    print(f"{'':12s} {'min s':>8s} {'max s':>8s} {'peak RSS MiB':>13s} {'above baseline':>15s} {'/ file size':>12s}")
    for what in ("np.load", "load_model"):
        secs = [s for s, _ in results[what]]
        peak = max(p for _, p in results[what])
        print(f"{what:12s} {min(secs):8.3f} {max(secs):8.3f} {peak / mb:13.1f} {(peak - base_peak) / mb:15.1f}"
              f" {(peak - base_peak) / size:12.3f}")
    ratio = min(s for s, _ in results["load_model"]) / min(s for s, _ in results["np.load"])
    print(f"load_model / np.load time (min over runs): {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
