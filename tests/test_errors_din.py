"""Bad input to DIN's layers and to the DIN model is a clear error, never silent misalignment.

Each check asserts the exception type and that the message names the argument
(or feature), what was expected and what was received.
"""
import numpy as np
import pytest

from npctr import AttentionSequencePoolingLayer, Embedding, SequencePoolingLayer
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.models import DIN

from test_gradients_din import HIST, din_columns, din_features


# --- Embedding ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [5, 7, -1])
def test_embedding_id_out_of_range(bad):
    layer = Embedding(5, 2, name="item_table")
    with pytest.raises(ValueError, match=rf"inputs must lie in \[0, 5\).*item_table.*got id {bad}"):
        layer.forward(np.array([[1, bad], [0, 2]]))


@pytest.mark.parametrize("ids", [np.array([1.0, 2.0]), np.array([1.5]), np.array(["1"]), np.array([True])])
def test_embedding_non_integer_ids(ids):
    with pytest.raises(TypeError, match=rf"inputs must be an integer array, got dtype {ids.dtype}"):
        Embedding(5, 2).forward(ids)


def test_embedding_shared_lookup_names_the_feature():
    with pytest.raises(ValueError, match=r"hist_item_id must lie in \[0, 4\).*got id 4"):
        Embedding(4, 2).lookup([np.array([1]), np.array([[1, 4]])], names=["item_id", "hist_item_id"])


@pytest.mark.parametrize("arg,value", [("input_dim", 0), ("output_dim", -2), ("input_dim", 2.0)])
def test_embedding_bad_sizes(arg, value):
    kwargs = {"input_dim": 5, "output_dim": 2, arg: value}
    with pytest.raises(ValueError, match=rf"{arg} must be a positive integer, got {value!r}"):
        Embedding(**kwargs)


def test_embedding_backward_without_forward():
    layer = Embedding(5, 2)
    layer.forward(np.array([1, 2]))            # inference: no cache
    with pytest.raises(RuntimeError, match="without a forward that kept its cache"):
        layer.backward(np.zeros((2, 2)))


def test_embedding_backward_wrong_shape():
    layer = Embedding(5, 2)
    layer.forward(np.array([1, 2]), training=True)
    with pytest.raises(ValueError, match=r"must have shape \(2, 2\), got \(2, 3\)"):
        layer.backward(np.zeros((2, 3)))


# --- SequencePoolingLayer -------------------------------------------------------------
X = np.zeros((2, 3, 4))


@pytest.mark.parametrize("mode", ["avg", "MEAN", None])
def test_sequence_pooling_bad_mode(mode):
    with pytest.raises(ValueError, match=rf"mode must be 'sum', 'mean' or 'max', got {mode!r}"):
        SequencePoolingLayer(mode)


def test_sequence_pooling_missing_mask():
    with pytest.raises(ValueError, match=r"mask is required when supports_masking=True"):
        SequencePoolingLayer("sum", supports_masking=True).forward(X)


def test_sequence_pooling_mask_wrong_shape():
    with pytest.raises(ValueError, match=r"mask must have shape \(batch_size, T\) = \(2, 3\), got \(2, 4\)"):
        SequencePoolingLayer("sum", supports_masking=True).forward(X, mask=np.ones((2, 4), bool))


@pytest.mark.parametrize("seq_len", [np.array([[1], [2], [3]]), np.array([[1, 2], [2, 3]]),
                                     np.array([[[1]], [[2]]])])
def test_sequence_pooling_seq_len_wrong_shape(seq_len):
    with pytest.raises(ValueError, match=rf"seq_len must have shape \(batch_size, 1\) = \(2, 1\), "
                                         rf"got {re_shape(seq_len.shape)}"):
        SequencePoolingLayer("mean").forward([X, seq_len])


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_sequence_pooling_negative_length():
    with pytest.raises(ValueError, match=r"seq_len must be >= 0, got -2"):
        SequencePoolingLayer("sum").forward([X, np.array([[1], [-2]])])


