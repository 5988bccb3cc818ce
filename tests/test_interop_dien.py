"""DIEN's weights in and out of npctr by the frameworks' names (the recorded names are in
test_frameworks_dien.py; here the naming rules themselves): Keras's ``dnn`` / ``dnn_1`` when the auxiliary
network exists, the table owned by the last VarLenSparseFeat sharing an embedding_name, the untracked
``gru2/...`` of AGRU/AUGRU, session-numbered names; DeepCTR-Torch's module names, ``(out, in)`` weights and
the tied AUGRU bias; standalone ``DynamicGRU`` / ``AuxiliaryLoss``; clear errors."""
import numpy as np
import pytest

from npctr import DynamicGRU, AuxiliaryLoss
from npctr.interop import (load_keras_weights, to_keras_weights, keras_spec, load_torch_state_dict,
                           to_torch_state_dict, map_torch_names)
from test_dien_model import make, inputs


def _fresh_copy(model):
    other = make(model.gru_type, model.use_negsampling, model.conventions.name, seed=99)
    assert not np.array_equal(other.params["gru1/" + sorted(model.get_layer("gru1").params)[0]],
                              model.params["gru1/" + sorted(model.get_layer("gru1").params)[0]])
    return other


@pytest.mark.parametrize("gru_type,negatives", [("GRU", False), ("AUGRU", True), ("AGRU", True), ("AIGRU", False)])
def test_keras_names_and_round_trip(gru_type, negatives):
    model = make(gru_type, negatives, "tf_keras")
    weights = to_keras_weights(model)
    names = set(weights)
    main, table = ("dnn_1", "sparse_seq_emb_neg_hist_item_id") if negatives else ("dnn", "sparse_seq_emb_hist_item_id")
    assert f"{main}/kernel0" in names and f"{table}/embeddings" in names
    assert ("dnn/kernel2" in names) == negatives                      # the auxiliary network: Keras's first DNN
    cell = "gru2/gates/kernel" if gru_type in ("AGRU", "AUGRU") else "gru2/gru_cell/gates/kernel"
    assert {"gru1/gru_cell/gates/kernel", "gru1/gru_cell/candidate/bias", cell} <= names
    assert "attention_sequence_pooling_layer/local_activation_unit/dnn/dice/dice_alpha" in names
    other = _fresh_copy(model)
    load_keras_weights(other, {k + ":0": v for k, v in weights.items()})
    x = inputs(negatives=negatives)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_keras_session_numbered_names_load_by_structure():
    """A Keras session numbers repeated layers (dnn_7, gru_cell_3, dice_12): matched by rank, not number."""
    model = make("AUGRU", True, "tf_keras")
    renamed = {}
    for name, value in to_keras_weights(model).items():
        name = name.replace("dnn_1/", "dnn_8/", 1) if name.startswith("dnn_1/") else \
            name.replace("dnn/", "dnn_7/", 1) if name.startswith("dnn/") else name
        renamed[name.replace("gru_cell/", "gru_cell_3/").replace("dice/", "dice_12/")] = value
    other = _fresh_copy(model)
    load_keras_weights(other, renamed)
    for path, value in model.params.items():
        np.testing.assert_array_equal(other.params[path], value)
    assert sorted(to_keras_weights(other, like=list(renamed))) == sorted(renamed)


def test_keras_names_a_torch_layout_model_is_a_clear_error():
    with pytest.raises(TypeError, match="torch-layout GRU weights .* conventions='tf_keras'"):
        keras_spec(make("GRU", False, "torch"))


@pytest.mark.parametrize("gru_type,negatives", [("GRU", True), ("AUGRU", True), ("AGRU", False), ("AIGRU", False)])
def test_torch_names_and_round_trip(gru_type, negatives):
    model = make(gru_type, negatives, "torch")
    state = to_torch_state_dict(model, numpy=True)
    evolution = "interest_evolution.interest_evolution."
    if gru_type in ("AGRU", "AUGRU"):
        assert f"{evolution}rnn.weight_ih" in state and f"{evolution}rnn.bias_hh" in state
    else:
        assert f"{evolution}weight_ih_l0" in state
    assert state["interest_extractor.gru.weight_ih_l0"].shape == (3 * 4, 4)       # (out, in), blocks r|z|n
    assert ("interest_extractor.auxiliary_net.linears.2.weight" in state) == negatives
    assert {"linear.weight", "out.bias", "embedding_dict.item_id.weight"} <= set(state)
    if gru_type == "AUGRU":
        np.testing.assert_array_equal(state[evolution + "rnn.bias_ih"], state[evolution + "rnn.bias_hh"])
        assert map_torch_names(model, [evolution + "rnn.bias_hh"])[evolution + "rnn.bias_hh"] == "gru2/bias"
    other = _fresh_copy(model)
    load_torch_state_dict(other, state)
    x = inputs(negatives=negatives)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_torch_tied_bias_must_be_one_tensor():
    model = make("AUGRU", True, "torch")
    state = to_torch_state_dict(model, numpy=True)
    name = "interest_evolution.interest_evolution.rnn.bias_hh"
    state[name] = state[name] + 1.0
    before = model.params["gru2/bias"].copy()
    with pytest.raises(ValueError, match="are one tensor in DeepCTR-Torch's AUGRUCell"):
        load_torch_state_dict(model, state)
    np.testing.assert_array_equal(model.params["gru2/bias"], before)            # nothing written


