"""Importers refuse what would load silently wrong (issue 19, points 5, 6 and 7).

5. tf.keras 2's ``.weights.h5`` of a DIN names its tables by class: mapped by shape when that is
   unambiguous, refused (naming the formats that work) when it is not.

6. DeepCTR-Torch weights into a model of another conventions profile, or Keras weights into a
   ``conventions="torch"`` model: the numbers would differ (by ~1e-2 and ~1e-4 on the recorded DINs),
   so the importer refuses, naming the profile to use; ``check_conventions=False`` loads anyway, and a
   dict npctr exported is judged by the profile it came from.
7. DeepCTR-Torch's ``prelu`` (one ``nn.PReLU()`` per layer, a single shared alpha) has no npctr
   equivalent: refused with an error that says so, the model unchanged.
"""
from pathlib import Path

import numpy as np
import pytest

from npctr.interop import load_keras_weights, load_torch_state_dict, to_keras_weights, to_torch_state_dict
from npctr.layers import DNN
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.models import DIN, DNNModel

from framework_util import features, load, mapping, npctr_din
from test_interop_keras import din_columns

TORCH_FILE = "torch/din_sig_embl2_f64.npz"       # no Dice: every name matches in either profile
KERAS_FILE = "tf_keras/din_sig_embl2_f64.npz"


def recorded_source(file):
    """The recording's weights under the framework's own names, as a plain dict."""
    data, meta = load(file)
    return {str(name): data[f"w/{name}"] for name, path, _ in mapping(data)}, data, meta


def snapshot(model):
    return {p: model._lookup(p).copy() for p in model.weight_names()}


def test_deepctr_torch_weights_need_the_torch_profile():
    source, data, meta = recorded_source(TORCH_FILE)
    x = features(data)
    model = npctr_din(meta, conventions=None)                  # the default profile, tf_keras
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"DeepCTR-Torch weights.*'tf_keras' profile.*conventions='torch'.*"
                                         r"check_conventions=False"):
        load_torch_state_dict(model, source)
    for path, value in before.items():
        np.testing.assert_array_equal(model._lookup(path), value)
    load_torch_state_dict(model, source, check_conventions=False)       # the override loads
    right = npctr_din(meta, conventions="torch")
    load_torch_state_dict(right, source)
    assert np.max(np.abs(right.predict(x) - data["out_infer"])) <= 1e-12
    # with Dice and BN the names differ too (DeepCTR-Torch's Dice BN is affine): the error says why first
    dice_source, dice_data, dice_meta = recorded_source("torch/din_dice_embl2_f64.npz")
    with pytest.raises(ValueError, match=r"do not match DIN 'din' by name\.\n  load_torch_state_dict: these are "
                                         r"DeepCTR-Torch weights.*conventions='torch'(.|\n)*bn\.weight"):
        load_torch_state_dict(npctr_din(dice_meta, conventions=None), dice_source)
    # why: loaded anyway (without the affine parameters), the default profile predicts far off DeepCTR-Torch
    model = npctr_din(dice_meta, conventions=None)
    load_torch_state_dict(model, {k: v for k, v in dice_source.items() if ".bn.weight" not in k
                                  and ".bn.bias" not in k or k.startswith("dnn.bn.")}, check_conventions=False)
    assert np.max(np.abs(model.predict(features(dice_data)) - dice_data["out_infer"])) > 1e-3


def test_keras_weights_need_a_keras_profile():
    source, data, meta = recorded_source(KERAS_FILE)
    x = features(data)
    model = npctr_din(meta, conventions="torch")
    with pytest.raises(ValueError, match=r"DeepCTR \(Keras\) weights.*'torch' profile.*"
                                         r"conventions='tf_keras' or conventions='keras3'"):
        load_keras_weights(model, source)
    load_keras_weights(model, source, check_conventions=False)
    for profile in ("tf_keras", "keras3"):
        right = npctr_din(meta, conventions=profile)
        load_keras_weights(right, source)
        assert np.max(np.abs(right.predict(x) - data["out_infer"])) <= 1e-12
    # why: a torch-profile DIN with BN and Dice, loaded anyway, predicts off DeepCTR's
    dice_source, dice_data, dice_meta = recorded_source("tf_keras/din_dice_embl2_f64.npz")
    model = npctr_din(dice_meta, conventions="torch")
    with pytest.raises(ValueError, match="conventions='tf_keras' or conventions='keras3'"):
        load_keras_weights(model, dice_source, strict=False)
    load_keras_weights(model, dice_source, strict=False, check_conventions=False)
    assert np.max(np.abs(model.predict(features(dice_data)) - dice_data["out_infer"])) > 1e-5


