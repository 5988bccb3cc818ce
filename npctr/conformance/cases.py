r"""Conformance cases: a configuration drawn over every option, its inputs and weights, and npctr's
reference numbers, keyed as golden files key them.

A case of kind

* ``dnn``: ``DNN(hidden_units, activation, use_bn, output_activation)`` on ``(B, H)`` or
  ``(B, T, H)`` input;
* ``lau``: ``LocalActivationUnit(hidden_units, activation, use_bn)`` on ``query (B, 1, E)``,
  ``keys (B, T, E)``;
* ``asp``: ``AttentionSequencePoolingLayer(att_hidden_units, att_activation,
  weight_normalization, return_score, supports_masking)`` on ``query``, ``keys`` and
  ``keys_length`` (or the keys' mask), lengths 0 and T always among them;
* ``din``: a whole ``DIN`` -- one or two histories sharing the candidate's tables, an optional
  extra sparse feature, dense feature (1 or 2 dimensions) and pooled sequence, history lengths 0
  and full, Dice/PReLU/... in the attention and the output DNN, BN, weight normalization, both
  L2 terms, binary or regression;

under a conventions profile (``tf_keras``, ``keras3``, ``torch``) and a dtype (``float64`` or
``float32``). Dropout is always 0: masks are random, no backend can reproduce another's.

**The reference is float64.** A float32 case's inputs and weights are float32 values; npctr
computes its reference from those exact values in float64, so a float32 backend is judged
against the exact answer (``rtol`` 1e-5), not against npctr's own float32 round-off.

Cases are reproducible: case ``i`` of ``conformance_cases(..., seed=s)`` is drawn from
``np.random.default_rng([s, i])`` and does not depend on ``n``.
"""
from dataclasses import dataclass, field

import numpy as np

from ..conventions import list_conventions
from ..feature_column import DenseFeat, SparseFeat, VarLenSparseFeat, feature_columns_to_config
from ..interop.golden import build_from_config, randomize_weights, record_quantities

KINDS = ("dnn", "lau", "asp", "din")
DTYPES = ("float64", "float32")
#: activations every kind draws from (each backend says which it lacks)
ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "dice", "prelu")
#: reference keys that describe the case rather than judge a backend
GIVEN = ("input/", "weight/", "keras/", "torch/", "upstream")


@dataclass
class Case:
    """One conformance case. Arrays are NumPy; ``inputs``, ``weights`` and ``upstream`` are in the
    case's ``dtype``; ``reference`` holds every golden key (float64 numbers)."""
    id: str
    kind: str
    profile: str
    dtype: str
    spec: dict                  # golden config {"class", "config", "input_dim"}, profile included
    batch_size: int
    seq_len: int
    seed: list
    inputs: dict                # name -> array: x; query, keys, keys_length or mask; features and y
    weights: dict               # npctr path -> array, trainable weights and moving statistics
    upstream: np.ndarray        # g of L = sum(output * g), the output's shape
    reference: dict = field(repr=False)

    def __str__(self):
        return f"{self.id}-{self.profile}-{self.dtype}"

    @property
    def config(self):
        """The layer's or model's constructor arguments."""
        return self.spec["config"]

    def expected(self):
        """The reference quantities a backend is judged on (outputs, gradients, moving
        statistics, the loss), keyed as golden files key them."""
        return {k: v for k, v in self.reference.items() if not k.startswith(GIVEN)}

    def build(self, dtype=None):
        """The npctr layer or model of this case with its weights, in ``dtype`` (the case's)."""
        spec = dict(self.spec, config=dict(self.spec["config"], dtype=str(dtype or self.dtype)))
        target = build_from_config(spec)
        _build(target, self, dtype or self.dtype)
        target.set_weights({p: v.astype(dtype or self.dtype) for p, v in self.weights.items()})
        return target

    def framework_weights(self, framework):
        """The weights under their ``"keras"`` or ``"torch"`` names and layouts, in the case's dtype."""
        prefix = framework + "/"
        return {k[len(prefix):]: v.astype(self.dtype) for k, v in self.reference.items() if k.startswith(prefix)}

    def describe(self):
        """One line: the kind, profile, dtype and every option of the configuration."""
        options = ", ".join(f"{k}={v}" for k, v in _summary(self).items())
        return f"{self.id} [{self.profile} {self.dtype}, batch {self.batch_size}] {self.spec['class']}({options})"

    def to_json(self):
        return {"id": self.id, "kind": self.kind, "profile": self.profile, "dtype": self.dtype,
                "class": self.spec["class"], "config": self.spec["config"], "input_dim": self.spec.get("input_dim"),
                "batch_size": self.batch_size, "seq_len": self.seq_len, "seed": list(self.seed)}


