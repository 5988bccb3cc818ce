"""DeepCTR-Torch (0.3.0, PyTorch) as a conformance backend, against npctr's ``conventions="torch"``.

Each case is built from DeepCTR-Torch's own classes (``deepctr_torch.layers.DNN``,
``LocalActivationUnit``, ``AttentionSequencePoolingLayer``, ``deepctr_torch.models.DIN``) in float64
(``.double()``) or float32, loaded by ``load_state_dict`` with the case's weights under their
DeepCTR-Torch names, and run as DeepCTR-Torch runs: ``eval()`` for inference, ``train()`` for
training (BatchNorm1d's batch statistics and running-statistic update), autograd for every
gradient of ``sum(output * upstream)`` with respect to the float inputs and every parameter, and
the DIN's objective exactly as ``BaseModel.fit`` forms it (``loss_func(y_pred, y,
reduction='sum') + get_regularization_loss() + aux_loss``).

**What it cannot run, and says so** (``skip_reason``: the case is reported *blocked*):

* activations DeepCTR-Torch's ``activation_layer`` lacks (``tanh``), and ``output_activation``
  (its DNN has none);
* ``prelu``: its ``nn.PReLU()`` shares one alpha per layer; npctr's PReLU (Keras's) has one per
  unit, so the weights do not correspond (and the npctr importer refuses them);
* a BatchNormalization on a 3-D input (a LocalActivationUnit with ``use_bn``, a DNN on
  ``(B, T, H)``): DeepCTR-Torch's DNN applies ``BatchNorm1d`` to ``(B, T, H)``, which normalizes
  axis 1 (``T``), not the features -- a framework bug;
* a DIN with ``dnn_activation='dice'``: its output DNN keeps ``dice_dim=3`` and ``Dice`` asserts a
  3-D input on the 2-D DNN input -- a framework bug (tools/record_torch.py patches it to record; this
  adapter does not).

**Left out, with a note:** a float64 DIN's ``loss/value``: ``get_regularization_loss`` accumulates
into ``torch.zeros((1,))`` (float32), so the total loss of a float64 model is a float32 number; its
gradients are float64 and are compared.
"""
import numpy as np

from ...interop.torch import ALPHA, LINEAR, torch_spec

NAME = "DeepCTR-Torch"
PROFILES = ("torch",)
DTYPES = ("float64", "float32")
KINDS = ("dnn", "lau", "asp", "din")
ACTIVATIONS = ("relu", "sigmoid", "linear", "dice")


def available():
    try:
        import torch  # noqa: F401
        import deepctr_torch  # noqa: F401
    except ImportError as exc:
        return f"DeepCTR-Torch is not installed ({exc}): pip install torch==2.13.0 deepctr-torch==0.3.0"
    return None


def versions():
    import torch
    import deepctr_torch
    return {"torch": torch.__version__, "deepctr_torch": deepctr_torch.__version__}


def skip_reason(case):
    c = case.config
    acts = {"din": [c.get("dnn_activation"), c.get("att_activation")], "asp": [c.get("att_activation")]}.get(
        case.kind, [c.get("activation")])
    if "prelu" in acts:
        return ("DeepCTR-Torch's 'prelu' is one nn.PReLU() per layer (one shared alpha); npctr's PReLU, as "
                "Keras's, has one alpha per unit: the weights do not correspond")
    missing = [a for a in acts if a not in ACTIVATIONS]
    if missing:
        return f"DeepCTR-Torch's activation_layer has no {missing[0]!r} (it knows sigmoid, linear, relu, dice, prelu)"
    if case.kind == "dnn" and c.get("output_activation"):
        return "DeepCTR-Torch's DNN has no output_activation"
    three_d_bn = (case.kind == "lau" and c["use_bn"]) or (case.kind == "dnn" and c["use_bn"]
                                                          and case.inputs["x"].ndim == 3)
    if three_d_bn:
        return ("framework bug: DeepCTR-Torch's DNN applies BatchNorm1d to a 3-D input (B, T, H), which "
                "normalizes axis 1 (T) instead of the features")
    if case.kind == "din" and c["dnn_activation"] == "dice":
        return ("framework bug: DeepCTR-Torch's DIN builds its output DNN with dice_dim=3, and Dice asserts a 3-D "
                "input on the 2-D DNN input (tools/record_torch.py patches it to record; this adapter does not)")
    return None


