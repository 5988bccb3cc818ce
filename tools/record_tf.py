"""Record DeepCTR 0.9.4 DIN reference numbers from TensorFlow: whole-model forward/backward and 8-step training.

Run in the reference venv, once per Keras (TF_USE_LEGACY_KERAS must be set before TensorFlow is imported)::

    TF_USE_LEGACY_KERAS=1 /work/refenv/bin/python tools/record_tf.py --out tests/data/frameworks   # tf_keras/
    /work/refenv/bin/python tools/record_tf.py --out tests/data/frameworks                         # keras3/

``tools/record_frameworks.py`` runs both (and the torch recorder). Format: tests/data/frameworks/README.md.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # plain Eigen kernels: reproducible on any CPU
LEGACY = os.environ.get("TF_USE_LEGACY_KERAS", "") not in ("", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fw_common as C  # noqa: E402

if LEGACY:
    import tf_keras as K
    FRAMEWORK = "tf_keras"
    KERAS_VERSION = {"tf_keras": K.__version__}
else:
    import keras as K
    FRAMEWORK = "keras3"
    KERAS_VERSION = {"keras": K.__version__}

import deepctr  # noqa: E402
import deepctr.layers.activation as deepctr_activation  # noqa: E402
from deepctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from deepctr.models import DIN  # noqa: E402

VERSIONS = {"tensorflow": tf.__version__, "deepctr": deepctr.__version__, **KERAS_VERSION, **C.base_versions()}
PATCHES = []


# -- patches (the math is unchanged; each is recorded in meta["patches"]) --------------------------
# the float64 Dice alpha and, on Keras 3, DIN's Concat mask: the same patches the conformance adapter applies
from npctr.conformance.adapters.deepctr_keras import apply_patches  # noqa: E402

PATCHES.extend(apply_patches(K))

if not LEGACY:
    PATCHES.append("Keras 3 creates the attention's weights (LocalActivationUnit built inside "
                   "AttentionSequencePoolingLayer.build) only on the first eager call: the model is called once "
                   "in inference mode on the case's inputs before its weights are listed and set")


def set_floatx(dtype):
    K.backend.clear_session()
    if LEGACY:
        K.backend.set_floatx(dtype)
    else:
        K.config.set_floatx(dtype)


def feature_columns(dtype):
    return C.feature_columns(SparseFeat, VarLenSparseFeat, DenseFeat, dense_dtype=dtype)


def columns_meta(dtype):
    return [dict(f, dtype=dtype) if f["type"] == "DenseFeat" else dict(f) for f in C.FEATURES]


def din_args(variant, emb):
    return {**C.VARIANTS[variant], **C.COMMON_ARGS, "l2_reg_embedding": C.EMB_L2[emb],
            "history_feature_list": list(C.HISTORY)}


def build(variant, emb, dtype, x):
    """A fresh DeepCTR DIN; returns (model, args)."""
    set_floatx(dtype)
    args = din_args(variant, emb)
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if k != "history_feature_list"}
    model = DIN(feature_columns(dtype), list(C.HISTORY), **kw)
    if not LEGACY:
        model(x, training=False)
    return model, args


def _dnn_paths(dnn, prefix, out):
    for i, v in enumerate(dnn.kernels):
        out[id(v)] = f"{prefix}kernel{i}"
    for i, v in enumerate(dnn.bias):
        out[id(v)] = f"{prefix}bias{i}"
    if dnn.use_bn:
        for i, bn in enumerate(dnn.bn_layers):
            for leaf in ("gamma", "beta", "moving_mean", "moving_variance"):
                out[id(getattr(bn, leaf))] = f"{prefix}bn{i}/{leaf}"
    for i, act in enumerate(dnn.activation_layers):
        if isinstance(act, deepctr_activation.Dice):
            out[id(act.alphas)] = f"{prefix}activation{i}/dice_alpha"
            out[id(act.bn.moving_mean)] = f"{prefix}activation{i}/bn/moving_mean"
            out[id(act.bn.moving_variance)] = f"{prefix}activation{i}/bn/moving_variance"


def npctr_paths(model):
    """id(variable) -> npctr path, by walking DeepCTR's layer objects (never by name or position)."""
    by_name = {f["name"]: f for f in C.FEATURES}
    out = {}
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "Embedding":
            for pre in ("sparse_seq_emb_", "sparse_emb_"):
                if layer.name.startswith(pre):
                    feat = by_name[layer.name[len(pre):]] if pre == "sparse_seq_emb_" else \
                        {"embedding_name": layer.name[len(pre):]}
                    out[id(layer.embeddings)] = f"sparse_emb_{feat['embedding_name']}/embeddings"
                    break
        elif cls == "AttentionSequencePoolingLayer":
            lau = layer.local_att
            out[id(lau.kernel)] = "attention_sequence_pooling_layer/local_att/kernel"
            out[id(lau.bias)] = "attention_sequence_pooling_layer/local_att/bias"
            _dnn_paths(lau.dnn, "attention_sequence_pooling_layer/local_att/dnn/", out)
        elif cls == "DNN":
            _dnn_paths(layer, "dnn/", out)
        elif cls == "Dense":
            out[id(layer.kernel)] = "dense/kernel"
        elif cls == "PredictionLayer":
            out[id(layer.global_bias)] = "prediction_layer/global_bias"
    return out