def test_torch_names_a_keras_layout_model_is_a_clear_error():
    with pytest.raises(TypeError, match="Keras-layout GRU weights .* conventions='torch'"):
        to_torch_state_dict(make("GRU", False, "tf_keras"), numpy=True)


def test_standalone_layers():
    x, lengths, att = np.random.default_rng(0).standard_normal((3, 4, 2)), np.array([[0], [2], [4]]), \
        np.full((3, 4, 1), 0.5)
    for conventions, gru_type in (("tf_keras", "AUGRU"), ("tf_keras", "GRU"), ("torch", "AUGRU"), ("torch", "GRU")):
        layer = DynamicGRU(2, gru_type, conventions=conventions, seed=1)
        inputs_ = [x, lengths] + ([att] if gru_type == "AUGRU" else [])
        out = layer.forward(inputs_)
        copy = DynamicGRU(2, gru_type, conventions=conventions, seed=2)
        copy.forward(inputs_)
        if conventions == "torch":
            state = to_torch_state_dict(layer, numpy=True)
            assert ("rnn.weight_ih" if gru_type == "AUGRU" else "weight_ih_l0") in state
            load_torch_state_dict(copy, state)
        else:
            weights = to_keras_weights(layer)
            assert ("dynamic_gru/gates/kernel" if gru_type == "AUGRU" else "dynamic_gru/gru_cell/gates/kernel") \
                in weights
            load_keras_weights(copy, weights)
        np.testing.assert_array_equal(copy.forward(inputs_), out)
    aux = AuxiliaryLoss((3, 1))
    aux.forward([x, x, x, lengths])
    assert sorted(to_keras_weights(aux)) == ["dnn/bias0", "dnn/bias1", "dnn/kernel0", "dnn/kernel1"]
    assert "dnn.linears.1.weight" in to_torch_state_dict(aux, numpy=True)


class _Variable:
    """A stand-in for a tf.Variable: a name and a value."""

    def __init__(self, name, value):
        self.name, self._value = name, np.asarray(value)

    def numpy(self):
        return self._value


def test_live_keras_model_gives_its_untracked_agru_variables():
    """DeepCTR-TF's AGRU/AUGRU cell variables are not in model.weights; read from the cell (duck-typed,
    no TensorFlow needed; tools/live_check_dien_tf.py does it on the real model)."""
    from types import SimpleNamespace
    model = make("AUGRU", True, "tf_keras")
    weights = to_keras_weights(model)
    untracked = {k: v for k, v in weights.items() if k.startswith("gru2/")}
    tracked = [_Variable(k + ":0", v) for k, v in weights.items() if k not in untracked]
    cell = SimpleNamespace(
        _gate_linear=SimpleNamespace(_weights=_Variable("gru2/gates/kernel:0", untracked["gru2/gates/kernel"]),
                                     _biases=_Variable("gru2/gates/bias:0", untracked["gru2/gates/bias"])),
        _candidate_linear=SimpleNamespace(
            _weights=_Variable("gru2/candidate/kernel:0", untracked["gru2/candidate/kernel"]),
            _biases=_Variable("gru2/candidate/bias:0", untracked["gru2/candidate/bias"])))
    keras_model = SimpleNamespace(weights=tracked, get_layer=lambda name: SimpleNamespace(gru_cell=cell))
    other = _fresh_copy(model)
    load_keras_weights(other, keras_model)
    np.testing.assert_array_equal(other.params["gru2/gates_kernel"], model.params["gru2/gates_kernel"])
    assert sorted(to_keras_weights(other, like=keras_model)) == sorted(k + ":0" for k in weights)

