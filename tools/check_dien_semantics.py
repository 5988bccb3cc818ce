"""Check tests/data/frameworks/dien/SEMANTICS.md against the recordings: the equations, written in NumPy.

For every recorded DIEN case (DeepCTR-TF on tf.keras 2 and DeepCTR-Torch), this recomputes from the recorded
initial weights and inputs, with the equations of SEMANTICS.md and nothing else: the inference- and training-mode
outputs, the intermediates (interests, attention, final interest), the data loss, the auxiliary loss, the
regularisation, the objective and (TF, Dice) the moving statistics after one training call, and compares them with
what the framework recorded. Forward only: the gradients are checked against finite differences by the recorders.

    python tools/check_dien_semantics.py [--data tests/data/frameworks/dien]

NumPy only; runs without the frameworks. Tolerance: 1e-12 relative to the quantity's scale in float64, 1e-5 in
float32 (computed in float64 from the float32 weights; the difference is the framework's float32 rounding).
"""
import argparse
import json
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "frameworks" / "dien"
PAD = -2.0 ** 32 + 1


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z, axis=-1):
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# -- TensorFlow (DeepCTR 0.9.4) -------------------------------------------------------------------
def tf_cell(kind, x, h, p, a=None):
    """tf_keras GRUCell / DeepCTR QAAttGRUCell (AGRU) / VecAttGRUCell (AUGRU); p = (Kg, bg, Kc, bc)."""
    Kg, bg, Kc, bc = p
    H = h.shape[-1]
    g = sigmoid(np.concatenate([x, h], -1) @ Kg + bg)
    r, u = g[:, :H], g[:, H:]
    c = np.tanh(np.concatenate([x, r * h], -1) @ Kc + bc)
    if kind == "GRU":
        return u * h + (1.0 - u) * c
    if kind == "AGRU":
        return (1.0 - a) * h + a * c
    u = (1.0 - a) * u                     # AUGRU
    return u * h + (1.0 - u) * c


def tf_dynamic_gru(kind, xs, length, p, att=None):
    """DeepCTR dynamic_rnn: state frozen and output 0 for t >= length. Returns (outputs (B,T,H), final (B,H))."""
    B, T, _ = xs.shape
    H = p[3].shape[0]
    h = np.zeros((B, H))
    outs = np.zeros((B, T, H))
    for t in range(T):
        hn = tf_cell(kind, xs[:, t], h, p, None if att is None else att[:, t])
        valid = (t < length)[:, None]
        h = np.where(valid, hn, h)
        outs[:, t] = np.where(valid, hn, 0.0)
    return outs, h


class TFDice:
    """DeepCTR Dice on (..., H): BN over every axis but the last, epsilon 1e-9, no gamma/beta."""

    def __init__(self, alpha, mm, mv):
        self.alpha, self.mm, self.mv = alpha, mm, mv
        self.batch = None

    def __call__(self, x, training):
        axes = tuple(range(x.ndim - 1))
        if training:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            self.batch = (mean, var)
        else:
            mean, var = self.mm, self.mv
        p = sigmoid((x - mean) / np.sqrt(var + 1e-9))
        return self.alpha * (1.0 - p) * x + p * x


def tf_dnn(x, kernels, biases, act):
    for i, (K, b) in enumerate(zip(kernels, biases)):
        x = act(i, x @ K + b)
    return x