def test_sequence_pooling_float_length():
    with pytest.raises(TypeError, match=r"seq_len must be an integer array, got dtype float64"):
        SequencePoolingLayer("sum").forward([X, np.array([[1.0], [2.0]])])


def test_sequence_pooling_needs_list_without_masking():
    with pytest.raises(TypeError, match=r"inputs must be a list of 2 arrays, got ndarray"):
        SequencePoolingLayer("sum").forward(X)
    with pytest.raises(ValueError, match=r"inputs must be a list of 2 arrays, got 3"):
        SequencePoolingLayer("sum").forward([X, np.array([[1], [2]]), X])


def test_sequence_pooling_rank():
    with pytest.raises(ValueError, match=r"seq_value must have rank 3, got shape \(2, 3\)"):
        SequencePoolingLayer("sum").forward([X[..., 0], np.array([[1], [2]])])


# --- AttentionSequencePoolingLayer ----------------------------------------------------
Q, K, L = np.zeros((2, 1, 4)), np.zeros((2, 3, 4)), np.array([[1], [2]])


def test_asp_wrong_number_of_inputs():
    with pytest.raises(ValueError, match=r"inputs must be a list of 3 arrays, got 2"):
        AttentionSequencePoolingLayer().forward([Q, K])
    with pytest.raises(ValueError, match=r"inputs must be a list of 2 arrays, got 3"):
        AttentionSequencePoolingLayer(supports_masking=True).forward([Q, K, L], mask=np.ones((2, 3), bool))
    with pytest.raises(TypeError, match=r"inputs must be a list of 3 arrays, got ndarray"):
        AttentionSequencePoolingLayer().forward(K)


@pytest.mark.parametrize("which,inputs,message", [
    ("query", [Q[:, 0], K, L], r"query must have rank 3, got shape \(2, 4\) \(rank 2\)"),
    ("keys", [Q, K[:, 0], L], r"keys must have rank 3, got shape \(2, 4\) \(rank 2\)"),
    ("keys_length", [Q, K, L[:, :, None]], r"keys_length must have shape \(batch_size, 1\) = \(2, 1\), "
                                           r"got \(2, 1, 1\)"),
])
def test_asp_wrong_ranks(which, inputs, message):
    with pytest.raises(ValueError, match=message):
        AttentionSequencePoolingLayer().forward(inputs)


def test_asp_query_time_axis_must_be_one():
    with pytest.raises(ValueError, match=r"query must have shape \(batch_size, 1, embedding_size\), "
                                         r"got \(2, 2, 4\)"):
        AttentionSequencePoolingLayer().forward([np.zeros((2, 2, 4)), K, L])


def test_asp_mismatched_embedding_sizes():
    with pytest.raises(ValueError, match=r"query and keys must have the same embedding size, "
                                         r"got query \(2, 1, 3\) and keys \(2, 3, 4\)"):
        AttentionSequencePoolingLayer().forward([np.zeros((2, 1, 3)), K, L])


def test_asp_embedding_size_changed_after_build():
    layer = AttentionSequencePoolingLayer((4,))
    layer.forward([Q, K, L])
    with pytest.raises(ValueError, match=r"last dimension 4 .*got shape \(2, 3, 3\)"):
        layer.forward([Q[..., :3], K[..., :3], L])


def test_asp_mismatched_batch_sizes():
    with pytest.raises(ValueError, match=r"same batch size, got query \(3, 1, 4\) and keys \(2, 3, 4\)"):
        AttentionSequencePoolingLayer().forward([np.zeros((3, 1, 4)), K, L])


def test_asp_missing_mask_and_bad_mask():
    with pytest.raises(ValueError, match=r"mask is required when supports_masking=True"):
        AttentionSequencePoolingLayer(supports_masking=True).forward([Q, K])
    with pytest.raises(ValueError, match=r"mask must have shape \(batch_size, T\) = \(2, 3\), got \(2, 4\)"):
        AttentionSequencePoolingLayer(supports_masking=True).forward([Q, K], mask=np.ones((2, 4), bool))


