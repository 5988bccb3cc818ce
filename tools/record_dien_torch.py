"""Record DeepCTR-Torch 0.3.0 DIEN reference numbers (torch 2.13 CPU).

Run in the reference venv::

    /work/refenv/bin/python tools/record_dien_torch.py --out tests/data/frameworks/dien

Writes ``<out>/torch/<case>.npz`` for every case of ``dien_common.cases()`` and ``<out>/torch/facts.json``.
Training replicates, per batch, exactly ``BaseModel.fit``'s body with the model's own methods:
``y_pred = model(x)``; squeeze the last axis; ``optim.zero_grad()``;
``loss = model.loss_func(y_pred, y, reduction='sum')``; ``reg_loss = model.get_regularization_loss()``;
``total_loss = loss + reg_loss + model.aux_loss``; ``total_loss.backward()``; ``optim.step()``.
float64 needs two patches (hard-coded float32 in DIEN's code) and ``.double()`` where fit has ``.float()``;
they are listed in each file's ``meta["patches"]``. Format: tests/data/frameworks/dien/README.md.
"""
import argparse
import json
import os
import sys
import time
import traceback

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dien_common as C  # noqa: E402

import deepctr_torch  # noqa: E402
import deepctr_torch.models.dien as dien_module  # noqa: E402
from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402

FRAMEWORK = "torch"
VERSIONS = {"torch": torch.__version__, "deepctr_torch": deepctr_torch.__version__, **C.base_versions()}

_ORIG = {"aux": dien_module.InterestExtractor._cal_auxiliary_loss,
         "evolving_forward": dien_module.InterestEvolving.forward}


def _p_aux_targets():
    dien_module.InterestExtractor._cal_auxiliary_loss = C.resource_patch(
        _ORIG["aux"], [("dtype=torch.float, device=click_p.device", "dtype=click_p.dtype, device=click_p.device"),
                       ("dtype=torch.float, device=noclick_p.device",
                        "dtype=noclick_p.dtype, device=noclick_p.device")], dien_module)


def _p_evolving_zeros():
    dien_module.InterestEvolving.forward = C.resource_patch(
        _ORIG["evolving_forward"],
        [("zero_outputs = torch.zeros(batch_size, dim, device=query.device)",
          "zero_outputs = torch.zeros(batch_size, dim, dtype=query.dtype, device=query.device)")], dien_module)


PATCH_LIST = [
    ("aux_targets", _p_aux_targets,
     "deepctr_torch.models.dien.InterestExtractor._cal_auxiliary_loss: the click / no-click targets are created "
     "with the probabilities' dtype instead of the hard-coded dtype=torch.float (a float64 DIEN with "
     "use_negsampling=True raises 'RuntimeError: Found dtype Float but expected Double' in "
     "F.binary_cross_entropy otherwise; identical in float32)"),
    ("evolving_zeros", _p_evolving_zeros,
     "deepctr_torch.models.dien.InterestEvolving.forward: zero_outputs (the (B, H) interest, zero for rows of "
     "length 0) is created with the query's dtype instead of the default float32 (a float64 DIEN raises "
     "'RuntimeError: Index put requires the source and destination dtypes match' at zero_outputs[mask] = "
     "outputs otherwise; identical in float32)"),
]
FIT_NOTE_F64 = ("fit() casts x and y with .float() (float32); a float64 model (model.double()) needs .double() "
                "instead, which is the only difference from fit's per-batch code here")
NOT_PATCHED = ("Not patched (as in the DIN recordings): get_regularization_loss accumulates into "
               "torch.zeros((1,)) (float32) and, without negative sampling, aux_loss is torch.zeros((1,)) "
               "(float32); so total_loss (loss + reg_loss + aux_loss) is float32 even in a float64 model "
               "(see meta['loss_dtypes']); the gradients are not affected")


def apply_patches(keys=None):
    for key, fn, _ in PATCH_LIST:
        if keys is None or key in keys:
            fn()


def patches_meta(dtype):
    out = [d for _, _, d in PATCH_LIST] + [NOT_PATCHED]
    if dtype == "float64":
        out.append(FIT_NOTE_F64)
    return out


