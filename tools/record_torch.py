"""Record DeepCTR-Torch 0.3.0 reference numbers: DIN forward/backward, 8-step training, single layers.

Run in the reference venv::

    /work/refenv/bin/python tools/record_torch.py --out tests/data/frameworks     # -> torch/

Training replicates, per batch, exactly what ``deepctr_torch.models.basemodel.BaseModel.fit`` does, by
calling the model's own methods: ``y_pred = model(x)``; squeeze the last axis; ``optim.zero_grad()``;
``loss = model.loss_func(y_pred, y, reduction='sum')``; ``reg_loss = model.get_regularization_loss()``;
``total_loss = loss + reg_loss + model.aux_loss``; ``total_loss.backward()``; ``model.optim.step()``.
Format: tests/data/frameworks/README.md.
"""
import argparse
import functools
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fw_common as C  # noqa: E402

import deepctr_torch  # noqa: E402
import deepctr_torch.models.din as din_module  # noqa: E402
from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from deepctr_torch.layers import core as torch_core  # noqa: E402
from deepctr_torch.layers.activation import Dice  # noqa: E402
from deepctr_torch.layers.sequence import AttentionSequencePoolingLayer  # noqa: E402

FRAMEWORK = "torch"
VERSIONS = {"torch": torch.__version__, "deepctr_torch": deepctr_torch.__version__, **C.base_versions()}
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}

# DeepCTR-Torch's DIN builds its output DNN with DNN's default dice_dim=3, so dnn_activation='Dice' fails on
# the 2-D DNN input (AssertionError in Dice.forward). The output DNN is built with dice_dim=2 instead.
din_module.DNN = functools.partial(torch_core.DNN, dice_dim=2)
PATCHES = ["deepctr_torch.models.din.DNN = partial(DNN, dice_dim=2): DIN's output DNN gets 2-D Dice layers "
           "(unpatched, DIN(dnn_activation='Dice') raises AssertionError in Dice.forward because DNN's default "
           "dice_dim=3 is meant for the attention's 3-D input); nothing else changes (sigmoid/relu DINs are "
           "unaffected; the attention's LocalActivationUnit uses its own DNN with dice_dim=3)"]
FIT_NOTE_F64 = ("fit() casts x and y with .float() (float32); a float64 model (model.double()) needs .double() "
                "instead, which is the only difference from fit's per-batch code here")


# -- names ----------------------------------------------------------------------------------------
def _dnn_rule(rest):
    """DeepCTR-Torch DNN state_dict key (relative) -> (npctr path, transpose)."""
    m = re.fullmatch(r"linears\.(\d+)\.(weight|bias)", rest)
    if m:
        return (f"kernel{m[1]}", True) if m[2] == "weight" else (f"bias{m[1]}", False)
    m = re.fullmatch(r"bn\.(\d+)\.(\w+)", rest)
    if m:
        return _bn_rule(f"bn{m[1]}/", m[2])
    m = re.fullmatch(r"activation_layers\.(\d+)\.(.+)", rest)
    if m:
        return _dice_rule(f"activation{m[1]}/", m[2])
    raise KeyError(rest)


def _bn_rule(prefix, leaf):
    leaf_map = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                "running_var": "moving_variance", "num_batches_tracked": None}
    name = leaf_map[leaf]
    return ("" if name is None else prefix + name), False


def _dice_rule(prefix, rest):
    if rest == "alpha":
        return prefix + "dice_alpha", False
    m = re.fullmatch(r"bn\.(\w+)", rest)
    if m:
        return _bn_rule(prefix + "bn/", m[1])
    raise KeyError(rest)


def _under(prefix, rule_result):
    """Prefix a (path, transpose) result; "" (no npctr counterpart) stays ""."""
    path, t = rule_result
    return (prefix + path if path else ""), t


def _lau_rule(rest):
    if rest == "dense.weight":
        return "kernel", True
    if rest == "dense.bias":
        return "bias", False
    if rest.startswith("dnn."):
        return _under("dnn/", _dnn_rule(rest[4:]))
    raise KeyError(rest)


def _asp_rule(rest):
    assert rest.startswith("local_att."), rest
    return _under("local_att/", _lau_rule(rest[len("local_att."):]))


