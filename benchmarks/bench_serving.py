#!/usr/bin/env python
"""Serving benchmark: DIN inference against ONNX Runtime, training throughput, cold start, memory.

Sections (``--only``):

* ``din``: DIN inference (T=50, query/key embedding 16, attention (80, 40) Dice, DNN
  (256, 128, 64) relu; ``benchmarks/bench.py``'s feature set) at batch 1, 256 and 4096,
  side by side in this process: npctr's ``Predictor`` (``model.inference()``), ONNX
  Runtime running the same weights (``npctr.export_onnx``'s graph when this tree has it,
  and a graph built here with ``onnx.helper``), the plain-NumPy equations
  (no validation, every position computed) and today's ``model.forward`` path;
* ``dnn``: the DNN (input 256, (256, 128, 64) relu) at batch 4096, npctr's prepared
  stack against ONNX Runtime, in GFLOP/s next to NumPy's own GEMM peak;
* ``threads``: the Predictor's second-thread speed-up at batch 256 and 4096 (wall and CPU time
  per call), next to controls run alone and in two Python threads at once: a GEMM (one long call
  without the GIL), ``exp`` and ``add`` on an L2-sized array (calls of ~30 and ~5 us: the GIL is
  taken back after each), ``add`` on 32 MB arrays (memory bandwidth);
* ``train``: DIN ``fit`` throughput (rows/s), this tree and every ``--train-commits``
  commit, each in a fresh subprocess on the same data;
* ``cold``: import + ``load_model`` + first prediction, in a fresh subprocess;
* ``rss``: peak RSS (``ru_maxrss``) of a fresh process scoring 4096 rows of the demo
  DIN with one ``predict(x, batch_size=4096)``.

Timing: every implementation runs in short blocks (``--block-ms`` of calls), blocks
alternate between implementations and the order flips each round, after warm-up blocks;
tables give the median and the minimum per-call time over the rounds, minor page faults
per call, and the load average. float32, ``--threads`` threads for everyone (ONNX
Runtime's intra-op threads, npctr's pool; NumPy's BLAS keeps its own default).

Usage::

    python benchmarks/bench_serving.py                    # everything, a few minutes
    python benchmarks/bench_serving.py --quick            # smoke run
    python benchmarks/bench_serving.py --only din,dnn --rounds 20
    python benchmarks/bench_serving.py --only train --train-commits 2fed0c7
    NPCTR_BENCH_TREE=/path/to/other/checkout python benchmarks/bench_serving.py --only din,dnn
                                                          # the same benchmark on another tree

The ``din`` table also times ``model.predict(x)`` as users call it (default ``batch_size``),
against the Predictor it uses.
"""
import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: the npctr tree to benchmark (default: this one), so two trees run the same benchmark code
TREE = os.environ.get("NPCTR_BENCH_TREE", ROOT)
sys.path.insert(0, TREE)
sys.path.insert(1, HERE)

import npctr  # noqa: E402
from npctr.models import DIN  # noqa: E402
from bench import din_data, environment_lines  # noqa: E402

SECTIONS = ("din", "dnn", "threads", "chunks", "train", "cold", "rss")
#: the headline figures of the sections run, written by ``--json`` (benchmarks/bench_targets.py reads them)
RESULTS = {}
BASELINE_COMMIT = "2fed0c7"     # main before the serving work (issue #10)


def load_line():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