def _summary(case):
    config = case.config
    if case.kind == "din":
        columns = [f"{c['class']}({c['config'].get('name') or c['config']['sparsefeat']['config']['name']})"
                   for c in config["dnn_feature_columns"]]
        keep = ("dnn_hidden_units", "dnn_activation", "dnn_use_bn", "att_hidden_size", "att_activation",
                "att_weight_normalization", "l2_reg_embedding", "l2_reg_dnn", "task")
        return {"columns": "[" + ", ".join(columns) + "]", **{k: config[k] for k in keep},
                "lengths": case.inputs["seq_length"].tolist()}
    out = {k: v for k, v in config.items() if k not in ("conventions", "dtype", "seed", "name")}
    if case.kind == "dnn":
        out["input"] = list(case.inputs["x"].shape)
    elif case.kind == "asp":
        length = case.inputs.get("keys_length")
        out["lengths"] = (length if length is not None else case.inputs["mask"].sum(axis=1)).ravel().tolist()
    return out


def _build(target, case, dtype):
    """Build a layer from its case's input shapes (a model builds itself)."""
    if case.kind == "dnn":
        target._build_for(np.dtype(dtype), case.inputs["x"].shape)
    elif case.kind == "lau":
        target._build_for(np.dtype(dtype), [case.inputs["query"].shape, case.inputs["keys"].shape])
    elif case.kind == "asp":
        target._build_for(np.dtype(dtype), [case.inputs["query"].shape, case.inputs["keys"].shape])


def _units(rng, low=1, high=2, smallest=2, largest=5):
    return [int(u) for u in rng.integers(smallest, largest + 1, int(rng.integers(low, high + 1)))]


def _draw_dnn(rng):
    config = {"hidden_units": _units(rng, 1, 3), "activation": str(rng.choice(ACTIVATIONS)),
              "use_bn": bool(rng.random() < 0.5),
              "output_activation": None if rng.random() < 0.6 else str(rng.choice(["sigmoid", "linear", "tanh"]))}
    input_dim = int(rng.integers(2, 6))
    seq_len = int(rng.integers(2, 5)) if rng.random() < 0.3 else 0
    return config, input_dim, seq_len


def _draw_lau(rng):
    return ({"hidden_units": _units(rng, 1, 2), "activation": str(rng.choice(ACTIVATIONS)),
             "use_bn": bool(rng.random() < 0.4)}, int(rng.integers(2, 5)), int(rng.integers(2, 6)))


def _draw_asp(rng):
    return ({"att_hidden_units": _units(rng, 1, 2), "att_activation": str(rng.choice(ACTIVATIONS)),
             "weight_normalization": bool(rng.random() < 0.5), "return_score": bool(rng.random() < 0.3),
             "supports_masking": bool(rng.random() < 0.4)}, int(rng.integers(2, 5)), int(rng.integers(2, 6)))


