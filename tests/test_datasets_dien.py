"""make_dien_data: DeepCTR's DIEN input format, negatives, determinism, and interests that drift."""
import numpy as np
import pytest

from npctr.datasets import make_dien_data
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat, get_feature_names
from npctr.training.metrics import roc_auc

HISTORIES = ("hist_item_id", "hist_cate_id", "neg_hist_item_id", "neg_hist_cate_id")


def test_format_matches_deepctr_dien_inputs():
    x, y, fcs, hist = make_dien_data(500, n_users=40, n_items=60, n_cates=12, maxlen=7, seed=1)
    assert hist == ["item_id", "cate_id"]
    assert get_feature_names(fcs) == ["user", "gender", "item_id", "cate_id", "pay_score", "hist_item_id",
                                      "seq_length", "hist_cate_id", "neg_hist_item_id", "neg_hist_cate_id"]
    assert set(get_feature_names(fcs)) == set(x)
    by_name = {fc.name: fc for fc in fcs}
    assert isinstance(by_name["pay_score"], DenseFeat) and x["pay_score"].dtype == np.float32
    for name in HISTORIES:
        fc = by_name[name]
        assert isinstance(fc, VarLenSparseFeat) and fc.maxlen == 7 and fc.length_name == "seq_length"
        assert fc.embedding_name == name.split("hist_")[1]                  # shares the candidate's table
        assert fc.vocabulary_size == by_name[fc.embedding_name].vocabulary_size
        assert x[name].shape == (500, 7) and x[name].dtype == np.int32
    for name in ("user", "gender", "item_id", "cate_id"):
        assert isinstance(by_name[name], SparseFeat) and x[name].shape == (500,) and x[name].dtype == np.int32
        assert x[name].min() >= 1 and x[name].max() < by_name[name].vocabulary_size
    assert x["seq_length"].shape == (500, 1) and x["seq_length"].dtype == np.int32
    assert y.shape == (500,) and y.dtype == np.float64 and set(np.unique(y)) == {0.0, 1.0}


def test_padding_negatives_and_categories_are_consistent():
    x, _, fcs, _ = make_dien_data(2000, n_items=80, n_cates=16, maxlen=9, seed=2)
    length = x["seq_length"][:, 0]
    assert length.min() >= 1 and length.max() <= 9 and len(np.unique(length)) == 9
    valid = np.arange(9)[None, :] < length[:, None]
    for name in HISTORIES:
        np.testing.assert_array_equal(x[name] != 0, valid)      # 0 exactly past the length ('post')
    # a negative is an item of the catalogue other than the behaviour at the same step
    assert np.all(x["neg_hist_item_id"][valid] != x["hist_item_id"][valid])
    assert x["neg_hist_item_id"].max() <= 80
    # an item has one category everywhere: histories, negatives and candidates
    items = np.concatenate([x["hist_item_id"][valid], x["neg_hist_item_id"][valid], x["item_id"]])
    cates = np.concatenate([x["hist_cate_id"][valid], x["neg_hist_cate_id"][valid], x["cate_id"]])
    pairs = np.unique(items * 100 + cates)
    assert len(np.unique(pairs // 100)) == len(pairs)
    # negatives are uniform over the other items: every item is drawn, none far more than others
    counts = np.bincount(x["neg_hist_item_id"][valid], minlength=81)[1:]
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.6 * counts.mean()


def test_seeded_and_negatives_do_not_change_the_other_arrays():
    a = make_dien_data(300, seed=5)
    b = make_dien_data(300, seed=5)
    c = make_dien_data(300, seed=6)
    d = make_dien_data(300, seed=5, negatives=False)
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0]["hist_item_id"], c[0]["hist_item_id"])
    assert set(a[0]) - set(d[0]) == {"neg_hist_item_id", "neg_hist_cate_id"}
    assert [fc.name for fc in d[2]] == [fc.name for fc in a[2] if not fc.name.startswith("neg_")]
    for k in d[0]:
        np.testing.assert_array_equal(a[0][k], d[0][k])
    np.testing.assert_array_equal(a[1], d[1])