# -- model ----------------------------------------------------------------------------------------
def build(setting, gru, neg, dtype):
    args = C.model_args(setting, gru, neg)
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if k != "history_feature_list"}
    cols = C.feature_columns(SparseFeat, VarLenSparseFeat, DenseFeat, neg)
    torch.manual_seed(0)
    model = dien_module.DIEN(cols, list(C.HISTORY), **kw)
    if dtype == "float64":
        model.double()
    return model, args


def role(name):
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith("embedding_dict."):
        return "embedding"
    if leaf.startswith("weight"):
        return "kernel"
    if leaf.startswith("bias"):
        return "bias"
    if leaf in ("running_mean",):
        return "moving_mean"
    if leaf in ("running_var",):
        return "moving_variance"
    if leaf == "alpha":
        return "dice_alpha"
    raise ValueError(name)


def weights_table(model):
    """(names, trainable, tied_to): state_dict keys in order; tied_to names the key holding the same tensor."""
    sd = model.state_dict(keep_vars=True)
    names = list(sd)
    params = dict(model.named_parameters())        # one name per tensor (the first registered)
    by_id = {}
    for k, v in sd.items():
        by_id.setdefault(id(v), k)
    tied = [by_id[id(sd[k])] if by_id[id(sd[k])] != k else "" for k in names]
    trainable = [isinstance(sd[k], torch.nn.Parameter) for k in names]
    for k, t in zip(names, trainable):
        assert not t or k in params or tied[names.index(k)], k
    return names, trainable, tied


def set_initial(model, names, tied, dtype):
    sd = model.state_dict()
    new, w = {}, {}
    for k, tie in zip(names, tied):
        if "num_batches_tracked" in k:
            new[k] = sd[k].clone()
            w[k] = sd[k].numpy().copy()
            continue
        value = w[tie] if tie else C.init_value(k, tuple(sd[k].shape), role(k)).astype(dtype)
        new[k] = torch.from_numpy(np.ascontiguousarray(value).copy())
        w[k] = value
    model.load_state_dict(new)
    for k, v in model.state_dict().items():
        assert np.array_equal(v.numpy(), w[k]), k
    return w


def to_X(model, x, dtype):
    """fit's input: the feature arrays concatenated in feature_index order, then cast."""
    cols = [np.expand_dims(x[name], 1) if x[name].ndim == 1 else x[name] for name in model.feature_index]
    X = torch.from_numpy(np.concatenate([c.astype(np.float64) for c in cols], axis=-1))
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


class Capture:
    """Forward hooks: the interest extractor's (interests, aux loss), the attention output, the final interest."""

    def __init__(self, model):
        self.data = {}
        self.handles = [
            model.interest_extractor.register_forward_hook(self._hook("extractor")),
            model.interest_evolution.attention.register_forward_hook(self._hook("attention")),
            model.interest_evolution.register_forward_hook(self._hook("evolving")),
        ]

    def _hook(self, key):
        def f(module, inputs, output):
            self.data[key] = output
        return f

    def remove(self):
        for h in self.handles:
            h.remove()


def scatter_rows(values, mask, shape, dtype):
    """(b, ...) values of the rows with length > 0 into (B, ...), NaN where torch computes nothing."""
    out = np.full(shape, np.nan, dtype=dtype)
    out[mask] = values
    return out


def objective_f64(model, X, Y):
    """fit's total loss, evaluated in float64 throughout (torch's own reg_loss is rounded to float32)."""
    y_pred = model(X)
    if y_pred.ndim > 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred.squeeze(-1)
    loss = model.loss_func(y_pred, Y, reduction="sum")
    reg = torch.zeros((), dtype=torch.float64)
    for weight_list, l1, l2 in model.regularization_weight:
        for w in weight_list:
            p = w[1] if isinstance(w, tuple) else w
            if l1 > 0:
                reg = reg + torch.sum(l1 * torch.abs(p))
            if l2 > 0:
                reg = reg + torch.sum(l2 * torch.square(p))
    return float(loss + reg + model.aux_loss.double().sum())


