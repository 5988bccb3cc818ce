#!/usr/bin/env python
"""Timing benchmark for npctr's hot layers (a script, not a test).

Times forward (inference, ``training=False``) and forward+backward
(``training=True`` then ``backward``) of

* ``DNN`` (batch 4096, input 256, hidden (256, 128, 64)) and
  ``LocalActivationUnit`` (batch 256, T 50, E 16, hidden (80, 40)),
  float32 against float64;
* ``LocalActivationUnit``, ``AttentionSequencePoolingLayer`` (sigmoid and dice)
  and ``DIN``, the naive first attention layer (``split=False``: the
  ``(B, T, 4E)`` input ``[q, k, q-k, q*k]`` is built and multiplied by one
  kernel) against the split one (``split=True``).

Implementations that are compared are timed in the same run, interleaved call
by call (the order alternates every repeat), because timings drift on a shared
machine. Each timing is one call measured with ``time.perf_counter``; the table
gives the median and the minimum over ``--repeat`` calls, after warm-up calls.

Usage::

    python benchmarks/bench.py              # everything, a few minutes on 2 cores
    python benchmarks/bench.py --quick      # smoke run, seconds
    python benchmarks/bench.py --repeat 50 --only lau,din
"""
import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

import npctr
from npctr.layers import DNN, LocalActivationUnit, AttentionSequencePoolingLayer

SECTIONS = ("dtype", "lau", "asp", "din", "memory")


# -- environment -----------------------------------------------------------------------------
def _openblas_threads():
    """Threads OpenBLAS will use, read from the loaded library itself (None if unknown)."""
    from npctr._blas import blas_threads
    return blas_threads()


def _blas_description():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        desc = f"{blas.get('name')} {blas.get('version')}"
        extra = blas.get("openblas configuration")
        if extra:
            desc += f" ({' '.join(extra.split())})"
    except Exception:   # older NumPy: no mode="dicts"
        desc = "unknown (see numpy.show_config())"
    threads = _openblas_threads()
    if threads is not None:
        desc += f"; {threads} BLAS threads"
    return desc


def _git_revision():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_lines():
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return [
        f"- python {platform.python_version()}, numpy {np.__version__}, npctr {npctr.__version__} "
        f"(git {_git_revision()})",
        f"- BLAS: {_blas_description()}",
        f"- CPU: {_cpu_model()}; os.cpu_count() = {os.cpu_count()}, usable by this process = {usable}",
        f"- load average at start (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load) if load else 'n/a'}",
    ]


