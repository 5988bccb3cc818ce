#!/usr/bin/env python
"""Peak memory and throughput of ``python -m npctr predict`` (a script, not a test).

Writes a demo-size DIN and synthetic impressions (``make_din_data``, T = 30) as ``.npz``,
``.csv`` (histories as ``name_i`` columns) and ``.parquet`` (histories as list columns) at two
sizes, then scores each file in a fresh process and reports the process's peak RSS
(``VmHWM``, Linux), the wall time and rows/s. Streaming means the peak RSS does not grow with
the file: compare the two sizes' rows.

Usage::

    python benchmarks/batch_predict.py                  # 25k and 100k rows, about a minute on 2 cores
    python benchmarks/batch_predict.py --rows 5000 20000 --batch-size 1024
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# VmHWM, not ru_maxrss: Linux carries the forking parent's peak into a child's ru_maxrss across exec
RUN = """
import sys, time
from npctr.batch_predict import main
start = time.perf_counter()
code = main(sys.argv[1:])
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(seconds, peak, code)
"""


def write_inputs(directory, n):
    from npctr.datasets import make_din_data
    x, _, columns, history = make_din_data(n, maxlen=30, seed=1)
    paths = {}
    paths[".npz"] = os.path.join(directory, f"in_{n}.npz")
    np.savez(paths[".npz"], **x)
    paths[".csv"] = os.path.join(directory, f"in_{n}.csv")
    flat = {}
    for k, v in x.items():
        v = np.asarray(v).reshape(n, -1)
        flat.update({k: v[:, 0]} if v.shape[1] == 1 else {f"{k}_{i}": v[:, i] for i in range(v.shape[1])})
    with open(paths[".csv"], "w") as f:
        f.write(",".join(flat) + "\n")
        cols = [np.char.mod("%.17g" if v.dtype.kind == "f" else "%d", v) for v in flat.values()]
        for row in zip(*cols):
            f.write(",".join(row) + "\n")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = {k: (pa.array(list(np.asarray(v))) if np.ndim(v) == 2 and np.shape(v)[1] > 1
                     else pa.array(np.asarray(v).reshape(n))) for k, v in x.items()}
        paths[".parquet"] = os.path.join(directory, f"in_{n}.parquet")
        pq.write_table(pa.table(table), paths[".parquet"])
    except ImportError:
        pass
    return columns, history, paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[25000, 100000])
    ap.add_argument("--batch-size", type=int, default=4096)
    args = ap.parse_args()
    from npctr.models import DIN
    print(f"# python -m npctr predict, --batch-size {args.batch_size}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, numpy {np.__version__}")
    print(f"{'input':<10} {'rows':>8} {'file MiB':>9} {'peak RSS MiB':>13} {'seconds':>8} {'rows/s':>9}")
    with tempfile.TemporaryDirectory() as directory:
        model_path = os.path.join(directory, "din.npz")
        for n in args.rows:
            columns, history, paths = write_inputs(directory, n)
            if not os.path.exists(model_path):
                DIN(columns, history, dnn_hidden_units=(128, 64), att_hidden_size=(80, 40),
                    dtype="float32").save(model_path)
            for ext, path in paths.items():
                out = os.path.join(directory, "scores.npz")
                run = subprocess.run([sys.executable, "-c", RUN, model_path, "-i", path, "-o", out, "-q",
                                      "--batch-size", str(args.batch_size)], capture_output=True, text=True,
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
                if run.returncode:
                    sys.exit(run.stderr)
                seconds, peak_kib, _ = run.stdout.split()
                seconds = float(seconds)
                print(f"{ext:<10} {n:>8} {os.path.getsize(path) / 2 ** 20:>9.1f} {int(peak_kib) / 1024:>13.0f} "
                      f"{seconds:>8.2f} {n / seconds:>9.0f}")


if __name__ == "__main__":
    main()
