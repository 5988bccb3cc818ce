"""Record DeepCTR 0.9.4 DIEN reference numbers on tf.keras 2 (tf-keras 2.21, TensorFlow 2.21 CPU).

Run in the reference venv (TF_USE_LEGACY_KERAS must be set before TensorFlow is imported)::

    TF_USE_LEGACY_KERAS=1 /work/refenv/bin/python tools/record_dien_tf.py --out tests/data/frameworks/dien

Writes ``<out>/tf_keras/<case>.npz`` for every case of ``dien_common.cases()`` and ``<out>/tf_keras/facts.json``
(what DeepCTR does unpatched, measured by ``--probe`` in a fresh process). DeepCTR 0.9.4's DIEN does not run on
TensorFlow 2.21 as shipped; the patches below restore the TF-internal names it needs and the float64 dtypes it
hard-codes. Every patch is applied at run time (nothing in site-packages changes) and listed in each file's
``meta["patches"]``. Format: tests/data/frameworks/dien/README.md.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # plain Eigen kernels: reproducible on any CPU
if os.environ.get("TF_USE_LEGACY_KERAS", "") in ("", "0"):
    sys.exit("record_dien_tf.py records tf.keras 2: run it with TF_USE_LEGACY_KERAS=1")

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as K  # noqa: E402

tf.get_logger().setLevel("ERROR")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dien_common as C  # noqa: E402

import deepctr  # noqa: E402
import deepctr.contrib.rnn_v2 as rnn_v2  # noqa: E402
import deepctr.contrib.utils as contrib_utils  # noqa: E402
import deepctr.layers.activation as deepctr_activation  # noqa: E402
import deepctr.layers.sequence as deepctr_sequence  # noqa: E402
import deepctr.models.sequence.dien as dien_module  # noqa: E402
from deepctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from tensorflow.python.ops import variable_scope as tf_variable_scope  # noqa: E402
from tensorflow.python.util import nest as tf_nest  # noqa: E402

FRAMEWORK = "tf_keras"
VERSIONS = {"tensorflow": tf.__version__, "tf_keras": K.__version__, "deepctr": deepctr.__version__,
            **C.base_versions()}


# -- patches --------------------------------------------------------------------------------------
class _Shim(types.ModuleType):
    """A stand-in for a module: the original's attributes plus the given extra ones."""

    def __init__(self, base, extra):
        super().__init__(getattr(base, "__name__", "shim") + "+shim")
        self._base = base
        self.__dict__.update(extra)

    def __getattr__(self, name):
        return getattr(self._base, name)


class _NoSession:
    def run(self, *args, **kwargs):
        return None


_ORIG = {"interest_evolution": dien_module.interest_evolution,
         "set_caching_device": tf_variable_scope.VariableScope.set_caching_device}


def _set_caching_device(self, caching_device):
    if callable(caching_device):   # TF 2.21 raises on a function device in eager/tf.function code
        return None
    return _ORIG["set_caching_device"](self, caching_device)


def _dice_build(self, input_shape):
    self.bn = deepctr_activation.BatchNormalization(axis=self.axis, epsilon=self.epsilon, center=False,
                                                    scale=False)
    self.alphas = self.add_weight(shape=(input_shape[-1],), initializer=deepctr_activation.Zeros(),
                                  dtype=self.dtype, name="dice_alpha")
    deepctr_activation.Layer.build(self, input_shape)
    self.uses_learning_phase = True


def _p_array_ops():
    rnn_v2.array_ops = _Shim(rnn_v2.array_ops, {"stack": tf.stack, "unstack": tf.unstack})


def _p_control_flow_ops():
    rnn_v2.control_flow_ops = _Shim(rnn_v2.control_flow_ops, {"Assert": tf.debugging.Assert, "cond": tf.cond,
                                                              "while_loop": tf.while_loop})


def _p_nest():
    rnn_v2.nest = _Shim(rnn_v2.nest, {"is_sequence": tf_nest.is_nested})
    contrib_utils.nest = _Shim(contrib_utils.nest, {"is_sequence": tf_nest.is_nested})


def _p_caching_device():
    tf_variable_scope.VariableScope.set_caching_device = _set_caching_device


def _p_session():
    dien_module.tf = _Shim(tf, {"keras": _Shim(tf.keras, {"backend": _Shim(tf.keras.backend, {
        "get_session": lambda: _NoSession()})}), "global_variables_initializer": lambda: None})