def tf_forward(z, meta, rows, training, dices=None):
    """DeepCTR-TF DIEN on ``rows``: (probabilities, mids, aux loss or None)."""
    W = {str(n): z[f"w/{n}"].astype(np.float64) for n in z["weight_names"]}
    x = {k[2:]: z[k][rows] for k in z.files if k.startswith("x/")}
    gru = meta["gru_type"]
    neg = meta["use_negsampling"]
    args = meta["model"]["args"]
    L = x["seq_length"].astype(np.int64)
    emb = {}
    for n, w in W.items():
        if n.endswith("embeddings:0"):
            emb["item_id" if "item_id" in n else "cate_id"] = w
    q = np.concatenate([emb["item_id"][x["item_id"]], emb["cate_id"][x["cate_id"]]], -1)[:, None, :]
    keys = np.concatenate([emb["item_id"][x["hist_item_id"]], emb["cate_id"][x["hist_cate_id"]]], -1)

    def gru_params(prefix):
        names = [f"{prefix}gates/kernel:0", f"{prefix}gates/bias:0", f"{prefix}candidate/kernel:0",
                 f"{prefix}candidate/bias:0"]
        return tuple(W[n] for n in names)

    p1 = gru_params("gru1/gru_cell/")
    p2 = gru_params("gru2/gru_cell/" if gru in ("GRU", "AIGRU") else "gru2/")
    interests, _ = tf_dynamic_gru("GRU", keys, L, p1)

    lau = "attention_sequence_pooling_layer/local_activation_unit/"
    att_act = args.get("att_activation", "dice")
    n_att = len(args["att_hidden_units"])

    def act_att(i, v):
        if att_act == "sigmoid":
            return sigmoid(v)
        return dices[i](v, training)

    def attention(keys_):
        T = keys_.shape[1]
        qq = np.repeat(q, T, axis=1)
        inp = np.concatenate([qq, keys_, qq - keys_, qq * keys_], -1)
        hdn = tf_dnn(inp, [W[f"{lau}dnn/kernel{i}:0"] for i in range(n_att)],
                     [W[f"{lau}dnn/bias{i}:0"] for i in range(n_att)], act_att)
        s = (hdn @ W[f"{lau}kernel:0"] + W[f"{lau}bias:0"]).transpose(0, 2, 1)       # (B, 1, T)
        mask = (np.arange(T)[None, :] < L[:, None])[:, None, :]
        if args.get("att_weight_normalization", True):
            return softmax(np.where(mask, s, PAD))
        return np.where(mask, s, 0.0)

    if gru == "GRU":
        evolved, _ = tf_dynamic_gru("GRU", interests, L, p2)
        att = attention(evolved) @ evolved                        # (B, 1, H)
        hist = att[:, 0]
    elif gru == "AIGRU":
        att = attention(interests)
        _, hist = tf_dynamic_gru("GRU", interests * att.transpose(0, 2, 1), L, p2)
        evolved = hist[:, None]
    else:
        att = attention(interests)
        _, hist = tf_dynamic_gru(gru, interests, L, p2, att.transpose(0, 2, 1))
        evolved = hist[:, None]
    main = "dnn_1/" if any(str(n).startswith("dnn_1/") for n in z["weight_names"]) else "dnn/"
    n_dnn = len(args["dnn_hidden_units"])
    dnn_in = np.concatenate([emb["item_id"][x["item_id"]], emb["cate_id"][x["cate_id"]], hist,
                             x["pay_score"][:, None].astype(np.float64)], -1)
    out = tf_dnn(dnn_in, [W[f"{main}kernel{i}:0"] for i in range(n_dnn)],
                 [W[f"{main}bias{i}:0"] for i in range(n_dnn)], lambda i, v: np.maximum(v, 0.0))
    logit = out @ W["dense/kernel:0"] + W["prediction_layer/global_bias:0"]
    prob = sigmoid(logit).reshape(-1, 1)
    aux = None
    if neg and (gru == "AUGRU" or meta["aux_patched"]):
        negk = np.concatenate([emb["item_id"][x["neg_hist_item_id"]], emb["cate_id"][x["neg_hist_cate_id"]]], -1)
        T = keys.shape[1]
        m = (np.arange(T - 1)[None, :] < (L - 1)[:, None]).astype(np.float64)
        ks = [W[f"dnn/kernel{i}:0"] for i in range(3)]
        bs = [W[f"dnn/bias{i}:0"] for i in range(3)]
        hs = interests[:, :-1]
        p_click = tf_dnn(np.concatenate([hs, keys[:, 1:]], -1), ks, bs, lambda i, v: sigmoid(v))[:, :, 0]
        p_no = tf_dnn(np.concatenate([hs, negk[:, 1:]], -1), ks, bs, lambda i, v: sigmoid(v))[:, :, 0]
        aux = np.mean(-np.log(p_click) * m - np.log(1.0 - p_no) * m)
    return prob, {"mid/interests": interests, "mid/attention": att, "mid/evolved": evolved}, aux


