"""Live check of npctr's DIEN against DeepCTR-Torch 0.3.0 on a configuration no recording covers.

    /work/refenv/bin/python tools/live_check_dien_torch.py [float64|float32]

(any Python with torch 2.x and deepctr-torch 0.3.0; npctr from this checkout). Dice in the evolving
layer's attention (DeepCTR-Torch runs it on the rows of length > 0 only: ``dien_attention_rows``, whose
batch statistics tell the difference), BatchNormalization and three hidden layers in the output DNN,
a length-0 row, every ``gru_type`` with negative sampling. DeepCTR-Torch's weights (drawn normal(0,
0.3)) are loaded through ``load_torch_state_dict``; printed: the worst difference of the inference
output, of fit's objective on a training-mode forward, and of every gradient (normwise relative per
array; gradients that are exactly 0 -- a DNN bias in front of a BatchNormalization, the attention's
output bias under the softmax -- against their weight's gradient scale). float64 uses the recorders'
two patches of DeepCTR-Torch's hard-coded float32 (tools/record_dien_torch.py).
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import torch  # noqa: E402
from deepctr_torch.inputs import (SparseFeat as TorchSparse, VarLenSparseFeat as TorchVarLen,  # noqa: E402
                                  DenseFeat as TorchDense)
from deepctr_torch.models import DIEN as TorchDIEN  # noqa: E402

import record_dien_torch  # noqa: E402
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from npctr.interop import load_torch_state_dict, map_torch_names  # noqa: E402
from npctr.models import DIEN  # noqa: E402

T, B = 7, 32


def columns(sparse, varlen, dense):
    cols = [sparse("user", 5, 3), sparse("item_id", 25, 4), sparse("cate_id", 7, 4), dense("pay", 1)]
    for prefix in ("hist_", "neg_hist_"):
        cols += [varlen(sparse(prefix + "item_id", 25, 4, embedding_name="item_id"), T, length_name="seq_length"),
                 varlen(sparse(prefix + "cate_id", 7, 4, embedding_name="cate_id"), T, length_name="seq_length")]
    return cols


def inputs(seed=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, B)
    lengths[:3] = [0, 1, T]
    valid = np.arange(T) < lengths[:, None]
    x = {"user": rng.integers(0, 5, B), "item_id": rng.integers(1, 25, B), "cate_id": rng.integers(1, 7, B),
         "pay": rng.standard_normal(B), "seq_length": lengths}
    for prefix in ("hist_", "neg_hist_"):
        x[prefix + "item_id"] = np.where(valid, rng.integers(1, 25, (B, T)), 0)
        x[prefix + "cate_id"] = np.where(valid, rng.integers(1, 7, (B, T)), 0)
    return x, rng.integers(0, 2, B).astype(np.float64)


def zero_gradient(name):
    return (name.startswith("dnn.linears.") and name.endswith(".bias")) or name.endswith("local_att.dense.bias")


def check(gru_type, dtype, x, y):
    args = dict(gru_type=gru_type, use_negsampling=True, alpha=0.3, use_bn=True, dnn_hidden_units=(16, 8, 4),
                att_hidden_units=(8, 4), att_activation="dice", l2_reg_embedding=1e-3)
    torch.manual_seed(0)
    framework = TorchDIEN(columns(TorchSparse, TorchVarLen, TorchDense), ["item_id", "cate_id"], **args)
    for _, p in framework.named_parameters():            # generic values (the default init_std is 1e-4)
        torch.nn.init.normal_(p, 0, 0.3)
    if dtype == "float64":
        framework = framework.double()
    X = torch.tensor(np.concatenate([np.asarray(x[k], np.float64).reshape(B, -1) for k in framework.feature_index],
                                    axis=1))
    X = X.double() if dtype == "float64" else X.float()
    model = DIEN(columns(SparseFeat, VarLenSparseFeat, DenseFeat), ["item_id", "cate_id"], conventions="torch",
                 dtype=dtype, **args)
    load_torch_state_dict(model, framework.state_dict())
    framework.eval()
    with torch.no_grad():
        inference = np.abs(model.predict(x) - framework(X).numpy()).max()
    framework.train()                                    # fit's objective, one training-mode forward
    p = framework(X).squeeze()
    total = torch.nn.functional.binary_cross_entropy(p, torch.tensor(y, dtype=p.dtype), reduction="sum")
    total = total + framework.get_regularization_loss() + framework.aux_loss
    framework.zero_grad()
    total.backward()
    model.compile("sgd")
    loss, grads = model.loss_and_gradients(x, y)
    paths = map_torch_names(model, [n for n, _ in framework.named_parameters()])
    worst, which = 0.0, None
    for name, param in framework.named_parameters():
        mine, theirs = grads[paths[name]], param.grad.numpy()
        theirs = (theirs.T if theirs.shape != mine.shape else theirs).reshape(mine.shape)
        scale = np.abs(theirs).max()
        if zero_gradient(name):
            scale = np.abs(grads[paths[name.replace("bias", "weight")]]).max()
        err = np.abs(mine - theirs).max() / max(scale, 1e-300)
        if err > worst:
            worst, which = err, name
    objective = abs(loss - float(total)) / abs(float(total))
    print(f"{gru_type:5s} {dtype}: inference {inference:.1e}, objective {objective:.1e}, "
          f"worst gradient {worst:.1e} ({which})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    dtype = argv[0] if argv else "float64"
    record_dien_torch.apply_patches()
    x, y = inputs()
    for gru_type in ("GRU", "AIGRU", "AGRU", "AUGRU"):
        check(gru_type, dtype, x, y)


if __name__ == "__main__":
    main()