# -- timing ----------------------------------------------------------------------------------
def time_blocks(fns, rounds, block_ms, warmup_rounds=2):
    """Alternate blocks of calls of each callable; the order flips every round.

    Returns ``{name: (median s/call, min s/call, minor faults/call)}``.
    """
    names = list(fns)
    calls = {}
    for n in names:                        # calls per block: about block_ms of work
        fns[n]()
        t0 = time.perf_counter()
        fns[n]()
        calls[n] = max(1, int(block_ms / 1e3 / max(time.perf_counter() - t0, 1e-6)))
    per_call = {n: [] for n in names}
    faults = {n: [] for n in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(warmup_rounds + rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                for _ in range(calls[n]):
                    fns[n]()
                dt = (time.perf_counter() - t0) / calls[n]
                df = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / calls[n]
                if r >= warmup_rounds:
                    per_call[n].append(dt)
                    faults[n].append(df)
    finally:
        gc.enable()
    return {n: (statistics.median(per_call[n]), min(per_call[n]), statistics.median(faults[n])) for n in names}


def fmt_ms(s):
    return f"{1e3 * s:.3f}" if s < 1e-3 else f"{1e3 * s:.2f}"


# -- the DIN weights as plain arrays -----------------------------------------------------------
def din_model(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    columns, _ = din_data(1, 50, rng)
    model = DIN(columns, ["item_id", "cate_id"], dnn_hidden_units=(256, 128, 64), att_hidden_size=(80, 40),
                att_activation="dice", dtype=dtype)
    # trained-looking state: Dice alphas and moving statistics away from their initial values
    for path, w in model.state.items():
        w[...] = rng.uniform(0.5, 1.5, w.shape) if path.endswith("moving_variance") else \
            0.1 * rng.standard_normal(w.shape)
    for path, w in model.params.items():
        if path.endswith("dice_alpha"):
            w[...] = 0.2 * rng.standard_normal(w.shape)
    model.weights_changed()
    return model


def din_weights(model):
    """Everything the equations need, read from the model: tables, attention, DNN, output."""
    p, s = model.params, model.state
    att = "attention_sequence_pooling_layer/local_att/"
    w = {"tables": {n: p[f"sparse_emb_{n}/embeddings"] for n in ("user", "gender", "item_id", "cate_id")}}
    dice = []
    for i in range(2):
        mean, var = s[f"{att}dnn/activation{i}/bn/moving_mean"], s[f"{att}dnn/activation{i}/bn/moving_variance"]
        layer = model._layers["attention_sequence_pooling_layer"]._layers["local_att"]._layers["dnn"]
        eps = layer._layers[f"activation{i}"].epsilon
        dice.append((mean, var, eps, p[f"{att}dnn/activation{i}/dice_alpha"]))
    w["att"] = [(p[f"{att}dnn/kernel{i}"], p[f"{att}dnn/bias{i}"], dice[i]) for i in range(2)]
    w["score"] = (p[f"{att}kernel"], p[f"{att}bias"])
    w["dnn"] = [(p[f"dnn/kernel{i}"], p[f"dnn/bias{i}"]) for i in range(3)]
    w["out"] = p["dense/kernel"]
    w["global_bias"] = p["prediction_layer/global_bias"]
    return w


def numpy_din(w, x):
    """The plain-NumPy equations of this DIN (inference): no checks, every position computed."""
    t = w["tables"]
    user, gender = t["user"][x["user"]], t["gender"][x["gender"]]
    item, cate = t["item_id"][x["item_id"]], t["cate_id"][x["cate_id"]]
    q = np.concatenate([item, cate], axis=-1)[:, None, :]                                 # (B, 1, E)
    k = np.concatenate([t["item_id"][x["hist_item_id"]], t["cate_id"][x["hist_cate_id"]]], axis=-1)
    mask = (x["hist_item_id"] != 0) & (x["hist_cate_id"] != 0)
    (w0, b0, d0), (w1, b1, d1) = w["att"]
    wa, wb, wc, wd = np.split(w0, 4, axis=0)
    z = k @ (wb - wc) + (q * k) @ wd + (q @ (wa + wc) + b0)
    for i, (mean, var, eps, alpha) in enumerate((d0, d1)):
        if i == 1:
            z = z @ w1 + b1
        p = 1.0 / (1.0 + np.exp(-(z - mean) / np.sqrt(var + eps)))
        z = z * (alpha + (1.0 - alpha) * p)
    score = (z @ w["score"][0] + w["score"][1])[..., 0]                                    # (B, T)
    hist = (np.where(mask, score, 0)[:, None, :] @ k)[:, 0, :]
    pay = np.asarray(x["pay_score"], dtype=k.dtype).reshape(-1, 1)
    a = np.concatenate([user, gender, item, cate, hist, pay], axis=-1)
    for kernel, bias in w["dnn"]:
        a = np.maximum(a @ kernel + bias, 0)
    return 1.0 / (1.0 + np.exp(-(a @ w["out"] + w["global_bias"])))


def onnx_din(w, maxlen, dtype=np.float32):
    """The same DIN as an ONNX graph (opset 17), built with onnx.helper: split first layer,
    Dice with its moving statistics as a scale and shift, masked attention, DNN."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def const_i(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    emb = {n: node("Gather", [const(f"table_{n}", tab), n], f"emb_{n}", axis=0) for n, tab in w["tables"].items()}
    hist_item = node("Gather", ["table_item_id", "hist_item_id"], "k_item", axis=0)
    hist_cate = node("Gather", ["table_cate_id", "hist_cate_id"], "k_cate", axis=0)
    keys = node("Concat", [hist_item, hist_cate], "keys", axis=-1)                         # (B, T, E)
    query2 = node("Concat", [emb["item_id"], emb["cate_id"]], "query2", axis=-1)           # (B, E)
    query = node("Unsqueeze", [query2, const_i("axis1", [1])], "query")                     # (B, 1, E)
    zero = const_i("zero_id", 0)
    valid = node("And", [node("Not", [node("Equal", ["hist_item_id", zero], "pad_i")], "ok_i"),
                         node("Not", [node("Equal", ["hist_cate_id", zero], "pad_c")], "ok_c")], "valid")
    (w0, b0, d0), (w1, b1, d1) = w["att"]
    wa, wb, wc, wd = np.split(w0, 4, axis=0)
    qk = node("Mul", [query, keys], "qk")
    z = node("Add", [node("MatMul", [keys, const("w_keys", wb - wc)], "zk"),
                     node("MatMul", [qk, const("w_prod", wd)], "zp")], "zkp")
    q_part = node("Add", [node("MatMul", [query, const("w_query", wa + wc)], "zq"), const("b0", b0)], "zqb")
    z = node("Add", [z, q_part], "z0")

    def dice(i, z, params):
        mean, var, eps, alpha = params
        scale = 1.0 / np.sqrt(var + eps)
        p = node("Sigmoid", [node("Add", [node("Mul", [z, const(f"dice_s{i}", scale)], f"dz{i}"),
                                          const(f"dice_c{i}", -mean * scale)], f"dzc{i}")], f"dp{i}")
        gate = node("Add", [node("Mul", [p, const(f"dice_1ma{i}", 1.0 - alpha)], f"dg{i}"),
                            const(f"dice_a{i}", alpha)], f"dga{i}")
        return node("Mul", [z, gate], f"dice{i}")

    h = dice(0, z, d0)
    h = dice(1, node("Add", [node("MatMul", [h, const("w1", w1)], "z1m"), const("b1", b1)], "z1"), d1)
    score = node("Add", [node("MatMul", [h, const("w_score", w["score"][0])], "sm"), const("b_score", w["score"][1])],
                 "score3")                                                                  # (B, T, 1)
    score = node("Squeeze", [score, const_i("axis2", [2])], "score")                        # (B, T)
    masked = node("Where", [valid, score, const("zero_f", 0.0)], "wmask")
    att = node("MatMul", [node("Unsqueeze", [masked, "axis1"], "w3"), keys], "att3")       # (B, 1, E)
    att = node("Squeeze", [att, "axis1"], "att")
    pay = node("Reshape", ["pay_score", const_i("shape_b1", [-1, 1])], "pay")
    a = node("Concat", [emb["user"], emb["gender"], emb["item_id"], emb["cate_id"], att, pay], "deep", axis=-1)
    for i, (kernel, bias) in enumerate(w["dnn"]):
        a = node("Relu", [node("Add", [node("MatMul", [a, const(f"dnn_w{i}", kernel)], f"dm{i}"),
                                       const(f"dnn_b{i}", bias)], f"dz{i}_")], f"da{i}")
    logit = node("Add", [node("MatMul", [a, const("w_out", w["out"])], "logit"), const("gb", w["global_bias"])], "lb")
    node("Sigmoid", [logit], "y")
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["B"]) for n in ("user", "gender", "item_id", "cate_id")]
    ids += [helper.make_tensor_value_info(n, TensorProto.INT64, ["B", maxlen]) for n in ("hist_item_id", "hist_cate_id")]
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inputs = ids + [helper.make_tensor_value_info("pay_score", elem, ["B"])]
    graph = helper.make_graph(nodes, "din", inputs, [helper.make_tensor_value_info("y", elem, ["B", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_dnn(layers, out, dtype=np.float32):
    """MatMul + Add + Relu per layer, then the bias-free output Dense, the global bias and a sigmoid."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    inits, nodes, a = [], [], "x"
    for i, (kernel, bias) in enumerate(layers):
        inits += [numpy_helper.from_array(kernel.astype(dtype), f"w{i}"), numpy_helper.from_array(bias.astype(dtype), f"b{i}")]
        nodes += [helper.make_node("MatMul", [a, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"]),
                  helper.make_node("Relu", [f"z{i}"], [f"a{i}"])]
        a = f"a{i}"
    inits += [numpy_helper.from_array(out[0].astype(dtype), "w_out"), numpy_helper.from_array(out[1].astype(dtype), "gb")]
    nodes += [helper.make_node("MatMul", [a, "w_out"], ["logit"]), helper.make_node("Add", ["logit", "gb"], ["lb"]),
              helper.make_node("Sigmoid", ["lb"], ["y"])]
    graph = helper.make_graph(nodes, "dnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", layers[0][0].shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ort_session(model_bytes, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def export_onnx_session(model, threads):
    """ONNX Runtime on ``npctr.export_onnx``'s graph and its feed builder, or None if this tree lacks it."""
    try:
        from npctr.interop.onnx import export_onnx, onnx_inputs
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "din.onnx")
        export_onnx(model, path)
        with open(path, "rb") as f:
            return ort_session(f.read(), threads), onnx_inputs


# -- sections --------------------------------------------------------------------------------
def run_din_section(args):
    model = din_model("float32")
    w = din_weights(model)
    _, x_all = din_data(max(args.batches), 50, np.random.default_rng(1))
    helper = ort_session(onnx_din(w, 50), args.threads)
    exported = export_onnx_session(model, args.threads)
    predictor = model.inference(threads=args.threads)
    print("\n## DIN inference, float32\n")
    print(f"{args.rounds} rounds of ~{args.block_ms} ms blocks per implementation after 2 warm-up rounds, "
          f"order flipped each round; {args.threads} threads. ORT export: ONNX Runtime on `npctr.export_onnx`'s "
          "graph (every position, as `forward`); ORT helper: on the graph built here with `onnx.helper` (split "
          "first layer, folded Dice). Ratios: npctr Predictor / peer, against the faster ORT graph (below 1: "
          "npctr faster); model.predict / Predictor from a second block-alternated run of the two alone. "
          "faults = minor page faults per call.\n")
    print("| batch | npctr Predictor ms (min) | ORT export ms (min) | ORT helper ms (min) | plain NumPy ms (min) "
          "| model.forward ms (min) | model.predict ms (min) | / ORT | / NumPy | / forward | model.predict / Predictor "
          "| faults Predictor / ORT / NumPy / forward | max abs diff vs forward | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    helper_names = {i.name for i in helper.get_inputs()}
    for batch in args.batches:
        x = {k: v[:batch] for k, v in x_all.items()}
        feeds = {k: (v.astype(np.int64) if v.dtype.kind in "iu" else v.astype(np.float32)) for k, v in x.items()
                 if k in helper_names}
        fns = {"predictor": lambda: predictor.predict(x), "helper": lambda: helper.run(None, feeds)[0],
               "numpy": lambda: numpy_din(w, x), "forward": lambda: model.forward(x)}
        if exported is not None:
            sess, make_feed = exported
            feed = make_feed(model, x)
            fns["export"] = lambda: sess.run(None, feed)[0]
        ref = model.forward(x)
        diff = max(float(np.max(np.abs(np.asarray(f()) - ref))) for f in fns.values())
        res = time_blocks(fns, args.rounds, args.block_ms)
        p, h, nmp, fw = (res[n] for n in ("predictor", "helper", "numpy", "forward"))
        # model.predict against the Predictor it uses, the two alone: a block after model.forward's large
        # temporaries runs cold, so the pair is timed apart from the others
        pair = time_blocks({"predictor": lambda: predictor.predict(x), "model_predict": lambda: model.predict(x)},
                           args.rounds, args.block_ms)
        mp = pair["model_predict"]
        mp_ratio = mp[0] / pair["predictor"][0]
        e = res.get("export")
        ort = min((r for r in (h, e) if r is not None), key=lambda r: r[0])
        RESULTS[f"din_{batch}"] = {"npctr_ms": 1e3 * p[0], "ort_ms": 1e3 * ort[0], "ratio": p[0] / ort[0],
                                   "model_predict_ratio": mp_ratio, "load": load_line()}
        export_cell = f"{fmt_ms(e[0])} ({fmt_ms(e[1])})" if e else "n/a"
        print(f"| {batch} | {fmt_ms(p[0])} ({fmt_ms(p[1])}) | {export_cell} | {fmt_ms(h[0])} ({fmt_ms(h[1])}) "
              f"| {fmt_ms(nmp[0])} ({fmt_ms(nmp[1])}) | {fmt_ms(fw[0])} ({fmt_ms(fw[1])}) "
              f"| {fmt_ms(mp[0])} ({fmt_ms(mp[1])}) | {p[0] / ort[0]:.2f} "
              f"| {p[0] / nmp[0]:.2f} | {p[0] / fw[0]:.2f} | {mp_ratio:.2f} "
              f"| {p[2]:.0f} / {ort[2]:.0f} / {nmp[2]:.0f} / {fw[2]:.0f} "
              f"| {diff:.1e} | {load_line()} |", flush=True)
    predictor.close()


def gemm_peak(dtype=np.float32, n=1024, reps=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_dnn_section(args):
    """A DNNModel on one 256-wide dense feature: the DNN (256, 128, 64) relu, Dense(1), sigmoid."""
    from npctr.feature_column import DenseFeat
    from npctr.models import DNNModel
    from npctr._blas import single_threaded_blas
    batch = 256 if args.quick else 4096
    rng = np.random.default_rng(2)
    x = {"x": rng.standard_normal((batch, 256)).astype(np.float32)}
    model = DNNModel([DenseFeat("x", 256)], dnn_hidden_units=(256, 128, 64), dtype="float32")
    p = model.params
    layers = [(p[f"dnn/kernel{i}"], p[f"dnn/bias{i}"]) for i in range(3)]
    sess = ort_session(onnx_dnn(layers, out=(p["dense/kernel"], p["prediction_layer/global_bias"])), args.threads)
    predictor = model.inference(threads=args.threads)
    flops = 2 * batch * (sum(k.size for k, _ in layers) + 64)
    fns = {"npctr Predictor": lambda: predictor.predict(x), "model.forward": lambda: model.forward(x),
           "ONNX Runtime": lambda: sess.run(None, x)}
    np.testing.assert_allclose(predictor.predict(x), sess.run(None, x)[0], rtol=1e-4, atol=1e-6)
    res = time_blocks(fns, args.rounds, args.block_ms)
    peak = gemm_peak()
    with single_threaded_blas():
        peak1 = gemm_peak()
    print(f"\n## DNN forward, float32, x ({batch}, 256), hidden (256, 128, 64) relu, Dense(1), sigmoid\n")
    print(f"{flops / 1e9:.3f} GFLOP per call. NumPy's own GEMM peak (1024^3 sgemm, best of 5): "
          f"{peak:.1f} GFLOP/s with the default BLAS threads, {peak1:.1f} with one; npctr and ORT "
          f"{args.threads} threads.\n")
    print("| implementation | median ms | min ms | GFLOP/s (median) | / ORT | faults/call |")
    print("|---|---:|---:|---:|---:|---:|")
    ort_med = res["ONNX Runtime"][0]
    RESULTS["dnn"] = {"npctr_ms": 1e3 * res["npctr Predictor"][0], "ort_ms": 1e3 * ort_med,
                      "ratio": res["npctr Predictor"][0] / ort_med, "load": load_line()}
    for n, (med, mn, flt) in res.items():
        print(f"| {n} | {fmt_ms(med)} | {fmt_ms(mn)} | {flops / med / 1e9:.1f} | {med / ort_med:.2f} | {flt:.0f} |")
    print(f"\n_load average {load_line()}_")
    predictor.close()


def _alone_and_paired(fn, reps):
    """Wall seconds of ``reps`` calls alone, and of ``reps`` calls in each of two threads at once."""
    import threading
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    alone = time.perf_counter() - t0
    barrier = threading.Barrier(2)

    def work():
        barrier.wait()
        for _ in range(reps):
            fn()

    workers = [threading.Thread(target=work) for _ in range(2)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return alone, time.perf_counter() - t0


def run_threads_section(args):
    """What a second thread buys the Predictor, and what limits it (controls)."""
    from npctr._blas import single_threaded_blas
    model = din_model("float32")
    print("\n## Two threads: the Predictor and the controls\n")
    print("Predictor with `threads=1` and `threads=2`, block-alternated; CPU ms = user + system time of the "
          "process per call (a second thread that only waited would add none).\n")
    print("| batch | 1 thread ms (min) | 2 threads ms (min) | speed-up (median) | CPU ms/call 1 thread "
          "| CPU ms/call 2 threads (system) | load |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for batch in (64, 256) if args.quick else (256, 4096):
        _, x = din_data(batch, 50, np.random.default_rng(1))
        preds = {th: model.inference(threads=th) for th in (1, 2)}
        res = time_blocks({th: (lambda p=p: p.predict(x)) for th, p in preds.items()}, args.rounds, args.block_ms)
        cpu = {}
        for th, p in preds.items():
            reps = max(3, int(0.5 / res[th][0]))
            t0 = os.times()
            for _ in range(reps):
                p.predict(x)
            t1 = os.times()
            cpu[th] = ((t1.user - t0.user + t1.system - t0.system) / reps, (t1.system - t0.system) / reps)
            p.close()
        RESULTS[f"threads_{batch}"] = {"speedup": res[1][0] / res[2][0], "load": load_line()}
        print(f"| {batch} | {fmt_ms(res[1][0])} ({fmt_ms(res[1][1])}) | {fmt_ms(res[2][0])} ({fmt_ms(res[2][1])}) "
              f"| {res[1][0] / res[2][0]:.2f} | {1e3 * cpu[1][0]:.2f} | {1e3 * cpu[2][0]:.2f} ({1e3 * cpu[2][1]:.2f}) "
              f"| {load_line()} |", flush=True)
    rng = np.random.default_rng(0)
    square = rng.standard_normal((512, 512)).astype(np.float32)
    small, small_out = rng.standard_normal(80_000).astype(np.float32), np.empty(80_000, np.float32)
    big, big_out = rng.standard_normal(8_000_000).astype(np.float32), np.empty(8_000_000, np.float32)
    controls = [("sgemm 512^3 (one ~1 ms call, GIL released)", lambda: square @ square, 200),
                ("exp, 80k float32 in L2 (~30 us calls)", lambda: np.exp(small, out=small_out), 5000),
                ("add, 80k float32 in L2 (~5 us calls)", lambda: np.add(small, 1.0, out=small_out), 20000),
                ("add, 32 MB arrays (memory-bound)", lambda: np.add(big, 1.0, out=big_out), 20)]
    print("\nControls, one BLAS thread: the same calls alone, then in two Python threads at once "
          "(speed-up = 2 x alone / both; 2.0 is perfect).\n")
    print("| control | alone ms | two threads ms | speed-up | load |")
    print("|---|---:|---:|---:|---|")
    with single_threaded_blas():
        for name, fn, reps in controls:
            reps = max(1, reps // 10) if args.quick else reps
            runs = [_alone_and_paired(fn, reps) for _ in range(3)]
            alone, both = min(r[0] for r in runs), min(r[1] for r in runs)
            print(f"| {name} | {1e3 * alone:.1f} | {1e3 * both:.1f} | {2 * alone / both:.2f} | {load_line()} |",
                  flush=True)


def run_chunks_section(args):
    """The Predictor's chunk size and thread count at batch 4096 (what PAIRS_PER_CHUNK is chosen by)."""
    from npctr.inference import PAIRS_PER_CHUNK
    model = din_model("float32")
    batch = 256 if args.quick else 4096
    _, x = din_data(batch, 50, np.random.default_rng(3))
    rows = [5, 10, 20, 40, 80, 160, 320]
    fns = {f"{r} rows ({r * 50} positions), {th} thread{'s' if th > 1 else ''}": model.inference(threads=th, chunk_rows=r)
           for th in (1, args.threads) for r in rows}
    res = time_blocks({k: (lambda p=p: p.predict(x)) for k, p in fns.items()}, max(3, args.rounds // 3), args.block_ms)
    print(f"\n## Predictor chunk size and threads, DIN float32, batch {batch}\n")
    print(f"Default: {PAIRS_PER_CHUNK} history positions per chunk ({PAIRS_PER_CHUNK // 50} rows at T=50), "
          f"{args.threads} threads. About half the positions of a chunk are valid (lengths uniform in 1..50).\n")
    print("| chunk | median ms | min ms | faults/call |")
    print("|---|---:|---:|---:|")
    for name, (med, mn, flt) in res.items():
        print(f"| {name} | {fmt_ms(med)} | {fmt_ms(mn)} | {flt:.0f} |")
    print(f"\n_load average {load_line()}_")
    for p in fns.values():
        p.close()


TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {bench!r})
    from bench import din_data
    import npctr
    from npctr.models import DIN
    {setup}
    rng = np.random.default_rng(0)
    columns, x = din_data({rows}, 50, rng)
    y = (rng.random({rows}) < 0.3).astype(np.float32)
    model = DIN(columns, ["item_id", "cate_id"], dnn_hidden_units=(256, 128, 64), att_hidden_size=(80, 40),
                att_activation="dice", dtype="float32")
    model.compile("adam", "binary_crossentropy")
    warm = {{k: v[:512] for k, v in x.items()}}
    model.fit(warm, y[:512], batch_size=256, epochs=1, verbose=0, shuffle=False)
    best = []
    for _ in range({repeat}):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=256, epochs=1, verbose=0, shuffle=False)
        best.append(time.perf_counter() - t0)
    print(json.dumps({{"rows_per_s": {rows} / min(best), "median_rows_per_s": {rows} / sorted(best)[len(best) // 2],
                      "file": npctr.__file__}}))
""")


def tree_of(commit):
    """A checkout of ``commit`` (git archive into a temporary directory); returns its path."""
    d = tempfile.mkdtemp(prefix=f"npctr-{commit}-")
    archive = subprocess.run(["git", "archive", commit, "npctr"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
    return d


def run_train_section(args):
    """Each change separately: the baseline commit(s), then this tree without and with shared
    padding, and this tree with one BLAS thread."""
    rows = 1024 if args.quick else args.train_rows
    off = "import npctr.layers.core as core; core.SHARE_PADDING = False"
    one = {"OPENBLAS_NUM_THREADS": "1"}
    base, *others = args.train_commits
    trees = {c: tree_of(c) for c in args.train_commits}
    variants = [(f"{base} (main before #10), BLAS threads as the environment has them", trees[base], "", {}),
                (f"{base}, OPENBLAS_NUM_THREADS=1", trees[base], "", one)]
    variants += [(f"{c}, OPENBLAS_NUM_THREADS=1", trees[c], "", one) for c in others]
    variants += [("this tree, shared padding off, OPENBLAS_NUM_THREADS=1", ROOT, off, one),
                 ("this tree, OPENBLAS_NUM_THREADS=1 (+ shared padding)", ROOT, "", one),
                 ("this tree as it runs (one BLAS thread inside each training step)", ROOT, "", {})]
    print(f"\n## DIN training throughput, float32, fit(batch_size=256) on {rows} rows\n")
    print("Each variant in a fresh subprocess (its own `npctr`), rounds alternate between variants "
          f"(order flipped each round); best and median of {args.train_repeat} epochs per round, "
          f"{args.train_rounds} rounds, after a warm-up epoch.\n")
    print("| code | rows/s (best) | rows/s (median) | vs first row | load |")
    print("|---|---:|---:|---:|---|")
    results = {v[0]: [] for v in variants}
    for r in range(args.train_rounds):
        for name, path, setup, env_extra in (variants if r % 2 == 0 else variants[::-1]):
            script = TRAIN_SCRIPT.format(bench=HERE, rows=rows, repeat=args.train_repeat, setup=setup)
            env = dict(os.environ, PYTHONPATH=path, **env_extra)
            out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=HERE)
            if out.returncode:
                print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1]} | | | |")
                continue
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = None
    for name, *_ in variants:
        if not results[name]:
            continue
        best = max(r["rows_per_s"] for r in results[name])
        med = statistics.median(r["median_rows_per_s"] for r in results[name])
        first = first or best
        print(f"| {name} | {best:,.0f} | {med:,.0f} | {best / first:.2f}x | {load_line()} |", flush=True)
    for path in trees.values():
        shutil.rmtree(path, ignore_errors=True)


COLD_SCRIPT = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy as np
    import npctr
    t1 = time.perf_counter()
    model = npctr.load_model({path!r})
    t2 = time.perf_counter()
    x = {{k: v for k, v in np.load({data!r}).items()}}
    p = model.predict(x)
    t3 = time.perf_counter()
    print(t1 - t0, t2 - t1, t3 - t2, t3 - t0)
""")

RSS_SCRIPT = textwrap.dedent("""
    import resource
    import numpy as np
    import npctr

    def hwm():   # this process image's peak RSS (ru_maxrss also counts the parent's RSS at fork/exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

    model = npctr.load_model({path!r})
    x = {{k: v for k, v in np.load({data!r}).items()}}
    before = hwm()
    model.{call}(x{kw})
    print(before, hwm(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
""")


def demo_files(tmp, n):
    """The demo's DIN (``npctr.demo``'s sizes) saved to ``tmp``, and ``n`` rows of its data."""
    from npctr import demo
    (x, _), _, columns, history = demo.load_data(max(n, 100) * 5 // 4 + 1, seed=0)
    model = DIN(columns, history, **demo.MODEL, **demo.DIN_ONLY)
    path, data = os.path.join(tmp, "din.npz"), os.path.join(tmp, "x.npz")
    model.save(path)
    np.savez(data, **{k: v[:n] for k, v in x.items()})
    return path, data


def run_cold_section(args):
    with tempfile.TemporaryDirectory() as tmp:
        path, data = demo_files(tmp, 1)
        runs = []
        for _ in range(args.cold_runs):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", COLD_SCRIPT.format(path=path, data=data)],
                                 env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            runs.append([float(v) for v in out.stdout.split()] + [wall])
    print("\n## Cold start: import, load_model, first prediction (demo DIN, one row), fresh subprocess\n")
    print(f"Median of {args.cold_runs} subprocesses; 'total' is from before `import numpy` to the first prediction "
          "(the interpreter's own start-up is in 'process wall').\n")
    print("| import numpy + npctr s | load_model s | first predict s | total s | process wall s | load |")
    print("|---:|---:|---:|---:|---:|---|")
    med = [statistics.median(r[i] for r in runs) for i in range(5)]
    print("| " + " | ".join(f"{v:.3f}" for v in med) + f" | {load_line()} |")


def run_rss_section(args):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path, data = demo_files(tmp, 4096)
        for label, call, kw in (("predict(x, batch_size=4096)", "predict", ", batch_size=4096"),
                                ("forward(x) (today's path)", "forward", "")):
            out = subprocess.run([sys.executable, "-c", RSS_SCRIPT.format(path=path, data=data, call=call, kw=kw)],
                                 env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, check=True)
            rows.append((label, *(float(v) for v in out.stdout.split())))
    print("\n## Peak RSS: demo DIN scoring 4096 rows in one call, fresh subprocess\n")
    print("VmHWM of the fresh process (`/proc/self/status`); `ru_maxrss` is shown too but on Linux it "
          "starts at the parent's RSS when a process is forked and exec'd.\n")
    print("| call | peak RSS before the call MiB | peak RSS after MiB | ru_maxrss after MiB |")
    print("|---|---:|---:|---:|")
    for label, before, after, maxrss in rows:
        print(f"| {label} | {before:.1f} | {after:.1f} | {maxrss:.1f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, from {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads for npctr and ONNX Runtime (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 15, 2 with --quick)")
    parser.add_argument("--block-ms", type=float, default=None, help="ms of calls per block (default 60)")
    parser.add_argument("--batches", default="1,16,256,4096")
    parser.add_argument("--train-commits", default=f"{BASELINE_COMMIT},a97ce4e",
                        help=f"comma-separated commits to compare training with (default {BASELINE_COMMIT}: "
                             "main before issue #10, and a97ce4e: + 2-D GEMMs)")
    parser.add_argument("--train-rows", type=int, default=8192)
    parser.add_argument("--train-rounds", type=int, default=2)
    parser.add_argument("--train-repeat", type=int, default=2)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--json", help="also write the headline figures to this JSON file")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 15)
    args.block_ms = args.block_ms or (10 if args.quick else 60)
    args.batches = [int(b) for b in args.batches.split(",")] if not args.quick else [1, 64]
    args.train_commits = [c for c in args.train_commits.split(",") if c]
    sections = [s for s in args.only.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}")
    print("# npctr serving benchmark\n")
    print(f"command: `python benchmarks/bench_serving.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("\n".join(environment_lines()))
    t0 = time.perf_counter()
    runners = {"din": run_din_section, "dnn": run_dnn_section, "threads": run_threads_section,
               "chunks": run_chunks_section,
               "train": run_train_section,
               "cold": run_cold_section, "rss": run_rss_section}
    for s in SECTIONS:
        if s in sections:
            runners[s](args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s; load average at end {load_line()}")


if __name__ == "__main__":
    main()