def _p_gru_dtype():
    deepctr_sequence.DynamicGRU.call = C.resource_patch(
        deepctr_sequence.DynamicGRU.call, [("dtype=tf.float32", "dtype=rnn_input.dtype")], deepctr_sequence)


def _p_aux_dtype():
    dien_module.auxiliary_loss = C.resource_patch(
        dien_module.auxiliary_loss, [("tf.cast(mask, tf.float32)", "tf.cast(mask, h_states.dtype)")], dien_module)


def _p_dice_dtype():
    deepctr_activation.Dice.build = _dice_build


#: (key, function, description): applied in this order; every one is needed (see facts.json "probe")
PATCH_LIST = [
    ("array_ops", _p_array_ops,
     "deepctr.contrib.rnn_v2.array_ops: a stand-in module adding stack = tf.stack and unstack = tf.unstack "
     "(TF 2.21's tensorflow.python.ops.array_ops has neither; dynamic_rnn's _assert_has_shape and "
     "_dynamic_rnn_loop's _create_zero_arrays call array_ops.stack)"),
    ("control_flow_ops", _p_control_flow_ops,
     "deepctr.contrib.rnn_v2.control_flow_ops: a stand-in adding Assert = tf.debugging.Assert, cond = tf.cond, "
     "while_loop = tf.while_loop (removed from tensorflow.python.ops.control_flow_ops in TF 2.21; dynamic_rnn "
     "uses Assert and while_loop; cond only on paths DIEN does not take: _rnn_step is called with "
     "skip_conditionals=True)"),
    ("nest", _p_nest,
     "deepctr.contrib.rnn_v2.nest and deepctr.contrib.utils.nest: a stand-in adding is_sequence = "
     "nest.is_nested (removed in TF 2.21; used by _infer_state_dtype and by _Linear_, the linear map of the "
     "AGRU/AUGRU cells, since TF 2.21 has no rnn_cell_impl._Linear either)"),
    ("caching_device", _p_caching_device,
     "tensorflow VariableScope.set_caching_device: ignores a callable device (dynamic_rnn sets "
     "lambda op: op.device; TF 2.21 then raises 'tf.device does not support functions when eager "
     "execution is enabled' when the cell creates its variables). Only variable placement is affected"),
    ("session", _p_session,
     "deepctr.models.sequence.dien.tf: a stand-in whose keras.backend.get_session() returns a session whose "
     "run() does nothing, and global_variables_initializer() returns None (DIEN() ends with a TF1 "
     "Session.run(global_variables_initializer()), which raises 'The Session graph is empty' in TF 2; "
     "variables are initialised eagerly anyway)"),
    ("gru_dtype", _p_gru_dtype,
     "deepctr.layers.sequence.DynamicGRU.call: dynamic_rnn(..., dtype=rnn_input.dtype) instead of the "
     "hard-coded dtype=tf.float32 (the zero initial state and zero outputs; float64 fails otherwise; "
     "identical in float32)"),
    ("aux_dtype", _p_aux_dtype,
     "deepctr.models.sequence.dien.auxiliary_loss: the length mask is cast to h_states.dtype instead of the "
     "hard-coded tf.float32 (float64 fails otherwise; identical in float32)"),
    ("dice_dtype", _p_dice_dtype,
     "deepctr.layers.activation.Dice.build: dice_alpha created with the layer's dtype instead of the "
     "hard-coded tf.float32 (float64 with Dice fails otherwise; identical in float32)"),
]
AUX_PATCH = ("deepctr.models.sequence.dien.interest_evolution: 'if gru_type == \"AUGRU\" and use_neg:' replaced "
             "by 'if use_neg:' -- the auxiliary loss computed for every gru_type exactly as DeepCTR computes it "
             "for AUGRU (unpatched, DIEN(use_negsampling=True) with gru_type GRU/AIGRU/AGRU raises TypeError "
             "in model.add_loss(alpha * aux_loss_1) because aux_loss_1 is None). ONLY in *_auxpatch_* cases")
RUNTIME_NOTE = ("The model is only ever called inside tf.function (as fit/predict/train_on_batch do): an eager "
                "model(x) fails in dynamic_rnn's _assert_has_shape (Tensor.name is undefined in eager mode)")
_INTEREST_EVOLUTION_AUX = None