def fd_check(model, X, Y, names, trainable, tied, grads):
    """Finite differences of fit's objective (in float64) at a few entries per weight."""
    rng = np.random.default_rng(C.SEED + 99)
    big = max(float(np.max(np.abs(g))) for g in grads.values())
    sd = model.state_dict(keep_vars=True)
    results, skipped = {}, {}
    with torch.no_grad():
        for n, t, tie in zip(names, trainable, tied):
            if not t or tie:
                continue
            p = sd[n]
            base = p.detach().numpy().copy()

            def f_at(idx, p=p, base=base):
                def f(delta):
                    w_ = base.copy()
                    w_.reshape(-1)[idx] += delta
                    p.copy_(torch.from_numpy(w_))
                    return objective_f64(model, X, Y)
                return f

            results[n], skipped[n] = C.fd_weight(f_at, grads[n], base, rng, big)
            p.copy_(torch.from_numpy(base))
    return C.fd_summary(results, skipped)


def record_case(out, setting, gru, neg, dtype, optimizers):
    case = C.case_name(setting, gru, neg, dtype)
    t0 = time.time()
    x_all, y_all = C.make_inputs(neg, dtype)
    x, y = C.batch(x_all, y_all, 0)
    model, args = build(setting, gru, neg, dtype)
    model.compile("sgd", "binary_crossentropy")
    names, trainable, tied = weights_table(model)
    w = set_initial(model, names, tied, dtype)
    X, Y = to_X(model, x, dtype), to_y(y, dtype)
    cap = Capture(model)
    model.eval()
    with torch.no_grad():
        out_infer = model(X).numpy().copy()
    lengths = x["seq_length"]
    rows = lengths > 0
    B, H = len(lengths), C.EMB * len(C.HISTORY)
    np_dtype = np.dtype(dtype)
    interests = cap.data["extractor"][0].detach().numpy()
    att = cap.data["attention"].detach().numpy()
    mid = {"mid/interests": scatter_rows(interests, rows, (B, C.T, H), np_dtype),
           "mid/attention": scatter_rows(att, rows, (B,) + att.shape[1:], np_dtype),
           "mid/evolved": cap.data["evolving"].detach().numpy().reshape(B, 1, H).copy()}
    model.train()
    y_pred, loss, reg_loss, total = fit_step(model, X, Y, step=False)
    aux_unweighted = cap.data["extractor"][1]
    cap.remove()
    sd = model.state_dict(keep_vars=True)
    grads = {}
    for n, t, tie in zip(names, trainable, tied):
        if t:
            g = sd[tie or n].grad
            grads[n] = np.zeros_like(w[n]) if g is None else g.detach().numpy().copy()
    alpha = args.get("alpha", 1.0)
    arrays = {f"x/{k}": v for k, v in x_all.items()}
    arrays.update(y=y_all, weight_names=np.array(names), trainable=np.array(trainable, bool),
                  tracked=np.ones(len(names), bool), tied_to=np.array(tied),
                  out_infer=out_infer, out_train=y_pred.detach().numpy().reshape(-1, 1),
                  loss=np.asarray(total.detach().numpy().reshape(())),
                  data_loss=np.asarray(loss.detach().numpy().reshape(())),
                  reg_loss=np.asarray(reg_loss.detach().numpy().reshape(())),
                  aux_term=np.asarray(model.aux_loss.detach().numpy().reshape(())),
                  aux_loss=np.asarray(aux_unweighted.detach().numpy().reshape(())), **mid)
    for n, t in zip(names, trainable):
        arrays[f"w/{n}"] = w[n]
        if t:
            arrays[f"grad/{n}"] = grads[n]
        else:
            arrays[f"after_train/{n}"] = sd[n].detach().numpy().copy()
    fd = None
    if dtype == "float64":
        worst, table = fd_check(model, X, Y, names, trainable, tied, grads)
        fd = {"max_err": worst, "method": C.FD_METHOD + "; objective evaluated in float64 (data loss (sum) + "
                                                        "alpha * aux + L2 of model.regularization_weight)",
              "per_weight": table}
        if worst > C.FD_TOL:
            for n_, r_ in table.items():
                if r_["err"] > 1e-8:
                    print("FD", n_, r_, flush=True)
            raise RuntimeError(f"{case}: recorded gradient disagrees with finite differences ({worst:.2e})")
    loss_dtypes = {"data_loss": str(loss.dtype), "reg_loss": str(reg_loss.dtype),
                   "aux_term": str(model.aux_loss.dtype), "total_loss": str(total.dtype)}
    traj_meta = {}
    for opt_name in optimizers:
        cls, _, hp = C.OPTIMIZERS[opt_name]
        m2, _ = build(setting, gru, neg, dtype)
        names2, _, tied2 = weights_table(m2)
        assert names2 == names
        set_initial(m2, names2, tied2, dtype)
        optim = getattr(torch.optim, cls)(m2.parameters(), **hp)
        m2.compile(optim, "binary_crossentropy")
        m2.train()
        snaps = {n: [] for n in names}
        losses = []
        for k in range(C.STEPS):
            xb, yb = C.batch(x_all, y_all, k)
            _, _, _, tot = fit_step(m2, to_X(m2, xb, dtype), to_y(yb, dtype))
            losses.append(tot.item())
            if k + 1 in C.TRAJ_STEPS:
                for n, v in m2.state_dict().items():
                    snaps[n].append(v.numpy().copy())
        arrays[f"traj_{opt_name}_loss"] = np.array(losses)
        for n in names:
            arrays[f"traj_{opt_name}/{n}"] = np.stack(snaps[n])
        g0 = {k: v for k, v in optim.param_groups[0].items() if k != "params"}
        traj_meta[opt_name] = {"class": f"{type(optim).__module__}.{type(optim).__name__}", "hyperparameters": hp,
                               "param_group": g0}
    meta = {
        "framework": FRAMEWORK, "versions": VERSIONS, "dtype": dtype, "kind": "dien", "case": case,
        "setting": setting, "gru_type": gru, "use_negsampling": neg, "aux_patched": False,
        "model": {"class": "deepctr_torch.models.DIEN", "args": {**args, "dnn_feature_columns": C.features(neg)}},
        "feature_columns": C.features(neg), "history_feature_list": list(C.HISTORY),
        "seed": C.SEED, "batch_size": C.BATCH, "steps": C.STEPS, "traj_steps": list(C.TRAJ_STEPS),
        "alpha": alpha, "patches": patches_meta(dtype), "optimizers": traj_meta, "loss_dtypes": loss_dtypes,
        "loss": "F.binary_cross_entropy(y_pred, y, reduction='sum') + get_regularization_loss() (embeddings only) "
                "+ model.aux_loss (alpha * auxiliary loss, BCE mean over the valid positions)",
        "mid": {"interests": "interest_extractor output[0] (GRU outputs, (b, T, H)) scattered into (B, T, H); "
                             "NaN rows: length 0 (torch drops them)",
                "attention": ("interest_evolution.attention output: pooled GRU outputs (b, 1, H) -> (B, 1, H)"
                              if gru == "GRU" else
                              "interest_evolution.attention output: scores over the interests (b, 1, T) -> "
                              "(B, 1, T)") + "; NaN rows: length 0",
                "evolved": "interest_evolution output (B, H) as (B, 1, H): the final interest (zeros for length 0)",
                "mode": "inference"},
        "fd_check": fd, "seconds": round(time.time() - t0, 1),
        "order": ("set weights (load_state_dict) -> model.eval(); model(X) under no_grad -> model.train(); fit's "
                  "per-batch forward/loss/backward (no optim.step()); trajectories: fresh model, same initial "
                  "weights, torch.optim.<cls>(model.parameters(), **hp), fit's body on rows 16k:16k+16"),
    }
    C.save_case(out, FRAMEWORK, case, meta, arrays)
    return case, fd["max_err"] if fd else None


