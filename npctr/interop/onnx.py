r"""ONNX export of npctr's inference graphs: ``DNN``, ``DIN`` and ``DNNModel``.

``export_onnx(model, path)`` writes the model's ``forward(x, training=False)`` as an
ONNX graph (opset 17, IR 8) that ONNX Runtime runs in float32 and float64 alike:
every op used (Gather, MatMul, Add, Sub, Mul, Sigmoid, Relu, Tanh, Softmax, Max, Min,
Where, Equal, Less, Not, And, Cast, ReduceSum, ReduceMax, Concat, Reshape, Unsqueeze,
Transpose, Expand, Shape) has CPU kernels for both. Inference folds what training
needs separately: BatchNormalization and Dice use their moving statistics, written as
constants ``mean`` and ``1 / sqrt(variance + epsilon)`` computed exactly as npctr
computes them, so the graph repeats npctr's arithmetic op for op.

Inputs are named by feature name as DeepCTR names them, with a dynamic batch axis:
``SparseFeat`` ``(batch, 1)`` int64 ids, ``VarLenSparseFeat`` ``(batch, maxlen)`` int64
ids (0 = padding), a ``length_name`` ``(batch, 1)`` int64, ``DenseFeat``
``(batch, dimension)`` in the model's dtype. The output ``prediction_layer``
``(batch, 1)`` is the probability (``task='binary'``) or the value (``'regression'``).
A ``DNN`` layer exports as input ``inputs`` ``(batch, input_dim)``, output ``outputs``.
See ``docs/onnx.md``. Needs the optional ``onnx`` package (``pip install npctr[onnx]``).
"""
import numpy as np

from .._version import __version__
from ..feature_column import DenseFeat, VarLenSparseFeat
from ..layers.activation import Activation, Dice, PReLU
from ..layers.core import DNN, PredictionLayer
from ..layers.dropout import Dropout
from ..layers.normalization import BatchNormalization
from ..ops.attention import SOFTMAX_PAD, split_first_kernel
from ..ops.batch_norm import inverse_std
from ..ops.sequence import MAX_POOL_PAD, MEAN_POOL_EPSILON

OPSET = 17
IR_VERSION = 8          # what opset 17 needs; readable by ONNX Runtime >= 1.11

_PLAIN = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:     # an optional extra
        raise ImportError("export_onnx needs the onnx package: pip install 'npctr[onnx]'") from exc
    return onnx