def test_npctrs_own_exports_are_judged_by_their_profile():
    a, b = DNNModel(din_columns(), dnn_hidden_units=(4,), dnn_use_bn=True), \
        DNNModel(din_columns(), dnn_hidden_units=(4,), dnn_use_bn=True)
    load_torch_state_dict(b, to_torch_state_dict(a, numpy=True))          # tf_keras -> tf_keras by torch names
    load_keras_weights(b, to_keras_weights(a))
    torch_model = DNNModel(din_columns(), dnn_hidden_units=(4,), dnn_use_bn=True, conventions="torch")
    with pytest.raises(ValueError, match="exported by npctr from a model of the 'tf_keras' conventions profile"):
        load_torch_state_dict(torch_model, to_torch_state_dict(a, numpy=True))
    with pytest.raises(ValueError, match="exported by npctr from a model of the 'torch' conventions profile"):
        load_keras_weights(a, to_keras_weights(torch_model, like=to_keras_weights(a)))


def test_a_layer_whose_numbers_do_not_depend_on_the_profile_loads_from_either():
    plain = DNN((3,), activation="relu")
    plain.build((None, 4))
    torch_like = dict(to_torch_state_dict(plain, numpy=True))            # a plain dict: DeepCTR-Torch's
    load_torch_state_dict(plain, torch_like)
    with_bn = DNN((3,), activation="relu", use_bn=True)
    with_bn.build((None, 4))
    with pytest.raises(ValueError, match="conventions='torch'"):
        load_torch_state_dict(with_bn, dict(to_torch_state_dict(with_bn, numpy=True)))


def test_deepctr_torch_prelu_is_refused_with_the_reason():
    model = DNNModel(din_columns(), dnn_hidden_units=(4, 3), dnn_activation="prelu", conventions="torch")
    state = dict(to_torch_state_dict(model, numpy=True))
    assert state["dnn.activation_layers.0.weight"].shape == (4,)
    state["dnn.activation_layers.0.weight"] = np.array([0.25])          # nn.PReLU(): one shared alpha
    state["dnn.activation_layers.1.weight"] = np.array([0.25])
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'dnn.activation_layers.0.weight' has shape \(1,\).*one nn.PReLU\(\) "
                                         r"per layer.*one alpha per unit \(4,\)"):
        load_torch_state_dict(model, state)
    for path, value in before.items():
        np.testing.assert_array_equal(model._lookup(path), value)


KERAS_FILES = Path(__file__).parent / "data" / "keras_files"


def keras_file_din(vocab_item, vocab_cate):
    hist = [VarLenSparseFeat(SparseFeat(f"hist_{n}", v, 4, embedding_name=n), maxlen=5, length_name="seq_length")
            for n, v in (("item_id", vocab_item), ("cate_id", vocab_cate))]
    return DIN([SparseFeat("item_id", vocab_item, 4), SparseFeat("cate_id", vocab_cate, 4), DenseFeat("pay_score", 1)]
               + hist, ["item_id", "cate_id"], dnn_hidden_units=(8, 4), att_hidden_size=(8, 4),
               att_activation="sigmoid", dnn_use_bn=True)


def test_a_tf_keras_2_weights_h5_of_a_din_loads_by_structure():
    """Issue 19 point 5: tf.keras 2's ``.weights.h5`` names the tables' groups ``embedding``,
    ``embedding_1``; a table whose shape is its model's only one of that shape is named by it."""
    pytest.importorskip("h5py")
    model = keras_file_din(100, 5)
    load_keras_weights(model, KERAS_FILES / "din_tables.weights.h5")
    with np.load(KERAS_FILES / "din_tables.npz") as data:
        x = {k[2:]: data[k] for k in data.files if k.startswith("x/")}
        np.testing.assert_allclose(model.predict(x), data["out"], rtol=1e-12, atol=0)
    # two tables of one shape: refused, saying which formats work, the model unchanged
    same = keras_file_din(6, 6)
    before = snapshot(same)
    with pytest.raises(ValueError, match=r"names the model's embedding layers by class.*cannot be known.*"
                                         r"save_weights\('x\.h5'\).*model\.save\('x\.keras'\).*live Keras model"):
        load_keras_weights(same, KERAS_FILES / "din_same_shapes.weights.h5")
    for path, value in before.items():
        np.testing.assert_array_equal(same._lookup(path), value)
