"""npctr.interop.torch: DeepCTR-Torch ``state_dict`` names and layouts, without torch.

The names are DeepCTR-Torch 0.3.0's (``state_dict()`` of ``deepctr_torch.models.DIN`` with the
columns of tests/test_interop_keras.py, printed by the real package); the live check against
the package itself is tests/test_interop_live.py.
"""
import numpy as np
import pytest

from npctr import DNN, Dice, LocalActivationUnit
from npctr.interop import load_torch_state_dict, to_torch_state_dict, torch_spec
from npctr.models import DNNModel

from test_interop_keras import din_columns, make_din, randomize

# deepctr_torch.models.DIN(din_columns(), ['item_id', 'cate_id'], dnn_hidden_units=(4, 4),
# dnn_use_bn=True, att_hidden_size=(8, 4)).state_dict(): name -> shape
TORCH_DIN = {
    "embedding_dict.user.weight": (3, 10), "embedding_dict.gender.weight": (2, 4),
    "embedding_dict.item_id.weight": (4, 8), "embedding_dict.cate_id.weight": (3, 4), "out.bias": (1,),
    "attention.local_att.dnn.linears.0.weight": (8, 48), "attention.local_att.dnn.linears.0.bias": (8,),
    "attention.local_att.dnn.linears.1.weight": (4, 8), "attention.local_att.dnn.linears.1.bias": (4,),
    "attention.local_att.dnn.activation_layers.0.alpha": (8, 1),
    "attention.local_att.dnn.activation_layers.0.bn.weight": (8,),
    "attention.local_att.dnn.activation_layers.0.bn.bias": (8,),
    "attention.local_att.dnn.activation_layers.0.bn.running_mean": (8,),
    "attention.local_att.dnn.activation_layers.0.bn.running_var": (8,),
    "attention.local_att.dnn.activation_layers.0.bn.num_batches_tracked": (),
    "attention.local_att.dnn.activation_layers.1.alpha": (4, 1),
    "attention.local_att.dnn.activation_layers.1.bn.weight": (4,),
    "attention.local_att.dnn.activation_layers.1.bn.bias": (4,),
    "attention.local_att.dnn.activation_layers.1.bn.running_mean": (4,),
    "attention.local_att.dnn.activation_layers.1.bn.running_var": (4,),
    "attention.local_att.dnn.activation_layers.1.bn.num_batches_tracked": (),
    "attention.local_att.dense.weight": (1, 4), "attention.local_att.dense.bias": (1,),
    "dnn.linears.0.weight": (4, 39), "dnn.linears.0.bias": (4,), "dnn.linears.1.weight": (4, 4),
    "dnn.linears.1.bias": (4,),
    "dnn.bn.0.weight": (4,), "dnn.bn.0.bias": (4,), "dnn.bn.0.running_mean": (4,), "dnn.bn.0.running_var": (4,),
    "dnn.bn.0.num_batches_tracked": (),
    "dnn.bn.1.weight": (4,), "dnn.bn.1.bias": (4,), "dnn.bn.1.running_mean": (4,), "dnn.bn.1.running_var": (4,),
    "dnn.bn.1.num_batches_tracked": (),
    "dnn_linear.weight": (1, 4)}
DICE_AFFINE = [n for n in TORCH_DIN if ".activation_layers." in n and (n.endswith("bn.weight")
                                                                        or n.endswith("bn.bias"))]


def _snapshot(model):
    return {p: model._lookup(p).copy() for p in model.weight_names()}


def _assert_same(a, b):
    for path in a.weight_names():
        np.testing.assert_array_equal(b._lookup(path), a._lookup(path))


def test_din_state_dict_names_and_layouts():
    """Every DeepCTR-Torch name but Dice's affine BN (npctr's default Dice has none) has its
    npctr weight, in Torch's layout."""
    model = randomize(make_din(), 1)
    sd = to_torch_state_dict(model, numpy=True)
    expected = {n: s for n, s in TORCH_DIN.items() if n not in DICE_AFFINE}
    assert {n: v.shape for n, v in sd.items()} == expected
    np.testing.assert_array_equal(sd["dnn.linears.0.weight"], model._lookup("dnn/kernel0").T)
    np.testing.assert_array_equal(sd["attention.local_att.dnn.activation_layers.1.alpha"][:, 0],
                                  model._lookup("attention_sequence_pooling_layer/local_att/dnn/"
                                                "activation1/dice_alpha"))
    np.testing.assert_array_equal(sd["dnn.bn.1.running_var"], model._lookup("dnn/bn1/moving_variance"))
    np.testing.assert_array_equal(sd["embedding_dict.item_id.weight"], model._lookup("sparse_emb_item_id/embeddings"))
    np.testing.assert_array_equal(sd["out.bias"], model._lookup("prediction_layer/global_bias"))
    assert sd["dnn.bn.0.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("model_fn", [make_din, lambda: make_din(dnn_use_bn=False, att_activation="sigmoid"),
                                      lambda: DNNModel(din_columns(), dnn_hidden_units=(4, 3), dnn_use_bn=True)])