class _Graph:
    """A growing list of nodes and constants with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self._used = [], [], set()

    def reserve(self, names):
        """Names taken by the graph's inputs."""
        self._used.update(names)

    def _name(self, hint):
        name, n = hint, 0
        while name in self._used:
            n += 1
            name = f"{hint}_{n}"
        self._used.add(name)
        return name

    def const(self, hint, value, dtype=None):
        """A constant tensor (in the graph's float dtype unless ``dtype`` says otherwise)."""
        name = self._name(hint)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype or self.dtype))
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, *inputs, hint=None, **attrs):
        out = self._name(hint or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def axes(self, *axes):
        return self.const("axes", list(axes), dtype=np.int64)


def _is(layer, cls):
    """``layer`` computes what ``cls`` computes at inference: an instance whose ``forward`` is
    ``cls``'s own (a subclass that only changes defaults passes; one that overrides forward does not)."""
    return isinstance(layer, cls) and type(layer).forward is cls.forward


def _unsupported(path, layer, what):
    return TypeError(f"export_onnx cannot export {path or 'the model'} ({type(layer).__name__}): {what}")


# -- layers ----------------------------------------------------------------------------------
def _batch_norm(g, bn, x, ndim, path):
    """``(x - mean) * inv_std [* gamma] [+ beta]`` with the moving statistics (inference)."""
    if not _is(bn, BatchNormalization):
        raise _unsupported(path, bn, "only npctr's BatchNormalization is supported")
    mean = bn._broadcast(bn.state["moving_mean"], ndim)
    inv_std = inverse_std(bn._broadcast(bn.state["moving_variance"], ndim), bn.epsilon)
    y = g.op("Mul", g.op("Sub", x, g.const(f"{path}/moving_mean", mean)),
             g.const(f"{path}/inv_std", inv_std), hint=f"{path}/x_hat")
    if "gamma" in bn.params:
        y = g.op("Mul", y, g.const(f"{path}/gamma", bn._broadcast(bn.params["gamma"], ndim)))
    if "beta" in bn.params:
        y = g.op("Add", y, g.const(f"{path}/beta", bn._broadcast(bn.params["beta"], ndim)))
    return y


def _activation(g, layer, x, ndim, path):
    if _is(layer, Dice):
        bn = layer.get_layer("bn")
        alpha = bn._broadcast(layer.params["dice_alpha"], ndim)
        p = g.op("Sigmoid", _batch_norm(g, bn, x, ndim, f"{path}/bn"), hint=f"{path}/p")
        # y = (p (1 - alpha) + alpha) x, as npctr factors it
        gate = g.op("Add", g.op("Mul", p, g.const(f"{path}/one_minus_alpha", 1.0 - alpha)),
                    g.const(f"{path}/dice_alpha", alpha), hint=f"{path}/gate")
        return g.op("Mul", gate, x, hint=path)
    if _is(layer, PReLU):
        if not layer.built:
            raise _unsupported(path, layer, "not built yet (its alpha's shape comes from its first input): "
                                            "call the model once first")
        if ndim - 1 != len(layer._input_tail):
            raise _unsupported(path, layer, f"built for inputs of rank {len(layer._input_tail) + 1}, not {ndim}")
        zero = g.const("zero", 0.0)
        negative = g.op("Mul", g.const(f"{path}/alpha", layer.params["alpha"]), g.op("Min", x, zero))
        return g.op("Add", g.op("Max", x, zero), negative, hint=path)
    if _is(layer, Activation):
        if layer.activation == "linear":
            return x
        if layer.activation == "softmax":
            return g.op("Softmax", x, axis=-1, hint=path)
        return g.op(_PLAIN[layer.activation], x, hint=path)
    raise _unsupported(path, layer, "supported activations are npctr's Activation (linear, relu, sigmoid, "
                                    "tanh, softmax), Dice and PReLU")


def _dnn(g, dnn, x, ndim, path, z0=None):
    """DeepCTR's DNN in inference: per layer ``x W + b``, BN, activation (dropout is the identity)."""
    if not _is(dnn, DNN):
        raise _unsupported(path, dnn, "only npctr's DNN is supported")
    a = x
    for i in range(len(dnn.hidden_units)):
        if i == 0 and z0 is not None:
            z = z0
        else:
            z = g.op("Add", g.op("MatMul", a, g.const(f"{path}/kernel{i}", dnn.params[f"kernel{i}"])),
                     g.const(f"{path}/bias{i}", dnn.params[f"bias{i}"]), hint=f"{path}/z{i}")
        if dnn.use_bn:
            z = _batch_norm(g, dnn.get_layer(f"bn{i}"), z, ndim, f"{path}/bn{i}")
        a = _activation(g, dnn.get_layer(f"activation{i}"), z, ndim, f"{path}/activation{i}")
        if not _is(dnn.get_layer(f"dropout{i}"), Dropout):
            raise _unsupported(f"{path}/dropout{i}", dnn.get_layer(f"dropout{i}"), "only npctr's Dropout")
    return a


def _local_activation_unit(g, lau, query, keys, path):
    """Scores ``(B, T, 1)`` for ``query (B, 1, E)`` and ``keys (B, T, E)``."""
    dnn = lau.get_layer("dnn")
    if lau.split and lau.hidden_units:
        # [q, k, q-k, q*k] W + b = k W_k + (q*k) W_p + (q W_q + b)   (npctr.ops.attention)
        w_query, w_key, w_product = split_first_kernel(dnn.params["kernel0"])
        z = g.op("MatMul", keys, g.const(f"{path}/dnn/kernel0_k", w_key))
        z = g.op("Add", z, g.op("MatMul", g.op("Mul", query, keys, hint=f"{path}/query_keys"),
                                g.const(f"{path}/dnn/kernel0_qk", w_product)))
        per_row = g.op("Add", g.op("MatMul", query, g.const(f"{path}/dnn/kernel0_q", w_query)),
                       g.const(f"{path}/dnn/bias0", dnn.params["bias0"]))
        h = _dnn(g, dnn, None, 3, f"{path}/dnn", z0=g.op("Add", z, per_row, hint=f"{path}/dnn/z0"))
    else:
        q = g.op("Expand", query, g.op("Shape", keys))
        u = g.op("Concat", q, keys, g.op("Sub", q, keys), g.op("Mul", q, keys), axis=-1,
                 hint=f"{path}/attention_input")
        h = _dnn(g, dnn, u, 3, f"{path}/dnn")
    return g.op("Add", g.op("MatMul", h, g.const(f"{path}/kernel", lau.params["kernel"])),
                g.const(f"{path}/bias", lau.params["bias"]), hint=f"{path}/score")


def _attention(g, att, query, keys, valid, path):
    """DIN's attention pooling ``(B, 1, E)``; ``valid`` is the ``(B, 1, T)`` bool mask."""
    score = g.op("Transpose", _local_activation_unit(g, att.get_layer("local_att"), query, keys,
                                                     f"{path}/local_att"), perm=[0, 2, 1])
    if att.weight_normalization:
        w = g.op("Softmax", g.op("Where", valid, score, g.const("softmax_pad", SOFTMAX_PAD)), axis=-1)
    else:
        w = g.op("Where", valid, score, g.const("zero", 0.0))
    return g.op("MatMul", w, keys, hint=f"{path}/output")


def _pooling(g, layer, seq, valid, lengths, path):
    """``SequencePoolingLayer``: sum/mean/max of ``seq (B, T, E)`` over valid positions -> ``(B, 1, E)``."""
    m = g.op("Cast", g.op("Unsqueeze", valid, g.axes(-1)), to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype),
             hint=f"{path}/mask")                                                     # (B, T, 1)
    if layer.mode == "max":
        shifted = g.op("Sub", seq, g.op("Mul", g.op("Sub", g.const("one", 1.0), m), g.const("max_pool_pad", MAX_POOL_PAD)))
        return g.op("ReduceMax", shifted, axes=[1], keepdims=1, hint=path)
    y = g.op("ReduceSum", g.op("Mul", seq, m), g.axes(1), keepdims=1, hint=f"{path}/sum")
    if layer.mode == "sum":
        return y
    length = lengths if lengths is not None else g.op("ReduceSum", m, g.axes(1), keepdims=1)
    length = g.op("Reshape", length, g.const("shape_b11", [-1, 1, 1], dtype=np.int64))
    # the divisor length + 1e-8 is formed in float32, as the frameworks do (ops.sequence.mean_pool_length)
    float32 = g.onnx.TensorProto.FLOAT
    length = g.op("Add", g.op("Cast", length, to=float32),
                  g.const("mean_pool_epsilon", MEAN_POOL_EPSILON, dtype=np.float32))
    length = g.op("Cast", length, to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype))
    scale = g.op("Div", g.const("one", 1.0), length)
    return g.op("Mul", y, scale, hint=path)