def apply_patches(keys=None):
    global _INTEREST_EVOLUTION_AUX
    for key, fn, _ in PATCH_LIST:
        if keys is None or key in keys:
            fn()
    if keys is None:
        _INTEREST_EVOLUTION_AUX = C.resource_patch(
            _ORIG["interest_evolution"], [('if gru_type == "AUGRU" and use_neg:', "if use_neg:")], dien_module)


def patches_meta(aux_patched):
    out = [d for _, _, d in PATCH_LIST] + [RUNTIME_NOTE]
    if aux_patched:
        out.append(AUX_PATCH)
    return out


# -- model ----------------------------------------------------------------------------------------
def build(setting, gru, neg, dtype, aux_patched):
    """A fresh DeepCTR DIEN (session cleared, floatx set). Returns (model, args)."""
    K.backend.clear_session()
    K.backend.set_floatx(dtype)
    dien_module.interest_evolution = _INTEREST_EVOLUTION_AUX if aux_patched else _ORIG["interest_evolution"]
    args = C.model_args(setting, gru, neg)
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if k != "history_feature_list"}
    cols = C.feature_columns(SparseFeat, VarLenSparseFeat, DenseFeat, neg, dense_dtype=dtype)
    model = dien_module.DIEN(cols, list(C.HISTORY), **kw)
    return model, args


def untracked_variables(model):
    """The AGRU/AUGRU cell's variables (created by tf.compat.v1 get_variable in _Linear_): not in model.weights."""
    layer = model.get_layer("gru2")
    cell = layer.gru_cell
    tracked = {id(v) for v in model.weights}
    out = []
    for lin in ("_gate_linear", "_candidate_linear"):
        linear = getattr(cell, lin, None)
        if linear is None:
            continue
        for v in (linear._weights, linear._biases):
            if id(v) not in tracked:
                out.append(v)
    return out


def role(name):
    leaf = name.split(":")[0].rsplit("/", 1)[-1]
    if leaf == "embeddings":
        return "embedding"
    if leaf.startswith("kernel"):
        return "kernel"
    if leaf.startswith("bias") or leaf == "global_bias":
        return "bias"
    if leaf in ("dice_alpha", "moving_mean", "moving_variance"):
        return leaf
    raise ValueError(name)


def weights_table(model):
    """(names, variables, trainable, tracked): model.weights in get_weights() order, then the untracked ones."""
    values = model.get_weights()
    variables = list(model.weights)
    assert len(values) == len(variables)
    for v, a in zip(variables, values):
        assert tuple(v.shape) == a.shape, (v.name, v.shape, a.shape)
    extra = untracked_variables(model)
    trainable_ids = {id(v) for v in model.trainable_weights}
    all_vars = variables + extra
    names = [v.name for v in all_vars]
    assert len(set(names)) == len(names), names
    extra_ids = {id(v) for v in extra}
    return (names, all_vars, [id(v) in trainable_ids or id(v) in extra_ids for v in all_vars],
            [True] * len(variables) + [False] * len(extra))


def set_initial(names, variables, dtype):
    w = {}
    for n, v in zip(names, variables):
        value = C.init_value(n, tuple(v.shape), role(n)).astype(dtype)
        v.assign(value)
        w[n] = value
    return w


def aux_layer_losses(model):
    return [loss for layer in model.layers if type(layer).__name__ == "AddLoss" for loss in layer.losses]


def midpoints(model):
    """A Keras model giving DIEN's intermediate tensors (interests, attention, evolved interest)."""
    att = model.get_layer("attention_sequence_pooling_layer")
    outs = [model.get_layer("gru1").output, att.output, model.get_layer("gru2").output]
    return K.Model(model.inputs, outs)


class Runner:
    """tf.functions over one model: inference, one training-mode forward + objective + gradients."""

    def __init__(self, model, variables, trainable):
        self.model = model
        self.grad_vars = [v for v, t in zip(variables, trainable) if t]
        model_ref = model
        grad_vars = self.grad_vars

        @tf.function
        def infer(x):
            return model_ref(x, training=False)

        @tf.function
        def train(x, y):
            with tf.GradientTape() as tape:
                yp = model_ref(x, training=True)
                loss = model_ref.compute_loss(x=x, y=y, y_pred=yp)
            data = model_ref.compiled_loss(y, yp)
            aux = aux_layer_losses(model_ref)
            others = [l for l in model_ref.losses if not any(l is a for a in aux)]
            assert len(others) + len(aux) == len(model_ref.losses)
            reg = tf.add_n(others) if others else tf.zeros((), yp.dtype)
            aux_term = tf.add_n(aux) if aux else tf.zeros((), yp.dtype)
            return yp, loss, data, reg, aux_term, tape.gradient(loss, grad_vars)

        @tf.function
        def objective(x, y):
            yp = model_ref(x, training=True)
            return model_ref.compute_loss(x=x, y=y, y_pred=yp)

        self.infer, self.train, self.objective = infer, train, objective


