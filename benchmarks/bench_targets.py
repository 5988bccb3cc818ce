#!/usr/bin/env python
"""The speed targets of issue 15 in one table: one command, the figures of docs/performance.md.

Runs ``benchmarks/bench_serving.py --only din,dnn,threads`` (this Python: npctr against ONNX
Runtime) and ``benchmarks/bench_frameworks.py`` (the reference venv's Python: npctr against
DeepCTR-TF and DeepCTR-Torch) as subprocesses, shows their full output, then one table of every
target with its measured ratio and the load average while it was measured. With ``--before
<commit>`` both benchmarks also run on that commit's ``npctr`` (``git archive``), for a
before/after column::

    python benchmarks/bench_targets.py                         # ~6 min on 2 quiet cores
    python benchmarks/bench_targets.py --before 32f5f8e        # and main before the speed work, ~12 min
    python benchmarks/bench_targets.py --quick                 # smoke run

The machine should be otherwise idle: every ratio but the training one compares implementations
that each use two threads, and a busy core costs them differently.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: (label, result key, figure, target text, met(value))
TARGETS = [
    ("DIN batch 1, Predictor / ORT", ("serving", "din_1", "ratio"), "<= 0.9", lambda v: v <= 0.9),
    ("DIN batch 256, Predictor / ORT", ("serving", "din_256", "ratio"), "<= 0.9", lambda v: v <= 0.9),
    ("DIN batch 4096, Predictor / ORT", ("serving", "din_4096", "ratio"), "<= 0.45", lambda v: v <= 0.45),
    ("`model.predict` / Predictor, batch 1", ("serving", "din_1", "model_predict_ratio"), "<= 1.1",
     lambda v: v <= 1.1),
    ("`model.predict` / Predictor, batch 16", ("serving", "din_16", "model_predict_ratio"), "<= 1.1",
     lambda v: v <= 1.1),
    ("`model.predict` / Predictor, batch 256", ("serving", "din_256", "model_predict_ratio"), "<= 1.1",
     lambda v: v <= 1.1),
    ("`model.predict` / Predictor, batch 4096", ("serving", "din_4096", "model_predict_ratio"), "<= 1.1",
     lambda v: v <= 1.1),
    ("Predictor's 2-thread speed-up, batch 256", ("serving", "threads_256", "speedup"), ">= 1.6",
     lambda v: v >= 1.6),
    ("Predictor's 2-thread speed-up, batch 4096", ("serving", "threads_4096", "speedup"), ">= 1.6",
     lambda v: v >= 1.6),
    ("`DNNModel` batch 4096, Predictor / ORT", ("serving", "dnn", "ratio"), "<= 1.1", lambda v: v <= 1.1),
    ("DIN training rows/s, npctr / DeepCTR-TF", ("frameworks", "train", "vs_tf"), ">= 1.6", lambda v: v >= 1.6),
    ("LocalActivationUnit sigmoid forward / TF graph", ("frameworks", "lau_sigmoid_forward", "vs_tf"), "<= 1.0",
     lambda v: v <= 1.0),
    ("LocalActivationUnit sigmoid forward+backward / TF graph",
     ("frameworks", "lau_sigmoid_forward+backward", "vs_tf"), "<= 1.0", lambda v: v <= 1.0),
    ("LocalActivationUnit dice forward / TF graph", ("frameworks", "lau_dice_forward", "vs_tf"), "<= 1.0",
     lambda v: v <= 1.0),
    ("LocalActivationUnit dice forward+backward / TF graph", ("frameworks", "lau_dice_forward+backward", "vs_tf"),
     "<= 1.0", lambda v: v <= 1.0),
]
#: context rows (no target): npctr against the frameworks users would otherwise run
CONTEXT = [
    ("DIN batch 1 / 256 / 4096, Predictor / DeepCTR TF graph", [("frameworks", f"din_{b}", "vs_tf") for b in (1, 256, 4096)]),
    ("DIN batch 1 / 256 / 4096, Predictor / DeepCTR-Torch eager",
     [("frameworks", f"din_{b}", "vs_torch") for b in (1, 256, 4096)]),
    ("DIN training rows/s, npctr / DeepCTR-Torch", [("frameworks", "train", "vs_torch")]),
]


def run(label, cmd, env):
    print(f"\n<!-- {label}: {' '.join(cmd)} -->\n", flush=True)
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)


def measure(tree, args, tag):
    """Run both benchmarks on ``tree`` (an npctr checkout); return their JSON results."""
    env = dict(os.environ, NPCTR_BENCH_TREE=tree)
    quick = ["--quick"] if args.quick else []
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        serving, frameworks = os.path.join(tmp, "serving.json"), os.path.join(tmp, "frameworks.json")
        run(f"{tag}: serving", [sys.executable, os.path.join(HERE, "bench_serving.py"), "--only", "din,dnn,threads",
                                "--json", serving] + quick, env)
        run(f"{tag}: frameworks", [args.refenv, os.path.join(HERE, "bench_frameworks.py"), "--json", frameworks]
            + quick, env)
        for name, path in (("serving", serving), ("frameworks", frameworks)):
            with open(path) as f:
                out[name] = json.load(f)
    return out


def value(results, key):
    group, case, field = key
    try:
        return results[group][case][field], results[group][case]["load"]
    except KeyError:
        return None, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (the figures mean nothing)")
    parser.add_argument("--before", help="also measure this commit's npctr (git archive), e.g. 32f5f8e")
    parser.add_argument("--refenv", default="/work/refenv/bin/python",
                        help="a Python with tensorflow, tf-keras, deepctr, torch and deepctr-torch")
    args = parser.parse_args(argv)
    after = measure(ROOT, args, "this tree")
    before = None
    if args.before:
        tree = tempfile.mkdtemp(prefix=f"npctr-{args.before}-")
        try:
            archive = subprocess.run(["git", "archive", args.before, "npctr"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
            before = measure(tree, args, args.before)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    print(f"\n# Issue 15 targets: `python benchmarks/bench_targets.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
          f" (npctr {head})\n")
    before_col = f" {args.before} |" if before else ""
    print(f"| target | required |{before_col} this tree | met? | load (1, 5, 15 min) |")
    print("|---|---|" + ("---:|" if before else "") + "---:|---|---|")
    for label, key, required, met in TARGETS:
        v, load = value(after, key)
        b = value(before, key)[0] if before else None
        cell = "n/a" if v is None else f"{v:.2f}"
        bcell = (" n/a |" if b is None else f" {b:.2f} |") if before else ""
        ok = "" if v is None else ("yes" if met(v) else "no")
        print(f"| {label} | {required} |{bcell} {cell} | {ok} | {load or ''} |")
    for label, keys in CONTEXT:
        vals = [value(after, k) for k in keys]
        cell = " / ".join("n/a" if v is None else f"{v:.2f}" for v, _ in vals)
        bcell = (" " + " / ".join("n/a" if value(before, k)[0] is None else f"{value(before, k)[0]:.2f}"
                                   for k in keys) + " |") if before else ""
        print(f"| {label} | (context) |{bcell} {cell} | | {vals[-1][1] or ''} |")


if __name__ == "__main__":
    main()