def _prediction(g, layer, logit, path):
    if not _is(layer, PredictionLayer) or layer.task not in ("binary", "regression"):
        raise _unsupported(path, layer, "only a binary or regression PredictionLayer is supported")
    if layer.use_bias:
        logit = g.op("Add", logit, g.const(f"{path}/global_bias", layer.params["global_bias"]))
    return g.op("Sigmoid", logit, hint=path) if layer.task == "binary" else logit


# -- models ----------------------------------------------------------------------------------
def _length_mask(g, maxlen, length):
    """``(B, T)`` bool ``t < length`` for a ``(B, 1)`` int64 length input (``tf.sequence_mask``)."""
    return g.op("Less", g.const(f"positions_{maxlen}", np.arange(maxlen)[None, :], np.int64), length)


def _feature_model(g, model):
    """The graph of ``FeatureModel._forward_logit`` + the prediction; returns (inputs, output)."""
    helper, tp = g.onnx.helper, g.onnx.TensorProto
    float_type = helper.np_dtype_to_tensor_dtype(g.dtype)
    inputs = []
    g.reserve(model.input_features)
    for name, fc in model.input_features.items():
        if isinstance(fc, DenseFeat):
            inputs.append(helper.make_tensor_value_info(name, float_type, ["batch", fc.dimension]))
        elif isinstance(fc, VarLenSparseFeat) and name == fc.name:
            inputs.append(helper.make_tensor_value_info(name, tp.INT64, ["batch", fc.maxlen]))
        else:
            inputs.append(helper.make_tensor_value_info(name, tp.INT64, ["batch", 1]))
    emb = {}
    for emb_name, names in model.table_features.items():
        table = g.const(f"sparse_emb_{emb_name}/embeddings",
                        model.get_layer(f"sparse_emb_{emb_name}").params["embeddings"])
        for n in names:
            emb[n] = g.op("Gather", table, n, axis=0, hint=f"{n}_emb")
    pieces = [emb[fc.name] for fc in model.sparse_columns]                       # (B, 1, E_i)
    for fc in model.pooled_columns:
        path = f"sequence_pooling_{fc.name}"
        if fc.length_name is None:
            valid, lengths = g.op("Not", g.op("Equal", fc.name, g.const("id_pad", 0, np.int64))), None
        else:
            valid = _length_mask(g, fc.maxlen, fc.length_name)
            lengths = g.op("Cast", fc.length_name, to=float_type)
        pieces.append(_pooling(g, model.get_layer(path), emb[fc.name], valid, lengths, path))
    if model.history_columns:
        query = g.op("Concat", *[emb[fc.name] for fc in model.query_columns], axis=-1, hint="query")
        keys = g.op("Concat", *[emb[fc.name] for fc in model.history_columns], axis=-1, hint="keys")
        if getattr(getattr(model, "conventions", None), "history_mask", "ids") == "length":
            # DeepCTR-Torch's profile: position t is valid when t < keys_length
            valid = _length_mask(g, model.history_columns[0].maxlen, model.history_length_name)
        else:
            valid = None
            for fc in model.history_columns:      # a position is valid when none of its ids is padding
                v = g.op("Not", g.op("Equal", fc.name, g.const("id_pad", 0, np.int64)))
                valid = v if valid is None else g.op("And", valid, v)
        valid = g.op("Unsqueeze", valid, g.axes(1), hint="history_mask")                 # (B, 1, T)
        pieces.append(_attention(g, model.get_layer("attention_sequence_pooling_layer"), query, keys, valid,
                                 "attention_sequence_pooling_layer"))
    flat = []
    if pieces:
        joined = g.op("Concat", *pieces, axis=-1) if len(pieces) > 1 else pieces[0]
        flat = [g.op("Reshape", joined, g.const("shape_flat", [-1, sum(model._emb_sizes)], np.int64),
                     hint="embeddings_flat")]
    parts = flat + [fc.name for fc in model.dense_columns]
    deep = g.op("Concat", *parts, axis=-1, hint="dnn_input") if len(parts) > 1 else parts[0]
    h = _dnn(g, model.get_layer("dnn"), deep, 2, "dnn")
    dense = model.get_layer("dense")
    logit = g.op("MatMul", h, g.const("dense/kernel", dense.params["kernel"]), hint="dense")
    output = _prediction(g, model.get_layer("prediction_layer"), logit, "prediction_layer")
    return inputs, output, "prediction_layer", ["batch", 1]


