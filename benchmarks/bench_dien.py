#!/usr/bin/env python
"""DIEN: npctr against ONNX Runtime (on npctr's exported graph), DeepCTR (TensorFlow, tf.keras 2) and
DeepCTR-Torch, in one process (a script, not a test).

Run it with the reference venv, which has TensorFlow + tf-keras, DeepCTR 0.9.4, torch (CPU), DeepCTR-Torch
0.3.0, onnx and onnxruntime; ``npctr`` comes from this checkout (or ``NPCTR_BENCH_TREE``)::

    /work/refenv/bin/python benchmarks/bench_dien.py                  # everything, ~5 min
    /work/refenv/bin/python benchmarks/bench_dien.py --quick          # smoke run
    /work/refenv/bin/python benchmarks/bench_dien.py --only infer --rounds 20 --json dien.json

Sections (``--only``):

* ``infer``: DIEN inference at batch 1, 256 and 4096: npctr's ``Predictor`` (``model.inference()``) and
  ``model.predict``, ONNX Runtime on ``npctr.export_onnx``'s graph of the same weights (the GRUs as ``Scan``
  over time), DeepCTR's model in TF graph mode (``tf.function`` of ``model(x, training=False)``) and
  DeepCTR-Torch's in eager mode under ``torch.no_grad()``;
* ``chunks`` (npctr alone): the Predictor at batch 4096, one thread, for chunks of 64 to 4096 rows
  (``DIEN_ROWS_PER_CHUNK`` is chosen from it), and batches of 256 to 2048 rows as one chunk on one
  thread or two chunks on two (``DIEN_MIN_SHARE_ROWS``; ``docs/inference.md``, section 10);
* ``steps`` (npctr alone): the cost of one GRU step of a one-row request (``PreparedGRU.run_row``, a
  50-step row) and of NumPy's scalar against array operands on a 16-vector, the reason that path
  uses arrays only;
* ``train``: DIEN training with negative sampling (the auxiliary loss, ``alpha`` 1), ``fit`` on
  ``--train-rows`` rows, batch 256, Adam (each framework's defaults), binary cross-entropy, no shuffling:
  rows/s of npctr, DeepCTR-TF's ``model.fit`` and DeepCTR-Torch's ``model.fit``, one epoch per framework
  per round.

The same DIEN everywhere: ``bench_frameworks.py``'s DIN features (T = 50; item and category embeddings 8,
so the GRU state is 16 wide; user, gender, a dense ``pay_score``; the length ``seq_length``, uniform in
1..50), ``gru_type='AUGRU'``, attention (64, 16) Dice with weight normalization (DeepCTR's defaults),
DNN (256, 128, 64) relu, float32; each framework's own initial weights (the timings do not depend on
them; npctr's Dice moving statistics are set away from their initial values). DeepCTR 0.9.4's DIEN runs
on TensorFlow 2.21 only with the run-time patches of ``tools/record_dien_tf.py`` (imported, not copied:
TF-internal names restored, and float32 dtypes that are identities here). Inputs are built once per batch
in each framework's format, outside the timing.

Timing as ``bench_frameworks.py`` / ``bench_serving.py``: implementations run in blocks of ~``--block-ms``
of calls, blocks alternate and the order flips every round, after warm-up rounds; median and minimum per
call, with the load average. ``--threads`` threads for everyone (npctr's Predictor, ONNX Runtime's
intra-op pool, TF's intra-op pool, torch); npctr trains on one. ``model.predict`` / Predictor comes
from a second block-alternated run of the two alone (as in ``bench_serving.py``).
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")     # DeepCTR 0.9.4 is written for tf.keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_frameworks.py

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.environ.get("NPCTR_BENCH_TREE", ROOT))
sys.path.insert(1, HERE)

import npctr  # noqa: E402
from bench import environment_lines  # noqa: E402
from bench_serving import time_blocks, fmt_ms, load_line, ort_session  # noqa: E402

SECTIONS = ("infer", "train", "chunks", "steps")
#: the headline figures of the sections run, written by ``--json``
RESULTS = {}
T = 50
VOCAB = {"user": 10_000, "gender": 3, "item_id": 50_000, "cate_id": 1_000}
DIMS = {"user": 8, "gender": 4, "item_id": 8, "cate_id": 8}
HISTORY = ["item_id", "cate_id"]
DIEN_ARGS = {"gru_type": "AUGRU", "dnn_hidden_units": (256, 128, 64), "att_hidden_units": (64, 16),
             "att_weight_normalization": True}


# -- the DIEN, in each framework's spelling ----------------------------------------------------
def dien_data(n, rng, negatives=False):
    """Feature arrays: ids (n, 1) int32, histories (n, T) (0 past the length), pay_score (n, 1) float32,
    seq_length (n, 1); with ``negatives`` the sampled negative histories too."""
    lengths = rng.integers(1, T + 1, size=n)
    valid = np.arange(T) < lengths[:, None]
    x = {name: rng.integers(1, VOCAB[name], size=(n, 1)).astype(np.int32) for name in VOCAB}
    x["pay_score"] = rng.random((n, 1)).astype(np.float32)
    for prefix in ("hist_", "neg_hist_") if negatives else ("hist_",):
        for name in HISTORY:
            x[prefix + name] = np.where(valid, rng.integers(1, VOCAB[name], size=(n, T)), 0).astype(np.int32)
    x["seq_length"] = lengths.reshape(-1, 1).astype(np.int32)
    return x


def columns(sparse_feat, varlen_sparse_feat, dense_feat, negatives=False):
    cols = [sparse_feat(name, VOCAB[name], embedding_dim=DIMS[name]) for name in VOCAB]
    cols.append(dense_feat("pay_score", 1))
    for prefix in ("hist_", "neg_hist_") if negatives else ("hist_",):
        cols += [varlen_sparse_feat(sparse_feat(prefix + name, VOCAB[name], embedding_dim=DIMS[name],
                                                embedding_name=name), maxlen=T, length_name="seq_length")
                 for name in HISTORY]
    return cols


def npctr_dien(negatives=False):
    from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
    from npctr.models import DIEN
    model = DIEN(columns(SparseFeat, VarLenSparseFeat, DenseFeat, negatives), HISTORY, use_negsampling=negatives,
                 att_activation="dice", dtype="float32", **DIEN_ARGS)
    rng = np.random.default_rng(0)           # trained-looking Dice moving statistics
    for path, w in model.state.items():
        w[...] = rng.uniform(0.5, 1.5, w.shape) if path.endswith("moving_variance") \
            else 0.1 * rng.standard_normal(w.shape)
    model.weights_changed()
    return model


def tf_dien(negatives=False):
    import tensorflow  # noqa: F401  (imported before the patches' module: TensorFlow's own oneDNN setting)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import record_dien_tf
    if not getattr(tf_dien, "patched", False):
        record_dien_tf.apply_patches()       # DeepCTR 0.9.4's DIEN on TensorFlow 2.21 (see that module)
        tf_dien.patched = True
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
    from deepctr.models import DIEN
    return DIEN(columns(SparseFeat, VarLenSparseFeat, DenseFeat, negatives), HISTORY, use_negsampling=negatives,
                att_activation="dice", **DIEN_ARGS)


def torch_dien(negatives=False):
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat, DenseFeat
    from deepctr_torch.models import DIEN
    return DIEN(columns(SparseFeat, VarLenSparseFeat, DenseFeat, negatives), HISTORY, use_negsampling=negatives,
                att_activation="dice", device="cpu", **DIEN_ARGS)


def torch_input(model, x):
    """DeepCTR-Torch's input: every feature's columns side by side in ``feature_index`` order, float."""
    import torch
    return torch.from_numpy(np.concatenate([x[name] for name in model.feature_index], axis=1).astype(np.float32))


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
    import onnxruntime
    import tensorflow as tf
    import tf_keras
    import torch
    return (f"- tensorflow {tf.__version__} (tf-keras {tf_keras.__version__}, oneDNN as TensorFlow sets it), "
            f"deepctr {deepctr.__version__}; torch {torch.__version__}, deepctr-torch {deepctr_torch.__version__}; "
            f"onnxruntime {onnxruntime.__version__}")


# -- sections ----------------------------------------------------------------------------------
def run_infer_section(args):
    import tensorflow as tf
    import torch
    from npctr.interop.onnx import onnx_inputs
    rng = np.random.default_rng(0)
    npm, tfm, tom = npctr_dien(), tf_dien(), torch_dien()
    tom.eval()
    predictor = npm.inference(threads=args.threads)
    with tempfile.TemporaryDirectory() as d:
        npctr.export_onnx(npm, os.path.join(d, "dien.onnx"))
        with open(os.path.join(d, "dien.onnx"), "rb") as f:
            session = ort_session(f.read(), args.threads)
    x_all = dien_data(max(args.batches), rng)
    # traced for any batch size, as Keras's predict traces it: with a static batch of 1, DeepCTR's
    # DynamicGRU squeezes the (1, 1) length to a scalar and dynamic_rnn raises
    spec = {k: tf.TensorSpec((None,) + v.shape[1:], tf.as_dtype(v.dtype)) for k, v in x_all.items()}
    tf_infer = tf.function(lambda inputs: tfm(inputs, training=False), input_signature=[spec])
    print("\n## DIEN inference, float32\n")
    print(f"{args.rounds} rounds of ~{args.block_ms:.0f} ms blocks after 2 warm-up rounds, order flipped each "
          f"round; {args.threads} threads each. ORT: ONNX Runtime on `npctr.export_onnx`'s graph of the same "
          "weights. Ratios: npctr's Predictor / the peer (below 1: npctr faster); model.predict / Predictor "
          "from a second block-alternated run of the two alone.\n")
    print("| batch | npctr Predictor ms (min) | model.predict ms (min) | ORT ms (min) | DeepCTR TF graph ms (min) "
          "| DeepCTR-Torch eager ms (min) | / ORT | / TF | / Torch | model.predict / Predictor "
          "| max abs diff ORT | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for batch in args.batches:
        x = {k: v[:batch] for k, v in x_all.items()}
        feed = onnx_inputs(npm, x)
        tf_x = {k: tf.constant(v) for k, v in x.items()}
        torch_x = torch_input(tom, x)

        def torch_call():
            with torch.no_grad():
                return tom(torch_x)

        fns = {"npctr": lambda: predictor.predict(x), "ort": lambda: session.run(None, feed)[0],
               "tf": lambda: tf_infer(tf_x), "torch": torch_call}
        for f in fns.values():                   # every output has the right shape
            assert tuple(np.shape(f())) == (batch, 1)
        diff = float(np.max(np.abs(fns["ort"]() - predictor.predict(x))))
        res = time_blocks(fns, args.rounds, args.block_ms)
        pair = time_blocks({"npctr": lambda: predictor.predict(x), "model.predict": lambda: npm.predict(x)},
                           args.rounds, args.block_ms)
        p, o, t, h = (res[n] for n in ("npctr", "ort", "tf", "torch"))
        mp = pair["model.predict"]
        mp_ratio = mp[0] / pair["npctr"][0]
        RESULTS[f"dien_{batch}"] = {"npctr_ms": 1e3 * p[0], "vs_ort": p[0] / o[0], "vs_tf": p[0] / t[0],
                                    "vs_torch": p[0] / h[0], "model_predict_ratio": mp_ratio, "load": load_line()}
        print(f"| {batch} | {fmt_ms(p[0])} ({fmt_ms(p[1])}) | {fmt_ms(mp[0])} ({fmt_ms(mp[1])}) "
              f"| {fmt_ms(o[0])} ({fmt_ms(o[1])}) | {fmt_ms(t[0])} ({fmt_ms(t[1])}) | {fmt_ms(h[0])} ({fmt_ms(h[1])}) "
              f"| {p[0] / o[0]:.2f} | {p[0] / t[0]:.2f} | {p[0] / h[0]:.2f} | {mp_ratio:.2f} | {diff:.1e} "
              f"| {load_line()} |", flush=True)
    predictor.close()


def run_train_section(args):
    rng = np.random.default_rng(1)
    rows = 1024 if args.quick else args.train_rows
    x = dien_data(rows, rng, negatives=True)
    y = (rng.random(rows) < 0.3).astype(np.float32)
    npm, tfm, tom = npctr_dien(True), tf_dien(True), torch_dien(True)
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
    print(f"\n## DIEN training, float32: fit on {rows:,} rows, batch 256, Adam, negative sampling (alpha 1), "
          "one epoch per round\n")
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


def run_chunks_section(args):
    from npctr._blas import single_threaded_blas
    npm = npctr_dien()
    x = dien_data(4096, np.random.default_rng(0))
    sizes = [64, 256, 4096] if args.quick else [64, 128, 256, 512, 1024, 2048, 4096]
    fns = {}
    for rows in sizes:
        predictor = npm.inference(threads=1, chunk_rows=rows)
        fns[rows] = (lambda p: lambda: p.predict(x))(predictor)
    with single_threaded_blas():
        res = time_blocks(fns, max(2, args.rounds // 2), args.block_ms * 3)
    print("\n## DIEN Predictor: chunk size, batch 4096, one thread, float32\n")
    print("| rows per chunk | ms (min) | load |")
    print("|---:|---:|---|")
    for rows in sizes:
        print(f"| {rows} | {fmt_ms(res[rows][0])} ({fmt_ms(res[rows][1])}) | {load_line()} |")
    RESULTS["chunks"] = {str(rows): 1e3 * res[rows][0] for rows in sizes}
    full = {**x, "seq_length": np.full_like(x["seq_length"], T)}           # the largest buffers: full rows
    for rows in (1024, 2048):
        predictor = npm.inference(threads=1, chunk_rows=rows)
        predictor.predict(full)
        mib = sum(b.nbytes for b in predictor._workspace.buffers.values()) / 2 ** 20
        print(f"\nworkspace of one thread, {rows}-row chunks, every row of length {T}: {mib:.1f} MiB")
    print(f"\n## DIEN Predictor: a batch as one chunk on one thread, or two chunks on {args.threads} threads\n")
    print("(`DIEN_MIN_SHARE_ROWS` is chosen from it.)\n")
    print("| batch | one chunk, one thread ms (min) | two chunks, two threads ms (min) | two / one | load |")
    print("|---:|---:|---:|---:|---|")
    for batch in ([256, 1024] if args.quick else [256, 512, 1024, 2048]):
        xb = {k: v[:batch] for k, v in x.items()}
        one, two = npm.inference(threads=1, chunk_rows=batch), npm.inference(threads=2, chunk_rows=batch // 2)
        res = time_blocks({"one": lambda: one.predict(xb), "two": lambda: two.predict(xb)}, args.rounds,
                          args.block_ms)
        o, t = res["one"], res["two"]
        print(f"| {batch} | {fmt_ms(o[0])} ({fmt_ms(o[1])}) | {fmt_ms(t[0])} ({fmt_ms(t[1])}) | {t[0] / o[0]:.2f} "
              f"| {load_line()} |", flush=True)
        two.close()


def run_steps_section(args):
    npm = npctr_dien()
    prep = npm.inference(threads=1)._weights()
    ws = npm.inference(threads=1)._workspace
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, 16)).astype(np.float32)
    out = np.empty((T, 16), np.float32)
    weight = rng.random((T, 16)).astype(np.float32)
    g = np.empty(32, np.float32)
    ones, gx = np.ones(32, np.float32), rng.standard_normal(32).astype(np.float32)
    fns = {"gru1 (GRU), one 50-step row": lambda: prep.gru1.run_row(x, out, ws),
           "gru2 (AUGRU), one 50-step row": lambda: prep.gru2.run_row(x, out, ws, weight),
           "G += 1 (a Python scalar), 32 float32": lambda: g.__iadd__(1),
           "np.add(G, ones, G), 32 float32": lambda: np.add(g, ones, g),
           "np.add(G, x, G), 32 float32": lambda: np.add(g, gx, g)}
    res = time_blocks(fns, args.rounds, args.block_ms)
    print("\n## One-row GRU steps and NumPy's operands, float32, H = 16\n")
    print("| call | us per call (min) | us per step | load |")
    print("|---|---:|---:|---|")
    for name, (med, low, _) in res.items():
        per_step = f"{1e6 * med / T:.2f}" if "row" in name else ""
        print(f"| {name} | {1e6 * med:.2f} ({1e6 * low:.2f}) | {per_step} | {load_line()} |")
    RESULTS["steps"] = {name: 1e6 * r[0] for name, r in res.items()}


def print_targets():
    """The issue's targets, one row each, from the sections run (``RESULTS``)."""
    rows = []
    for key in sorted((k for k in RESULTS if k.startswith("dien_")), key=lambda k: int(k.split("_")[1])):
        r, batch = RESULTS[key], key.split("_")[1]
        rows += [(f"batch {batch}: Predictor / ONNX Runtime", "<= 1.2", r["vs_ort"], r["vs_ort"] <= 1.2, r["load"]),
                 (f"batch {batch}: Predictor / DeepCTR TF graph", "< 1", r["vs_tf"], r["vs_tf"] < 1, r["load"]),
                 (f"batch {batch}: Predictor / DeepCTR-Torch eager", "< 1", r["vs_torch"], r["vs_torch"] < 1,
                  r["load"]),
                 (f"batch {batch}: model.predict / Predictor", "<= 1.1", r["model_predict_ratio"],
                  r["model_predict_ratio"] <= 1.1, r["load"])]
    if "train" in RESULTS:
        r = RESULTS["train"]
        rows += [("training rows/s, npctr / DeepCTR TF", "> 1", r["vs_tf"], r["vs_tf"] > 1, r["load"]),
                 ("training rows/s, npctr / DeepCTR-Torch", "> 1", r["vs_torch"], r["vs_torch"] > 1, r["load"])]
    if not rows:
        return
    print("\n## Targets (issue 16)\n")
    print("| target | required | measured | met? | load (1, 5, 15 min) |")
    print("|---|---|---:|---|---|")
    for name, required, value, met, load in rows:
        print(f"| {name} | {required} | {value:.2f} | {'yes' if met else 'no'} | {load} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, from {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads for every framework (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 10, 2 with --quick)")
    parser.add_argument("--block-ms", type=float, default=None, help="ms of calls per block (default 100)")
    parser.add_argument("--batches", default="1,256,4096")
    parser.add_argument("--train-rows", type=int, default=10_240)
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
    print("# DIEN: npctr against ONNX Runtime, DeepCTR (TensorFlow) and DeepCTR-Torch\n")
    print(f"command: `/work/refenv/bin/python benchmarks/bench_dien.py "
          f"{' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("\n".join(environment_lines() + [versions()]))
    t0 = time.perf_counter()
    runners = {"infer": run_infer_section, "train": run_train_section, "chunks": run_chunks_section,
               "steps": run_steps_section}
    for s in SECTIONS:
        if s in sections:
            runners[s](args)
    print_targets()
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s; load average at end {load_line()}")


if __name__ == "__main__":
    main()
