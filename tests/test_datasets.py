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


def _digest(out):
    """SHA-256 of every array (name, dtype, shape, bytes), the labels and the columns' repr."""
    import hashlib
    x, y, fcs, hist = out
    h = hashlib.sha256()
    for k in sorted(x):
        a = np.ascontiguousarray(x[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    h.update(f"y|{y.dtype.str}|{y.shape}".encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(repr(fcs).encode())
    h.update(repr(hist).encode())
    return h.hexdigest()


# Recorded from make_din_data as it was before it was split into helpers shared with make_dien_data
# (commit 228a39d): the README's demo numbers and every test drawing make_din_data rely on these draws.
DIN_DIGESTS = [
    (dict(n_samples=3000), "5d15b81496338849095d9dddeb0ba9cc5ce9a07d0f22b5065c3788e521d4ab42"),
    (dict(n_samples=40000, n_users=20000, n_items=500, n_cates=100, maxlen=30, n_interests=(3, 8), seed=2024),
     "3d2097c75303407f5f11be79c1ea135fa4cd5e3037968761cdeb029183a303b0"),       # the demo's data
    (dict(n_samples=777, n_users=13, n_items=60, n_cates=12, maxlen=7, n_interests=(1, 3), noise=0.0,
          user_effect=0.0, seed=7), "0717688de7728453cad562291408d04663f5eb7e35d2ee7b61b739435f884397"),
    (dict(n_samples=500, n_items=50, n_cates=50, noise=1.0, n_interests=(50, 50), seed=0),
     "42a33cce180f53ff45fda0bdd66e4301747006bec0bce8e2d453112c208d63c6"),
]


@pytest.mark.parametrize("kwargs, expected", DIN_DIGESTS, ids=["default", "demo", "small", "noise1"])
def test_make_din_data_draws_are_unchanged(kwargs, expected):
    assert _digest(make_din_data(**kwargs)) == expected
