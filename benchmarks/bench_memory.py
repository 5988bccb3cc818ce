#!/usr/bin/env python
"""What ``npctr._memory`` (glibc's mmap and trim thresholds raised at import) buys.

    python benchmarks/bench_memory.py            # ~1 min on 2 idle cores

Each call is timed in fresh subprocesses, one per call and variant (the thresholds are a
process-wide setting made when npctr is imported, and glibc adapts its own threshold to what a
process has freed before, so calls must not share a process): npctr as it is imported, and with
``NPCTR_MALLOC_TUNING=0`` (glibc's defaults). Rounds alternate between the two, order flipped each
round. In each child, blocks of calls (``time_blocks`` of ``bench_serving.py``) of one of:

* the ``LocalActivationUnit`` forward (inference mode) and forward+backward (training mode), float32,
  query (256, 1, 16), keys (256, 50, 16), hidden (80, 40), sigmoid and Dice, one BLAS thread;
* one DIN training step (``train_on_batch``, batch 256, Adam, the benchmark DIN of ``bench_serving``);
* the Predictor at batch 4096 (its buffers are reused either way: the control).

Reported: median ms per call, minor page faults per call, and the ratio default / tuned.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{root!r}, {here!r}]
    import numpy as np
    import npctr, npctr._memory
    from npctr.layers import LocalActivationUnit
    from npctr._blas import single_threaded_blas
    from bench_serving import time_blocks, din_model
    from bench import din_data

    rng = np.random.default_rng(2)
    b, t, e = 256, 50, 16
    q = rng.standard_normal((b, 1, e)).astype(np.float32)
    k = rng.standard_normal((b, t, e)).astype(np.float32)
    g = rng.standard_normal((b, t, 1)).astype(np.float32)
    fns = {{}}
    for act in ("sigmoid", "dice"):
        lau = LocalActivationUnit((80, 40), act, dtype="float32")

        def fwd(lau=lau):
            with single_threaded_blas():
                return lau.forward([q, k])

        def fb(lau=lau):
            with single_threaded_blas():
                lau.forward([q, k], training=True)
                return lau.backward(g)
        fns[f"LocalActivationUnit {{act}} forward"] = fwd
        fns[f"LocalActivationUnit {{act}} forward+backward"] = fb

    model = din_model("float32")
    model.compile("adam", "binary_crossentropy")
    _, x_train = din_data(256, 50, rng)
    y_train = rng.integers(0, 2, 256).astype(np.float32)
    fns["DIN train_on_batch, batch 256"] = lambda: model.train_on_batch(x_train, y_train)
    predictor = model.inference(threads=2)
    _, x_big = din_data(4096, 50, rng)
    fns["Predictor, batch 4096 (control)"] = lambda: predictor.predict(x_big)
    if {call!r} not in fns:
        print(json.dumps(sorted(fns)))
        sys.exit(0)
    res = time_blocks({{{call!r}: fns[{call!r}]}}, {rounds}, {block_ms})
    print(json.dumps({{"configured": npctr._memory.configured, "results": res}}))
""")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="subprocess rounds per variant")
    ap.add_argument("--block-rounds", type=int, default=7, help="time_blocks rounds inside each child")
    ap.add_argument("--block-ms", type=float, default=80.0)
    args = ap.parse_args(argv)
    sys.path[:0] = [ROOT, HERE]
    from bench import environment_lines
    print("# glibc malloc thresholds (npctr._memory)\n")
    print("command: `python benchmarks/bench_memory.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])) + "`\n")
    for line in environment_lines():
        print(line)
    load0 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    variants = {"tuned (as imported)": {}, "NPCTR_MALLOC_TUNING=0 (glibc defaults)": {"NPCTR_MALLOC_TUNING": "0"}}
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    names = list(variants)

    def child(call, name):
        script = CHILD.format(root=ROOT, here=HERE, rounds=args.block_rounds, block_ms=args.block_ms, call=call)
        env = dict(clean, OPENBLAS_NUM_THREADS="2", **variants[name])
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    calls = child("", names[0])         # the names of the calls
    runs = {name: [{} for _ in range(args.rounds)] for name in variants}
    for r in range(args.rounds):
        for call in calls:
            for name in (names if r % 2 == 0 else names[::-1]):
                result = child(call, name)
                assert result["configured"] == (name == names[0]), (name, result["configured"])
                runs[name][r].update(result["results"])
    tuned, default = names
    print(f"\n{args.rounds} rounds; in each, every call in a fresh subprocess per variant, the variants "
          f"alternating; in each subprocess {args.block_rounds} blocks of ~{args.block_ms:.0f} ms after 2 warm-up "
          "blocks. Medians over the rounds of each subprocess's median.\n")
    print("| call | tuned ms | default ms | default / tuned | faults/call tuned | faults/call default |")
    print("|---|---:|---:|---:|---:|---:|")
    for call in calls:
        ms = {v: 1e3 * statistics.median(run[call][0] for run in runs[v]) for v in names}
        faults = {v: statistics.median(run[call][2] for run in runs[v]) for v in names}
        print(f"| {call} | {ms[tuned]:.2f} | {ms[default]:.2f} | {ms[default] / ms[tuned]:.2f} "
              f"| {faults[tuned]:,.0f} | {faults[default]:,.0f} |")
    print(f"\nload average (1, 5, 15 min): {load0} at start, "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + " at end")


if __name__ == "__main__":
    main()