def test_truth_describes_the_histories():
    x, y, _, _, truth = make_dien_data(20000, maxlen=30, noise=0.25, return_truth=True, seed=3)
    valid = x["hist_item_id"] != 0
    np.testing.assert_array_equal(truth["interest"] != 0, valid)
    # behaviours are in the active interest except for the browsing noise
    off = (x["hist_cate_id"] != truth["interest"])[valid].mean()
    assert abs(off - 0.25 * (1 - 1 / 100)) < 0.005     # noise 0.25; 1 in 100 uniform categories is the interest
    p = truth["click_probability"]
    assert p.shape == y.shape and np.all((p > 0) & (p < 1)) and abs(p.mean() - y.mean()) < 0.01
    # the interest drifts: most long histories show several interests
    long = x["seq_length"][:, 0] >= 20
    n_distinct = np.array([len(np.unique(row[row > 0])) for row in truth["interest"][long]])
    assert np.mean(n_distinct >= 2) > 0.8
    # the interest at the impression is the last behaviour's, or (probability drift) a new one
    last = truth["interest"][np.arange(len(y)), x["seq_length"][:, 0] - 1]
    assert abs(np.mean(truth["current_interest"] != last) - 0.1) < 0.01


def test_without_drift_a_history_has_one_interest():
    x, _, _, _, truth = make_dien_data(500, drift=0.0, noise=0.0, return_truth=True, seed=4)
    interest = truth["interest"]
    first = interest[:, :1]
    assert np.all((interest == first) | (interest == 0))
    np.testing.assert_array_equal(truth["current_interest"], first[:, 0])
    np.testing.assert_array_equal(x["hist_cate_id"], interest)


def match_scores(x):
    """Scores from the inputs alone: the candidate's category among the first / last 3 behaviours
    (order) and its share of the whole history (a bag)."""
    length = x["seq_length"][:, 0]
    match = x["hist_cate_id"] == x["cate_id"][:, None]
    steps = np.arange(match.shape[1])[None, :]
    return {"last3": (match & (steps >= (length - 3)[:, None])).sum(axis=1).astype(float),
            "first3": (match & (steps < 3)).sum(axis=1).astype(float),
            "bag": match.sum(axis=1) / length}


def test_clicks_follow_the_current_interest_not_the_bag():
    """The drift property: the recent end of the history predicts clicks far better than the bag of
    all behaviours, and the oracle (which knows the interest active now) better still."""
    x, y, _, _, truth = make_dien_data(20000, return_truth=True, seed=7)
    scores = match_scores(x)
    oracle, last3, bag = roc_auc(y, truth["click_probability"]), roc_auc(y, scores["last3"]), roc_auc(y, scores["bag"])
    assert oracle > last3 + 0.05 and last3 > bag + 0.05, (oracle, last3, bag)
    # order is what matters: on full histories the oldest behaviours say little, the newest much
    full = x["seq_length"][:, 0] == 30
    first3, last3 = roc_auc(y[full], scores["first3"][full]), roc_auc(y[full], scores["last3"][full])
    assert last3 > first3 + 0.15 and first3 < 0.65, (first3, last3)
    # the candidate alone says little: every category is a candidate about equally often
    counts = np.bincount(x["cate_id"], minlength=101)[1:]
    assert counts.min() > 0.6 * counts.mean()


def test_din_and_dnn_accept_it():
    from npctr.models import DIN, DNNModel
    x, _, fcs, hist = make_dien_data(64, n_items=40, n_cates=8, maxlen=6, negatives=False, seed=8)
    for model in (DIN(fcs, hist, dnn_hidden_units=(8,), att_hidden_size=(4,)), DNNModel(fcs, dnn_hidden_units=(8,))):
        p = model.predict(x)
        assert p.shape == (64, 1) and np.all((p > 0) & (p < 1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=10, maxlen=0), "maxlen"),
    (dict(n_samples=10, drift=1.5), "drift"),
    (dict(n_samples=10, noise=-0.1), "noise"),
    (dict(n_samples=10, p_current=0.7, p_past=0.4), "p_current . p_past"),
    (dict(n_samples=10, p_past=-0.1), "p_past"),
    (dict(n_samples=10, n_cates=3, n_items=10, n_interests=(2, 5)), "n_interests"),
    (dict(n_samples=10, n_cates=1, n_items=1, n_interests=(1, 1)), "n_items must be >= 2"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dien_data(**kwargs)