# -- building ------------------------------------------------------------------------------------
def _module(case):
    from deepctr_torch.layers import DNN, LocalActivationUnit, AttentionSequencePoolingLayer
    c = case.config
    if case.kind == "dnn":
        x = case.inputs["x"]
        return DNN(x.shape[-1], tuple(c["hidden_units"]), activation=c["activation"], use_bn=c["use_bn"],
                   dice_dim=x.ndim)
    e = case.inputs["query"].shape[-1]
    if case.kind == "lau":
        return LocalActivationUnit(tuple(c["hidden_units"]), embedding_dim=e, activation=c["activation"],
                                   use_bn=c["use_bn"])
    return AttentionSequencePoolingLayer(tuple(c["att_hidden_units"]), att_activation=c["att_activation"],
                                         weight_normalization=c["weight_normalization"],
                                         return_score=c["return_score"], supports_masking=c["supports_masking"],
                                         embedding_dim=e)


def _columns(config):
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat, DenseFeat
    from ...feature_column import feature_columns_from_config
    from ...feature_column import SparseFeat as NpSparse, DenseFeat as NpDense
    out = []
    for fc in feature_columns_from_config(config["dnn_feature_columns"]):
        if isinstance(fc, NpSparse):
            out.append(SparseFeat(fc.name, fc.vocabulary_size, fc.embedding_dim, embedding_name=fc.embedding_name))
        elif isinstance(fc, NpDense):
            out.append(DenseFeat(fc.name, fc.dimension))
        else:
            out.append(VarLenSparseFeat(SparseFeat(fc.name, fc.vocabulary_size, fc.embedding_dim,
                                                   embedding_name=fc.embedding_name),
                                        maxlen=fc.maxlen, combiner=fc.combiner, length_name=fc.length_name))
    return out


def _din(case):
    from deepctr_torch.models import DIN
    c = case.config
    model = DIN(_columns(c), list(c["history_feature_list"]), dnn_use_bn=c["dnn_use_bn"],
                dnn_hidden_units=tuple(c["dnn_hidden_units"]), dnn_activation=c["dnn_activation"],
                att_hidden_size=tuple(c["att_hidden_size"]), att_activation=c["att_activation"],
                att_weight_normalization=c["att_weight_normalization"], l2_reg_dnn=c["l2_reg_dnn"],
                l2_reg_embedding=c["l2_reg_embedding"], dnn_dropout=0, seed=c["seed"], task=c["task"])
    model.compile("adam", "binary_crossentropy" if c["task"] == "binary" else "mse")
    return model


def _load(module, case, torch):
    state = module.state_dict()
    weights = case.framework_weights("torch")
    missing = sorted(set(state) - set(weights))
    unknown = sorted(set(weights) - set(state))
    if missing or unknown:
        raise ValueError(f"DeepCTR-Torch's state_dict and npctr's names differ: missing {missing}, unknown {unknown}")
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(state[k].dtype)
                            for k, v in weights.items()})


def _X(model, case, torch, dtype):
    """DeepCTR-Torch's input: every feature's columns side by side, in ``model.feature_index`` order."""
    x = case.inputs
    batch = case.batch_size
    X = np.zeros((batch, max(end for _, end in model.feature_index.values())))
    for name, (start, end) in model.feature_index.items():
        X[:, start:end] = np.asarray(x[name], dtype=np.float64).reshape(batch, end - start)
    return torch.tensor(X, dtype=dtype, requires_grad=True)