def var_name(v):
    return v.name if LEGACY else v.path


def weights_table(model):
    """(names, npctr paths, trainable flags, variables) in get_weights() order."""
    paths = npctr_paths(model)
    values = model.get_weights()
    variables = list(model.weights)
    assert len(values) == len(variables)
    for v, a in zip(variables, values):
        assert tuple(v.shape) == a.shape, (var_name(v), v.shape, a.shape)
    trainable_ids = {id(v) for v in model.trainable_weights}
    missing = [var_name(v) for v in variables if id(v) not in paths]
    if missing:
        raise RuntimeError(f"no npctr path for {missing}")
    return ([var_name(v) for v in variables], [paths[id(v)] for v in variables],
            [id(v) in trainable_ids for v in variables], variables)


def set_initial(variables, paths, dtype, final_scale=1.0):
    w = []
    for v, p in zip(variables, paths):
        value = C.init_value(p, tuple(v.shape))
        if p == "dense/kernel":
            value = value * final_scale
        value = value.astype(dtype)
        v.assign(value)
        w.append(value)
    return w


def _to_dense(g, v):
    if g is None:
        return np.zeros(tuple(v.shape), v.dtype.name if hasattr(v.dtype, "name") else str(v.dtype))
    return tf.convert_to_tensor(g).numpy()


def data_loss_fn(model, y, yp):
    if LEGACY:
        return model.compiled_loss(y, yp)
    return model._compile_loss(y, yp)


def record_din(out, variant, emb, dtype):
    x, y = C.make_inputs(C.BATCH, C.SEED, dtype)
    model, args = build(variant, emb, dtype, x)
    model.compile(K.optimizers.SGD(0.0) if not LEGACY else K.optimizers.SGD(0.0), "binary_crossentropy")
    names, paths, trainable, variables = weights_table(model)
    scale = C.FINAL_KERNEL_SCALE[variant]
    w = set_initial(variables, paths, dtype, scale)
    out_infer = model(x, training=False).numpy()
    train_vars = list(model.trainable_weights)
    y_t = tf.convert_to_tensor(y)   # train_step receives tensors
    with tf.GradientTape() as tape:
        yp = model(x, training=True)
        loss = model.compute_loss(x=x, y=y_t, y_pred=yp)
    grads = tape.gradient(loss, train_vars)
    data_loss = data_loss_fn(model, y_t, yp)
    reg_loss = tf.add_n(model.losses) if model.losses else tf.constant(0.0, dtype)
    grad_of = {id(v): _to_dense(g, v) for v, g in zip(train_vars, grads)}
    arrays = {f"x/{k}": v for k, v in x.items()}
    arrays.update(y=y, weight_names=np.array(names), npctr_path=np.array(paths),
                  npctr_transpose=np.zeros(len(names), bool), trainable=np.array(trainable),
                  out_infer=out_infer, out_train=yp.numpy(), loss=np.asarray(loss.numpy()),
                  data_loss=np.asarray(data_loss.numpy()), reg_loss=np.asarray(np.sum(reg_loss.numpy())))
    for n, v, value in zip(names, variables, w):
        arrays[f"w/{n}"] = value
        if id(v) in grad_of:
            arrays[f"grad/{n}"] = grad_of[id(v)]
        else:
            arrays[f"after_train/{n}"] = v.numpy()
    case = C.case_name("din", variant, emb, dtype)
    meta = base_meta("din", case, dtype, args)
    meta["final_kernel_scale"] = scale
    meta["loss"] = "binary_crossentropy"
    meta["order"] = ("set weights -> model(x, training=False) -> GradientTape: model(x, training=True), "
                     "model.compute_loss(x, y, y_pred) (what train_step differentiates: compiled loss + "
                     "model.losses) -> gradients; buffers read after that one training-mode call")
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case


def base_meta(kind, case, dtype, args):
    return {"framework": FRAMEWORK, "versions": VERSIONS, "dtype": dtype, "kind": kind, "case": case,
            "model": {"class": "deepctr.models.DIN", "args": {**args, "dnn_feature_columns": columns_meta(dtype)}},
            "feature_columns": columns_meta(dtype), "history_feature_list": list(C.HISTORY),
            "seed": C.SEED, "patches": list(PATCHES)}