# -- facts ------------------------------------------------------------------------------------------
def _err(e):
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"


def _run_once(setting, gru, neg, dtype, x=None):
    model, _ = build(setting, gru, neg, dtype)
    model.compile("sgd", "binary_crossentropy")
    names, trainable, tied = weights_table(model)
    set_initial(model, names, tied, dtype)
    if x is None:
        x_all, y_all = C.make_inputs(neg, dtype)
        x, _ = C.batch(x_all, y_all, 0)
    model.train()
    y_pred = model(to_X(model, x, dtype))
    return model, y_pred


def facts(out):
    f = {"framework": FRAMEWORK, "versions": VERSIONS}
    # unpatched float64, then each patch
    res = {}
    for gru in C.GRU_TYPES:
        for neg in (False, True):
            try:
                _run_once("sig", gru, neg, "float64")
                res[f"{gru}_{'neg' if neg else 'noneg'}"] = "ok"
            except Exception as e:  # noqa: BLE001 - recorded
                res[f"{gru}_{'neg' if neg else 'noneg'}"] = _err(e)
    f["float64_unpatched"] = res
    _p_aux_targets()
    try:
        _run_once("sig", "AUGRU", True, "float64")
        f["float64_only_aux_targets_patched"] = "ok"
    except Exception as e:  # noqa: BLE001
        f["float64_only_aux_targets_patched"] = _err(e)
    apply_patches()
    # a batch where every row has length 0
    x_all, y_all = C.make_inputs(True, "float32")
    x, _ = C.batch(x_all, y_all, 0)
    x0 = dict(x, seq_length=np.zeros_like(x["seq_length"]))
    try:
        _run_once("sig", "AUGRU", True, "float32", x0)
        f["all_rows_length_0"] = "ok"
    except Exception as e:  # noqa: BLE001
        f["all_rows_length_0"] = _err(e)
    x1 = dict(x, seq_length=np.minimum(x["seq_length"], 1))
    try:
        m, _ = _run_once("sig", "AUGRU", True, "float64", x1)
        f["all_rows_length_le_1_aux_loss"] = {"value": float(m.aux_loss.sum()), "dtype": str(m.aux_loss.dtype)}
    except Exception as e:  # noqa: BLE001
        f["all_rows_length_le_1_aux_loss"] = _err(e)
    # tied AUGRU biases
    m, _ = build("sig", "AUGRU", False, "float64")
    cell = m.interest_evolution.interest_evolution.rnn
    sd = m.state_dict()
    f["augru_bias_tie"] = {
        "state_dict_keys": [k for k in sd if k.startswith("interest_evolution.interest_evolution.")],
        "named_parameters": [k for k, _ in m.named_parameters()
                             if k.startswith("interest_evolution.interest_evolution.")],
        "bias_ih_is_bias_hh": cell.bias_ih is cell.bias_hh,
    }
    m, _ = build("sig", "AGRU", False, "float64")
    f["agru_parameters"] = [k for k, _ in m.named_parameters() if k.startswith("interest_evolution.interest_ev")]
    # regularisation: what get_regularization_loss covers
    m, _ = build("sig", "GRU", True, "float64")
    ids = {id(p): k for k, p in m.named_parameters()}
    f["regularization_weight"] = [{"params": [ids.get(id(p[1] if isinstance(p, tuple) else p), "?") for p in wl],
                                   "l1": l1, "l2": l2} for wl, l1, l2 in m.regularization_weight]
    f["l2_reg_dnn_registered"] = any("dnn." in n for entry in f["regularization_weight"] for n in entry["params"])
    f["default_args"] = {k: repr(v.default) for k, v in
                         __import__("inspect").signature(dien_module.DIEN.__init__).parameters.items()
                         if v.default is not __import__("inspect").Parameter.empty}
    f["dnn_input_order"] = ("concat([hist (B, H), item_id emb, cate_id emb]) then dense features: see "
                            "DIEN.forward / _get_deep_input_emb")
    C.write_facts(out, FRAMEWORK, f)
    print(json.dumps(f, indent=1, default=str))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--only", default=None, help="comma-separated case names")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.only is None:
        facts(a.out)
    apply_patches()
    only = set(a.only.split(",")) if a.only else None
    for setting, gru, neg, dtype, opts in C.cases():
        name = C.case_name(setting, gru, neg, dtype)
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
