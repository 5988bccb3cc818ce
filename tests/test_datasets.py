"""The synthetic DIN click data: format, determinism, and a signal that lives in the history."""
import numpy as np
import pytest

from npctr.datasets import make_din_data
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat, get_feature_names


def test_format_matches_deepctr_din_inputs():
    x, y, fcs, hist = make_din_data(500, n_items=60, n_cates=12, maxlen=7, seed=1)
    assert hist == ["item_id", "cate_id"]
    assert set(get_feature_names(fcs)) == set(x)
    by_name = {fc.name: fc for fc in fcs}
    assert isinstance(by_name["pay_score"], DenseFeat)
    for name in ("hist_item_id", "hist_cate_id"):
        fc = by_name[name]
        assert isinstance(fc, VarLenSparseFeat) and fc.maxlen == 7 and fc.length_name == "seq_length"
        assert fc.embedding_name == name[len("hist_"):]
        assert x[name].shape == (500, 7) and x[name].dtype == np.int32
    for name in ("user", "gender", "item_id", "cate_id"):
        assert isinstance(by_name[name], SparseFeat) and x[name].shape == (500,)
        assert x[name].min() >= 1 and x[name].max() < by_name[name].vocabulary_size
    assert y.shape == (500,) and set(np.unique(y)) <= {0.0, 1.0}


def test_histories_are_padded_consistently():
    x, _, _, _ = make_din_data(400, n_items=50, n_cates=10, maxlen=6, seed=2)
    length = x["seq_length"][:, 0]
    assert length.min() >= 1 and length.max() <= 6 and len(np.unique(length)) > 1
    valid = np.arange(6)[None, :] < length[:, None]
    for name in ("hist_item_id", "hist_cate_id"):
        np.testing.assert_array_equal(x[name] != 0, valid)      # padding (0) exactly after the length
    # an item has one category everywhere it appears (history and candidate alike)
    items = np.concatenate([x["hist_item_id"][valid], x["item_id"]])
    cates = np.concatenate([x["hist_cate_id"][valid], x["cate_id"]])
    cate_of = {}
    for i, c in zip(items.tolist(), cates.tolist()):
        assert cate_of.setdefault(i, c) == c


def test_seeded():
    a = make_din_data(300, seed=5)
    b = make_din_data(300, seed=5)
    c = make_din_data(300, seed=6)
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0]["hist_item_id"], c[0]["hist_item_id"])


def test_clicks_depend_on_the_history_not_on_the_candidate_alone():
    x, y, _, _ = make_din_data(20000, seed=3)
    match = np.any(x["hist_cate_id"] == x["cate_id"][:, None], axis=1)
    assert y[match].mean() > y[~match].mean() + 0.3
    # every category is a candidate about equally often: the candidate alone carries little
    counts = np.bincount(x["cate_id"], minlength=51)[1:]
    assert counts.min() > 0.6 * counts.mean()


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_samples"):
        make_din_data(0)
    with pytest.raises(ValueError, match="n_interests"):
        make_din_data(10, n_cates=3, n_items=10, n_interests=(2, 5))
