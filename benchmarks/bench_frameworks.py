#!/usr/bin/env python
"""npctr against the frameworks a DIN user would otherwise run: DeepCTR (TensorFlow, tf.keras 2)
and DeepCTR-Torch, in one process (a script, not a test).

Run it with the reference venv, which has TensorFlow + tf-keras, DeepCTR 0.9.4, torch (CPU) and
DeepCTR-Torch 0.3.0; ``npctr`` comes from this checkout::

    /work/refenv/bin/python benchmarks/bench_frameworks.py                 # everything, ~5 min
    /work/refenv/bin/python benchmarks/bench_frameworks.py --quick         # smoke run
    /work/refenv/bin/python benchmarks/bench_frameworks.py --only lau,din --rounds 20

Sections (``--only``):

* ``din``: DIN inference at batch 1, 256 and 4096: npctr's ``Predictor`` (and ``model.predict``),
  DeepCTR's model in TF graph mode (``tf.function`` of ``model(x, training=False)``), DeepCTR-Torch's
  in eager mode under ``torch.no_grad()``;
* ``train``: DIN training, ``fit`` on 20,000 rows, batch 256, Adam (each framework's defaults),
  binary cross-entropy, no shuffling: rows/s of npctr, DeepCTR-TF's ``model.fit`` and
  DeepCTR-Torch's ``model.fit``, one epoch per framework per round;
* ``lau``: DeepCTR's ``LocalActivationUnit`` (B 256, T 50, E 16, hidden (80, 40), sigmoid and
  dice): forward (inference) and forward + backward (training mode, gradients of
  ``sum(out * g)`` for the inputs and every weight), npctr against TF graph mode and torch eager.

The same DIN everywhere: ``benchmarks/bench.py``'s feature set (T=50, item/cate embeddings 8, so
the query is 16 wide) with the history length as a feature (``seq_length``, which DeepCTR-Torch's
DIN needs; history ids are non-zero exactly below it, so every framework's mask agrees), attention
(80, 40) Dice, DNN (256, 128, 64) relu, float32; each framework's own initial weights (the timings
do not depend on them). Inputs are built once per batch in each framework's format (TF tensors, one
torch tensor), outside the timing.

``OMP_WAIT_POLICY=PASSIVE`` (torch's OpenMP threads sleep instead of spinning between calls; set
another value in the environment to override). Timing: implementations run in blocks (~``--block-ms`` of calls), blocks alternate and the order
flips every round, after warm-up rounds; median and minimum per call, with the load average. Every
framework gets ``--threads`` threads (TF intra-op, torch, npctr's Predictor and its training steps'
large passes, ``npctr.ops.blocks``).
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")     # DeepCTR 0.9.4 is written for tf.keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# torch's OpenMP threads spin after each parallel region by default: in a process (and on cores) shared
# with TensorFlow's and npctr's threads that stalled DeepCTR-Torch's DIN 30x (measured: batch 64, 5 ms
# with passive waiting, 130-180 ms without)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
#: the npctr tree to benchmark (default: this one), as in bench_serving.py
sys.path.insert(0, os.environ.get("NPCTR_BENCH_TREE", os.path.dirname(HERE)))
sys.path.insert(1, HERE)

import npctr  # noqa: E402
from bench import environment_lines  # noqa: E402
from bench_serving import time_blocks, fmt_ms, load_line  # noqa: E402

SECTIONS = ("din", "train", "lau")
#: the headline figures of the sections run, written by ``--json`` (benchmarks/bench_targets.py reads them)
RESULTS = {}
T = 50
VOCAB = {"user": 10_000, "gender": 3, "item_id": 50_000, "cate_id": 1_000}
DIMS = {"user": 8, "gender": 4, "item_id": 8, "cate_id": 8}
HISTORY = ["item_id", "cate_id"]


# -- the DIN, in each framework's spelling ----------------------------------------------------
def din_data(n, rng):
    """Feature arrays (ids (n, 1) int32, history (n, T), pay_score (n, 1) float32, seq_length (n, 1))."""
    lengths = rng.integers(1, T + 1, size=n)
    valid = np.arange(T) < lengths[:, None]
    x = {name: rng.integers(1, VOCAB[name], size=(n, 1)).astype(np.int32) for name in VOCAB}
    x["pay_score"] = rng.random((n, 1)).astype(np.float32)
    for name in HISTORY:
        x[f"hist_{name}"] = np.where(valid, rng.integers(1, VOCAB[name], size=(n, T)), 0).astype(np.int32)
    x["seq_length"] = lengths.reshape(-1, 1).astype(np.int32)
    return x


def columns(sparse_feat, varlen_sparse_feat, dense_feat):
    cols = [sparse_feat(name, VOCAB[name], embedding_dim=DIMS[name]) for name in VOCAB]
    cols.append(dense_feat("pay_score", 1))
    cols += [varlen_sparse_feat(sparse_feat(f"hist_{name}", VOCAB[name], embedding_dim=DIMS[name], embedding_name=name),
                                maxlen=T, length_name="seq_length") for name in HISTORY]
    return cols


DIN_ARGS = {"dnn_hidden_units": (256, 128, 64), "att_hidden_size": (80, 40)}


def npctr_din():
    from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
    from npctr.models import DIN
    return DIN(columns(SparseFeat, VarLenSparseFeat, DenseFeat), HISTORY, att_activation="dice", dtype="float32",
               **DIN_ARGS)


def tf_din():
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
    from deepctr.models import DIN
    return DIN(columns(SparseFeat, VarLenSparseFeat, DenseFeat), HISTORY, att_activation="dice", **DIN_ARGS)


def torch_din():
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat, DenseFeat
    from deepctr_torch.models import DIN
    return DIN(columns(SparseFeat, VarLenSparseFeat, DenseFeat), HISTORY, att_activation="Dice", device="cpu",
               **DIN_ARGS)


def torch_input(model, x):
    """DeepCTR-Torch's input: every feature's columns side by side in ``feature_index`` order, float."""
    import torch
    cols = [x[name] for name in model.feature_index]
    return torch.from_numpy(np.concatenate(cols, axis=1).astype(np.float32))


def set_threads(threads):
    import tensorflow as tf
    import torch
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(threads)
    try:                        # npctr's training steps: large passes in row blocks over the cores
        from npctr.ops.blocks import set_num_threads
    except ImportError:         # a tree from before npctr.ops.blocks: its steps run on one thread
        return
    set_num_threads(threads)


def versions():
    import deepctr
    import deepctr_torch
    import tensorflow as tf
    import tf_keras
    import torch
    return (f"- tensorflow {tf.__version__} (tf-keras {tf_keras.__version__}, oneDNN as TensorFlow sets it), "
            f"deepctr {deepctr.__version__}; torch {torch.__version__}, deepctr-torch {deepctr_torch.__version__}")


# -- sections ----------------------------------------------------------------------------------
def run_din_section(args):
    import tensorflow as tf
    import torch
    rng = np.random.default_rng(0)
    npm, tfm, tom = npctr_din(), tf_din(), torch_din()
    tom.eval()
    predictor = npm.inference(threads=args.threads)
    tf_infer = tf.function(lambda inputs: tfm(inputs, training=False))
    x_all = din_data(max(args.batches), rng)
    print("\n## DIN inference, float32\n")
    print(f"{args.rounds} rounds of ~{args.block_ms:.0f} ms blocks after 2 warm-up rounds, order flipped each "
          f"round; {args.threads} threads each. Ratios: npctr's Predictor / the framework (below 1: npctr faster).\n")
    print("| batch | npctr Predictor ms (min) | npctr model.predict ms (min) | DeepCTR TF graph ms (min) "
          "| DeepCTR-Torch eager ms (min) | / TF | / Torch | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for batch in args.batches:
        x = {k: v[:batch] for k, v in x_all.items()}
        tf_x = {k: tf.constant(v) for k, v in x.items()}
        torch_x = torch_input(tom, x)

        def torch_call():
            with torch.no_grad():
                return tom(torch_x)

        fns = {"npctr": lambda: predictor.predict(x), "model.predict": lambda: npm.predict(x),
               "tf": lambda: tf_infer(tf_x), "torch": torch_call}
        for f in fns.values():                   # every output has the right shape
            assert tuple(np.shape(f())) == (batch, 1)
        res = time_blocks(fns, args.rounds, args.block_ms)
        p, mp, t, o = (res[n] for n in ("npctr", "model.predict", "tf", "torch"))
        RESULTS[f"din_{batch}"] = {"vs_tf": p[0] / t[0], "vs_torch": p[0] / o[0], "load": load_line()}
        print(f"| {batch} | {fmt_ms(p[0])} ({fmt_ms(p[1])}) | {fmt_ms(mp[0])} ({fmt_ms(mp[1])}) "
              f"| {fmt_ms(t[0])} ({fmt_ms(t[1])}) | {fmt_ms(o[0])} ({fmt_ms(o[1])}) "
              f"| {p[0] / t[0]:.2f} | {p[0] / o[0]:.2f} | {load_line()} |", flush=True)
    predictor.close()


def run_train_section(args):
    rng = np.random.default_rng(1)
    rows = 2048 if args.quick else args.train_rows
    x = din_data(rows, rng)
    y = (rng.random(rows) < 0.3).astype(np.float32)
    npm, tfm, tom = npctr_din(), tf_din(), torch_din()
    npm.compile("adam", "binary_crossentropy")
    tfm.compile("adam", "binary_crossentropy")
    tom.compile("adam", "binary_crossentropy")
    quiet = io.StringIO()

    def torch_fit():
        with contextlib.redirect_stdout(quiet):     # DeepCTR-Torch prints "Train on N samples" even at verbose=0
            tom.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=False)

    fits = {"npctr": lambda: npm.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=False),
            "DeepCTR TF": lambda: tfm.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=False),
            "DeepCTR-Torch": torch_fit}
    for f in fits.values():                       # warm-up epoch (TF traces its train step)
        f()
    seconds = {n: [] for n in fits}
    for r in range(args.train_rounds):
        for n in (list(fits) if r % 2 == 0 else list(fits)[::-1]):
            t0 = time.perf_counter()
            fits[n]()
            seconds[n].append(time.perf_counter() - t0)
    print(f"\n## DIN training, float32: fit on {rows:,} rows, batch 256, Adam, one epoch per round\n")
    print(f"{args.train_rounds} rounds after a warm-up epoch each, order flipped each round; TF and torch "
          f"{args.threads} threads, npctr too (its steps run OpenBLAS single-threaded and cut their large passes into "
          f"row blocks over {args.threads} threads: npctr.ops.blocks; trees before it: one thread). Rows/s from the best and "
          "the median epoch; ratio: npctr's rows/s / the framework's (above 1: npctr faster).\n")
    print("| framework | rows/s (best) | rows/s (median) | npctr / framework (best) | (median) |")
    print("|---|---:|---:|---:|---:|")
    best = {n: rows / min(s) for n, s in seconds.items()}
    med = {n: rows / statistics.median(s) for n, s in seconds.items()}
    RESULTS["train"] = {"rows_per_s": best, "vs_tf": best["npctr"] / best["DeepCTR TF"],
                        "vs_torch": best["npctr"] / best["DeepCTR-Torch"], "load": load_line()}
    for n in fits:
        print(f"| {n} | {best[n]:,.0f} | {med[n]:,.0f} | {best['npctr'] / best[n]:.2f} | {med['npctr'] / med[n]:.2f} |")
    print(f"\n_load average {load_line()}_")


def run_lau_section(args):
    import tensorflow as tf
    import torch
    from deepctr.layers.core import LocalActivationUnit as TFLocalActivationUnit
    from deepctr_torch.layers.core import LocalActivationUnit as TorchLocalActivationUnit
    from npctr.layers import LocalActivationUnit
    from npctr._blas import single_threaded_blas
    b, e = (32 if args.quick else 256), 16
    rng = np.random.default_rng(2)
    q = rng.standard_normal((b, 1, e)).astype(np.float32)
    k = rng.standard_normal((b, T, e)).astype(np.float32)
    g = rng.standard_normal((b, T, 1)).astype(np.float32)
    print(f"\n## LocalActivationUnit, float32: query ({b}, 1, {e}), keys ({b}, {T}, {e}), hidden (80, 40)\n")
    print("forward: inference mode; forward+backward: training mode, then the gradients of sum(out * g) for the "
          "query, the keys and every weight (TF: GradientTape inside the tf.function; torch: autograd). npctr's "
          "layer with one BLAS thread, as its trainer runs it (OpenBLAS's second thread busy-waits, and stalls "
          "when the machine is loaded), its large passes in row blocks over the threads (npctr.ops.blocks); TF "
          "and torch with their threads. Ratios: npctr / the framework.\n")
    print("| activation | pass | npctr ms (min) | TF graph ms (min) | torch eager ms (min) | / TF | / torch | load |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for activation in ("sigmoid", "dice"):
        lau = LocalActivationUnit((80, 40), activation, dtype="float32")
        lau.forward([q, k])
        tf_lau = TFLocalActivationUnit((80, 40), activation)
        tq, tk, tg = tf.constant(q), tf.constant(k), tf.constant(g)
        tf_lau([tq, tk], training=False)
        tf_fwd = tf.function(lambda a, c: tf_lau([a, c], training=False))

        @tf.function
        def tf_fb(a, c, up):
            with tf.GradientTape() as tape:
                tape.watch([a, c])
                loss = tf.reduce_sum(tf_lau([a, c], training=True) * up)
            return tape.gradient(loss, [a, c] + tf_lau.trainable_weights)

        to_lau = TorchLocalActivationUnit((80, 40), embedding_dim=e,
                                          activation="Dice" if activation == "dice" else activation)
        oq, ok, og = (torch.from_numpy(v) for v in (q, k, g))

        def torch_fwd():
            to_lau.eval()
            with torch.no_grad():
                return to_lau(oq, ok)

        def torch_fb():
            to_lau.train()
            a, c = oq.clone().requires_grad_(), ok.clone().requires_grad_()
            to_lau.zero_grad()
            (to_lau(a, c) * og).sum().backward()
            return a.grad, c.grad

        def npctr_fwd():
            with single_threaded_blas():        # as npctr's trainer runs its layers
                return lau.forward([q, k])

        def npctr_fb():
            with single_threaded_blas():
                lau.forward([q, k], training=True)
                return lau.backward(g)

        for name, fns in (("forward", {"npctr": npctr_fwd, "tf": lambda: tf_fwd(tq, tk), "torch": torch_fwd}),
                          ("forward+backward", {"npctr": npctr_fb, "tf": lambda: tf_fb(tq, tk, tg),
                                                "torch": torch_fb})):
            res = time_blocks(fns, args.rounds, args.block_ms)
            n, t, o = res["npctr"], res["tf"], res["torch"]
            RESULTS[f"lau_{activation}_{name}"] = {"vs_tf": n[0] / t[0], "vs_torch": n[0] / o[0], "load": load_line()}
            print(f"| {activation} | {name} | {fmt_ms(n[0])} ({fmt_ms(n[1])}) | {fmt_ms(t[0])} ({fmt_ms(t[1])}) "
                  f"| {fmt_ms(o[0])} ({fmt_ms(o[1])}) | {n[0] / t[0]:.2f} | {n[0] / o[0]:.2f} | {load_line()} |",
                  flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, from {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads for every framework (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 10, 2 with --quick)")
    parser.add_argument("--block-ms", type=float, default=None, help="ms of calls per block (default 100)")
    parser.add_argument("--batches", default="1,256,4096")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--train-rounds", type=int, default=None, help="epochs per framework (default 3)")
    parser.add_argument("--json", help="also write the headline figures to this JSON file")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 10)
    args.block_ms = args.block_ms or (10 if args.quick else 100)
    args.train_rounds = args.train_rounds or (1 if args.quick else 3)
    args.batches = [int(v) for v in args.batches.split(",")] if not args.quick else [1, 64]
    sections = [s for s in args.only.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}")
    set_threads(args.threads)
    print("# npctr against DeepCTR (TensorFlow) and DeepCTR-Torch\n")
    print(f"command: `/work/refenv/bin/python benchmarks/bench_frameworks.py "
          f"{' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("\n".join(environment_lines() + [versions()]))
    t0 = time.perf_counter()
    runners = {"din": run_din_section, "train": run_train_section, "lau": run_lau_section}
    for s in SECTIONS:
        if s in sections:
            runners[s](args)
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s; load average at end {load_line()}")


if __name__ == "__main__":
    main()
