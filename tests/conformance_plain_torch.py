"""A conformance adapter for an independent backend: the math of docs/ in float64 PyTorch autograd
(``test_torch_autograd.py``'s ``t_*`` functions, written from the equations, not from npctr's code),
``tf_keras`` profile. Its round-off and operation order are its own, so it shows that the checker
passes a correct implementation that is not npctr; ``BN_EPSILON`` / ``BN_MOMENTUM`` perturb one
constant of its BatchNormalizations to show that the checker fails exactly the cases that use it.
"""
import contextlib

import numpy as np
import torch

import test_torch_autograd as tt
from npctr.feature_column import feature_columns_from_config

NAME = "plain torch (tests/conformance_plain_torch.py)"
PROFILES = ("tf_keras",)
DTYPES = ("float64",)
KEEP_BN_EPSILON, KEEP_BN_MOMENTUM = 1e-3, 0.99
#: the constants this backend uses where Keras's BatchNormalization has 1e-3 and 0.99 (Dice's inner
#: BatchNormalization has epsilon 1e-9 and the same momentum)
BN_EPSILON, BN_MOMENTUM = KEEP_BN_EPSILON, KEEP_BN_MOMENTUM
EPS = 1e-7          # Keras's fuzz factor in the binary cross-entropy


@contextlib.contextmanager
def _constants():
    """``t_batch_norm`` with this backend's constants (the t_* functions call it by name)."""
    original = tt.t_batch_norm

    def batch_norm(x, P, S, prefix, training, new_state, epsilon=1e-3, momentum=0.99, affine=True):
        epsilon = BN_EPSILON if epsilon == KEEP_BN_EPSILON else epsilon
        return original(x, P, S, prefix, training, new_state, epsilon=epsilon,
                        momentum=BN_MOMENTUM if momentum == KEEP_BN_MOMENTUM else momentum, affine=affine)

    tt.t_batch_norm = batch_norm
    try:
        yield
    finally:
        tt.t_batch_norm = original


def _dnn(x, P, S, config, training, new_state):
    """DeepCTR's DNN with ``output_activation`` on the last layer."""
    a, n = x, len(config["hidden_units"])
    for i in range(n):
        z = tt.t_dense(a, P[f"kernel{i}"], P[f"bias{i}"])
        if config["use_bn"]:
            z = tt.t_batch_norm(z, P, S, f"bn{i}/", training, new_state)
        act = config["output_activation"] if i == n - 1 and config.get("output_activation") else config["activation"]
        a = tt.t_activation(z, act, P, S, f"activation{i}/", training, new_state)
    return a


def _forward(case, P, S, t_in, training, new_state):
    c = case.config
    if case.kind == "dnn":
        return _dnn(t_in["x"], P, S, c, training, new_state)
    if case.kind == "lau":
        return tt.t_lau(t_in["query"], t_in["keys"], P, S, "", c["hidden_units"], c["activation"], c["use_bn"],
                        training, new_state)
    if case.kind == "asp":
        t = t_in["keys"].shape[1]
        valid = (torch.from_numpy(case.inputs["mask"]) if "mask" in case.inputs else
                 torch.arange(t)[None, :] < torch.from_numpy(case.inputs["keys_length"]))
        return tt.t_attention_pooling(t_in["query"], t_in["keys"], valid, P, S, "", c["att_hidden_units"],
                                      c["att_activation"], c["weight_normalization"], c["return_score"], training,
                                      new_state)
    x = {k: (t_in[k] if k in t_in else v) for k, v in case.inputs.items() if k != "y"}
    return tt.t_feature_model(x, P, S, new_state, feature_columns_from_config(c["dnn_feature_columns"]),
                              c["history_feature_list"], training, dnn_hidden_units=c["dnn_hidden_units"],
                              dnn_activation=c["dnn_activation"], dnn_use_bn=c["dnn_use_bn"],
                              att_hidden_size=c["att_hidden_size"], att_activation=c["att_activation"],
                              att_weight_normalization=c["att_weight_normalization"], task=c["task"])


def _objective(case, P, out):
    """tf.keras 2's compiled loss (clipped BCE with the extra epsilon, or MSE), mean, plus L2."""
    c = case.config
    y = torch.from_numpy(case.inputs["y"]).reshape(-1, 1)
    if c["task"] == "binary":
        p = torch.clamp(out, EPS, 1 - EPS)
        data = -(y * torch.log(p + EPS) + (1 - y) * torch.log(1 - p + EPS)).mean()
    else:
        data = ((out - y) ** 2).mean()
    reg = sum(c["l2_reg_embedding"] * (w ** 2).sum() for k, w in P.items() if k.startswith("sparse_emb_"))
    reg = reg + sum(c["l2_reg_dnn"] * (w ** 2).sum() for k, w in P.items()
                    if k.startswith("dnn/kernel"))
    return data + reg


def run(case):
    target = case.build()
    trainable = set(target.params)
    results = {}
    float_inputs = [k for k, v in case.inputs.items() if np.asarray(v).dtype.kind == "f" and k != "y"]
    for mode in ("infer", "train", "loss"):
        training = mode != "infer"
        P = {k: torch.tensor(v, requires_grad=True) for k, v in case.weights.items() if k in trainable}
        S = {k: torch.tensor(v) for k, v in case.weights.items() if k not in trainable}
        t_in = {k: torch.tensor(case.inputs[k], requires_grad=True) for k in float_inputs}
        new_state = {}
        with _constants():
            out = _forward(case, P, S, t_in, training, new_state)
        if mode == "loss":
            if case.kind != "din":
                results["loss/value"] = np.array(float((out.detach() * torch.from_numpy(case.upstream)).sum()))
                break
            objective = _objective(case, P, out)
            results["loss/value"] = np.array(float(objective.detach()))
        else:
            results[f"{mode}/output"] = out.detach().numpy()
            objective = (out * torch.from_numpy(case.upstream)).sum()
        objective.backward()
        for k, p in P.items():
            results[f"{mode}/grad_weight/{k}"] = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        if mode != "loss":
            for k, t in t_in.items():
                results[f"{mode}/grad_input/{k}"] = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        if mode == "train":
            for k in S:
                results[f"train/moving/{k}"] = new_state[k].numpy() if k in new_state else S[k].numpy()
    return results