def test_round_trip_through_a_state_dict_is_exact(model_fn):
    source, target = randomize(model_fn(), 2), model_fn()
    load_torch_state_dict(target, to_torch_state_dict(source, numpy=True))
    _assert_same(source, target)


def test_a_full_deepctr_torch_state_dict_needs_dice_affine_bn():
    model = make_din()
    before = _snapshot(model)
    rng = np.random.default_rng(3)
    sd = {n: rng.uniform(0.5, 1.5, s) for n, s in TORCH_DIN.items()}
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, sd)
    message = str(info.value)
    for name in DICE_AFFINE:
        assert name in message
    assert "num_batches_tracked" not in message.split("expected")[0]     # always ignored
    for path, value in before.items():
        np.testing.assert_array_equal(model._lookup(path), value)
    # without the affine parameters everything loads, in npctr's layouts (a default-profile DIN:
    # DeepCTR-Torch's weights need the override, issue 19)
    load_torch_state_dict(model, {n: v for n, v in sd.items() if n not in DICE_AFFINE}, check_conventions=False)
    np.testing.assert_array_equal(model._lookup("dnn/kernel0"), sd["dnn.linears.0.weight"].T)
    np.testing.assert_array_equal(model._lookup("dense/kernel"), sd["dnn_linear.weight"].T)
    np.testing.assert_array_equal(model._lookup("attention_sequence_pooling_layer/local_att/dnn/activation0/"
                                                "dice_alpha"),
                                  sd["attention.local_att.dnn.activation_layers.0.alpha"][:, 0])


@pytest.mark.parametrize("layer_fn,shape", [
    (lambda: DNN((5, 3), activation="dice", use_bn=True), (None, 6)),
    (lambda: LocalActivationUnit((6, 4), activation="dice"), [(None, 1, 4), (None, 5, 4)]),
    (lambda: Dice(), (None, 5)),
])
def test_layer_round_trips(layer_fn, shape):
    source, target = layer_fn(), layer_fn()
    source.build(shape), target.build(shape)
    randomize(source, 4)
    sd = to_torch_state_dict(source, numpy=True)
    load_torch_state_dict(target, sd)
    _assert_same(source, target)
    assert set(torch_spec(source)) == set(source.weight_names())


def test_lau_names():
    lau = LocalActivationUnit((6, 4), activation="dice")
    lau.build([(None, 1, 4), (None, 5, 4)])
    sd = to_torch_state_dict(lau, numpy=True)
    assert sd["dense.weight"].shape == (1, 4) and sd["dnn.linears.0.weight"].shape == (6, 16)
    assert sd["dnn.activation_layers.0.alpha"].shape == (6, 1)          # Dice on a 3-D input: dim=3


def test_prefix_and_bad_input():
    din = randomize(make_din(), 5)
    sd = to_torch_state_dict(din, numpy=True)
    lau = LocalActivationUnit((8, 4), activation="dice")
    lau.build([(None, 1, 12), (None, 4, 12)])
    load_torch_state_dict(lau, sd, prefix="attention.local_att")
    np.testing.assert_array_equal(lau._lookup("kernel"),
                                  din._lookup("attention_sequence_pooling_layer/local_att/kernel"))
    model = make_din()
    before = _snapshot(model)
    bad = dict(sd)
    bad["dnn.linears.0.weight"] = bad["dnn.linears.0.weight"][:, :-1]
    with pytest.raises(ValueError, match=r"wrong shapes.*dnn.linears.0.weight"):
        load_torch_state_dict(model, bad)
    with pytest.raises(ValueError, match="dnn.linears.7.weight"):
        load_torch_state_dict(model, {**sd, "dnn.linears.7.weight": np.zeros((4, 4))}, strict=False)
    with pytest.raises(TypeError, match="never by position"):
        load_torch_state_dict(model, list(sd.values()))
    with pytest.raises(TypeError, match="numeric"):
        load_torch_state_dict(model, {**sd, "out.bias": np.array(["a"])})
    for path, value in before.items():
        np.testing.assert_array_equal(model._lookup(path), value)
    loaded = load_torch_state_dict(model, {"out.bias": np.array([0.25])}, strict=False, check_conventions=False)
    assert loaded == ["prediction_layer/global_bias"]


def test_pt_files_need_torch(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04not really a pickle")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="weights_only=True"):
            load_torch_state_dict(make_din(), path)
    else:
        with pytest.raises(ValueError, match="not a state_dict file"):
            load_torch_state_dict(make_din(), path)