def _din_rule(key):
    m = re.fullmatch(r"embedding_dict\.(\w+)\.weight", key)
    if m:
        return f"sparse_emb_{m[1]}/embeddings", False
    if key == "out.bias":
        return "prediction_layer/global_bias", False
    if key == "dnn_linear.weight":
        return "dense/kernel", True
    if key.startswith("attention."):
        return _under("attention_sequence_pooling_layer/", _asp_rule(key[len("attention."):]))
    if key.startswith("dnn."):
        return _under("dnn/", _dnn_rule(key[4:]))
    raise KeyError(key)


def weights_table(module, rule):
    sd = module.state_dict()
    names = list(sd)
    params = dict(module.named_parameters())
    paths, transpose = zip(*(rule(k) for k in names)) if names else ((), ())
    trainable = [k in params for k in names]
    return names, list(paths), list(transpose), trainable


def set_initial(module, names, paths, transpose, dtype, scale_of=None):
    """Set every weight from fw_common.init_value (npctr shape, then into torch's layout)."""
    sd = module.state_dict()
    new, w = {}, {}
    for k, p, t in zip(names, paths, transpose):
        cur = sd[k]
        if p == "":                      # num_batches_tracked: keep (0)
            new[k] = cur.clone()
            w[k] = cur.numpy().copy()
            continue
        shape = tuple(cur.shape)
        if t:
            value = C.init_value(p, shape[::-1]).T
        elif p.endswith("dice_alpha") and len(shape) == 2:
            value = C.init_value(p, shape[:1]).reshape(shape)     # (E, 1) in torch, (E,) in npctr
        else:
            value = C.init_value(p, shape)
        if scale_of and p in scale_of:
            value = value * scale_of[p]
        value = np.ascontiguousarray(value.astype(dtype))
        new[k] = torch.from_numpy(value.copy())
        w[k] = value
    module.load_state_dict(new)
    return w


# -- DIN --------------------------------------------------------------------------------------
def feature_columns():
    return C.feature_columns(SparseFeat, VarLenSparseFeat, DenseFeat)


def din_args(variant, emb):
    a = {**C.VARIANTS[variant], **C.COMMON_ARGS, "l2_reg_embedding": C.EMB_L2[emb],
         "history_feature_list": list(C.HISTORY)}
    for k in ("att_activation", "dnn_activation"):
        if a[k] == "dice":
            a[k] = "Dice"
    return a


def build_din(variant, emb, dtype):
    args = din_args(variant, emb)
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if k != "history_feature_list"}
    model = din_module.DIN(feature_columns(), list(C.HISTORY), **kw)
    if dtype == "float64":
        model.double()
    return model, args


def to_X(model, x, dtype):
    """fit's input: the feature arrays concatenated in feature_index order, then cast."""
    cols = [np.expand_dims(x[name], 1) if x[name].ndim == 1 else x[name] for name in model.feature_index]
    X = torch.from_numpy(np.concatenate(cols, axis=-1))
    return X.double() if dtype == "float64" else X.float()


def to_y(y, dtype):
    t = torch.from_numpy(y)
    return t.double() if dtype == "float64" else t.float()


def fit_step(model, X, y, step=True):
    """BaseModel.fit's body for one batch (model in train mode). Returns (y_pred, loss, reg_loss, total)."""
    y_pred = model(X)
    if y_pred.ndim > 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred.squeeze(-1)
    model.optim.zero_grad()
    y_for_loss = y
    if y_for_loss.ndim > 1 and y_for_loss.shape[-1] == 1:
        y_for_loss = y_for_loss.squeeze(-1)
    loss = model.loss_func(y_pred, y_for_loss, reduction="sum")
    reg_loss = model.get_regularization_loss()
    total_loss = loss + reg_loss + model.aux_loss
    total_loss.backward()
    if step:
        model.optim.step()
    return y_pred, loss, reg_loss, total_loss


def base_meta(kind, case, dtype, model_class, args, extra_patches=()):
    return {"framework": FRAMEWORK, "versions": VERSIONS, "dtype": dtype, "kind": kind, "case": case,
            "model": {"class": model_class, "args": args}, "seed": C.SEED,
            "patches": list(PATCHES) + list(extra_patches)}