def tf_losses(z, meta, prob, aux, y):
    args = meta["model"]["args"]
    eps = 1e-7
    pc = np.clip(prob[:, 0], eps, 1 - eps)
    data = np.mean(-(y * np.log(pc + eps) + (1 - y) * np.log(1 - pc + eps)))
    l2e = args.get("l2_reg_embedding", 1e-6)
    l2d = args.get("l2_reg_dnn", 0.0)
    reg = 0.0
    for n in z["weight_names"]:
        n = str(n)
        w = z[f"w/{n}"].astype(np.float64)
        if n.endswith("embeddings:0"):
            reg += l2e * np.sum(w ** 2)
    main = "dnn_1/" if any(str(n).startswith("dnn_1/") for n in z["weight_names"]) else "dnn/"
    for i in range(len(args["dnn_hidden_units"])):
        reg += l2d * np.sum(z[f"w/{main}kernel{i}:0"].astype(np.float64) ** 2)
    alpha = args.get("alpha", 1.0)
    aux_term = alpha * aux if aux is not None else 0.0
    return {"data_loss": data, "reg_loss": reg, "aux_term": aux_term, "loss": data + reg + aux_term,
            "aux_loss": aux if aux is not None else 0.0}


def check_tf(z, meta, cmp):
    rows = slice(0, meta["batch_size"])
    y = z["y"][rows].astype(np.float64)
    args = meta["model"]["args"]
    dices = None
    lau = "attention_sequence_pooling_layer/local_activation_unit/dnn/"
    if args.get("att_activation", "dice") == "dice":
        dices = []
        for i in range(len(args["att_hidden_units"])):
            d = "dice" if i == 0 else f"dice_{i}"
            bn = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
            dices.append(TFDice(z[f"w/{lau}{d}/dice_alpha:0"].astype(np.float64),
                                z[f"w/{lau}{d}/{bn}/moving_mean:0"].astype(np.float64),
                                z[f"w/{lau}{d}/{bn}/moving_variance:0"].astype(np.float64)))
    p_inf, mids, _ = tf_forward(z, meta, rows, False, dices)
    cmp("out_infer", p_inf, z["out_infer"])
    for k, v in mids.items():
        cmp(k, v, z[k])
    p_tr, _, aux = tf_forward(z, meta, rows, True, dices)
    cmp("out_train", p_tr, z["out_train"])
    for k, v in tf_losses(z, meta, p_tr, aux, y).items():
        cmp(k, np.asarray(v), z[k])
    if dices:
        decay = float(np.float32(1.0 - 0.99))      # tf.keras: the decay 1 - momentum rounded to float32
        for i, d in enumerate(dices):
            dn = "dice" if i == 0 else f"dice_{i}"
            bn = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
            mean, var = d.batch
            mm = d.mm - (d.mm - mean) * decay
            mv = d.mv - (d.mv - var) * decay
            cmp(f"after_train/{dn}/moving_mean", mm, z[f"after_train/{lau}{dn}/{bn}/moving_mean:0"])
            cmp(f"after_train/{dn}/moving_variance", mv, z[f"after_train/{lau}{dn}/{bn}/moving_variance:0"])


# -- PyTorch (DeepCTR-Torch 0.3.0) ----------------------------------------------------------------
def torch_cell(kind, x, h, p, a=None):
    """nn.GRU / AGRUCell / AUGRUCell; p = (W_ih (3H,D), W_hh (3H,H), b_ih, b_hh), gate blocks r, z, n."""
    W_ih, W_hh, b_ih, b_hh = p
    H = h.shape[-1]
    gi = x @ W_ih.T + b_ih
    gh = h @ W_hh.T + b_hh
    r = sigmoid(gi[:, :H] + gh[:, :H])
    z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    if kind == "GRU":
        return (1.0 - z) * n + z * h
    if kind == "AGRU":
        return (1.0 - a) * h + a * n
    u = a * z                              # AUGRU
    return (1.0 - u) * h + u * n


def torch_packed_gru(kind, xs, length, p, att=None):
    """A packed sequence: row i runs steps 0..length_i-1 only; outputs 0 after (pad_packed_sequence)."""
    B, T, _ = xs.shape
    H = p[1].shape[1]
    h = np.zeros((B, H))
    outs = np.zeros((B, T, H))
    for t in range(T):
        hn = torch_cell(kind, xs[:, t], h, p, None if att is None else att[:, t][:, None])
        valid = (t < length)[:, None]
        h = np.where(valid, hn, h)
        outs[:, t] = np.where(valid, hn, 0.0)
    return outs, h


def torch_dnn(x, W, prefix, n, act):
    for i in range(n):
        x = act(x @ W[f"{prefix}linears.{i}.weight"].T + W[f"{prefix}linears.{i}.bias"])
    return x


