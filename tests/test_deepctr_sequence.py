"""DeepCTR's sequence-layer and DIN model tests, carried over to npctr.

From DeepCTR's ``tests/layers/sequence_test.py`` (its own constants: BATCH_SIZE 4,
EMBEDDING_SIZE 8, SEQ_LENGTH 10) and ``tests/models/DIN_test.py`` (``get_xy_fd``),
with ``tests/utils.py::layer_test`` ported to ``tests/layer_test_util.py``.
Same layers, arguments and shapes.

Differences from DeepCTR's versions:
* DeepCTR's ``layer_test`` feeds every input as float ``10 * uniform`` data and
  ``tf.sequence_mask`` accepts float lengths; npctr requires integer lengths,
  so the lengths are given as integer data (``0..SEQ_LENGTH``).
* DeepCTR's ``layer_test`` feeds a mask (first half of the sequence valid) with
  ``supports_masking``; npctr's helper has no mask argument, so the masked layer
  is wrapped to receive exactly that mask.
* npctr's ``backward`` returns ``None`` for the integer lengths; the helper's
  training step expects arrays only, so the wrapper drops that ``None``.
* DeepCTR skips the 'mean'/'max' SequencePoolingLayer cases on TF >= 1.14; all run here.
* DeepCTR's ``set_learning_phase(True)`` has no counterpart: npctr passes
  ``training`` explicitly (``layer_test`` runs inference and a training step).
* ``check_model`` (compile, fit, save/load) becomes a forward and backward in both
  modes; the training loop and model files are tested elsewhere.
"""
import numpy as np
import pytest

from npctr import AttentionSequencePoolingLayer, SequencePoolingLayer
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat, get_feature_names
from npctr.models import DIN

from layer_test_util import layer_test

BATCH_SIZE = 4
EMBEDDING_SIZE = 8
SEQ_LENGTH = 10