def din_meta(kind, case, dtype, args):
    cols = [dict(f, dtype=("float32" if f["type"] == "DenseFeat" else f["dtype"])) for f in C.FEATURES]
    meta = base_meta(kind, case, dtype, "deepctr_torch.models.DIN", {**args, "dnn_feature_columns": cols},
                     [FIT_NOTE_F64] if dtype == "float64" else [])
    meta.update(feature_columns=cols, history_feature_list=list(C.HISTORY))
    return meta


def record_din(out, variant, emb, dtype):
    x, y = C.make_inputs(C.BATCH, C.SEED, dtype)
    model, args = build_din(variant, emb, dtype)
    model.compile("sgd", "binary_crossentropy")
    names, paths, transpose, trainable = weights_table(model, _din_rule)
    scale = C.FINAL_KERNEL_SCALE[variant]
    w = set_initial(model, names, paths, transpose, dtype, {"dense/kernel": scale})
    X, Y = to_X(model, x, dtype), to_y(y, dtype)
    model.eval()
    with torch.no_grad():
        out_infer = model(X).numpy()
    model.train()
    y_pred, loss, reg_loss, total = fit_step(model, X, Y, step=False)
    params = dict(model.named_parameters())
    sd = model.state_dict()
    arrays = {f"x/{k}": v for k, v in x.items()}
    arrays.update(y=y, weight_names=np.array(names), npctr_path=np.array(paths),
                  npctr_transpose=np.array(transpose, bool), trainable=np.array(trainable),
                  out_infer=out_infer, out_train=y_pred.detach().numpy().reshape(-1, 1),
                  loss=np.asarray(total.detach().numpy().reshape(())),
                  data_loss=np.asarray(loss.detach().numpy().reshape(())),
                  reg_loss=np.asarray((reg_loss + model.aux_loss).detach().numpy().reshape(())))
    for k in names:
        arrays[f"w/{k}"] = w[k]
        if k in params:
            g = params[k].grad
            arrays[f"grad/{k}"] = np.zeros_like(w[k]) if g is None else g.numpy().copy()
        else:
            arrays[f"after_train/{k}"] = sd[k].numpy().copy()
    case = C.case_name("din", variant, emb, dtype)
    meta = din_meta("din", case, dtype, args)
    meta.update(final_kernel_scale=scale, loss="binary_crossentropy (F.binary_cross_entropy, reduction='sum')",
                loss_dtypes={"data_loss": str(loss.dtype), "reg_loss": str(reg_loss.dtype),
                             "aux_loss": str(model.aux_loss.dtype), "total_loss": str(total.dtype)},
                order="set weights -> model.eval(); model(X) under no_grad -> model.train(); fit's per-batch "
                      "forward/loss/backward (no optim.step()); buffers read after that one training forward")
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case


def optimizer_report(optim):
    g = {k: v for k, v in optim.param_groups[0].items() if k != "params"}
    return {"class": f"{type(optim).__module__}.{type(optim).__name__}", "defaults": dict(optim.defaults),
            "param_group": g}


def record_train(out, opt_name, cls, hp, variant, emb, dtype):
    n = C.BATCH * C.STEPS
    x, y = C.make_inputs(n, C.SEED + 1, dtype)
    model, args = build_din(variant, emb, dtype)
    names, paths, transpose, trainable = weights_table(model, _din_rule)
    set_initial(model, names, paths, transpose, dtype)
    optim = getattr(torch.optim, cls)(model.parameters(), **hp)
    model.compile(optim, "binary_crossentropy")
    X, Y = to_X(model, x, dtype), to_y(y, dtype)
    model.train()
    traj = {k: [] for k in names}
    losses = []
    for step in range(C.STEPS + 1):
        for k, v in model.state_dict().items():
            traj[k].append(v.numpy().copy())
        if step == C.STEPS:
            break
        sl = slice(step * C.BATCH, (step + 1) * C.BATCH)
        _, _, _, total = fit_step(model, X[sl], Y[sl])
        losses.append(total.item())
    arrays = {f"x/{k}": v for k, v in x.items()}
    arrays.update(y=y, weight_names=np.array(names), npctr_path=np.array(paths),
                  npctr_transpose=np.array(transpose, bool), trainable=np.array(trainable),
                  traj_loss=np.array(losses))
    for k in names:
        arrays[f"w/{k}"] = traj[k][0]
        arrays[f"traj/{k}"] = np.stack(traj[k])
    case = C.case_name("train", variant, emb, dtype, "torch", opt_name)
    meta = din_meta("train", case, dtype, args)
    meta.update(loss="binary_crossentropy (F.binary_cross_entropy, reduction='sum')", batch_size=C.BATCH,
                steps=C.STEPS, optimizer={"class": cls, "flavour": "torch", "hyperparameters": hp,
                                          "reported": optimizer_report(optim)},
                order="set weights; optim = torch.optim.<cls>(model.parameters(), **hp); model.compile(optim, "
                      "'binary_crossentropy'); model.train(); per batch k: fit's body on X[16k:16k+16] "
                      "(traj_loss: total_loss.item())")
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case