def test_asp_negative_or_float_keys_length():
    with pytest.raises(ValueError, match=r"keys_length must be >= 0, got -1"):
        AttentionSequencePoolingLayer().forward([Q, K, np.array([[1], [-1]])])
    with pytest.raises(TypeError, match=r"keys_length must be an integer array, got dtype float64"):
        AttentionSequencePoolingLayer().forward([Q, K, np.array([[1.0], [2.0]])])


# --- DIN: construction ----------------------------------------------------------------
def test_din_history_feature_not_sparse():
    cols = din_columns() + [DenseFeat("price", 1),
                            VarLenSparseFeat(SparseFeat("hist_price", 3, 2), maxlen=4)]
    with pytest.raises(ValueError, match=r"history_feature_list names 'price', which is not a SparseFeat.*"
                                         r"\['user', 'item_id', 'cate_id'\]"):
        DIN(cols, HIST + ["price"])


def test_din_history_feature_unknown():
    with pytest.raises(ValueError, match=r"history_feature_list names 'shop', which is not a SparseFeat"):
        DIN(din_columns(), HIST + ["shop"])


def test_din_missing_hist_column():
    with pytest.raises(ValueError, match=r"history_feature_list names 'user' but dnn_feature_columns has no "
                                         r"VarLenSparseFeat named 'hist_user'"):
        DIN(din_columns(), HIST + ["user"])


def test_din_query_keys_field_order_mismatch():
    cols = din_columns()
    cols[5], cols[6] = cols[6], cols[5]      # hist_cate_id before hist_item_id; item_id before cate_id
    with pytest.raises(ValueError, match=r"query fields \['item_id', 'cate_id'\].*history fields "
                                         r"\['hist_cate_id', 'hist_item_id'\].*same order"):
        DIN(cols, HIST)


def test_din_history_feature_list_order_is_free():
    """DeepCTR takes both query and keys in feature-column order, whatever the list's order."""
    x = din_features()
    a = DIN(din_columns(), ["item_id", "cate_id"], dnn_hidden_units=(4,), att_hidden_size=(4,))
    b = DIN(din_columns(), ["cate_id", "item_id"], dnn_hidden_units=(4,), att_hidden_size=(4,))
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


@pytest.mark.parametrize("vocab,dim,message", [
    (8, 3, r"features 'item_id' and 'hist_item_id' share the embedding 'item_id' but differ in "
           r"vocabulary_size/embedding_dim: \(7, 3\) vs \(8, 3\)"),
    (7, 4, r"embedding_dim of 'item_id' \(3\) and 'hist_item_id' \(4\) must match"),
])
def test_din_shared_embedding_with_different_sizes(vocab, dim, message):
    cols = din_columns()
    cols[5] = VarLenSparseFeat(SparseFeat("hist_item_id", vocab, dim, embedding_name="item_id"), maxlen=4)
    with pytest.raises(ValueError, match=message):
        DIN(cols, HIST)


def test_din_shared_embedding_name_between_non_history_features():
    cols = din_columns() + [SparseFeat("shop", 3, 3, embedding_name="user")]
    with pytest.raises(ValueError, match=r"share the embedding 'user'.*\(4, 3\) vs \(3, 3\)"):
        DIN(cols, HIST)


def test_din_history_maxlen_mismatch():
    cols = din_columns()
    cols[6] = VarLenSparseFeat(SparseFeat("hist_cate_id", 4, 2, embedding_name="cate_id"), maxlen=5)
    with pytest.raises(ValueError, match=r"same maxlen.*'hist_item_id': 4.*'hist_cate_id': 5"):
        DIN(cols, HIST)


@pytest.mark.parametrize("hist,exc,message", [
    ("item_id", TypeError, r"history_feature_list must be a list of feature names, got 'item_id'"),
    ([], ValueError, r"history_feature_list must name at least one feature"),
])
def test_din_bad_history_feature_list(hist, exc, message):
    with pytest.raises(exc, match=message):
        DIN(din_columns(), hist)


def test_din_bad_feature_columns():
    with pytest.raises(TypeError, match=r"dnn_feature_columns must be a list of feature columns"):
        DIN(SparseFeat("item_id", 3), HIST)
    with pytest.raises(TypeError, match=r"Invalid feature column type, got str"):
        DIN(din_columns() + ["item_id"], HIST)


