"""What the DIEN recorders share: cases, feature columns, inputs, initial weights, patching helper, file format.

NumPy and the standard library only (imported by ``record_dien_tf.py`` and ``record_dien_torch.py``, which run
in the reference venv /work/refenv). The file format is described in tests/data/frameworks/dien/README.md.
"""
import inspect
import json
import linecache
import os
import textwrap
import zlib

import numpy as np

import fw_common

SEED = 2026
BATCH = 16
STEPS = 8
T = 6
EMB = 4
HISTORY = ["item_id", "cate_id"]
ITEM_VOCAB = 30
CATE_VOCAB = 6
#: rows (of every batch of 16) whose history ids are NON-zero past their length: both frameworks must ignore
#: them (DeepCTR-TF's DIEN embeds sequences with mask_zero=False and masks by length only; DeepCTR-Torch packs)
GARBAGE_PAD_ROWS = (0, 4, 5)
#: weights after these optimizer steps are stored (row i of ``traj_<opt>/<name>`` is after step TRAJ_STEPS[i])
TRAJ_STEPS = (1, 8)

GRU_TYPES = ("GRU", "AIGRU", "AGRU", "AUGRU")
#: (name, class, Keras hyperparameters, torch hyperparameters)
OPTIMIZERS = {"sgd": ("SGD", {"learning_rate": 0.05}, {"lr": 0.05}),
              "adam": ("Adam", {"learning_rate": 0.01}, {"lr": 0.01})}

#: the two attention settings. "sig": one setting shared by both frameworks (sigmoid attention DNN),
#: embedding and DNN L2 on, alpha 0.5. "dflt": each framework's own DIEN defaults for everything but the sizes
#: (att_activation "dice" in DeepCTR-TF, "relu" in DeepCTR-Torch; l2_reg_embedding 1e-6, l2_reg_dnn 0, alpha 1).
SETTINGS = {
    "sig": {"att_activation": "sigmoid", "l2_reg_embedding": 1e-2, "l2_reg_dnn": 1e-2, "alpha": 0.5},
    "dflt": {},
}
#: arguments every case passes (small sizes; everything else as in the setting or the framework default)
COMMON_ARGS = {"dnn_hidden_units": [8, 4], "att_hidden_units": [8, 4], "dnn_dropout": 0.0, "seed": 1024,
               "task": "binary"}


def cases():
    """(setting, gru_type, use_negsampling, dtype, optimizers) of every case, in recording order."""
    out = []
    for dtype in ("float64", "float32"):
        for gru in GRU_TYPES:
            for neg in (False, True):
                out.append(("sig", gru, neg, dtype, ("sgd", "adam") if dtype == "float64" else ("adam",)))
    for gru in GRU_TYPES:
        out.append(("dflt", gru, False, "float64", ("adam",)))
    out.append(("dflt", "AUGRU", True, "float64", ("adam",)))
    out.append(("dflt", "AUGRU", True, "float32", ("adam",)))
    return out


def case_name(setting, gru, neg, dtype, aux_patched=False):
    d = {"float64": "f64", "float32": "f32"}[dtype]
    return f"dien_{gru.lower()}_{'neg' if neg else 'noneg'}_{setting}{'_auxpatch' if aux_patched else ''}_{d}"


def features(neg, dense_dtype="float32"):
    """Feature columns in DeepCTR's spelling (dicts), in input order."""
    def seq(name, vocab, emb_name):
        return {"type": "VarLenSparseFeat", "name": name, "vocabulary_size": vocab, "embedding_dim": EMB,
                "embedding_name": emb_name, "maxlen": T, "length_name": "seq_length", "combiner": "mean",
                "dtype": "int32"}
    cols = [
        {"type": "SparseFeat", "name": "item_id", "vocabulary_size": ITEM_VOCAB, "embedding_dim": EMB,
         "embedding_name": "item_id", "dtype": "int32"},
        {"type": "SparseFeat", "name": "cate_id", "vocabulary_size": CATE_VOCAB, "embedding_dim": EMB,
         "embedding_name": "cate_id", "dtype": "int32"},
        {"type": "DenseFeat", "name": "pay_score", "dimension": 1, "dtype": dense_dtype},
        seq("hist_item_id", ITEM_VOCAB, "item_id"),
        seq("hist_cate_id", CATE_VOCAB, "cate_id"),
    ]
    if neg:
        cols += [seq("neg_hist_item_id", ITEM_VOCAB, "item_id"), seq("neg_hist_cate_id", CATE_VOCAB, "cate_id")]
    return cols