def _draw_din(rng):
    """Feature columns and DIN arguments; returns (config, maxlen)."""
    maxlen = int(rng.integers(3, 6))
    fields = ["item_id"] + (["cate_id"] if rng.random() < 0.6 else [])
    vocab = {f: int(rng.integers(5, 12)) for f in fields}
    dims = {f: int(rng.integers(2, 5)) for f in fields}
    columns = []
    if rng.random() < 0.5:
        columns.append(SparseFeat("user", int(rng.integers(3, 7)), embedding_dim=int(rng.integers(2, 5))))
    columns += [SparseFeat(f, vocab[f], embedding_dim=dims[f]) for f in fields]
    if rng.random() < 0.6:
        columns.append(DenseFeat("score", int(rng.integers(1, 3))))
    columns += [VarLenSparseFeat(SparseFeat(f"hist_{f}", vocab[f], embedding_dim=dims[f], embedding_name=f),
                                 maxlen=maxlen, length_name="seq_length") for f in fields]
    if rng.random() < 0.25:          # a pooled (non-history) sequence of its own table, masked by id 0
        columns.append(VarLenSparseFeat(SparseFeat("tags", int(rng.integers(3, 7)), embedding_dim=2),
                                        maxlen=3, combiner=str(rng.choice(["mean", "sum"]))))
    config = {"dnn_feature_columns": feature_columns_to_config(columns), "history_feature_list": fields,
              "dnn_hidden_units": _units(rng, 1, 2, 2, 6), "dnn_activation": str(rng.choice(ACTIVATIONS)),
              "dnn_use_bn": bool(rng.random() < 0.5), "att_hidden_size": _units(rng, 1, 2),
              "att_activation": str(rng.choice(["sigmoid", "dice", "relu", "prelu", "tanh"])),
              "att_weight_normalization": bool(rng.random() < 0.4),
              "l2_reg_embedding": float(rng.choice([0.0, 0.01])), "l2_reg_dnn": float(rng.choice([0.0, 0.02])),
              "dnn_dropout": 0.0, "seed": 1024, "task": "binary" if rng.random() < 0.8 else "regression"}
    return config, maxlen


def _lengths(rng, batch, t):
    """History lengths in 0..t with a 0 (all padding) and a full row, shuffled."""
    length = rng.integers(0, t + 1, batch)
    length[:2] = [0, t]
    return rng.permutation(length)


def _layer_inputs(kind, config, rng, batch, dim, seq_len, dtype):
    if kind == "dnn":
        shape = (batch, seq_len, dim) if seq_len else (batch, dim)
        x = rng.standard_normal(shape).astype(dtype)
        return x, {"x": x}, ["x"]
    query = rng.standard_normal((batch, 1, dim)).astype(dtype)
    keys = rng.standard_normal((batch, seq_len, dim)).astype(dtype)
    if kind == "lau":
        return [query, keys], {"query": query, "keys": keys}, ["query", "keys"]
    length = _lengths(rng, batch, seq_len).reshape(batch, 1)
    if config["supports_masking"]:
        mask = np.arange(seq_len) < length
        return [query, keys], {"query": query, "keys": keys, "mask": mask}, ["query", "keys"]
    return [query, keys, length], {"query": query, "keys": keys, "keys_length": length}, ["query", "keys", None]


def _din_inputs(model, rng, batch, maxlen, dtype):
    length = _lengths(rng, batch, maxlen)
    valid = np.arange(maxlen) < length[:, None]
    x = {}
    for fc in model.dnn_feature_columns:
        if isinstance(fc, SparseFeat):
            x[fc.name] = rng.integers(1 if fc.vocabulary_size > 1 else 0, fc.vocabulary_size, batch)
        elif isinstance(fc, DenseFeat):
            x[fc.name] = rng.standard_normal((batch, fc.dimension)).astype(dtype)
        elif fc.length_name is not None:           # a history: ids non-zero exactly for t < length
            x[fc.name] = rng.integers(1, fc.vocabulary_size, (batch, fc.maxlen)) * valid
        else:                                       # pooled, masked by id 0
            x[fc.name] = rng.integers(0, fc.vocabulary_size, (batch, fc.maxlen))
    x["seq_length"] = length
    y = rng.integers(0, 2, batch).astype(np.float64)
    y[:2] = [0.0, 1.0]
    if model.task == "regression":
        y = rng.standard_normal(batch)
    return x, {**x, "y": y}