def _dnn_layer(g, dnn):
    if not dnn.built:
        raise ValueError("export_onnx needs a built DNN: call it once or build it (dnn.build((None, input_dim)))")
    helper = g.onnx.helper
    g.reserve(["inputs", "outputs"])
    x = helper.make_tensor_value_info("inputs", helper.np_dtype_to_tensor_dtype(g.dtype),
                                      ["batch", dnn.input_dim])
    out = _dnn(g, dnn, "inputs", 2, "dnn")
    if out == "inputs":      # hidden_units=(): the identity
        out = g.op("Identity", out)
    width = dnn.hidden_units[-1] if dnn.hidden_units else dnn.input_dim
    return [x], out, "outputs", ["batch", width]


def onnx_inputs(model, x):
    """The feed dict for the exported graph from ``model.predict``'s input ``x``.

    Ids and lengths become ``(batch, 1)`` / ``(batch, maxlen)`` int64, dense features
    ``(batch, dimension)`` in the model's dtype; a DNN's array becomes ``{'inputs': x}``.
    """
    if type(model) is DNN:
        return {"inputs": np.asarray(x, dtype=model.dtype)}
    arrays, n = model._check_x(x)
    feed = {}
    for name, a in arrays.items():
        fc = model.input_features[name]
        dtype = model.dtype if isinstance(fc, DenseFeat) else np.int64
        feed[name] = np.ascontiguousarray(a.reshape(n, -1), dtype=dtype)
    return feed


def export_onnx(model, path):
    """Write the inference graph of ``model`` to ``path`` as ONNX; return the ``onnx.ModelProto``.

    Parameters
    ----------
    model : DIN, DNNModel or DNN
        In its dtype (float32 or float64); batch size is dynamic.
    path : str or path-like

    Inputs are named by feature name (``model.feature_names``): ids ``(batch, 1)`` /
    ``(batch, maxlen)`` int64, dense features ``(batch, dimension)`` float; the output
    ``prediction_layer`` ``(batch, 1)`` equals ``model.predict(x)``. A DNN layer has input
    ``inputs (batch, input_dim)`` and output ``outputs``. Raises ``TypeError`` for a
    model or sub-layer the exporter does not know (naming it); needs ``onnx``.
    """
    from ..models.ctr import FeatureModel
    onnx = _onnx()
    if type(model) is DNN:
        build = _dnn_layer
    elif isinstance(model, FeatureModel) and type(model).__name__ in ("DIN", "DNNModel"):
        build = _feature_model
    else:
        raise TypeError(f"export_onnx exports DIN, DNNModel and DNN, got {type(model).__name__}")
    dtype = model.dtype or np.dtype(np.float64)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"export_onnx exports float32 and float64 models, got dtype {dtype}")
    g = _Graph(onnx, dtype)
    g.reserve(["prediction_layer"])
    inputs, out, out_name, out_shape = build(g, model)
    g.nodes.append(onnx.helper.make_node("Identity", [out], [out_name], name=out_name + "/identity"))
    output = onnx.helper.make_tensor_value_info(out_name, onnx.helper.np_dtype_to_tensor_dtype(dtype), out_shape)
    graph = onnx.helper.make_graph(g.nodes, model.name or type(model).__name__, inputs, [output],
                                   initializer=g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="npctr", opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION)
    proto.producer_version = __version__
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return proto