def make_optimizer(flavour, cls, hp):
    if flavour == "keras_legacy":
        return getattr(K.optimizers.legacy, cls)(**hp)
    return getattr(K.optimizers, cls)(**hp)


def optimizer_report(opt):
    cfg = opt.get_config()
    rep = {"class": f"{type(opt).__module__}.{type(opt).__name__}", "config": cfg}
    hyper = getattr(opt, "_hyper", None)
    if hyper:   # legacy optimizer_v2: the hyperparameters are variables of this dtype
        rep["hyper_dtypes"] = {k: (v.dtype.name if hasattr(v, "dtype") else type(v).__name__)
                               for k, v in hyper.items()}
    lr = getattr(opt, "_learning_rate", None)
    if lr is not None and hasattr(lr, "dtype"):
        rep["learning_rate_variable_dtype"] = getattr(lr.dtype, "name", str(lr.dtype))
    variables = opt.variables() if callable(opt.variables) else opt.variables   # legacy: a method
    rep["variables"] = [[getattr(v, "path", None) or v.name, getattr(v.dtype, "name", str(v.dtype)),
                         list(v.shape)] for v in variables[:3]]
    return rep


def record_train(out, flavour, opt_name, cls, hp, variant, emb, dtype):
    n = C.BATCH * C.STEPS
    x, y = C.make_inputs(n, C.SEED + 1, dtype)
    model, args = build(variant, emb, dtype, {k: v[:C.BATCH] for k, v in x.items()})
    opt = make_optimizer(flavour, cls, hp)
    model.compile(opt, "binary_crossentropy")
    names, paths, trainable, variables = weights_table(model)
    set_initial(variables, paths, dtype)
    traj = [[] for _ in names]
    losses = []
    for step in range(C.STEPS + 1):
        for i, a in enumerate(model.get_weights()):
            traj[i].append(a)
        if step == C.STEPS:
            break
        sl = slice(step * C.BATCH, (step + 1) * C.BATCH)
        r = model.train_on_batch({k: v[sl] for k, v in x.items()}, y[sl])
        losses.append(float(r[0] if isinstance(r, (list, tuple)) else r))
    arrays = {f"x/{k}": v for k, v in x.items()}
    arrays.update(y=y, weight_names=np.array(names), npctr_path=np.array(paths),
                  npctr_transpose=np.zeros(len(names), bool), trainable=np.array(trainable),
                  traj_loss=np.array(losses))
    for i, nm in enumerate(names):
        arrays[f"w/{nm}"] = traj[i][0]
        arrays[f"traj/{nm}"] = np.stack(traj[i])
    case = C.case_name("train", variant, emb, dtype, flavour, opt_name)
    meta = base_meta("train", case, dtype, args)
    meta.update(loss="binary_crossentropy", batch_size=C.BATCH, steps=C.STEPS,
                optimizer={"class": cls, "flavour": flavour, "hyperparameters": hp,
                           "reported": optimizer_report(opt)},
                order="model.compile(optimizer, 'binary_crossentropy'); set weights; for k in 0..7: "
                      "model.train_on_batch(x[16k:16k+16], y[16k:16k+16]) (returned loss in traj_loss)")
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case


def compile_defaults(out, x):
    """What compile('adam' | 'sgd' | 'adagrad') gives."""
    import json
    res = {"framework": FRAMEWORK, "versions": VERSIONS}
    for name in ("adam", "sgd", "adagrad"):
        model, _ = build("sig", "emb0", "float64", x)
        model.compile(name, "binary_crossentropy")
        res[name] = optimizer_report(model.optimizer)
        res[name].pop("variables", None)
    with open(os.path.join(out, FRAMEWORK, "compile_defaults.json"), "w") as fh:
        json.dump(res, fh, indent=1, sort_keys=True, default=C._json_default)
        fh.write("\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--only", choices=["din", "train", "all"], default="all")
    p.add_argument("--optimizers", default=None, help="train cases of these optimizers only (comma-separated)")
    a = p.parse_args(argv)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    flavours = ["keras", "keras_legacy"] if LEGACY else ["keras"]
    done = []
    if a.only in ("din", "all"):
        for variant, emb, dtype in C.din_cases():
            done.append(record_din(a.out, variant, emb, dtype))
        x, _ = C.make_inputs(C.BATCH, C.SEED, "float64")
        compile_defaults(a.out, x)
    if a.only in ("train", "all"):
        for flavour, opt_name, cls, hp, _, variant, emb, dtype in C.train_cases(flavours, a.optimizers and a.optimizers.split(",")):
            done.append(record_train(a.out, flavour, opt_name, cls, hp, variant, emb, dtype))
            print(FRAMEWORK, done[-1], flush=True)
    C.write_index(a.out)
    print(FRAMEWORK, len(done), "cases")


if __name__ == "__main__":
    main()