# -- timing ----------------------------------------------------------------------------------
def time_interleaved(fns, repeat, warmup):
    """Time each callable ``repeat`` times, one call per sample, alternating their order.

    Returns ``{name: [seconds, ...]}``.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeat):
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                t0 = time.perf_counter()
                fns[n]()
                times[n].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def ms(seconds):
    return f"{1e3 * seconds:.2f}"


def summary(ts):
    return statistics.median(ts), min(ts)


def forward_fn(layer, inputs, **kw):
    return lambda: layer.forward(inputs, training=False, **kw)


def train_fn(layer, inputs, grad, **kw):
    def step():
        layer.forward(inputs, training=True, **kw)
        layer.backward(grad)
    return step


# -- workloads -------------------------------------------------------------------------------
def dnn_case(dtype, batch, rng):
    x = rng.standard_normal((batch, 256)).astype(dtype)
    layer = DNN((256, 128, 64), dtype=dtype)
    out = layer.forward(x)
    return layer, x, np.ones(out.shape, dtype)


def lau_case(dtype, batch, T, split, rng, activation="sigmoid"):
    q = rng.standard_normal((batch, 1, 16)).astype(dtype)
    k = rng.standard_normal((batch, T, 16)).astype(dtype)
    layer = LocalActivationUnit((80, 40), activation, split=split, dtype=dtype)
    out = layer.forward([q, k])
    return layer, [q, k], np.ones(out.shape, dtype)


def asp_case(dtype, batch, T, split, activation, rng):
    q = rng.standard_normal((batch, 1, 16)).astype(dtype)
    k = rng.standard_normal((batch, T, 16)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=(batch, 1))
    layer = AttentionSequencePoolingLayer((80, 40), activation, split=split, dtype=dtype)
    out = layer.forward([q, k, lengths])
    return layer, [q, k, lengths], np.ones(out.shape, dtype)


def din_data(batch, maxlen, rng):
    """A DeepCTR-style DIN example at a realistic small size."""
    from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
    n_item, n_cate = 50_000, 1_000
    columns = [SparseFeat("user", 10_000, embedding_dim=8), SparseFeat("gender", 3, embedding_dim=4),
               SparseFeat("item_id", n_item, embedding_dim=8), SparseFeat("cate_id", n_cate, embedding_dim=8),
               DenseFeat("pay_score", 1),
               VarLenSparseFeat(SparseFeat("hist_item_id", n_item, embedding_dim=8, embedding_name="item_id"),
                                maxlen=maxlen),
               VarLenSparseFeat(SparseFeat("hist_cate_id", n_cate, embedding_dim=8, embedding_name="cate_id"),
                                maxlen=maxlen)]
    lengths = rng.integers(1, maxlen + 1, size=batch)
    valid = np.arange(maxlen) < lengths[:, None]
    x = {"user": rng.integers(1, 10_000, size=batch), "gender": rng.integers(1, 3, size=batch),
         "item_id": rng.integers(1, n_item, size=batch), "cate_id": rng.integers(1, n_cate, size=batch),
         "pay_score": rng.random(batch),
         "hist_item_id": np.where(valid, rng.integers(1, n_item, size=(batch, maxlen)), 0),
         "hist_cate_id": np.where(valid, rng.integers(1, n_cate, size=(batch, maxlen)), 0)}
    return columns, x


def din_case(dtype, batch, maxlen, split, rng):
    from npctr.models.ctr import DIN
    columns, x = din_data(batch, maxlen, rng)
    model = DIN(columns, ["item_id", "cate_id"], dnn_hidden_units=(256, 128, 64), att_hidden_size=(80, 40),
                att_activation="dice", dtype=dtype, split=split)
    out = model.forward(x)
    return model, x, np.ones(out.shape, dtype)


# -- sections --------------------------------------------------------------------------------
def run_dtype_section(args, rng):
    print("\n## float32 vs float64\n")
    print(f"{args.repeat} timed calls each (after {args.warmup} warm-up calls), interleaved; "
          "LocalActivationUnit with split=True (the default).\n")
    print("| layer | shape | pass | float32 median ms | float32 min ms | float64 median ms "
          "| float64 min ms | f64/f32 (median) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    dnn_batch = 256 if args.quick else 4096
    lau_batch = 32 if args.quick else 256
    cases = [("DNN (256, 128, 64)", f"x ({dnn_batch}, 256)",
              {dt: dnn_case(dt, dnn_batch, rng) for dt in ("float32", "float64")}),
             ("LocalActivationUnit (80, 40)", f"q ({lau_batch}, 1, 16), k ({lau_batch}, {args.T}, 16)",
              {dt: lau_case(dt, lau_batch, args.T, True, rng) for dt in ("float32", "float64")})]
    for name, shape, impls in cases:
        for label, make in (("forward", lambda l, x, g: forward_fn(l, x)),
                            ("forward+backward", lambda l, x, g: train_fn(l, x, g))):
            times = time_interleaved({dt: make(*impls[dt]) for dt in impls}, args.repeat, args.warmup)
            (m32, n32), (m64, n64) = summary(times["float32"]), summary(times["float64"])
            print(f"| {name} | {shape} | {label} | {ms(m32)} | {ms(n32)} | {ms(m64)} | {ms(n64)} "
                  f"| {m64 / m32:.2f} |", flush=True)


def print_split_header(title, note):
    print(f"\n## {title}\n")
    print(note + "\n")
    print("| case | dtype | pass | naive median ms | naive min ms | split median ms | split min ms "
          "| naive/split (median) | naive/split (min) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")


def run_split_rows(label, dtype, make_case, args):
    naive, split = make_case(False), make_case(True)
    for pass_name, make in (("forward", lambda l, x, g: forward_fn(l, x)),
                            ("forward+backward", lambda l, x, g: train_fn(l, x, g))):
        times = time_interleaved({"naive": make(*naive), "split": make(*split)}, args.repeat, args.warmup)
        (mn, nn), (ms_, ns) = summary(times["naive"]), summary(times["split"])
        print(f"| {label} | {dtype} | {pass_name} | {ms(mn)} | {ms(nn)} | {ms(ms_)} | {ms(ns)} "
              f"| {mn / ms_:.2f} | {nn / ns:.2f} |", flush=True)


def run_lau_section(args, rng):
    batch = 32 if args.quick else 256
    print_split_header("LocalActivationUnit: naive vs split",
                       f"q ({batch}, 1, 16), k ({batch}, {args.T}, 16), hidden (80, 40), sigmoid; "
                       f"{args.repeat} interleaved calls each.")
    for dt in args.dtypes:
        run_split_rows(f"LAU B={batch} T={args.T}", dt, lambda s: lau_case(dt, batch, args.T, s, rng), args)


def run_asp_section(args, rng):
    batch = 32 if args.quick else 256
    print_split_header("AttentionSequencePoolingLayer: naive vs split",
                       f"q ({batch}, 1, 16), k ({batch}, {args.T}, 16), keys_length uniform in [1, {args.T}], "
                       f"att (80, 40), no weight normalization (DIN's default); {args.repeat} interleaved calls each.")
    for act in ("sigmoid", "dice"):
        for dt in args.dtypes:
            run_split_rows(f"ASP {act} B={batch} T={args.T}", dt,
                           lambda s: asp_case(dt, batch, args.T, s, act, rng), args)


def run_din_section(args, rng):
    try:
        import npctr.models.ctr  # noqa: F401
    except ImportError as exc:
        print(f"\n## DIN: naive vs split\n\nskipped: npctr.models.ctr does not import ({exc})")
        return
    batches = (64,) if args.quick else args.din_batches
    print_split_header("DIN: naive vs split",
                       f"features: user (8), gender (4), item_id (8), cate_id (8), pay_score (dense), "
                       f"hist_item_id / hist_cate_id (maxlen {args.T}, sharing the item/cate tables, "
                       f"lengths uniform in [1, {args.T}]); att (80, 40) dice, dnn (256, 128, 64) relu; "
                       f"forward+backward is forward(training=True) + backward(ones) (no optimizer step); "
                       f"{args.repeat} interleaved calls each.")
    for batch in batches:
        for dt in args.dtypes:
            run_split_rows(f"DIN B={batch}", dt, lambda s: din_case(dt, batch, args.T, s, rng), args)


def peak_extra_bytes(fn):
    """Peak bytes allocated (tracked by tracemalloc, NumPy buffers included) during one call,
    and bytes still held afterwards (the output plus any cache)."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = fn()
        after, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - before, after - before


