"""The whole DIEN: float64 central differences (five-point, to 1e-7 relative) of every weight and dense input
of the training objective
(the outputs and ``alpha`` x the auxiliary loss, through ``backward`` + ``add_auxiliary_grads``), every
``gru_type`` with and without negative sampling, both profiles, lengths 0..T in each batch, Dice's batch
statistics in the attention; hypothesis properties (shapes; a row's result does not depend on its padding
ids, nor in inference mode on the other rows; a length-0 history); the objective's parts; training,
saving, freezing; clear errors for bad input.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import npctr
from npctr import assert_gradients_ok
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from npctr.models import DIEN
import npctr.models.dien as dien_module

T = 4
LENGTHS = np.array([0, 1, 2, 3, 4, 4])
B = len(LENGTHS)


def columns(negatives=True, pooled=True):
    cols = [SparseFeat("user", 4, 2), SparseFeat("item_id", 7, 2), SparseFeat("cate_id", 5, 2), DenseFeat("pay", 1),
            VarLenSparseFeat(SparseFeat("hist_item_id", 7, 2, embedding_name="item_id"), T, length_name="seq_length"),
            VarLenSparseFeat(SparseFeat("hist_cate_id", 5, 2, embedding_name="cate_id"), T, length_name="seq_length")]
    if negatives:
        cols += [VarLenSparseFeat(SparseFeat("neg_hist_item_id", 7, 2, embedding_name="item_id"), T,
                                  length_name="seq_length"),
                 VarLenSparseFeat(SparseFeat("neg_hist_cate_id", 5, 2, embedding_name="cate_id"), T,
                                  length_name="seq_length")]
    if pooled:       # pooled into the DNN by DeepCTR-TF, ignored by DeepCTR-Torch's DIEN
        cols.append(VarLenSparseFeat(SparseFeat("tags", 5, 2), 3, length_name="tags_len"))
    return cols


def inputs(seed=0, batch=B, lengths=LENGTHS, garbage=True, negatives=True):
    """Ids in 1..vocab-1 before the length; past it, random ids (``garbage``) or 0."""
    rng = np.random.default_rng(seed)
    valid = np.arange(T) < np.asarray(lengths)[:, None]
    x = {"user": rng.integers(0, 4, batch), "item_id": rng.integers(1, 7, batch), "cate_id": rng.integers(1, 5, batch),
         "pay": rng.standard_normal(batch), "seq_length": np.asarray(lengths), "tags": rng.integers(0, 5, (batch, 3)),
         "tags_len": rng.integers(0, 4, batch)}
    for name, vocab in (("item_id", 7), ("cate_id", 5)):
        for prefix in ("hist_", "neg_hist_"):
            ids, junk = rng.integers(1, vocab, (batch, T)), rng.integers(0, vocab, (batch, T))
            x[prefix + name] = np.where(valid, ids, junk if garbage else 0)
    return x if negatives else {k: v for k, v in x.items() if not k.startswith("neg_")}


def make(gru_type="AUGRU", negatives=True, conventions="tf_keras", seed=5, **kwargs):
    args = dict(dnn_hidden_units=(3,), att_hidden_units=(3,), att_activation="dice", alpha=0.7,
                l2_reg_embedding=0.0, seed=seed)
    args.update(kwargs)
    model = DIEN(columns(negatives), ["item_id", "cate_id"], gru_type=gru_type, use_negsampling=negatives,
                 conventions=conventions, **args)
    rng = np.random.default_rng(seed)
    for path, w in model.params.items():          # generic weights: every path carries a gradient
        w[...] = (1.0 + 0.3 * rng.standard_normal(w.shape)) if path.endswith("gamma") else \
            0.7 * rng.standard_normal(w.shape)
    for path, w in model.state.items():
        w[...] = rng.uniform(0.5, 1.5, w.shape) if path.endswith("variance") else 0.3 * rng.standard_normal(w.shape)
    return model


class Objective:
    """``[outputs, auxiliary_loss()]`` for the gradient checker: with an upstream of 1 on the last entry,
    ``sum(out * g) + alpha * aux`` is what ``backward(g)`` + ``add_auxiliary_grads()`` differentiate."""

    def __init__(self, model):
        self.model = model

    params = property(lambda self: self.model.params)
    grads = property(lambda self: self.model.grads)
    snapshot = property(lambda self: self.model.snapshot)
    restore = property(lambda self: self.model.restore)

    def forward(self, x, training=False, backprop=None):
        out = self.model.forward(x, training=training, backprop=backprop)
        return np.concatenate([out[:, 0], [self.model.auxiliary_loss()]])

    def backward(self, g):
        d_dense = self.model.backward(g[:-1, None])
        self.model.add_auxiliary_grads()
        return d_dense


CONFIGS = [(g, neg, conv) for g, (neg, conv) in zip(
    ["GRU", "AIGRU", "AGRU", "AUGRU"] * 2,
    [(True, "tf_keras")] * 4 + [(False, "torch")] * 2 + [(True, "torch")] * 2)]
CONFIGS[4], CONFIGS[6] = ("GRU", True, "torch"), ("AGRU", False, "torch")


@pytest.fixture
def small_auxiliary_network(monkeypatch):
    # the auxiliary network's sizes are DeepCTR's constants (100, 50, 1); a smaller one keeps the
    # central differences of every one of its weights affordable, and changes no equation
    monkeypatch.setattr(dien_module, "AUXILIARY_UNITS", (4, 3, 1))


@pytest.mark.parametrize("gru_type,negatives,conventions", CONFIGS)
def test_dien_gradients(gru_type, negatives, conventions, small_auxiliary_network):
    """Every weight and the dense input, training mode (Dice's batch statistics, over all rows or, as
    DeepCTR-Torch, the non-empty ones), lengths 0..T, padding ids that must not matter."""
    model = make(gru_type, negatives, conventions)
    x = inputs(negatives=negatives)
    upstream = np.r_[np.random.default_rng(1).standard_normal(B), 1.0]
    # the torch profile rounds the dense feature to float32 (dien_dense_float32): piecewise constant at a
    # 1e-6 step, so its input gradient (torch's: the rounding passed through) is checked under tf_keras
    check_inputs = not model.conventions.dien_dense_float32
    # the five-point stencil at a 1e-4 step: every array to 1e-7 relative, and an absolute floor far
    # below any real gradient for the ones that are exactly 0 (the attention's output bias under the
    # softmax, the unused tags table of the torch profile)
    results = assert_gradients_ok(Objective(model), x, training=True, upstream=upstream, check_inputs=check_inputs,
                                  order=4, eps=1e-4, rtol=1e-7, atol=1e-11)
    assert len(results) == len(model.params) + check_inputs
    if negatives:
        assert model.auxiliary_loss() != 0


def test_dien_gradients_unnormalized_attention_bn_and_pooled_dense(small_auxiliary_network):
    """Scores without the softmax (the attention's output bias now matters) and BN in the output DNN."""
    model = make("AUGRU", True, "tf_keras", att_weight_normalization=False, use_bn=True, att_activation="sigmoid")
    upstream = np.r_[np.random.default_rng(2).standard_normal(B), 1.0]
    assert_gradients_ok(Objective(model), inputs(), training=True, upstream=upstream, order=4, eps=1e-4,
                        rtol=1e-7, atol=1e-11)


def test_keras3_profile_is_tf_keras_for_dien_inference():
    a, b = make("AUGRU", True, "tf_keras"), make("AUGRU", True, "keras3")
    np.testing.assert_array_equal(a.predict(inputs()), b.predict(inputs()))


def test_wrong_auxiliary_gradient_is_caught(small_auxiliary_network, monkeypatch):
    model = make("AUGRU", True)
    monkeypatch.setattr(DIEN, "add_auxiliary_grads", lambda self: None)   # forget the auxiliary term
    upstream = np.r_[np.random.default_rng(1).standard_normal(B), 1.0]
    results = npctr.check_gradients(Objective(model), inputs(), training=True, upstream=upstream)
    assert not results["gru1/gates_kernel"].passed and not results["auxiliary_loss/dnn/kernel0"].passed


# -- the objective ----------------------------------------------------------------------------------
@pytest.mark.parametrize("conventions", ["tf_keras", "torch"])
def test_objective_is_data_plus_regularization_plus_alpha_aux(conventions):
    model = make("AGRU", True, conventions, l2_reg_embedding=0.01, l2_reg_dnn=0.1)
    x, y = inputs(), (np.arange(B) % 2).astype(float)
    model.compile("sgd")
    total, grads = model.loss_and_gradients(x, y)
    p = model.forward(x, training=True)
    parts = model.loss.value(y, p) + model.regularization_loss() + model.auxiliary_loss()
    assert total == pytest.approx(parts, rel=1e-13)
    assert model.auxiliary_loss() == 0.7 * model._aux_loss
    assert model.compute_loss(x, y, training=False) > 0                     # aux in inference mode too
    assert set(grads) == set(model.params) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert np.any(grads["auxiliary_loss/dnn/kernel0"])
    # DeepCTR-Torch's DNN never registers l2_reg_dnn
    dnn_l2 = model.get_layer("dnn")._l2_coefficients()
    assert (dnn_l2 == {}) == (conventions == "torch")


def test_backward_alone_differentiates_the_outputs_only():
    model = make("GRU", True)
    out = model.forward(inputs(), training=True)
    model.backward(np.ones_like(out))
    assert not any(np.any(g) for k, g in model.grads.items() if k.startswith("auxiliary_loss/"))
    before = {k: (g.to_dense() if hasattr(g, "to_dense") else np.array(g)) for k, g in model.grads.items()}
    model.add_auxiliary_grads()
    model.add_auxiliary_grads()                      # once per backward: the second call adds nothing
    after = {k: (g.to_dense() if hasattr(g, "to_dense") else np.array(g)) for k, g in model.grads.items()}
    assert np.any(after["auxiliary_loss/dnn/kernel0"]) and np.any(after["gru1/gates_kernel"]
                                                                  != before["gru1/gates_kernel"])
    assert np.array_equal(after["gru2/gru_cell/gates_kernel".replace("gru_cell/", "")],
                          before["gru2/gates_kernel"])                      # not on the auxiliary path


# -- properties -------------------------------------------------------------------------------------
MODELS = {(g, c): make(g, True, c) for g in ("GRU", "AIGRU", "AGRU", "AUGRU") for c in ("tf_keras", "torch")}


@given(st.sampled_from(sorted(MODELS)), st.integers(0, 2 ** 31 - 1), st.integers(1, 7), st.booleans())
def test_property_padding_ids_never_matter(key, seed, batch, training):
    """Ids past a row's length (histories and negatives) change nothing, in either mode (DeepCTR embeds
    them, DeepCTR-Torch never reads them: both mask by the length)."""
    model = MODELS[key]
    lengths = np.random.default_rng(seed).integers(0, T + 1, batch)
    x0, x1 = inputs(seed, batch, lengths, garbage=False), inputs(seed, batch, lengths, garbage=True)
    snap = model.snapshot()
    out0, aux0 = model.forward(x0, training=training), model.auxiliary_loss()
    model.restore(snap)
    out1, aux1 = model.forward(x1, training=training), model.auxiliary_loss()
    model.restore(snap)
    assert out0.shape == (batch, 1) and model.attention_scores.shape == (batch, 1, T)
    np.testing.assert_array_equal(out0, out1)
    assert aux0 == aux1


@given(st.sampled_from(sorted(MODELS)), st.integers(0, 2 ** 31 - 1), st.integers(2, 7))
def test_property_rows_are_independent_in_inference(key, seed, batch):
    model = MODELS[key]
    lengths = np.random.default_rng(seed).integers(0, T + 1, batch)
    x = inputs(seed, batch, lengths)
    out = model.predict(x, batch_size=batch)
    for i in (0, batch - 1):
        one = model.predict({k: v[i:i + 1] for k, v in x.items()})
        np.testing.assert_allclose(one, out[i:i + 1], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_length_zero_history_is_an_empty_interest(key):
    """A row of length 0: final interest 0, its history ids irrelevant, finite output (both frameworks
    accept it; DeepCTR-Torch crashes when EVERY row is empty, npctr does not)."""
    model = MODELS[key]
    x = inputs(3, 4, np.zeros(4, int))
    out = model.predict(x)
    np.testing.assert_allclose(model.forward(x), out, rtol=1e-13)
    assert np.all(np.isfinite(out)) and np.all(model.final_interest == 0)
    x2 = inputs(4, 4, np.zeros(4, int))
    x2.update({k: x[k] for k in ("user", "item_id", "cate_id", "pay", "tags", "tags_len")})
    np.testing.assert_array_equal(model.predict(x2), out)
    model.compile("adam")
    model.loss_and_gradients(x, np.ones(4))                 # an all-empty batch trains too (aux loss 0)


def test_predict_equals_forward_and_records_attention_for_every_row():
    model = MODELS[("AUGRU", "tf_keras")]
    x = inputs(9, 7, np.array([0, 4, 1, 2, 3, 4, 4]))
    out = model.forward(x)
    scores = model.attention_scores.copy()
    np.testing.assert_allclose(model.predict(x, batch_size=3), out, rtol=1e-13)
    np.testing.assert_allclose(model.predict(x), out, rtol=1e-13)                 # batch_size None: 32
    np.testing.assert_allclose(model.attention_scores, scores, rtol=1e-13)
    assert model.inference() is not None
    assert np.allclose(scores[0], 1 / T) and np.allclose(scores[1:].sum(-1), 1)   # TF: 1/T for length 0
    torch = MODELS[("AUGRU", "torch")]
    torch.forward(x)
    assert np.all(torch.attention_scores[0] == 0)          # DeepCTR-Torch never attends an empty row


# -- training, files, freezing ----------------------------------------------------------------------
def test_fit_save_load_and_frozen_evolving_gru(tmp_path):
    model = make("AUGRU", True, "torch")
    x, y = inputs(11, 24, np.random.default_rng(0).integers(0, T + 1, 24)), np.arange(24) % 2
    model.compile("adam")
    frozen = model.get_layer("gru2")
    frozen.trainable = False                        # DeepCTR-TF's fit: its AGRU/AUGRU variables never move
    before = {k: v.copy() for k, v in model.params.items()}
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert all(np.array_equal(before[k], v) for k, v in model.params.items() if k.startswith("gru2/"))
    assert not np.array_equal(before["gru1/kernel_ih"], model.params["gru1/kernel_ih"])
    model.save(tmp_path / "dien.npz")
    loaded = npctr.load_model(tmp_path / "dien.npz")
    assert isinstance(loaded, DIEN) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_float32_model_stays_float32():
    model = DIEN(columns(), ["item_id", "cate_id"], "AUGRU", use_negsampling=True, dnn_hidden_units=(3,),
                 att_hidden_units=(3,), dtype="float32")
    assert model.predict(inputs()).dtype == np.float32


def test_defaults_are_deepctrs():
    model = DIEN(columns(False), ["item_id", "cate_id"])
    assert (model.gru_type, model.use_negsampling, model.alpha, model.use_bn) == ("GRU", False, 1.0, False)
    assert model.dnn_hidden_units == (256, 128, 64) and model.att_hidden_units == (64, 16)
    assert (model.att_activation, model.att_weight_normalization) == ("dice", True)
    assert (model.l2_reg_dnn, model.l2_reg_embedding, model.dnn_dropout, model.seed) == (0, 1e-6, 0, 1024)
    assert model.conventions.name == "tf_keras" and "neg_hist_item_id" not in model.feature_names


# -- errors -----------------------------------------------------------------------------------------
def test_errors_name_the_argument_expected_and_got():
    cols = columns()
    with pytest.raises(ValueError, match="gru_type must be one of .*got 'LSTM'"):
        DIEN(cols, ["item_id", "cate_id"], gru_type="LSTM")
    with pytest.raises(TypeError, match="alpha must be a finite real number, got 'x'"):
        DIEN(cols, ["item_id", "cate_id"], alpha="x")
    with pytest.raises(TypeError, match="history_feature_list must be a list"):
        DIEN(cols, "item_id")
    with pytest.raises(ValueError, match=r"no VarLenSparseFeat named \['neg_hist_item_id', 'neg_hist_cate_id'\]"):
        DIEN(columns(False), ["item_id", "cate_id"], use_negsampling=True)
    short = [c if not isinstance(c, VarLenSparseFeat) or c.name == "tags" else c._replace(maxlen=1) for c in cols]
    with pytest.raises(ValueError, match="maxlen >= 2"):
        DIEN(short, ["item_id", "cate_id"], use_negsampling=True)
    no_length = [c._replace(length_name=None) if isinstance(c, VarLenSparseFeat) and c.name == "hist_cate_id" else c
                 for c in cols]
    with pytest.raises(ValueError, match="every history VarLenSparseFeat must have the same length_name"):
        DIEN(no_length, ["item_id", "cate_id"])
    swapped = cols[:4] + [cols[4], cols[5], cols[7], cols[6]]
    with pytest.raises(ValueError, match="must come in the order of the histories"):
        DIEN(swapped, ["item_id", "cate_id"], use_negsampling=True)
    with pytest.raises(ValueError, match="task must be 'binary' or 'regression'"):
        DIEN(cols, ["item_id", "cate_id"], task="multiclass")
    model = MODELS[("GRU", "tf_keras")]
    x = inputs()
    with pytest.raises(ValueError, match="seq_length.* must be >= 0"):
        model.predict({**x, "seq_length": -x["seq_length"] - 1})
    with pytest.raises(ValueError, match=r"hist_item_id.* must lie in \[0, 7\)"):
        model.predict({**x, "hist_item_id": x["hist_item_id"] + 7})
    with pytest.raises(ValueError, match="missing.*neg_hist_item_id"):
        model.predict({k: v for k, v in x.items() if k != "neg_hist_item_id"})


# -- DeepCTR's tests/models/DIEN_test.py, carried over --------------------------------------------------
def get_xy_fd(use_neg=False):
    """DeepCTR's DIEN test data (3 rows, histories of 4, the length feature ``seq_length``); DeepCTR's
    ``hash_flag`` is not supported by npctr (hash ids before the model)."""
    feature_columns = [SparseFeat("user", 3, embedding_dim=8), SparseFeat("gender", 2, embedding_dim=8),
                       SparseFeat("item", 3 + 1, embedding_dim=8), SparseFeat("item_gender", 2 + 1, embedding_dim=8),
                       DenseFeat("score", 1)]
    feature_columns += [
        VarLenSparseFeat(SparseFeat("hist_item", 3 + 1, embedding_dim=8, embedding_name="item"), maxlen=4,
                         length_name="seq_length"),
        VarLenSparseFeat(SparseFeat("hist_item_gender", 2 + 1, embedding_dim=8, embedding_name="item_gender"),
                         maxlen=4, length_name="seq_length")]
    behavior_feature_list = ["item", "item_gender"]
    feature_dict = {"user": np.array([0, 1, 2]), "gender": np.array([0, 1, 0]), "item": np.array([1, 2, 3]),
                    "item_gender": np.array([1, 2, 1]), "score": np.array([0.1, 0.2, 0.3]),
                    "hist_item": np.array([[1, 2, 3, 0], [1, 2, 3, 0], [1, 2, 0, 0]]),
                    "hist_item_gender": np.array([[1, 1, 2, 0], [2, 1, 1, 0], [2, 1, 0, 0]]),
                    "seq_length": np.array([3, 3, 2])}
    if use_neg:
        feature_dict["neg_hist_item"] = np.array([[1, 2, 3, 0], [1, 2, 3, 0], [1, 2, 0, 0]])
        feature_dict["neg_hist_item_gender"] = np.array([[1, 1, 2, 0], [2, 1, 1, 0], [2, 1, 0, 0]])
        feature_columns += [
            VarLenSparseFeat(SparseFeat("neg_hist_item", 3 + 1, embedding_dim=8, embedding_name="item"), maxlen=4,
                             length_name="seq_length"),
            VarLenSparseFeat(SparseFeat("neg_hist_item_gender", 2 + 1, embedding_dim=8, embedding_name="item_gender"),
                             maxlen=4, length_name="seq_length")]
    x = {name: feature_dict[name] for name in npctr.feature_column.get_feature_names(feature_columns)}
    return x, np.array([1, 0, 1]), feature_columns, behavior_feature_list


def check_model(model, x, y, tmp_path):
    """DeepCTR's ``check_model``: compile, fit with a validation split, save and reload weights and model."""
    model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
    model.fit(x, y, batch_size=100, epochs=1, validation_split=0.5, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    model.load_weights(tmp_path / "w.npz")
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(npctr.load_model(tmp_path / "m.npz").predict(x), model.predict(x))


@pytest.mark.parametrize("gru_type", ["GRU", "AIGRU", "AGRU", "AUGRU"])   # DeepCTR leaves AUGRU out
def test_DIEN(gru_type, tmp_path):
    x, y, feature_columns, behavior_feature_list = get_xy_fd()
    model = DIEN(feature_columns, behavior_feature_list, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5,
                 gru_type=gru_type)
    check_model(model, x, y, tmp_path)


def test_DIEN_neg(tmp_path):
    """DeepCTR skips this one on TF >= 1.14; it runs here (every gru_type has the auxiliary loss)."""
    x, y, feature_columns, behavior_feature_list = get_xy_fd(use_neg=True)
    model = DIEN(feature_columns, behavior_feature_list, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5,
                 gru_type="AUGRU", use_negsampling=True)
    check_model(model, x, y, tmp_path)
    model.forward(x)
    assert model.auxiliary_loss() > 0            # (predict skips it: 0 after a predict)


def test_golden_vectors_of_a_dien_hold_the_training_objective():
    """``python -m npctr golden``'s ``loss/*`` for a DIEN: the objective with alpha x the auxiliary loss,
    its gradients through ``add_auxiliary_grads`` (as ``loss_and_gradients``)."""
    from npctr.interop.golden import golden_vectors
    model = make("AGRU", True, "torch")
    arrays, index = golden_vectors(model, seed=3, batch_size=5)
    x = {k[len("input/"):]: v for k, v in arrays.items() if k.startswith("input/") and k != "input/y"}
    model.compile("sgd")
    total, grads = model.loss_and_gradients(x, arrays["input/y"])
    assert float(arrays["loss/value"]) == pytest.approx(total, rel=1e-13)
    for path, g in grads.items():
        np.testing.assert_allclose(arrays[f"loss/grad_weight/{path}"], g, rtol=1e-12, atol=1e-15, err_msg=path)
    assert any(k.startswith("torch/interest_evolution.interest_evolution.rnn.") for k in arrays)
