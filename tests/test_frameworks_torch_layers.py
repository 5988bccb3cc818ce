"""Single DeepCTR-Torch layers (tests/data/frameworks/torch/layer_*) against npctr's layers with
``conventions="torch"``: outputs, input and weight gradients in inference and training mode,
running statistics after one training call; 1e-12 relative (normwise) in float64.
"""
import numpy as np
import pytest

from npctr import (DNN, Dice, LocalActivationUnit, PredictionLayer, AttentionSequencePoolingLayer,
                   BatchNormalization)
from framework_util import cases, load, mapping, to_npctr, rel_error, layer_of, layer_scales, tolerance

LAYER_CASES = cases("layer", "torch")


def _act(name):
    return {"Dice": "dice"}.get(name, name)


def build(meta):
    cls, args = meta["model"]["class"].rsplit(".", 1)[-1], meta["model"]["args"]
    kw = dict(dtype=meta["dtype"], conventions="torch")
    if cls == "BatchNorm1d":
        return BatchNormalization(**kw)
    if cls == "Dice":
        return Dice(**kw)
    if cls == "DNN":
        return DNN(tuple(args["hidden_units"]), activation=_act(args["activation"]), use_bn=args["use_bn"], **kw)
    if cls == "LocalActivationUnit":
        return LocalActivationUnit(tuple(args["hidden_units"]), activation=_act(args["activation"]), **kw)
    if cls == "AttentionSequencePoolingLayer":
        return AttentionSequencePoolingLayer(tuple(args["att_hidden_units"]), _act(args["att_activation"]),
                                             weight_normalization=args["weight_normalization"],
                                             return_score=args["return_score"], **kw)
    if cls == "PredictionLayer":
        return PredictionLayer(args["task"], use_bias=args["use_bias"], **kw)
    raise AssertionError(cls)


def inputs_of(data, meta):
    names = list(meta["inputs"])
    if "keys_length" in names:
        return [data["in_query"], data["in_keys"], data["in_keys_length"]], ["query", "keys", None]
    if "user_behavior" in names:
        return [data["in_query"], data["in_user_behavior"]], ["query", "user_behavior"]
    return data["in_x"], ["x"]


@pytest.mark.parametrize("file", LAYER_CASES)
def test_torch_layer(file):
    data, meta = load(file)
    tol = tolerance(meta["dtype"])
    layer = build(meta)
    inputs, grad_names = inputs_of(data, meta)
    layer.forward(inputs, training=False)                 # build
    arrays = {**layer.params, **layer.state}
    layer.set_weights({p: to_npctr(data["w/" + n], t, arrays[p].shape) for n, p, t in mapping(data)})
    for mode, training in (("infer", False), ("train", True)):
        out = layer.forward(inputs, training=training, backprop=True)
        assert rel_error(out, data[f"out_{mode}"].reshape(out.shape)) <= tol, f"out_{mode}"
        d_in = layer.backward(data["upstream"].reshape(out.shape))
        d_in = d_in if isinstance(d_in, list) else [d_in]
        for g, n in zip(d_in, grad_names):
            if n is not None:
                assert rel_error(g, data[f"grad_{mode}_in_{n}"]) <= tol, f"grad_{mode}_in_{n}"
        grads = layer.grads
        recorded = {p: to_npctr(data[f"grad_{mode}/{n}"], t, grads[p].shape)
                    for n, p, t in mapping(data) if p in grads}
        assert sorted(recorded) == sorted(grads)
        scales = layer_scales(recorded)
        for p, expected in recorded.items():
            err = rel_error(grads[p], expected)
            if np.max(np.abs(expected)) <= 1e3 * np.finfo(meta["dtype"]).eps * scales[layer_of(p)]:
                err = rel_error(grads[p], expected, scale=scales[layer_of(p)])   # exactly zero
            assert err <= tol, f"grad_{mode}/{p}: {err:.3g}"
    state = layer.state
    for n, p, t in mapping(data):
        if p in state:
            assert rel_error(state[p], to_npctr(data["after_train/" + n], t, state[p].shape)) <= tol, p