def draw_case(i, kind, profile, dtype, seed):
    """Case number ``i`` (kind, profile and dtype given), drawn from ``default_rng([seed, i])``."""
    rng = np.random.default_rng([seed, i])
    batch = int(rng.integers(4, 9))
    if kind == "din":
        config, seq_len = _draw_din(rng)
        spec = {"class": "DIN", "config": {**config, "conventions": profile}}
    else:
        draw = {"dnn": _draw_dnn, "lau": _draw_lau, "asp": _draw_asp}[kind]
        config, dim, seq_len = draw(rng)
        cls = {"dnn": "DNN", "lau": "LocalActivationUnit", "asp": "AttentionSequencePoolingLayer"}[kind]
        spec = {"class": cls, "config": {**config, "conventions": profile}, "input_dim": dim}
    # inputs and weights are values of the case's dtype; the reference computes on them in float64
    target = build_from_config(dict(spec, config=dict(spec["config"], dtype="float64")))
    if kind == "din":
        forward_input, named = _din_inputs(target, rng, batch, seq_len, dtype)
        float_names = [fc.name for fc in target.dense_columns]
    else:
        forward_input, named, float_names = _layer_inputs(kind, config, rng, batch, dim, seq_len, dtype)
        mask = named.get("mask")
        target.forward(forward_input, training=False, **({"mask": mask} if mask is not None else {}))  # build
    randomize_weights(target, rng)
    weights = {p: target._lookup(p).astype(dtype) for p in target.weight_names()}
    target.set_weights({p: v.astype(np.float64) for p, v in weights.items()})
    as64 = _as_float64(forward_input)
    out = target.forward(as64, training=False, **({"mask": named["mask"]} if "mask" in named else {}))
    upstream = rng.standard_normal(out.shape).astype(dtype)
    reference, _ = record_quantities(target, as64, {k: _as_float64(v) for k, v in named.items()},
                                     float_names, rng, upstream=upstream.astype(np.float64))
    return Case(id=f"{kind}-{i:03d}", kind=kind, profile=profile, dtype=dtype, spec=spec, batch_size=batch,
                seq_len=seq_len, seed=[int(seed), int(i)], inputs=named, weights=weights, upstream=upstream,
                reference=reference)


def _as_float64(value):
    if isinstance(value, dict):
        return {k: _as_float64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_float64(v) for v in value]
    value = np.asarray(value)
    return value.astype(np.float64) if value.dtype.kind == "f" else value


def conformance_cases(kinds=KINDS, n=20, seed=0, profiles=None, dtypes=DTYPES):
    """``n`` cases cycling through ``kinds`` (``dnn``, ``lau``, ``asp``, ``din``) and ``profiles``
    (default every conventions profile), a third of them ``float32`` when ``dtypes`` allows.

    Case ``i`` depends on ``(seed, i)`` and the lists only: ``conformance_cases(n=5)`` is the
    first five of ``conformance_cases(n=50)``.
    """
    kinds = _checked("kinds", kinds, KINDS)
    profiles = _checked("profiles", profiles or list_conventions(), tuple(list_conventions()))
    dtypes = _checked("dtypes", dtypes, DTYPES)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    cases = []
    for i in range(int(n)):
        kind = kinds[i % len(kinds)]
        profile = profiles[(i // len(kinds)) % len(profiles)]
        pick = np.random.default_rng([seed, i, 1]).random()
        dtype = dtypes[-1] if len(dtypes) > 1 and pick < 1 / 3 else dtypes[0]
        cases.append(draw_case(i, kind, profile, dtype, int(seed)))
    return cases


def _checked(name, values, known):
    if isinstance(values, str):
        values = [v for v in values.split(",") if v]
    values = list(values)
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        raise ValueError(f"{name} must be a non-empty list of {list(known)}, got {values!r}")
    return list(dict.fromkeys(values))