# -- running -------------------------------------------------------------------------------------
def _grads(module, names, case):
    """``{npctr path: gradient}`` of every parameter, in npctr's layout."""
    out = {}
    for name, p in module.named_parameters():
        path, layout, shape = names[name]
        g = np.zeros(shape) if p.grad is None else p.grad.detach().numpy()
        out[path] = g.T if layout == LINEAR else g.reshape(shape) if layout == ALPHA else g
    return out


def run(case):
    import torch
    dtype = torch.float64 if case.dtype == "float64" else torch.float32
    target = case.build("float64")
    spec = torch_spec(target)
    names = {name: (path, layout, target._lookup(path).shape) for path, (name, layout) in spec.items()}
    module = _din(case) if case.kind == "din" else _module(case)
    module = module.double() if case.dtype == "float64" else module.float()
    _load(module, case, torch)
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    g = torch.from_numpy(case.upstream).to(dtype)
    results, notes = {}, []

    def call():
        if case.kind == "din":
            X = _X(module, case, torch, dtype)
            return module(X), {"X": X}
        if case.kind == "dnn":
            x = torch.tensor(case.inputs["x"], dtype=dtype, requires_grad=True)
            return module(x), {"x": x}
        q = torch.tensor(case.inputs["query"], dtype=dtype, requires_grad=True)
        k = torch.tensor(case.inputs["keys"], dtype=dtype, requires_grad=True)
        if case.kind == "lau":
            return module(q, k), {"query": q, "keys": k}
        if case.config["supports_masking"]:
            return module(q, k, None, mask=torch.from_numpy(case.inputs["mask"])), {"query": q, "keys": k}
        return module(q, k, torch.from_numpy(case.inputs["keys_length"].astype(np.int64))), {"query": q, "keys": k}

    def input_grads(tensors, mode):
        if case.kind != "din":
            for name, t in tensors.items():
                results[f"{mode}/grad_input/{name}"] = t.grad.detach().numpy()
            return
        if not target.dense_columns:
            return
        grad = tensors["X"].grad.detach().numpy()
        for fc in target.dense_columns:
            start, end = module.feature_index[fc.name]
            results[f"{mode}/grad_input/{fc.name}"] = grad[:, start:end].reshape(case.inputs[fc.name].shape)

    for mode, training in (("infer", False), ("train", True)):
        module.load_state_dict(initial)
        module.zero_grad(set_to_none=True)
        module.train(training)
        out, tensors = call()
        results[f"{mode}/output"] = out.detach().numpy().reshape(case.reference[f"{mode}/output"].shape)
        (out.reshape(g.shape) * g).sum().backward()
        input_grads(tensors, mode)
        for path, grad in _grads(module, names, case).items():
            results[f"{mode}/grad_weight/{path}"] = grad
        if training:
            for name, value in module.state_dict().items():
                if name in names and names[name][0] in target.state:
                    results[f"train/moving/{names[name][0]}"] = value.numpy().copy()
            if case.kind != "din":
                results["loss/value"] = np.array(float((out.detach().reshape(g.shape) * g).sum()))
    if case.kind == "din":
        module.load_state_dict(initial)
        module.zero_grad(set_to_none=True)
        module.train()
        X = _X(module, case, torch, dtype)
        y_pred = module(X).squeeze(-1)
        y = torch.from_numpy(case.inputs["y"]).to(dtype)
        total = module.loss_func(y_pred, y, reduction="sum") + module.get_regularization_loss() + module.aux_loss
        total.backward()
        for path, grad in _grads(module, names, case).items():
            results[f"loss/grad_weight/{path}"] = grad
        if case.dtype == "float32":
            results["loss/value"] = np.array(float(total.detach().reshape(())), dtype=np.float32)
        else:
            notes.append(f"loss/value left out: DeepCTR-Torch's total loss is {total.dtype} in a float64 model "
                         "(get_regularization_loss accumulates into torch.zeros((1,))); its gradients are compared")
    return results, notes
