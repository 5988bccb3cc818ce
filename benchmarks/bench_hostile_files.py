#!/usr/bin/env python
"""What a hostile model file costs ``npctr.load_model`` before it is refused, and what a legitimate
large one costs to load, against ``np.load`` (issue 17, point 1; a script, not a test).

Part 1: every kind of hostile or damaged file of ``benchmarks/hostile_files.py`` (the 1 GiB junk
member, headers claiming 1e10 values, forged zip directories, absurd configs, a FIFO, a device,
...) is built at full size in a temp directory and handed to ``load_model`` in a fresh process;
the table gives the file's size, the time to the ``ValueError`` and the process's peak resident
memory (``VmHWM``: the interpreter with NumPy and npctr imported is most of it; "above import" is
the peak minus the import-only baseline). Targets: every refusal a ``ValueError`` in under 0.5 s
and under 100 MB peak memory.

Part 2 (``--legit-rows``, default 12,000,000 x 16 float64: a 1.5 GB file; 0 skips it): a
``DNNModel`` dominated by one embedding table, loaded ``--repeat`` times by ``np.load`` (every
array read) and by ``load_model``, alternating, each in a fresh process (``bench_load.py``'s
children). Target: ``load_model`` within 1.2x ``np.load``'s time and peak memory.

Usage::

    python benchmarks/bench_hostile_files.py                    # both parts (~2 min, 5 GB of RAM, 3 GB of disk)
    python benchmarks/bench_hostile_files.py --legit-rows 0     # hostile files only
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]

import hostile_files  # noqa: E402
import bench_load  # noqa: E402

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import npctr

    def peak():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    base = peak()
    t = time.perf_counter()
    try:
        npctr.load_model(sys.argv[1])
        outcome = "LOADED"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t
    print(seconds, peak(), base)
    print(outcome.replace(chr(10), " "))
""")


def refuse(path, timeout=60):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT] + sys.path)}
    out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, env=env,
                         timeout=timeout)
    if out.returncode:
        return None, None, None, f"child failed: {out.stderr.strip().splitlines()[-1:]}"
    first, outcome = out.stdout.split("\n", 1)
    seconds, peak, base = first.split()
    return float(seconds), int(peak), int(base), outcome.strip()


def hostile(tmp):
    mb = 2 ** 20
    base = hostile_files.base_model(os.path.join(tmp, "base.npz"))
    print(f"legitimate base model: a small DIN, {os.path.getsize(base) / 1024:.1f} KiB")
    print(f"{'kind':30s} {'file':>10s} {'refused in':>11s} {'peak RSS':>9s} {'above import':>13s}  error")
    worst_time = worst_peak = 0.0
    for name, (build, _) in hostile_files.KINDS.items():
        d = tempfile.mkdtemp(dir=tmp)
        path = build(d, base, 1)
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        seconds, peak, base_peak, outcome = refuse(path)
        if seconds is None or not outcome.startswith("ValueError"):
            print(f"{name:30s} NOT REFUSED AS EXPECTED: {outcome}")
            continue
        worst_time, worst_peak = max(worst_time, seconds), max(worst_peak, peak)
        size_text = f"{size / mb:8.2f}MB" if size else "  (special)"
        message = outcome[len("ValueError: "):].split(": ", 1)[-1] if "member" not in outcome else \
            outcome.split("': ", 1)[-1]
        print(f"{name:30s} {size_text:>10s} {seconds * 1000:9.1f}ms {peak / mb:7.1f}MB {(peak - base_peak) / mb:11.1f}MB"
              f"  {message[:70]}")
        for entry in os.listdir(d):
            p = os.path.join(d, entry)
            if os.path.isfile(p) and not os.path.islink(p):
                os.unlink(p)
    print(f"slowest refusal {worst_time * 1000:.1f} ms (target < 500 ms), highest peak {worst_peak / mb:.1f} MB "
          f"(target < 100 MB)")


def legit(tmp, rows, dim, repeat):
    from npctr.feature_column import SparseFeat, DenseFeat
    from npctr.models import DNNModel
    path = os.path.join(tmp, "big.npz")
    model = DNNModel([SparseFeat("item", rows, embedding_dim=dim), SparseFeat("cate", 100), DenseFeat("score")],
                     dnn_hidden_units=(64, 32))
    model.save(path)
    del model
    size = os.path.getsize(path)
    results = {"np.load": [], "load_model": [], "baseline": []}
    for i in range(repeat):
        order = ["np.load", "load_model", "baseline"]
        for what in (order if i % 2 == 0 else order[::-1]):
            results[what].append(bench_load.run_child(what, path))
    mb = 2 ** 20
    base = min(p for _, p in results["baseline"])
    print(f"\nlegitimate model: {rows} x {dim} float64 table, file {size / mb:.1f} MiB; {repeat} runs each, "
          "fresh process per run")
    print(f"{'':12s} {'min s':>8s} {'max s':>8s} {'peak RSS MiB':>13s} {'above import':>13s}")
    for what in ("np.load", "load_model"):
        secs = [s for s, _ in results[what]]
        peak = max(p for _, p in results[what])
        print(f"{what:12s} {min(secs):8.3f} {max(secs):8.3f} {peak / mb:13.1f} {(peak - base) / mb:13.1f}")
    t = min(s for s, _ in results["load_model"]) / min(s for s, _ in results["np.load"])
    m = max(p for _, p in results["load_model"]) / max(p for _, p in results["np.load"])
    print(f"load_model / np.load: time {t:.2f}x, peak memory {m:.2f}x (targets <= 1.2)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legit-rows", type=int, default=12_000_000, help="0: skip the legitimate model")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        hostile(tmp)
        if args.legit_rows:
            legit(tmp, args.legit_rows, args.dim, args.repeat)


if __name__ == "__main__":
    main()