# --- DIN: inputs ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return DIN(din_columns(), HIST, dnn_hidden_units=(4,), att_hidden_size=(4,))


NAMES = r"\['user', 'item_id', 'cate_id', 'pay', 'score', 'hist_item_id', 'hist_cate_id', 'tags', 'genres', " \
        r"'genres_len'\]"


def test_din_missing_feature(model):
    x = din_features()
    del x["pay"]
    with pytest.raises(ValueError, match=rf"x must hold exactly the features {NAMES}; missing \['pay'\], "
                                         r"unexpected \[\]"):
        model.forward(x)


def test_din_extra_feature(model):
    x = {**din_features(), "seq_length": np.array([1, 2, 3, 4, 5])}
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['seq_length'\]"):
        model.forward(x)


@pytest.mark.parametrize("name,value,message", [
    ("hist_item_id", lambda x: x[:, :3], r"feature 'hist_item_id' must have shape \(batch_size, maxlen\) = "
                                         r"\(5, 4\), got \(5, 3\)"),
    ("hist_cate_id", lambda x: x[:, :, None], r"feature 'hist_cate_id' must have shape \(batch_size, maxlen\) "
                                              r"= \(5, 4\), got \(5, 4, 1\)"),
    ("pay", lambda x: x[:, :1], r"feature 'pay' must have shape \(batch_size, 2\), got \(5, 1\)"),
    ("user", lambda x: x.reshape(5, 1, 1), r"feature 'user' must have shape \(batch_size, 1\), got \(5, 1, 1\)"),
    ("genres_len", lambda x: np.stack([x, x], 1), r"feature 'genres_len' must have shape \(batch_size, 1\), "
                                                  r"got \(5, 2\)"),
])
def test_din_wrong_shapes(model, name, value, message):
    x = din_features()
    x[name] = value(x[name])
    with pytest.raises(ValueError, match=message):
        model.forward(x)


@pytest.mark.parametrize("name", ["item_id", "hist_item_id", "genres_len", "tags"])
def test_din_float_ids(model, name):
    x = din_features()
    x[name] = x[name].astype(np.float64)
    with pytest.raises(TypeError, match=rf"feature '{name}' must hold integer ids, got dtype float64"):
        model.forward(x)


def test_din_string_dense_feature(model):
    x = {**din_features(), "score": np.array(["a"] * 5)}
    with pytest.raises(TypeError, match=r"feature 'score' must be numeric, got dtype <U1"):
        model.forward(x)


def test_din_different_batch_sizes(model):
    x = din_features()
    x["user"] = x["user"][:4]
    with pytest.raises(ValueError, match=r"every feature must have the same batch size.*'user': 4, 'item_id': 5"):
        model.forward(x)


@pytest.mark.parametrize("name,bad", [("item_id", 7), ("hist_cate_id", 4), ("tags", -1)])
def test_din_id_out_of_range_names_the_feature(model, name, bad):
    x = din_features()
    x[name] = x[name].copy()
    x[name].reshape(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"{name} must lie in \[0, \d+\) .*got id {bad}"):
        model.forward(x)


def test_din_negative_length(model):
    x = {**din_features(), "genres_len": np.array([3, 1, -1, 2, 1])}
    with pytest.raises(ValueError, match=r"feature 'genres_len' \(the length of 'genres'\) must be >= 0, got -1"):
        model.forward(x)


def test_din_not_a_dict(model):
    # a list in feature_names order is Keras's list form (accepted, as predict does); an array is not
    with pytest.raises(TypeError, match=r"x must be a dict of arrays keyed by feature name .*, got ndarray"):
        model.forward(np.zeros((3, 4)))


def test_din_refuses_multiclass_task():
    from npctr.datasets import make_din_data
    _, _, columns, history = make_din_data(10)
    with pytest.raises(ValueError, match=r"task must be 'binary' or 'regression', got 'multiclass'"):
        DIN(columns, history, task="multiclass")