def compile_defaults(out):
    res = {"framework": FRAMEWORK, "versions": VERSIONS}
    for name in ("adam", "sgd", "adagrad"):
        model, _ = build_din("sig", "emb0", "float64")
        model.compile(name, "binary_crossentropy")
        res[name] = optimizer_report(model.optim)
    with open(os.path.join(out, FRAMEWORK, "compile_defaults.json"), "w") as fh:
        json.dump(res, fh, indent=1, sort_keys=True, default=C._json_default)
        fh.write("\n")


# -- single layers ------------------------------------------------------------------------------
def _layer_cases():
    """(case, constructor, args, rule, inputs {name: array}, differentiable input names)."""
    rng = np.random.default_rng(C.SEED + 7)
    x2 = rng.normal(0, 1, (8, 6))
    q = rng.normal(0, 1, (4, 1, 4))
    k = rng.normal(0, 1, (4, 6, 4))
    kl = np.array([[6], [3], [1], [0]], dtype=np.int64)
    x3 = rng.normal(0, 1, (4, 5, 6))
    xp = rng.normal(0, 2, (8, 1))
    xb = rng.normal(0.5, 2, (8, 8))
    cases = []
    for act in ("relu", "Dice"):
        for bn in (False, True):
            args = {"inputs_dim": 6, "hidden_units": [8, 4], "activation": act, "l2_reg": 0, "dropout_rate": 0,
                    "use_bn": bn, "dice_dim": 2}
            cases.append((f"layer_dnn_{act.lower()}_bn{int(bn)}", torch_core.DNN, args, _dnn_rule,
                          {"x": x2}, ["x"]))
    for act in ("sigmoid", "Dice"):
        args = {"hidden_units": [8, 4], "embedding_dim": 4, "activation": act, "dropout_rate": 0, "dice_dim": 3,
                "l2_reg": 0, "use_bn": False}
        cases.append((f"layer_lau_{act.lower()}", torch_core.LocalActivationUnit, args, _lau_rule,
                      {"query": q, "user_behavior": k}, ["query", "user_behavior"]))
    for act, wn, rs in [("sigmoid", False, False), ("sigmoid", True, False), ("sigmoid", False, True),
                        ("sigmoid", True, True), ("Dice", True, False)]:
        args = {"att_hidden_units": [8, 4], "att_activation": act, "weight_normalization": wn,
                "return_score": rs, "supports_masking": False, "embedding_dim": 4}
        cases.append((f"layer_asp_wn{int(wn)}_{act.lower()}{'_score' if rs else ''}",
                      AttentionSequencePoolingLayer, args, _asp_rule,
                      {"query": q, "keys": k, "keys_length": kl}, ["query", "keys"]))
    cases.append(("layer_dice_2d", Dice, {"emb_size": 6, "dim": 2, "epsilon": 1e-8}, lambda r: _dice_rule("", r),
                  {"x": x2}, ["x"]))
    cases.append(("layer_dice_3d", Dice, {"emb_size": 6, "dim": 3, "epsilon": 1e-8}, lambda r: _dice_rule("", r),
                  {"x": x3}, ["x"]))
    cases.append(("layer_bn1d", torch.nn.BatchNorm1d, {"num_features": 8}, lambda r: _bn_rule("", r),
                  {"x": xb}, ["x"]))
    for task in ("binary", "regression"):
        for bias in (True, False):
            rule = (lambda r: ("global_bias", False) if r == "bias" else (_ for _ in ()).throw(KeyError(r)))
            cases.append((f"layer_pred_{task}_bias{int(bias)}", torch_core.PredictionLayer,
                          {"task": task, "use_bias": bias}, rule, {"x": xp}, ["x"]))
    return cases