def _dense(g, v):
    if g is None:
        return np.zeros(tuple(v.shape), v.dtype.as_numpy_dtype)
    return tf.convert_to_tensor(g).numpy()


def fd_check(runner, x, y, names, variables, trainable, grads):
    """Finite differences of the framework's own objective (training mode) at a few entries per weight."""
    rng = np.random.default_rng(C.SEED + 99)
    big = max(float(np.max(np.abs(g))) for g in grads.values())
    buffers = [(v, v.numpy().copy()) for v, t in zip(variables, trainable) if not t]
    results, skipped = {}, {}
    for n, v, t in zip(names, variables, trainable):
        if not t:
            continue
        base = v.numpy().copy()

        def f_at(idx, v=v, base=base):
            def f(delta):
                w_ = base.copy()
                w_.reshape(-1)[idx] += delta
                v.assign(w_)
                return float(runner.objective(x, y).numpy())
            return f

        results[n], skipped[n] = C.fd_weight(f_at, grads[n], base, rng, big)
        v.assign(base)
    for v, value in buffers:
        v.assign(value)
    return C.fd_summary(results, skipped)


def record_case(out, setting, gru, neg, dtype, optimizers):
    aux_patched = neg and gru != "AUGRU"
    case = C.case_name(setting, gru, neg, dtype, aux_patched)
    t0 = time.time()
    x_all, y_all = C.make_inputs(neg, dtype)
    x, y = C.batch(x_all, y_all, 0)
    model, args = build(setting, gru, neg, dtype, aux_patched)
    model.compile(K.optimizers.SGD(0.0), "binary_crossentropy")
    names, variables, trainable, tracked = weights_table(model)
    w = set_initial(names, variables, dtype)
    runner = Runner(model, variables, trainable)
    y_t = tf.convert_to_tensor(y)
    out_infer = runner.infer(x).numpy()
    sub = midpoints(model)
    mids = [m.numpy() for m in tf.function(lambda xx: sub(xx, training=False))(x)]
    yp, loss, data, reg, aux_term, g = runner.train(x, y_t)
    grad_vars = runner.grad_vars
    grads = {}
    for v, gv in zip(grad_vars, g):
        grads[v.name] = _dense(gv, v)
    after = {n: v.numpy().copy() for n, v, t in zip(names, variables, trainable) if not t}
    alpha = args.get("alpha", 1.0)
    arrays = {f"x/{k}": v for k, v in x_all.items()}
    arrays.update(y=y_all, weight_names=np.array(names), trainable=np.array(trainable, bool),
                  tracked=np.array(tracked, bool), tied_to=np.array([""] * len(names)),
                  out_infer=out_infer, out_train=yp.numpy(), loss=np.asarray(loss.numpy()),
                  data_loss=np.asarray(data.numpy()), reg_loss=np.asarray(reg.numpy()),
                  aux_term=np.asarray(aux_term.numpy()),
                  aux_loss=np.asarray(aux_term.numpy() / alpha) if neg else np.asarray(0.0, dtype))
    arrays["mid/interests"] = mids[0]
    arrays["mid/attention"] = mids[1]
    arrays["mid/evolved"] = mids[2]
    for n in names:
        arrays[f"w/{n}"] = w[n]
        if n in grads:
            arrays[f"grad/{n}"] = grads[n]
        if n in after:
            arrays[f"after_train/{n}"] = after[n]
    fd = None
    if dtype == "float64":
        worst, table = fd_check(runner, x, y_t, names, variables, trainable, grads)
        fd = {"max_err": worst, "method": C.FD_METHOD, "per_weight": table}
        if worst > C.FD_TOL:
            for n_, r_ in table.items():
                if r_["err"] > 1e-8:
                    print("FD", n_, r_, flush=True)
            raise RuntimeError(f"{case}: recorded gradient disagrees with finite differences ({worst:.2e})")
    # training trajectories: a fresh model per optimizer, train_on_batch on batches 0..7
    traj_meta = {}
    for opt_name in optimizers:
        cls, hp, _ = C.OPTIMIZERS[opt_name]
        m2, _ = build(setting, gru, neg, dtype, aux_patched)
        names2, vars2, _, _ = weights_table(m2)
        assert names2 == names
        set_initial(names2, vars2, dtype)
        opt = getattr(K.optimizers, cls)(**hp)
        m2.compile(opt, "binary_crossentropy")
        snaps = {n: [] for n in names}
        losses = []
        for k in range(C.STEPS):
            xb, yb = C.batch(x_all, y_all, k)
            r = m2.train_on_batch(xb, yb)
            losses.append(float(r[0] if isinstance(r, (list, tuple)) else r))
            if k + 1 in C.TRAJ_STEPS:
                for n, v in zip(names2, vars2):
                    snaps[n].append(v.numpy().copy())
        arrays[f"traj_{opt_name}_loss"] = np.array(losses)
        for n in names:
            arrays[f"traj_{opt_name}/{n}"] = np.stack(snaps[n])
        traj_meta[opt_name] = {"class": f"{type(opt).__module__}.{type(opt).__name__}", "hyperparameters": hp,
                               "config": opt.get_config()}
    meta = {
        "framework": FRAMEWORK, "versions": VERSIONS, "dtype": dtype, "kind": "dien", "case": case,
        "setting": setting, "gru_type": gru, "use_negsampling": neg, "aux_patched": aux_patched,
        "model": {"class": "deepctr.models.DIEN", "args": {**args, "dnn_feature_columns": C.features(neg, dtype)}},
        "feature_columns": C.features(neg, dtype), "history_feature_list": list(C.HISTORY),
        "seed": C.SEED, "batch_size": C.BATCH, "steps": C.STEPS, "traj_steps": list(C.TRAJ_STEPS),
        "alpha": alpha, "patches": patches_meta(aux_patched), "optimizers": traj_meta,
        "loss": "binary_crossentropy (tf.keras: p clipped to [1e-7, 1-1e-7], -(y log(p+1e-7) + (1-y) log(1-p+1e-7)), "
                "batch mean) + sum(model.losses) (embedding and DNN L2, and alpha * auxiliary loss)",
        "mid": {"interests": "gru1 output (B, T, H)",
                "attention": ("attention_sequence_pooling_layer output: pooled gru2 outputs (B, 1, H)" if gru == "GRU"
                              else "attention_sequence_pooling_layer output: scores over gru1 outputs (B, 1, T)"),
                "evolved": ("gru2 outputs (B, T, H)" if gru == "GRU" else "gru2 final state (B, 1, H)"),
                "mode": "inference"},
        "fd_check": fd, "seconds": round(time.time() - t0, 1),
        "order": ("set weights -> tf.function(model(x, training=False)) -> tf.function: GradientTape over "
                  "model(x, training=True) and model.compute_loss(x, y, y_pred) (what train_step differentiates) "
                  "w.r.t. model.trainable_weights + the untracked gru2 variables -> buffers after that one "
                  "training-mode call; trajectories: fresh model, same initial weights, compile(opt, "
                  "'binary_crossentropy'), train_on_batch on rows 16k:16k+16, k = 0..7"),
    }
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case, fd["max_err"] if fd else None


