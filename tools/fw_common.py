"""What the framework recorders share: the feature columns, the inputs, the initial weights, the file format.

NumPy and the standard library only (imported by ``record_tf.py`` and ``record_torch.py``, which run
in the reference venv). See tests/data/frameworks/README.md for the format this writes.
"""
import json
import os
import platform
import zlib

import numpy as np

SEED = 2024
BATCH = 16
STEPS = 8
T = 5
HISTORY = ["item_id", "cate_id"]
#: large enough that a batch of 16 leaves many item rows untouched (sparse-update semantics of the
#: optimizers); cate_id's 5 rows are nearly always all touched
ITEM_VOCAB = 100

#: feature columns in DeepCTR's spelling (the same for DeepCTR-TF, DeepCTR-Torch and npctr)
FEATURES = [
    {"type": "SparseFeat", "name": "item_id", "vocabulary_size": ITEM_VOCAB, "embedding_dim": 4,
     "embedding_name": "item_id", "dtype": "int32"},
    {"type": "SparseFeat", "name": "cate_id", "vocabulary_size": 5, "embedding_dim": 4,
     "embedding_name": "cate_id", "dtype": "int32"},
    {"type": "DenseFeat", "name": "pay_score", "dimension": 1, "dtype": "float32"},
    {"type": "VarLenSparseFeat", "name": "hist_item_id", "vocabulary_size": ITEM_VOCAB, "embedding_dim": 4,
     "embedding_name": "item_id", "maxlen": T, "length_name": "seq_length", "combiner": "mean",
     "dtype": "int32"},
    {"type": "VarLenSparseFeat", "name": "hist_cate_id", "vocabulary_size": 5, "embedding_dim": 4,
     "embedding_name": "cate_id", "maxlen": T, "length_name": "seq_length", "combiner": "mean",
     "dtype": "int32"},
]

#: the two DIN variants; activation spelled per framework family
VARIANTS = {
    "sig": {"att_activation": "sigmoid", "dnn_activation": "relu", "dnn_use_bn": False},
    "dice": {"att_activation": "dice", "dnn_activation": "dice", "dnn_use_bn": True},
}
EMB_L2 = {"emb0": 0.0, "embl2": 1e-2}
COMMON_ARGS = {"att_hidden_size": [8, 4], "dnn_hidden_units": [8, 4], "att_weight_normalization": False,
               "l2_reg_dnn": 0.0, "dnn_dropout": 0.0, "seed": 1024, "task": "binary"}

#: the final Dense(1) kernel of the "din" cases is multiplied by this so that one sample's logit is
#: beyond +-16.1 (Keras clips p to [1e-7, 1 - 1e-7]) on the wrong side of its label (so the clip zeroes
#: a gradient of size ~1); chosen once from the training-mode logits
FINAL_KERNEL_SCALE = {"sig": 200.0, "dice": 60.0}

#: (name, optimizer class, hyperparameters in Keras spelling, in torch spelling)
OPTIMIZERS = [
    ("sgd", "SGD", {"learning_rate": 0.05}, {"lr": 0.05}),
    ("momentum", "SGD", {"learning_rate": 0.05, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9}),
    ("adagrad", "Adagrad", {"learning_rate": 0.05}, {"lr": 0.05}),
    ("adam", "Adam", {"learning_rate": 0.01}, {"lr": 0.01}),
    ("rmsprop", "RMSprop", {"learning_rate": 0.01}, {"lr": 0.01}),
]
FLOAT32_OPTIMIZERS = ("momentum", "adam", "rmsprop")


def feature_columns(sparse_feat, varlen_sparse_feat, dense_feat, dense_dtype="float32"):
    """``FEATURES`` as a framework's own feature-column objects (DeepCTR's or DeepCTR-Torch's classes)."""
    cols = []
    for f in FEATURES:
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


def din_cases():
    """(variant, emb, dtype) of every "din" case, in recording order."""
    return [(v, e, d) for d in ("float64", "float32") for v in VARIANTS for e in EMB_L2]