def _call(layer, cls, tensors):
    if cls is torch_core.LocalActivationUnit:
        return layer(tensors["query"], tensors["user_behavior"])
    if cls is AttentionSequencePoolingLayer:
        return layer(tensors["query"], tensors["keys"], tensors["keys_length"])
    if cls is torch_core.PredictionLayer:
        return layer(tensors["x"].clone())    # PredictionLayer adds its bias in place (output += bias)
    return layer(tensors["x"])


def record_layer(out, case, cls, args, rule, inputs, diff_inputs, dtype="float64"):
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}
    torch.manual_seed(0)
    layer = cls(**kw).to(TORCH_DTYPE[dtype])
    names, paths, transpose, trainable = weights_table(layer, rule)
    w = set_initial(layer, names, paths, transpose, dtype)
    params = dict(layer.named_parameters())
    arrays = {f"in_{k}": (v if v.dtype.kind == "i" else v.astype(dtype)) for k, v in inputs.items()}
    upstream = None
    for mode in ("infer", "train"):
        layer.train(mode == "train")
        tensors = {}
        for k, v in inputs.items():
            t = torch.from_numpy(v.copy() if v.dtype.kind == "i" else v.astype(dtype))
            if k in diff_inputs:
                t.requires_grad_(True)
            tensors[k] = t
        layer.zero_grad()
        out_t = _call(layer, cls, tensors)
        if upstream is None:
            upstream = np.random.default_rng(C.SEED + 11).normal(0, 1, tuple(out_t.shape)).astype(dtype)
            arrays["upstream"] = upstream
        (out_t * torch.from_numpy(upstream)).sum().backward()
        arrays[f"out_{mode}"] = out_t.detach().numpy().copy()
        for k in diff_inputs:
            arrays[f"grad_{mode}_in_{k}"] = tensors[k].grad.numpy().copy()
        for k in names:
            if k in params:
                g = params[k].grad
                arrays[f"grad_{mode}/{k}"] = np.zeros_like(w[k]) if g is None else g.numpy().copy()
    sd = layer.state_dict()
    for k in names:
        arrays[f"w/{k}"] = w[k]
        if k not in params:
            arrays[f"after_train/{k}"] = sd[k].numpy().copy()
    arrays.update(weight_names=np.array(names, dtype=str), npctr_path=np.array(paths, dtype=str),
                  npctr_transpose=np.array(transpose, bool), trainable=np.array(trainable, bool))
    meta = base_meta("layer", case, dtype, f"{cls.__module__}.{cls.__name__}", args)
    meta.update(inputs={k: list(v.shape) for k, v in inputs.items()}, differentiated=list(diff_inputs),
                order="set weights -> eval(): call, L = sum(out * upstream), backward -> train(): call, L, "
                      "backward (updates the running statistics) -> read buffers")
    meta["patches"] = []     # the DIN patch does not touch single layers
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--only", choices=["din", "train", "layer", "all"], default="all")
    p.add_argument("--optimizers", default=None, help="train cases of these optimizers only (comma-separated)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(os.path.join(a.out, FRAMEWORK), exist_ok=True)
    done = []
    if a.only in ("din", "all"):
        for variant, emb, dtype in C.din_cases():
            done.append(record_din(a.out, variant, emb, dtype))
        compile_defaults(a.out)
    if a.only in ("train", "all"):
        for _, opt_name, cls, _, hp, variant, emb, dtype in C.train_cases(["torch"], a.optimizers and a.optimizers.split(",")):
            done.append(record_train(a.out, opt_name, cls, hp, variant, emb, dtype))
    if a.only in ("layer", "all"):
        for case in _layer_cases():
            done.append(record_layer(a.out, *case))
    C.write_index(a.out)
    print(FRAMEWORK, len(done), "cases")


if __name__ == "__main__":
    main()
