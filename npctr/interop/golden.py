"""``python -m npctr golden``: reference numbers for any npctr layer or model, for other backends.

One call of :func:`golden_vectors` (or the command) runs a layer or model from a seeded state and
records everything a backend author compares against, in one self-describing ``.npz`` (plain
arrays, no pickles; ``np.load(path)`` reads it):

===============================  =========================================================
key                              what
===============================  =========================================================
``__index__``                    0-d string, JSON: format, versions, the class and config, seed,
                                 batch size, sequence length, dtype, one entry per quantity
                                 (shape, dtype, meaning) and per weight (Keras and Torch names)
``input/<name>``                 the inputs (``query``, ``keys``, ``keys_length``; a model's features)
``weight/<npctr path>``          every weight and moving statistic before any call
``keras/<variable name>``        the same weights under DeepCTR's Keras names, Keras layout
``torch/<state_dict name>``      under DeepCTR-Torch's names, Torch layout (``nn.Linear`` transposed)
``upstream``                     the upstream gradient ``g``, shape of the output; ``L = sum(out * g)``
``<mode>/output``                the output, ``mode`` in ``infer`` (moving statistics, no dropout)
                                 and ``train`` (batch statistics), both from the initial state
``<mode>/grad_input/<name>``     dL/d input (float inputs; a model's dense features)
``<mode>/grad_weight/<path>``    dL/d every trainable weight (embeddings as dense tables)
``train/moving/<path>``          every moving statistic after exactly one training call
``loss/value``                   models: the loss the profile's framework minimises (the compiled
                                 loss, else the profile's: Keras's clipped mean BCE, Torch's sum)
                                 of the training-mode output against ``input/y``, plus L2 (layers: ``L``)
``loss/grad_output``             models: d loss / d output
``loss/grad_logit``              binary models: d loss / d (logit + global_bias), the sigmoid's input:
                                 what the trainer backpropagates (zero where Keras clips)
``loss/grad_weight/<path>``      models: d loss / d every trainable weight, L2 included
===============================  =========================================================

Weights are drawn from the seed (kernels normal 0.5, moving variances uniform 0.5..1.5, ...)
unless the model comes from a saved file, whose weights are kept. Gradients that are zero in exact
arithmetic (:func:`exact_zero_gradients`: a DNN bias in front of a training-mode BatchNormalization,
the attention score's bias under softmax weight normalization) are written as exact zeros; a
backend's round-off there is judged at its group's scale (``npctr.testing``). The JSON schema of
the configs, with an example for every class, is in ``docs/verifying_backends.md``.
"""
import json
import sys

import numpy as np

from .._version import __version__
from ..layers import base as layers_base
from ..sparse import RowGrad
from ._cli import FAILED, OK, USAGE, Parser, UsageError, fail, one_line

FORMAT = "npctr-golden"
FORMAT_VERSION = 1


# -- building the target -----------------------------------------------------------------------
def _classes():
    from .. import layers
    from ..registry import MODEL_REGISTRY
    table = {name: getattr(layers, name) for name in layers.__all__
             if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), layers_base.Layer)}
    table.update(MODEL_REGISTRY)
    return table


