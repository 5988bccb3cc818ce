"""Feature columns: DeepCTR's fields and defaults, NumPy integers accepted, config round trip."""
import json

import numpy as np
import pytest

from npctr.feature_column import (SparseFeat, VarLenSparseFeat, DenseFeat, get_feature_names,
                                  feature_columns_to_config, feature_columns_from_config)


def test_numpy_integers_are_accepted_as_sizes():
    # DeepCTR's usual set-up: SparseFeat(name, data[name].max() + 1) gives an np.int64
    fc = SparseFeat("item", np.int64(10), embedding_dim=np.int32(4))
    seq = VarLenSparseFeat(SparseFeat("hist_item", np.int64(10)), maxlen=np.int64(5))
    dense = DenseFeat("score", np.int64(2))
    assert (fc.vocabulary_size, fc.embedding_dim, seq.maxlen, dense.dimension) == (10, 4, 5, 2)
    assert all(type(v) is int for v in (fc.vocabulary_size, fc.embedding_dim, seq.maxlen, dense.dimension))
    json.dumps(feature_columns_to_config([fc, seq, dense]))      # plain ints: JSON-safe


@pytest.mark.parametrize("make,message", [
    (lambda: SparseFeat("a", 0), "vocabulary_size of 'a' must be a positive integer, got 0"),
    (lambda: SparseFeat("a", True), "vocabulary_size of 'a' must be a positive integer, got True"),
    (lambda: SparseFeat("a", 5, embedding_dim=2.0), "embedding_dim of 'a'"),
    (lambda: VarLenSparseFeat(SparseFeat("a", 5), maxlen=-1), "maxlen of 'a' must be a positive integer, got -1"),
    (lambda: DenseFeat("d", 0), "dimension of 'd' must be a positive integer, got 0"),
])
def test_bad_sizes_name_the_field(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_auto_embedding_dim_and_defaults_as_deepctr():
    fc = SparseFeat("a", 10000, embedding_dim="auto")
    assert fc.embedding_dim == 6 * int(10000 ** 0.25) == 60
    assert fc.embedding_name == "a" and fc.dtype == "int32" and fc.group_name == "default_group"
    seq = VarLenSparseFeat(SparseFeat("hist_a", 10000, embedding_name="a"), 3, length_name="len")
    assert seq.combiner == "mean" and seq.embedding_name == "a"


def test_input_order_and_config_round_trip():
    cols = [SparseFeat("user", 3), DenseFeat("pay", 1),
            VarLenSparseFeat(SparseFeat("hist_item_id", 4, embedding_name="item_id"), 4, length_name="seq_length"),
            VarLenSparseFeat(SparseFeat("hist_cate_id", 3, embedding_name="cate_id"), 4, length_name="seq_length")]
    assert get_feature_names(cols) == ["user", "pay", "hist_item_id", "seq_length", "hist_cate_id"]
    config = json.loads(json.dumps(feature_columns_to_config(cols)))
    assert feature_columns_from_config(config) == cols