def run_memory_section(args, rng):
    batch = 32 if args.quick else 256
    print("\n## LocalActivationUnit: peak extra memory of one call\n")
    print(f"q ({batch}, 1, 16), k ({batch}, {args.T}, 16), hidden (80, 40); tracemalloc on a single call "
          "(NumPy's buffers are tracked), inputs and weights excluded. 'held after' is what the call "
          "leaves allocated: the output, plus the backward cache in training mode.\n")
    print("| dtype | call | naive peak MiB | split peak MiB | naive held after MiB | split held after MiB "
          "| naive/split (peak) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    mib = 2.0 ** 20
    for dt in args.dtypes:
        naive, split = lau_case(dt, batch, args.T, False, rng), lau_case(dt, batch, args.T, True, rng)
        for label, training in (("forward (inference)", False), ("forward (training, keeps cache)", True)):
            res = {}
            for name, (layer, x, _) in (("naive", naive), ("split", split)):
                layer._cache = None   # release the previous call's cache so it is not counted as held
                res[name] = peak_extra_bytes(lambda: layer.forward(x, training=training))
                layer._cache = None
            (pn, hn), (ps, hs) = res["naive"], res["split"]
            print(f"| {dt} | {label} | {pn / mib:.2f} | {ps / mib:.2f} | {hn / mib:.2f} | {hs / mib:.2f} "
                  f"| {pn / ps:.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny shapes, few repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per implementation "
                        "(default 30, 3 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3, 1 with --quick)")
    parser.add_argument("--T", type=int, default=50, help="sequence length / DIN maxlen (default 50)")
    parser.add_argument("--dtypes", default="float64,float32",
                        help="dtypes of the naive/split comparisons (default float64,float32)")
    parser.add_argument("--din-batches", default="256,1024", help="DIN batch sizes (default 256,1024)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, from {','.join(SECTIONS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 30
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.quick:
        args.T = min(args.T, 10)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.din_batches = [int(b) for b in args.din_batches.split(",") if b.strip()]
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    print("# npctr benchmark\n")
    cmd = " ".join(["python benchmarks/bench.py"] + list(sys.argv[1:] if argv is None else argv))
    print(f"command: `{cmd}`")
    print()
    print("\n".join(environment_lines()))
    runners = {"dtype": run_dtype_section, "lau": run_lau_section, "asp": run_asp_section,
               "din": run_din_section, "memory": run_memory_section}
    for s in SECTIONS:
        if s in sections:
            t0 = time.perf_counter()
            runners[s](args, rng)
            load = os.getloadavg() if hasattr(os, "getloadavg") else None
            print(f"\n_section time {time.perf_counter() - t0:.1f} s"
                  + (f"; 1-min load average after it {load[0]:.2f} (this run itself adds about "
                     f"{_openblas_threads() or 1} while a BLAS call runs)_" if load else "_"))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s"
          + (f"; load average at end: {', '.join(f'{x:.2f}' for x in load)}" if load else ""))


if __name__ == "__main__":
    main()