def build_from_config(spec, dtype=None):
    """A layer or model from ``{"class": name, "config": {...}}`` (``"input_dim"`` optional, for layers).

    ``config`` holds the constructor's keyword arguments; a model's ``dnn_feature_columns`` is a
    list of ``{"class": "SparseFeat" | "VarLenSparseFeat" | "DenseFeat", "config": {...}}`` (what
    ``npctr.feature_column.feature_columns_to_config`` writes; docs/verifying_backends.md shows one).
    """
    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError('a golden config is a JSON object {"class": <layer or model class>, "config": {...}, '
                         f'"input_dim": <int, layers only>}}, got {spec!r:.200}')
    unknown = sorted(set(spec) - {"class", "config", "input_dim"})
    if unknown:
        raise ValueError(f'a golden config has the keys "class", "config" and "input_dim" only, got {unknown}')
    classes = _classes()
    cls = classes.get(spec["class"])
    if cls is None:
        raise ValueError(f"unknown class {spec['class']!r}; known: {sorted(classes)}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f'"config" must be a JSON object of {spec["class"]} arguments, got {config!r:.200}')
    config = dict(config)
    if dtype is not None:
        config["dtype"] = np.dtype(dtype).name
    try:
        if hasattr(cls, "from_config"):
            return cls.from_config(config)
        return cls(**config)
    except KeyError as exc:            # a required argument of from_config is missing
        raise ValueError(f"the config of {spec['class']} lacks {exc.args[0]!r}") from exc
    except TypeError as exc:           # an unknown or missing constructor argument
        raise ValueError(f"bad config for {spec['class']}: {exc}") from exc


def load_target(path, dtype=None):
    """A saved model file (``npctr.save_model``) or a JSON config; returns ``(target, spec, from_file)``."""
    from ..io import load_model
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"PK":
        model = load_model(path)
        if dtype is not None and np.dtype(dtype) != model.dtype:
            weights = {p: model._lookup(p) for p in model.weight_names()}
            model = type(model).from_config({**model.get_config(), "dtype": np.dtype(dtype).name})
            model.set_weights(weights)
        return model, {"class": type(model).__name__, "config": model.get_config()}, True
    with open(path) as f:
        try:
            spec = json.load(f)
        except ValueError as exc:
            raise ValueError(f"{path!r} is neither an npctr model file (.npz) nor a JSON config: {exc}") from exc
    return build_from_config(spec, dtype), spec, False


# -- inputs ------------------------------------------------------------------------------------
def _is_model(target):
    from ..models.base import Model
    return isinstance(target, Model)


def make_inputs(target, rng, batch_size, seq_len, input_dim, dtype):
    """Seeded inputs for ``target``: ``(forward's input, {name: array}, float input names)``."""
    from ..layers import (AttentionSequencePoolingLayer, Embedding, LocalActivationUnit, PredictionLayer,
                          SequencePoolingLayer)
    if _is_model(target):
        return _model_inputs(target, rng, batch_size, dtype)
    if isinstance(target, Embedding):                     # ids, id 0 (padding) among them
        ids = rng.integers(0, target.input_dim, (batch_size,) + ((seq_len,) if seq_len else ()))
        ids.flat[0] = 0
        return ids, {"ids": ids}, [None]
    if isinstance(target, SequencePoolingLayer):
        t, e = seq_len or 5, input_dim or 4
        x = rng.standard_normal((batch_size, t, e)).astype(dtype)
        lengths = rng.integers(0, t + 1, (batch_size, 1))
        lengths[0, 0] = t                                        # one full row
        if target.supports_masking:
            return x, {"seq_value": x, "mask": np.arange(t) < lengths}, ["seq_value"]
        return [x, lengths], {"seq_value": x, "seq_len": lengths}, ["seq_value", None]
    if isinstance(target, (LocalActivationUnit, AttentionSequencePoolingLayer)):
        e, t = input_dim or 4, seq_len or 5
        named = {"query": rng.standard_normal((batch_size, 1, e)).astype(dtype),
                 "keys": rng.standard_normal((batch_size, t, e)).astype(dtype)}
        if isinstance(target, LocalActivationUnit):
            return [named["query"], named["keys"]], named, ["query", "keys"]
        lengths = rng.integers(0, t + 1, (batch_size, 1))
        lengths[0, 0] = t                                        # one full row
        if target.supports_masking:
            named["mask"] = np.arange(t) < lengths
            return [named["query"], named["keys"]], named, ["query", "keys"]
        named["keys_length"] = lengths
        return [named["query"], named["keys"], lengths], named, ["query", "keys", None]
    if isinstance(target, PredictionLayer):
        d = (input_dim or 3) if target.task == "multiclass" else 1
        x = rng.standard_normal((batch_size, d)).astype(dtype)
        return x, {"x": x}, ["x"]
    shape = (batch_size,) + ((seq_len,) if seq_len else ()) + (input_dim or 8,)
    x = rng.standard_normal(shape).astype(dtype)
    return x, {"x": x}, ["x"]


def _model_inputs(model, rng, batch_size, dtype):
    from ..feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
    x = {}
    lengths = {}
    for fc in model.dnn_feature_columns:
        if isinstance(fc, VarLenSparseFeat) and fc.length_name and fc.length_name not in lengths:
            length = rng.integers(1, fc.maxlen + 1, batch_size)
            length[0] = fc.maxlen
            lengths[fc.length_name] = length
    for fc in model.dnn_feature_columns:
        if isinstance(fc, SparseFeat):
            x[fc.name] = rng.integers(1 if fc.vocabulary_size > 1 else 0, fc.vocabulary_size, batch_size)
        elif isinstance(fc, DenseFeat):
            x[fc.name] = rng.standard_normal((batch_size, fc.dimension)).astype(dtype)
        elif isinstance(fc, VarLenSparseFeat):
            length = lengths.get(fc.length_name)
            if length is None:
                length = rng.integers(1, fc.maxlen + 1, batch_size)
            ids = rng.integers(1, max(fc.vocabulary_size, 2), (batch_size, fc.maxlen))
            # ids are non-zero exactly for t < length, so an id mask (DeepCTR) and a length mask
            # (DeepCTR-Torch) select the same positions
            x[fc.name] = np.where(np.arange(fc.maxlen) < length[:, None], ids, 0)
    for name, length in lengths.items():
        x[name] = length
    y = np.zeros(batch_size)
    y[: (batch_size + 1) // 2] = 1.0
    rng.shuffle(y)
    dense = [fc.name for fc in model.dnn_feature_columns if isinstance(fc, DenseFeat)]
    return x, {**x, "y": y}, dense


def randomize_weights(target, rng):
    """Seeded non-trivial values for every weight (fresh layers' zeros and ones hide mistakes)."""
    values = {}
    for path in target.weight_names():
        shape = target._lookup(path).shape
        leaf = path.rsplit("/", 1)[-1]
        if leaf == "moving_variance":
            values[path] = rng.uniform(0.5, 1.5, shape)
        elif leaf == "gamma":
            values[path] = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf in ("dice_alpha", "alpha"):
            values[path] = rng.uniform(0.1, 0.4, shape)
        elif leaf == "embeddings":
            values[path] = 0.5 * rng.standard_normal(shape)
        else:
            values[path] = (0.5 if "kernel" in leaf else 0.2) * rng.standard_normal(shape)
    target.set_weights(values)


# -- running -----------------------------------------------------------------------------------
def _dense(g):
    return g.to_dense() if isinstance(g, RowGrad) else np.asarray(g)


def _framework_names(target):
    """``{path: {"keras": name, "torch": name, "torch_layout": ...}}`` (empty where none is known)."""
    from .keras import keras_default_name, keras_spec
    from .torch import torch_spec
    names = {p: {} for p in target.weight_names()}
    try:
        for path, key in keras_spec(target).items():
            names[path]["keras"] = keras_default_name(key)
    except TypeError:
        pass
    try:
        for path, (name, layout) in torch_spec(target).items():
            names[path]["torch"] = name
            names[path]["torch_layout"] = layout
    except TypeError:
        pass
    return names


def _grad_inputs(grads, float_names):
    if isinstance(grads, dict):                  # a model: {dense feature name: gradient}
        return grads
    grads = grads if isinstance(grads, list) else [grads]
    return {n: g for n, g in zip(float_names, grads) if n is not None and g is not None}


def exact_zero_gradients(target, training):
    """Paths of ``target``'s trainable weights whose gradient is zero in exact arithmetic in that
    mode, whatever the inputs and the upstream gradient: a DNN bias in front of a training-mode
    BatchNormalization (the batch mean removes any shift), and the attention score's bias under
    softmax weight normalization (a softmax ignores a shift of all its inputs). A backend computes
    round-off there (~1e-17); golden files hold exact zeros, and ``compare`` judges such arrays at
    the scale of their group (``npctr.testing``)."""
    from ..layers import DNN, AttentionSequencePoolingLayer
    zeros = set()
    for prefix, layer in target.sublayers():
        if training and isinstance(layer, DNN) and layer.use_bn:
            zeros.update(f"{prefix}bias{i}" for i in range(len(layer.hidden_units)))
        if isinstance(layer, AttentionSequencePoolingLayer) and layer.weight_normalization:
            zeros.add(f"{prefix}local_att/bias")
    return zeros & set(target.params)


def golden_vectors(target, seed=0, batch_size=4, seq_len=None, input_dim=None, randomize=True):
    """Run ``target`` (a built or buildable npctr layer or model) and return ``(arrays, index)``.

    ``arrays`` maps the keys of the module docstring's table to NumPy arrays; ``index`` is
    the JSON-able description of each. ``randomize=False`` keeps the target's weights.
    """
    rng = np.random.default_rng(seed)
    dtype = target.dtype or np.dtype(np.float64)
    forward_input, named, float_names = make_inputs(target, rng, batch_size, seq_len, input_dim, dtype)
    mask = named.get("mask")
    if not target.built or not target.weight_names() and not _is_model(target):
        kwargs = {"mask": mask} if mask is not None else {}
        target.forward(forward_input, training=False, **kwargs)              # build
    if randomize:
        randomize_weights(target, rng)
    arrays, quantities = record_quantities(target, forward_input, named, float_names, rng)
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "npctr_version": __version__,
             "class": type(target).__name__, "config": target.get_config(), "seed": seed,
             "batch_size": batch_size, "seq_len": seq_len, "input_dim": input_dim, "dtype": dtype.name,
             "weights_randomized": bool(randomize), "conventions": getattr(target, "_conventions_name", None),
             "weights": {p: {"trainable": p in target.params, **_framework_names(target)[p]}
                         for p in target.weight_names()},
             "quantities": quantities}
    return arrays, index


def record_quantities(target, forward_input, named, float_names, rng, upstream=None):
    """Every quantity of the module docstring's table for a built ``target`` with its current
    weights, on ``forward_input`` (``named``: the same inputs by name, ``input/y`` included for
    a model; ``float_names``: names of the float inputs, aligned with a layer's input list).
    The upstream gradient is drawn from ``rng`` unless given. Returns ``(arrays, quantities)``;
    ``target`` is left as it was (moving statistics and generators restored)."""
    dtype = target.dtype or np.dtype(np.float64)
    model = _is_model(target)
    mask = named.get("mask")
    kwargs = {"mask": mask} if mask is not None else {}
    arrays, quantities = {}, {}
    zeros = {mode: exact_zero_gradients(target, training) for mode, training in (("infer", False),
                                                                                 ("train", True))}

    def put(key, value, meaning):
        value = np.array(_dense(value), order="C", copy=True)     # a copy: restore() reuses the arrays
        arrays[key] = value
        quantities[key] = {"shape": list(value.shape), "dtype": value.dtype.name, "meaning": meaning}

    def put_grads(mode, grads, meaning):
        for path, g in grads.items():
            if path in zeros["train" if mode == "loss" else mode]:
                put(f"{mode}/grad_weight/{path}", np.zeros_like(_dense(g)),
                    meaning + " (zero in exact arithmetic: written as exact zeros)")
            else:
                put(f"{mode}/grad_weight/{path}", g, meaning)

    for name, value in named.items():
        put(f"input/{name}", value, "input" if name != "y" else "labels of the loss")
    for path in target.weight_names():
        put(f"weight/{path}", target._lookup(path), "initial weight" if path in target.params
            else "initial moving statistic")
    from .keras import to_keras_weights
    from .torch import to_torch_state_dict
    for exporter, prefix in ((lambda: to_keras_weights(target), "keras"),
                             (lambda: to_torch_state_dict(target, numpy=True), "torch")):
        try:
            for name, value in exporter().items():
                put(f"{prefix}/{name}", value, f"initial weight under its {prefix} name and layout")
        except TypeError:
            pass

    snap = target.snapshot()
    for mode, training in (("infer", False), ("train", True)):
        target.restore(snap)
        out = target.forward(forward_input, training=training, backprop=True, **kwargs)
        if upstream is None:
            upstream = rng.standard_normal(out.shape).astype(dtype)
        if "upstream" not in arrays:
            put("upstream", upstream, "upstream gradient g: L = sum(output * g)")
        put(f"{mode}/output", out, f"output, {'inference' if mode == 'infer' else 'training'} mode")
        grads = _grad_inputs(target.backward(upstream), float_names)
        for name, g in grads.items():
            put(f"{mode}/grad_input/{name}", g, "dL/d input")
        put_grads(mode, target.grads, "dL/d weight")
        if training:
            for path, value in target.state.items():
                put(f"train/moving/{path}", value, "moving statistic after one training call")
    if model:
        from ..training import losses
        target.restore(snap)
        # what the profile's framework minimises, differentiated as the trainer does it
        loss = getattr(target, "loss", None) or target._default_loss()
        y = named["y"].reshape(-1, 1).astype(dtype)
        if target.task == "binary" and loss.link == "sigmoid":
            z = target.forward_logits(forward_input, training=True, backprop=True)
            pred, d_logit = losses.probability(z), loss.logit_grad(y, z)
            target.backward_logits(d_logit)
            put("loss/grad_logit", d_logit, "d loss / d logit (the sigmoid's input: logit + global_bias)")
        else:
            pred = target.forward(forward_input, training=True, backprop=True)
            target.backward(loss.grad(y, pred))
        put("loss/value", np.array(loss.value(y, pred) + target.regularization_loss()),
            f"{type(loss).__name__} ({target.conventions.name} conventions) of the training-mode "
            "output vs input/y, plus L2")
        put("loss/grad_output", loss.grad(y, pred), "d loss / d output")
        target.add_regularization_grads()
        put_grads("loss", target.grads, "d loss / d weight, L2 included")
    else:
        put("loss/value", np.array(float(np.vdot(arrays["train/output"], upstream))),
            "L = sum(train/output * upstream); its gradients are train/grad_*")
    target.restore(snap)
    return arrays, quantities


def write_golden(path, arrays, index):
    """Write ``arrays`` and the JSON ``index`` (as ``__index__``) to ``path`` (``.npz``, no pickles)."""
    np.savez(path, __index__=np.array(json.dumps(index, default=str)), **arrays)


def read_golden(path):
    """``(arrays, index)`` of a golden file (``index`` None for a plain ``.npz``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:
        raise ValueError(f"{path!r} is not a readable .npz (pickled objects are refused): {exc}") from exc
    index = arrays.pop("__index__", None)
    return arrays, (json.loads(str(index)) if index is not None else None)


# -- command line ------------------------------------------------------------------------------
def _parser():
    parser = Parser(
        prog="python -m npctr golden",
        description="Write golden vectors (inputs, weights, outputs, gradients, moving statistics, loss) "
                    "of an npctr layer or model to a self-describing .npz. Exit 2 on usage errors (bad "
                    "arguments, unreadable or invalid config), 1 when the computation fails.")
    parser.add_argument("source", help='a JSON config {"class": "DNN", "config": {...}, "input_dim": 8} '
                                       "(weights drawn from the seed; docs/verifying_backends.md lists the "
                                       "config of every class) or a saved npctr model file (.npz, its weights kept)")
    parser.add_argument("-o", "--out", default="golden.npz", help="output file (default golden.npz)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and weights (>= 0)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=None,
                        help="T of attention layers (default 5); for a (batch, dim) layer, run it on "
                             "(batch, T, dim); a model's is its columns' maxlen")
    parser.add_argument("--input-dim", type=int, default=None, help="a layer's input size (overrides the config's)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default=None)
    return parser


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        for name, value, low in (("--seed", args.seed, 0), ("--batch-size", args.batch_size, 1),
                                 ("--seq-len", args.seq_len, 1), ("--input-dim", args.input_dim, 1)):
            if value is not None and value < low:
                raise UsageError(f"{name} must be >= {low}, got {value}")
        target, spec, from_file = load_target(args.source, args.dtype)
        input_dim = args.input_dim or (spec.get("input_dim") if not from_file else None)
        if input_dim is not None and (isinstance(input_dim, bool) or not isinstance(input_dim, int)
                                      or input_dim < 1):
            raise UsageError(f'"input_dim" of the config must be an int >= 1, got {input_dim!r}')
    except (UsageError, ValueError, TypeError, KeyError, OSError) as exc:
        fail("golden", exc, sys.stderr)
        return USAGE
    try:
        arrays, index = golden_vectors(target, args.seed, args.batch_size, args.seq_len, input_dim,
                                       randomize=not from_file)
    except Exception as exc:        # noqa: BLE001 - a command reports, it does not dump a traceback
        print(f"golden: computing {type(target).__name__} failed: {one_line(exc)}", file=sys.stderr)
        return FAILED
    try:
        write_golden(args.out, arrays, index)
    except OSError as exc:
        fail("golden", exc, sys.stderr)
        return USAGE
    print(f"wrote {args.out}: {index['class']}, {len(arrays)} arrays, dtype {index['dtype']}, seed {args.seed}")
    return OK


if __name__ == "__main__":
    sys.exit(main())