# -- python -m npctr export-onnx -------------------------------------------------------------
def random_inputs(model, n, seed=0):
    """``n`` rows of valid random inputs for ``model``: ids in ``[1, vocabulary_size)``, histories
    padded with 0 after a random length (some rows all padding), lengths in ``[0, maxlen]``,
    dense features standard normal."""
    rng = np.random.default_rng(seed)
    x = {}
    for name, fc in model.input_features.items():
        if isinstance(fc, DenseFeat):
            x[name] = rng.normal(size=(n, fc.dimension))
        elif isinstance(fc, VarLenSparseFeat) and name == fc.name:
            length = rng.integers(0, fc.maxlen + 1, size=(n, 1))
            ids = rng.integers(1, max(fc.vocabulary_size, 2), size=(n, fc.maxlen)) % fc.vocabulary_size
            x[name] = np.where(np.arange(fc.maxlen) < length, ids, 0)
        elif isinstance(fc, VarLenSparseFeat):
            x[name] = rng.integers(0, fc.maxlen + 1, size=(n, 1))
        else:
            x[name] = rng.integers(0, fc.vocabulary_size, size=(n, 1))
    return x


def check_export(model, path, n=256, seed=0):
    """Run the exported graph at ``path`` in ONNX Runtime on ``n`` random rows; return the largest
    ``|onnx - model.predict|``. Needs onnxruntime."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if type(model) is DNN:
        x = np.random.default_rng(seed).normal(size=(n, model.input_dim)).astype(model.dtype)
        expected = model.forward(x)
    else:
        x = random_inputs(model, n, seed)
        expected = model.predict(x)
    out = session.run(None, onnx_inputs(model, x))[0]
    return float(np.max(np.abs(out - expected)))


def main(argv=None):
    """``python -m npctr export-onnx MODEL OUTPUT [--check N]``: exit 0 done, 1 failed (a bad model file,
    a failed write or check), 2 usage (a missing or special model file, an output that is the model,
    onnx / onnxruntime not installed). Every failure is one line on stderr."""
    import argparse
    import os
    import sys
    from .. import _files
    p = argparse.ArgumentParser(prog="python -m npctr export-onnx",
                                description="Write a saved DIN / DNNModel as an ONNX inference graph.")
    p.add_argument("model", help="model file written by model.save")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="then run it in onnxruntime on N random rows and compare with model.predict "
                        "(fails above 1e-6 for float32, 1e-12 for float64)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return exc.code

    def fail(message, status):
        print(f"npctr export-onnx: {'error: ' if status == 1 else ''}{' '.join(str(message).split())[:1000]}",
              file=sys.stderr)
        return status

    try:
        _files.check_regular(args.model, "model file")
    except FileNotFoundError:
        return fail(f"model file {args.model!r} does not exist", 2)
    except ValueError as exc:
        return fail(exc, 2)
    if args.check < 0:
        return fail(f"--check must be >= 0, got {args.check}", 2)
    if os.path.exists(args.output) and os.path.samefile(args.output, args.model):
        return fail(f"the output {args.output!r} is the model file: refusing to replace it", 2)
    try:
        from ..io import load_model
        model = load_model(args.model)
        export_onnx(model, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
        if args.check > 0:
            error = check_export(model, args.output, args.check)
            tol = 1e-6 if model.dtype == np.float32 else 1e-12
            print(f"onnxruntime vs model.predict on {args.check} random rows: max |difference| {error:.3g} "
                  f"(tolerance {tol:g})", file=sys.stderr)
            if not error <= tol:
                return 1
    except ImportError as exc:            # an optional extra that is not installed
        return fail(exc if "pip install" in str(exc) else f"{exc}: pip install 'npctr[onnx]'", 2)
    except (ValueError, TypeError, OSError) as exc:
        return fail(exc, 1)
    except MemoryError:
        return fail("out of memory", 1)
    return 0