# -- probe: what happens without each patch (run in a fresh process) ------------------------------
def _probe_attempt(gru, neg, dtype):
    model, _ = build("dflt", gru, neg, dtype, False)
    x_all, y_all = C.make_inputs(neg, dtype)
    x, _ = C.batch(x_all, y_all, 0)
    out = tf.function(lambda xx: model(xx, training=False))(x)
    return model, out


def _err(e):
    """The informative line of a (Keras-wrapped) exception message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    hits = [i for i, ln in enumerate(lines) if re.match(r"^\w+(Error|Exception): .+$", ln)]
    if hits:
        i = hits[-1]
        text = lines[i]
        if "Exception encountered" in text and i + 1 < len(lines):
            text += " " + lines[i + 1]
    else:
        text = f"{type(e).__name__}: " + " | ".join(
            ln for ln in lines if not ln.startswith(("Exception encountered", "Call arguments", "\u2022",
                                                     "in user code", "File ")))
    return text[:400]


def probe_without(key):
    """Apply every patch but ``key``; try DIEN(AUGRU, negsampling, Dice) in float32 and float64."""
    apply_patches([k for k, _, _ in PATCH_LIST if k != key])
    global _INTEREST_EVOLUTION_AUX
    _INTEREST_EVOLUTION_AUX = _ORIG["interest_evolution"]
    res = {}
    for dtype in ("float32", "float64"):
        try:
            _probe_attempt("AUGRU", True, dtype)
            res[dtype] = "ok"
        except Exception as e:  # noqa: BLE001 - the point is to record it
            res[dtype] = _err(e)
    print("PROBE " + json.dumps({"without": key, **res}), flush=True)


def probe(out):
    """facts.json: leave-one-out over the patches (fresh processes), then facts of the fully patched DeepCTR."""
    facts = {"framework": FRAMEWORK, "versions": VERSIONS,
             "probe_model": "DIEN(gru_type='AUGRU', use_negsampling=True, att_activation='dice') built and called "
                            "in a tf.function on a batch of 16",
             "leave_one_out": {}}
    for key in [None] + [k for k, _, _ in PATCH_LIST]:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--out", out, "--probe-without",
                            key or "none"], capture_output=True, text=True, check=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("PROBE ")][-1]
        res = json.loads(line[6:])
        facts["leave_one_out"][key or "none (all patches)"] = {"float32": res["float32"], "float64": res["float64"]}
        print("probe without", key, res, flush=True)
    apply_patches()
    global _INTEREST_EVOLUTION_AUX
    _INTEREST_EVOLUTION_AUX = _ORIG["interest_evolution"]
    # every patch applied: what remains
    for gru in ("GRU", "AIGRU", "AGRU"):
        try:
            build("dflt", gru, True, "float64", False)
            result = "ok"
        except Exception as e:  # noqa: BLE001
            result = _err(e)
        facts.setdefault("negsampling_without_aux_patch", {})[gru] = result
    model, _ = _probe_attempt("AUGRU", True, "float64")
    x_all, y_all = C.make_inputs(True, "float64")
    x, _ = C.batch(x_all, y_all, 0)
    try:
        model(x, training=False)
        facts["eager_call"] = "ok"
    except Exception as e:  # noqa: BLE001
        facts["eager_call"] = _err(e)
    facts["untracked_gru2_variables"] = {}
    for gru in C.GRU_TYPES:
        m, _ = build("dflt", gru, False, "float64", False)
        facts["untracked_gru2_variables"][gru] = [v.name for v in untracked_variables(m)]
        facts.setdefault("embedding_tables", {})[f"{gru}_noneg"] = [v.name for v in m.weights
                                                                    if "embeddings" in v.name]
    m, _ = build("dflt", "AUGRU", True, "float64", False)
    facts["embedding_tables"]["AUGRU_neg"] = [v.name for v in m.weights if "embeddings" in v.name]
    facts["auxiliary_dnn_variables_AUGRU_neg"] = [v.name for v in m.weights
                                                  if v.name.startswith("dnn/")]
    facts["trainable_weight_count_AUGRU_neg"] = len(m.trainable_weights)
    facts["default_args"] = {k: repr(v.default) for k, v in
                             __import__("inspect").signature(dien_module.DIEN).parameters.items()
                             if v.default is not __import__("inspect").Parameter.empty}
    C.write_facts(out, FRAMEWORK, facts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--probe", action="store_true", help="only record facts.json (unpatched behaviour)")
    p.add_argument("--probe-without", default=None, help=argparse.SUPPRESS)
    p.add_argument("--only", default=None, help="comma-separated case names")
    a = p.parse_args(argv)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    if a.probe_without:
        probe_without(a.probe_without)
        return
    if a.probe:
        probe(a.out)
        return
    if a.only is None:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--out", a.out, "--probe"], check=True)
    apply_patches()
    only = set(a.only.split(",")) if a.only else None
    for setting, gru, neg, dtype, opts in C.cases():
        name = C.case_name(setting, gru, neg, dtype, neg and gru != "AUGRU")
        if only and name not in only:
            continue
        try:
            case, fd = record_case(a.out, setting, gru, neg, dtype, opts)
        except Exception:
            traceback.print_exc()
            raise
        print(FRAMEWORK, case, "fd", fd, flush=True)
    C.write_index(a.out)


if __name__ == "__main__":
    main()