def torch_bce_terms(p, y):
    return -(y * np.maximum(np.log(p), -100.0) + (1 - y) * np.maximum(np.log(1 - p), -100.0))


def torch_forward(z, meta, rows):
    W = {str(n): z[f"w/{n}"].astype(np.float64) for n in z["weight_names"]}
    x = {k[2:]: z[k][rows] for k in z.files if k.startswith("x/")}
    gru = meta["gru_type"]
    neg = meta["use_negsampling"]
    args = meta["model"]["args"]
    alpha = args.get("alpha", 1.0)
    L_all = x["seq_length"].astype(np.int64)
    E_item, E_cate = W["embedding_dict.item_id.weight"], W["embedding_dict.cate_id.weight"]
    B = L_all.shape[0]
    sel = L_all > 0                                   # torch drops rows of length 0
    L = L_all[sel]
    q = np.concatenate([E_item[x["item_id"]], E_cate[x["cate_id"]]], -1)
    keys_all = np.concatenate([E_item[x["hist_item_id"]], E_cate[x["hist_cate_id"]]], -1)
    keys = keys_all[sel]
    T, H = keys.shape[1], keys.shape[2]
    pre = "interest_extractor.gru."
    p1 = tuple(W[pre + k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    interests, _ = torch_packed_gru("GRU", keys, L, p1)
    aux = np.zeros(())
    if neg:
        negk = np.concatenate([E_item[x["neg_hist_item_id"]], E_cate[x["neg_hist_cate_id"]]], -1)[sel]
        L1 = L - 1
        keep = L1 > 0
        states, click, noclick, L1 = interests[:, :-1][keep], keys[:, 1:][keep], negk[:, 1:][keep], L1[keep]
        m = np.arange(T - 1)[None, :] < L1[:, None]
        an = "interest_extractor.auxiliary_net."
        pc = torch_dnn(np.concatenate([states, click], -1), W, an, 3, sigmoid)[:, :, 0][m]
        pn = torch_dnn(np.concatenate([states, noclick], -1), W, an, 3, sigmoid)[:, :, 0][m]
        terms = np.concatenate([torch_bce_terms(pc, 1.0), torch_bce_terms(pn, 0.0)])
        aux = terms.mean()
    la = "interest_evolution.attention.local_att."
    att_act = args.get("att_activation", "relu")
    act = sigmoid if att_act == "sigmoid" else (lambda v: np.maximum(v, 0.0))
    qb = q[sel][:, None, :]

    def attention(keys_):
        qq = np.repeat(qb, T, axis=1)
        inp = np.concatenate([qq, keys_, qq - keys_, qq * keys_], -1)
        hdn = torch_dnn(inp, W, la + "dnn.", len(args["att_hidden_units"]), act)
        s = (hdn @ W[la + "dense.weight"].T + W[la + "dense.bias"]).transpose(0, 2, 1)
        mask = (np.arange(T)[None, :] < L[:, None])[:, None, :]
        if args.get("att_weight_normalization", True):
            return softmax(np.where(mask, s, PAD))
        return np.where(mask, s, 0.0)

    ev = "interest_evolution.interest_evolution."
    if gru in ("GRU", "AIGRU"):
        p2 = tuple(W[ev + k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    else:
        p2 = tuple(W[ev + "rnn." + k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    if gru == "GRU":
        evolved, _ = torch_packed_gru("GRU", interests, L, p2)
        att = attention(evolved) @ evolved
        h_b = att[:, 0]
    elif gru == "AIGRU":
        att = attention(interests)
        _, h_b = torch_packed_gru("GRU", interests * att.transpose(0, 2, 1), L, p2)
    else:
        att = attention(interests)
        _, h_b = torch_packed_gru(gru, interests, L, p2, att[:, 0])
    hist = np.zeros((B, H))
    hist[sel] = h_b
    # get_dense_input casts the dense features with .float(): float32 even in a float64 model
    dense = x["pay_score"][:, None].astype(np.float32).astype(np.float64)
    dnn_in = np.concatenate([hist, E_item[x["item_id"]], E_cate[x["cate_id"]], dense], -1)
    out = torch_dnn(dnn_in, W, "dnn.", len(args["dnn_hidden_units"]), lambda v: np.maximum(v, 0.0))
    prob = sigmoid(out @ W["linear.weight"].T + W["out.bias"])
    mids = {"mid/interests": np.full((B, T, H), np.nan), "mid/attention": np.full((B,) + att.shape[1:], np.nan),
            "mid/evolved": hist[:, None, :]}
    mids["mid/interests"][sel] = interests
    mids["mid/attention"][sel] = att
    return prob, mids, aux, alpha


def check_torch(z, meta, cmp):
    rows = slice(0, meta["batch_size"])
    y = z["y"][rows].astype(np.float64)
    args = meta["model"]["args"]
    prob, mids, aux, alpha = torch_forward(z, meta, rows)
    cmp("out_infer", prob, z["out_infer"])
    cmp("out_train", prob, z["out_train"])
    for k, v in mids.items():
        cmp(k, v, z[k])
    data = np.sum(torch_bce_terms(prob[:, 0], y))
    l2e = args.get("l2_reg_embedding", 1e-6)
    reg = l2e * sum(np.sum(z[f"w/embedding_dict.{e}.weight"].astype(np.float64) ** 2) for e in ("item_id", "cate_id"))
    cmp("data_loss", data, z["data_loss"])
    cmp("aux_loss", aux, z["aux_loss"])
    cmp("aux_term", alpha * aux, z["aux_term"])
    # torch accumulates the regularisation (and the total) in float32: compare at float32 precision
    cmp("reg_loss", reg, z["reg_loss"], 1e-6)
    cmp("loss", data + reg + alpha * aux, z["loss"], 1e-6)


def check_first_sgd_step(z, meta, cmp):
    """The recorded gradient is the one fit applies: after SGD step 1 (same batch, same initial weights)
    every weight fit trains is w - lr * grad, the others are unchanged, the buffers are ``after_train``."""
    for opt in meta["optimizers"]:
        cmp(f"traj_{opt}_loss[0] (step 1's loss is the recorded objective)", z["loss"], z[f"traj_{opt}_loss"][0])
    if "sgd" not in meta["optimizers"]:
        return
    lr = meta["optimizers"]["sgd"]["hyperparameters"].get("learning_rate",
                                                          meta["optimizers"]["sgd"]["hyperparameters"].get("lr"))
    for n, tr, tk in zip(z["weight_names"], z["trainable"], z["tracked"]):
        w, after1 = z[f"w/{n}"], z[f"traj_sgd/{n}"][0]
        if tr and tk:
            cmp(f"sgd step 1 {n}", w - lr * z[f"grad/{n}"], after1)
        elif tr:
            cmp(f"sgd step 1 (untracked: not trained) {n}", w, after1)
        else:
            cmp(f"sgd step 1 (buffer) {n}", z[f"after_train/{n}"], after1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT))
    a = p.parse_args(argv)
    data = Path(a.data)
    index = json.loads((data / "_index.json").read_text())["cases"]
    failures = 0
    worst = {}
    for e in index:
        z = np.load(data / e["file"])
        meta = json.loads(str(z["meta"]))
        tol0 = 1e-12 if meta["dtype"] == "float64" else 1e-5
        bad = []

        def cmp(key, mine, rec, tol=None, bad=bad, tol0=tol0, file=e["file"]):
            tol = max(tol or tol0, tol0)
            rec = np.asarray(rec, dtype=np.float64)
            mine = np.asarray(mine, dtype=np.float64)
            assert mine.shape == rec.shape, (file, key, mine.shape, rec.shape)
            nan = np.isnan(rec)
            assert np.array_equal(nan, np.isnan(mine)), (file, key, "NaN pattern")
            scale = max(float(np.max(np.abs(rec[~nan]))) if (~nan).any() else 0.0, 1e-300)
            err = float(np.max(np.abs(mine[~nan] - rec[~nan]))) / scale if (~nan).any() else 0.0
            worst[(meta["framework"], meta["dtype"])] = max(worst.get((meta["framework"], meta["dtype"]), 0.0),
                                                            err if tol == tol0 else 0.0)
            if err > tol:
                bad.append(f"{key}: {err:.2e} > {tol:.0e}")

        (check_tf if meta["framework"] == "tf_keras" else check_torch)(z, meta, cmp)
        check_first_sgd_step(z, meta, cmp)
        status = "ok" if not bad else "FAIL " + "; ".join(bad)
        failures += bool(bad)
        print(f"{e['file']:55s} {status}")
    for k, v in sorted(worst.items()):
        print("worst relative difference", k, f"{v:.1e}")
    if failures:
        raise SystemExit(f"{failures} case(s) disagree with the written semantics")


if __name__ == "__main__":
    main()