def train_cases(flavours, optimizers=None):
    """(flavour, opt name, class, Keras hyperparameters, torch hyperparameters, variant, emb, dtype);
    ``optimizers``: only these optimizer names (None: all)."""
    return [(fl, name, cls, hp_keras, hp_torch, v, e, d)
            for d in ("float64", "float32") for fl in flavours
            for name, cls, hp_keras, hp_torch in OPTIMIZERS if d == "float64" or name in FLOAT32_OPTIMIZERS
            if optimizers is None or name in optimizers
            for v in VARIANTS for e in EMB_L2]


def make_inputs(n, seed, dtype):
    """Inputs of ``n`` rows: history ids non-zero exactly for ``t < seq_length``.

    Row 0 has length 0 (all padding), row 1 length 1, row 2 full length; the rest random in 0..5
    (mostly >= 1).
    """
    rng = np.random.default_rng(seed)
    length = rng.integers(1, T + 1, size=n)
    length[:3] = [0, 1, T]
    if n > 16:
        length[16::16] = 0
    valid = np.arange(T)[None, :] < length[:, None]
    x = {
        "item_id": rng.integers(1, ITEM_VOCAB, size=n).astype(np.int32),
        "cate_id": rng.integers(1, 5, size=n).astype(np.int32),
        "pay_score": rng.normal(0.0, 1.0, size=n).astype(dtype),
        "hist_item_id": (rng.integers(1, ITEM_VOCAB, size=(n, T)) * valid).astype(np.int32),
        "seq_length": length.astype(np.int32),
        "hist_cate_id": (rng.integers(1, 5, size=(n, T)) * valid).astype(np.int32),
    }
    y = (rng.random(n) < 0.5).astype(dtype)
    y[:2] = [0, 1]
    return x, y


def init_value(npctr_path, shape, seed=SEED):
    """The initial value of the weight at ``npctr_path`` (npctr's shape), float64.

    Seeded by the path, so every framework gets the same numbers for the same weight.
    """
    rng = np.random.default_rng([zlib.crc32(npctr_path.encode()), seed])
    leaf = npctr_path.rsplit("/", 1)[-1]
    if leaf == "embeddings":
        return rng.normal(0.0, 0.5, shape)
    if leaf.startswith("kernel"):
        return rng.normal(0.0, 0.4, shape)
    if leaf.startswith("bias") or leaf in ("global_bias", "beta"):
        return rng.normal(0.0, 0.1, shape)
    if leaf == "dice_alpha":
        return rng.uniform(0.1, 0.4, shape)
    if leaf == "gamma":
        return 1.0 + rng.normal(0.0, 0.1, shape)
    if leaf == "moving_mean":
        return rng.normal(0.0, 0.2, shape)
    if leaf == "moving_variance":
        return rng.uniform(0.5, 1.5, shape)
    raise ValueError(f"no initial-value rule for {npctr_path!r}")


def case_name(kind, variant, emb, dtype, flavour=None, opt=None):
    d = {"float64": "f64", "float32": "f32"}[dtype]
    if kind == "din":
        return f"din_{variant}_{emb}_{d}"
    return f"train_{flavour}_{opt}_{variant}_{emb}_{d}"


def save_case(out, framework, case, meta, arrays):
    """Write ``<out>/<framework>/<case>.npz``: ``meta`` as 0-d JSON string plus plain arrays."""
    folder = os.path.join(out, framework)
    os.makedirs(folder, exist_ok=True)
    payload = {"meta": np.array(json.dumps(meta, sort_keys=True, default=_json_default))}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"{case}: {k} is an object array")
        payload[k] = a
    np.savez_compressed(os.path.join(folder, case + ".npz"), **payload)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)


def write_index(out):
    """(Re)write ``<out>/_index.json`` from the files present."""
    cases = []
    for fw in sorted(os.listdir(out)):
        folder = os.path.join(out, fw)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if f.endswith(".npz"):
                with np.load(os.path.join(folder, f)) as z:
                    meta = json.loads(str(z["meta"]))
                cases.append({"file": f"{fw}/{f}", "framework": meta["framework"], "kind": meta["kind"],
                              "dtype": meta["dtype"], "case": meta["case"]})
    with open(os.path.join(out, "_index.json"), "w") as fh:
        json.dump({"cases": cases}, fh, indent=1)
        fh.write("\n")


def base_versions():
    return {"numpy": np.__version__, "python": platform.python_version()}