def feature_columns(sparse_feat, varlen_sparse_feat, dense_feat, neg, dense_dtype="float32"):
    """``features(neg)`` as a framework's own feature-column objects."""
    cols = []
    for f in features(neg, dense_dtype):
        if f["type"] == "SparseFeat":
            cols.append(sparse_feat(f["name"], f["vocabulary_size"], f["embedding_dim"],
                                    embedding_name=f["embedding_name"]))
        elif f["type"] == "DenseFeat":
            cols.append(dense_feat(f["name"], f["dimension"], dtype=dense_dtype))
        else:
            cols.append(varlen_sparse_feat(sparse_feat(f["name"], f["vocabulary_size"], f["embedding_dim"],
                                                       embedding_name=f["embedding_name"]),
                                           maxlen=f["maxlen"], combiner=f["combiner"], length_name=f["length_name"]))
    return cols


def model_args(setting, gru, neg):
    """DIEN's keyword arguments (lists for tuples), without the feature columns."""
    return {"history_feature_list": list(HISTORY), "gru_type": gru, "use_negsampling": neg,
            **COMMON_ARGS, **SETTINGS[setting]}


def make_inputs(neg, dtype, n=BATCH * STEPS, seed=SEED):
    """``n`` rows (8 batches of 16). In every batch: row 0 has length 0 (all padding), row 1 length 1,
    row 2 full length T, row 3 length 2, row 4 length 3, row 5 length 1; the rest uniform in 0..T.
    History (and negative) ids are in 1..vocab-1 for t < length; past the length they are 0, except in
    rows GARBAGE_PAD_ROWS of every batch, where they are random non-zero ids (which neither framework
    may read). Negative histories are drawn in every case (stored only with negative sampling), so the
    other inputs are the same with and without them."""
    rng = np.random.default_rng(seed)
    length = rng.integers(0, T + 1, size=n)
    for b in range(0, n, BATCH):
        length[b:b + 6] = [0, 1, T, 2, 3, 1]
    valid = np.arange(T)[None, :] < length[:, None]
    keep = valid.copy()
    for r in GARBAGE_PAD_ROWS:
        keep[r::BATCH] = True

    def hist(vocab):
        return (rng.integers(1, vocab, size=(n, T)) * keep).astype(np.int32)

    x = {
        "item_id": rng.integers(1, ITEM_VOCAB, size=n).astype(np.int32),
        "cate_id": rng.integers(1, CATE_VOCAB, size=n).astype(np.int32),
        "pay_score": rng.normal(0.0, 1.0, size=n).astype(dtype),
        "hist_item_id": hist(ITEM_VOCAB),
        "hist_cate_id": hist(CATE_VOCAB),
        "seq_length": length.astype(np.int32),
    }
    neg_x = {"neg_hist_item_id": hist(ITEM_VOCAB), "neg_hist_cate_id": hist(CATE_VOCAB)}
    if neg:
        x.update(neg_x)
    y = (rng.random(n) < 0.5).astype(dtype)
    y[0::BATCH] = 0
    y[1::BATCH] = 1
    return x, y


def batch(x, y, k):
    sl = slice(k * BATCH, (k + 1) * BATCH)
    return {name: v[sl] for name, v in x.items()}, y[sl]


def init_value(key, shape, role, seed=SEED):
    """Initial value (float64) of a weight: seeded by ``key`` (the framework's weight name), drawn by role.

    Roles: "embedding" normal(0, 0.5); "kernel" normal with the Glorot std sqrt(2 / (fan_in + fan_out))
    (fan_in, fan_out = the kernel's input and output sizes); "bias" normal(0, 0.1); "dice_alpha"
    uniform(0.1, 0.4); "moving_mean" normal(0, 0.2); "moving_variance" uniform(0.5, 1.5).
    """
    rng = np.random.default_rng([zlib.crc32(key.encode()), seed])
    if role == "embedding":
        return rng.normal(0.0, 0.5, shape)
    if role == "kernel":
        fan_in, fan_out = shape[0], shape[-1]
        return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
    if role == "bias":
        return rng.normal(0.0, 0.1, shape)
    if role == "dice_alpha":
        return rng.uniform(0.1, 0.4, shape)
    if role == "moving_mean":
        return rng.normal(0.0, 0.2, shape)
    if role == "moving_variance":
        return rng.uniform(0.5, 1.5, shape)
    raise ValueError(f"no initial-value rule for role {role!r} ({key})")


def resource_patch(func, replacements, module):
    """``func`` recompiled from its own source with exact textual ``replacements`` (each must occur once).

    The new function runs in ``module``'s globals; its source is registered with linecache so that
    inspect / autograph can read it like the original. Returns the new function.
    """
    src = textwrap.dedent(inspect.getsource(func))
    for old, new in replacements:
        n = src.count(old)
        if n != 1:
            raise RuntimeError(f"patch of {func.__qualname__}: {old!r} occurs {n} times")
        src = src.replace(old, new)
    fname = f"<patched {module.__name__}.{func.__qualname__}>"
    linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
    ns = {}
    exec(compile(src, fname, "exec"), module.__dict__, ns)  # noqa: S102 - the framework's own code, patched
    return ns[func.__name__]