def first_half_mask(shape):
    """DeepCTR's layer_test mask: ``a[:, :shape[1] // 2] = True``."""
    mask = np.zeros(shape[:2], dtype=bool)
    mask[:, :shape[1] // 2] = True
    return mask


class DropLengthGrad:
    """``backward`` without the trailing ``None`` of the integer lengths (see the module docstring)."""

    def backward(self, grad_output):
        grads = super().backward(grad_output)
        return [g for g in grads if g is not None] if isinstance(grads, list) else grads


class ASP(DropLengthGrad, AttentionSequencePoolingLayer):
    pass


class SequencePooling(DropLengthGrad, SequencePoolingLayer):
    """With ``supports_masking`` and no mask given: DeepCTR layer_test's first-half mask."""

    def forward(self, inputs, training=False, backprop=None, mask=None):
        if self.supports_masking and mask is None:
            mask = first_half_mask(np.shape(inputs))
        return super().forward(inputs, training=training, backprop=backprop, mask=mask)


def random_data(shapes, seed=0, length_index=None):
    """``10 * uniform`` float32 data as layer_test; the lengths input as integers 0..SEQ_LENGTH."""
    rng = np.random.default_rng(seed)
    data = [(10 * rng.random(s)).astype(np.float32) for s in shapes]
    if length_index is not None:
        data[length_index] = rng.integers(0, SEQ_LENGTH + 1, size=shapes[length_index])
        data[length_index][0, 0] = SEQ_LENGTH      # a full row
        data[length_index][1, 0] = 0               # an empty row
    return data


@pytest.mark.parametrize("weight_normalization", [True, False])
def test_AttentionSequencePoolingLayer(weight_normalization):
    shapes = [(BATCH_SIZE, 1, EMBEDDING_SIZE), (BATCH_SIZE, SEQ_LENGTH, EMBEDDING_SIZE), (BATCH_SIZE, 1)]
    data = random_data(shapes, seed=1, length_index=2)
    out = layer_test(ASP, kwargs={"weight_normalization": weight_normalization}, input_data=data,
                     input_shape=shapes, expected_output_dtype="float32")
    assert out.shape == (BATCH_SIZE, 1, EMBEDDING_SIZE)
    assert np.all(np.isfinite(out))
    keys = data[1]
    if weight_normalization:   # the empty row: uniform softmax over all T, the mean of all keys
        # float32 data (layer_test's); a softmax then a matmul against a mean: 1.1e-7 measured
        np.testing.assert_allclose(out[1, 0], keys[1].mean(axis=0), rtol=1e-5)
    else:
        np.testing.assert_array_equal(out[1, 0], 0)


@pytest.mark.parametrize("mode,supports_masking,input_shape",
                         [("sum", False, [(BATCH_SIZE, SEQ_LENGTH, EMBEDDING_SIZE), (BATCH_SIZE, 1)]),
                          ("mean", True, (BATCH_SIZE, SEQ_LENGTH, EMBEDDING_SIZE)),
                          ("max", True, (BATCH_SIZE, SEQ_LENGTH, EMBEDDING_SIZE))])
def test_SequencePoolingLayer(mode, supports_masking, input_shape):
    if supports_masking:
        data = random_data([input_shape], seed=2)[0]
        x, valid = data, first_half_mask(input_shape)
    else:
        data = random_data(input_shape, seed=3, length_index=1)
        x, valid = data[0], np.arange(SEQ_LENGTH) < data[1]
    m = valid[:, :, None]
    if mode == "sum":
        expected = np.sum(x * m, axis=1, keepdims=True)
    elif mode == "mean":
        expected = np.sum(x * m, axis=1, keepdims=True) / (m.sum(axis=1, keepdims=True) + 1e-8)
    else:
        expected = np.max(np.where(m, x, -np.inf), axis=1, keepdims=True)
    out = layer_test(SequencePooling, kwargs={"mode": mode, "supports_masking": supports_masking},
                     input_data=data, input_shape=input_shape, expected_output=expected,
                     expected_output_dtype="float32")
    assert out.shape == (BATCH_SIZE, 1, EMBEDDING_SIZE)
    np.testing.assert_allclose(out, expected, rtol=1e-6)      # float32 data (layer_test's): 7e-8 measured


# --- tests/models/DIN_test.py -----------------------------------------------------------
def get_xy_fd(hash_flag=False):
    feature_columns = [SparseFeat("user", 3, embedding_dim=10), SparseFeat("gender", 2, embedding_dim=4),
                       SparseFeat("item_id", 3 + 1, embedding_dim=8), SparseFeat("cate_id", 2 + 1, embedding_dim=4),
                       DenseFeat("pay_score", 1)]
    feature_columns += [
        VarLenSparseFeat(SparseFeat("hist_item_id", vocabulary_size=3 + 1, embedding_dim=8,
                                    embedding_name="item_id"), maxlen=4, length_name="seq_length"),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 2 + 1, embedding_dim=4, embedding_name="cate_id"), maxlen=4,
                         length_name="seq_length")]
    behavior_feature_list = ["item_id", "cate_id"]
    uid = np.array([0, 1, 2])
    ugender = np.array([0, 1, 0])
    iid = np.array([1, 2, 3])  # 0 is mask value
    cate_id = np.array([1, 2, 2])  # 0 is mask value
    pay_score = np.array([0.1, 0.2, 0.3])

    hist_iid = np.array([[1, 2, 3, 0], [3, 2, 1, 0], [1, 2, 0, 0]])
    hist_cate_id = np.array([[1, 2, 2, 0], [2, 2, 1, 0], [1, 2, 0, 0]])
    seq_length = np.array([3, 3, 2])  # the actual length of the behavior sequence

    feature_dict = {"user": uid, "gender": ugender, "item_id": iid, "cate_id": cate_id,
                    "hist_item_id": hist_iid, "hist_cate_id": hist_cate_id,
                    "pay_score": pay_score, "seq_length": seq_length}
    x = {name: feature_dict[name] for name in get_feature_names(feature_columns)}
    y = np.array([1, 0, 1])
    return x, y, feature_columns, behavior_feature_list