def fd_candidates(grad, rng):
    """Flat indices of a weight in the order the finite-difference check tries them: the entries with the
    largest |grad| first, then the others in a seeded random order."""
    flat = np.abs(grad.reshape(-1))
    order = [int(i) for i in np.argsort(-flat, kind="stable")]
    top, rest = order[:2], order[2:]
    rest = [rest[i] for i in rng.permutation(len(rest))] if rest else []
    return top, rest


#: how the recorders' finite-difference check is done and judged
FD_METHOD = ("Richardson-extrapolated central differences R(h) = (4 D(h/2) - D(h)) / 3, "
             "D(h) = (f(w+h) - f(w-h)) / 2h, at h = 1e-3 * max(1, |w|) (the value used) and at h / 5; a point is "
             "used only where the two agree to 1e-7 * max(|R|, 1e-3 * G) (the objective is smooth there: ReLU "
             "kinks and Keras's probability clip can make it non-smooth within +-h), otherwise the next candidate "
             "is tried. Points per weight: the 2 largest |gradient| entries (or their smooth successors) and 1 "
             "random entry. err = |analytic - numeric| / max(|analytic|, 1e-4 * G), G = the largest |gradient| "
             "entry of the whole model")
FD_TOL = 1e-6


def richardson(f, w0, h=None):
    """d f / d w at the current point (``f(delta)`` evaluates the objective with the entry moved by delta)."""
    if h is None:
        h = 1e-3 * max(1.0, abs(float(w0)))

    def central(step):
        return (f(step) - f(-step)) / (2.0 * step)

    return (4.0 * central(h / 2) - central(h)) / 3.0


def fd_weight(f_at, grad, w, rng, big, k_top=2, k_random=1):
    """Finite-difference rows [(index, analytic, numeric, skipped)] for one weight.

    ``f_at(idx)`` returns a function ``f(delta)`` of the objective with entry ``idx`` moved by ``delta``.
    ``big``: the largest |gradient| entry of the model (the scale of the smoothness test).
    """
    top, rest = fd_candidates(grad, rng)
    rows, skipped = [], 0
    for want, pool in ((k_top, top + rest), (k_random, rest)):
        got = 0
        for idx in pool:
            if got == want:
                break
            if any(r[0] == idx for r in rows):
                continue
            f = f_at(idx)
            w0 = w.reshape(-1)[idx]
            h = 1e-3 * max(1.0, abs(float(w0)))
            r1, r2 = richardson(f, w0, h), richardson(f, w0, h / 5)
            if abs(r1 - r2) > 1e-7 * max(abs(r1), 1e-3 * big):
                skipped += 1
                if skipped > 20:
                    raise RuntimeError("finite differences: no smooth point found")
                continue
            rows.append((idx, float(grad.reshape(-1)[idx]), r1))
            got += 1
    return rows, skipped


def fd_summary(results, skipped):
    """``results``: {name: [(index, analytic, numeric), ...]} -> (max error, per-name table); see FD_METHOD."""
    big = max(abs(r[1]) for rows in results.values() for r in rows)
    table = {}
    worst = 0.0
    for name, rows in results.items():
        errs = [abs(a - n) / max(abs(a), 1e-4 * big, 1e-300) for _, a, n in rows]
        table[name] = {"points": [int(r[0]) for r in rows], "analytic": [r[1] for r in rows],
                       "numeric": [r[2] for r in rows], "err": max(errs), "non_smooth_skipped": skipped[name]}
        worst = max(worst, max(errs))
    return worst, table


def save_case(out, framework, case, meta, arrays):
    """Write ``<out>/<framework>/<case>.npz`` (meta as a 0-d JSON string, plain arrays only)."""
    folder = os.path.join(out, framework)
    os.makedirs(folder, exist_ok=True)
    payload = {"meta": np.array(json.dumps(meta, sort_keys=True, default=fw_common._json_default))}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"{case}: {k} is an object array")
        payload[k] = a
    np.savez_compressed(os.path.join(folder, case + ".npz"), **payload)


def write_index(out):
    """(Re)write ``<out>/_index.json`` from the .npz files in ``<out>/<framework>/``."""
    entries = []
    for fw in sorted(os.listdir(out)):
        folder = os.path.join(out, fw)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if f.endswith(".npz"):
                with np.load(os.path.join(folder, f)) as z:
                    meta = json.loads(str(z["meta"]))
                entries.append({"file": f"{fw}/{f}", "framework": meta["framework"], "kind": meta["kind"],
                                "dtype": meta["dtype"], "case": meta["case"], "gru_type": meta["gru_type"],
                                "use_negsampling": meta["use_negsampling"], "setting": meta["setting"],
                                "aux_patched": meta["aux_patched"]})
    with open(os.path.join(out, "_index.json"), "w") as fh:
        json.dump({"cases": entries}, fh, indent=1)
        fh.write("\n")


def write_facts(out, framework, facts):
    folder = os.path.join(out, framework)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "facts.json"), "w") as fh:
        json.dump(facts, fh, indent=1, sort_keys=True, default=fw_common._json_default)
        fh.write("\n")


def base_versions():
    return fw_common.base_versions()