def test_DIN_feature_names_and_sizes():
    x, y, feature_columns, behavior_feature_list = get_xy_fd(True)
    # DeepCTR 0.9.4's order: a VarLen's length_name right after its first VarLen
    assert list(x) == ["user", "gender", "item_id", "cate_id", "pay_score", "hist_item_id", "seq_length",
                       "hist_cate_id"]
    model = DIN(feature_columns, behavior_feature_list, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5)
    assert model.feature_names == list(x)
    params = model.params
    # query [item 8 | cate 4] = 12; attention input 4 * 12 = 48; DNN input 10+4+8+4 + 12 + 1 = 39
    assert params["attention_sequence_pooling_layer/local_att/dnn/kernel0"].shape == (48, 80)
    assert params["attention_sequence_pooling_layer/local_att/kernel"].shape == (40, 1)
    assert params["dnn/kernel0"].shape == (39, 4)
    assert params["dense/kernel"].shape == (4, 1)
    assert "sparse_emb_hist_item_id/embeddings" not in params      # shared with item_id
    assert params["sparse_emb_item_id/embeddings"].shape == (4, 8)


@pytest.mark.parametrize("training", [True, False])
def test_DIN(training):
    x, y, feature_columns, behavior_feature_list = get_xy_fd(True)
    model = DIN(feature_columns, behavior_feature_list, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5)
    out = model.forward(x, training=training, backprop=True)
    assert out.shape == (3, 1) and out.dtype == np.float64
    assert np.all((out > 0) & (out < 1))
    assert model.attention_scores.shape == (3, 1, 4)
    # binary cross-entropy's gradient w.r.t. the probability, as Keras's loss
    yy = y.reshape(3, 1).astype(np.float64)
    d_out = (out - yy) / (out * (1 - out)) / len(y)
    d_dense = model.backward(d_out)
    assert set(d_dense) == {"pay_score"} and d_dense["pay_score"].shape == (3,)
    grads = model.grads
    assert set(grads) == set(model.params)
    for name, g in grads.items():
        g = g.to_dense() if hasattr(g, "to_dense") else g
        assert g.shape == model.params[name].shape, name
        assert np.all(np.isfinite(g)), name
    # a small SGD step on every parameter keeps the model finite
    model.add_regularization_grads()
    for name, p in model.params.items():
        g = model.grads[name]
        p -= 0.01 * (g.to_dense() if hasattr(g, "to_dense") else g)
    after = model.forward(x, training=False)
    assert after.shape == (3, 1) and np.all((after > 0) & (after < 1))


def test_DIN_length_input_is_unused():
    """DeepCTR's DIN masks by id 0; its ``seq_length`` input is not connected (DeepCTR issue #424)."""
    x, y, feature_columns, behavior_feature_list = get_xy_fd(True)
    model = DIN(feature_columns, behavior_feature_list, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5)
    out = model.forward(x)
    np.testing.assert_array_equal(model.forward({**x, "seq_length": np.array([1, 0, 4])}), out)


def test_mean_divisor_is_formed_in_float32_as_the_frameworks_do():
    """DeepCTR (``tf.cast(length, tf.float32) + eps``) and DeepCTR-Torch (``length.type(torch.float32) +
    eps``) form ``length + 1e-8`` in float32, in a float64 model too: the divisor is exactly the length
    for every length >= 1 (issue 19: npctr added 1e-8 in float64, 1e-8/length relative off DeepCTR-Torch,
    found by the conformance suite's deepctr_torch adapter)."""
    from npctr.ops.sequence import mean_pool_length
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    out = SequencePoolingLayer("mean", dtype="float64").forward([x, np.array([[3], [1], [0]])])
    np.testing.assert_allclose(out[:2, 0], [x[0, :3].sum(axis=0) / 3, x[1, 0]], rtol=1e-15, atol=0)
    assert np.all(out[2] == 0)
    np.testing.assert_array_equal(mean_pool_length(np.array([0, 1, 7]), np.float64),
                                  [float(np.float32(1e-8)), 1.0, 7.0])
