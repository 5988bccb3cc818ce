"""sequences_from_events: histories from an event log, in time order, without leaking the future."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npctr.datasets import sequences_from_events
from npctr.feature_column import VarLenSparseFeat, SparseFeat, DenseFeat, get_feature_names

# A hand-worked log. User 7: item 10 clicked at t=1; items 11 and 12 clicked at t=2 (a tie); item 13
# shown at t=3 and not clicked; item 15 clicked at t=4. User 8: item 10 shown (t=1), item 14 clicked (t=5).
LOG = {"user_id": np.array([7, 7, 8, 7, 7, 8, 7]),
       "item_id": np.array([10, 11, 10, 12, 13, 14, 15]),
       "cate": np.array(["a", "a", "a", "b", "b", "c", "c"]),
       "timestamp": np.array([1, 2, 1, 2, 3, 5, 4]),
       "label": np.array([1, 1, 0, 1, 0, 1, 1]),
       "price": np.array([1.5, 2.0, 1.5, 3.0, 0.5, 9.0, 4.0])}


def test_hand_worked_log():
    x, y, fcs, hist, vocab = sequences_from_events(LOG, maxlen=2, item_features=["cate"],
                                                   sparse_features=["user_id"], dense_features=["price"])
    np.testing.assert_array_equal(vocab["item_id"], [10, 11, 12, 13, 14, 15])      # id k is vocab[k - 1]
    np.testing.assert_array_equal(vocab["cate"], ["a", "b", "c"])
    np.testing.assert_array_equal(x["item_id"], [1, 2, 1, 3, 4, 5, 6])
    np.testing.assert_array_equal(x["cate"], [1, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(x["user_id"], [1, 1, 2, 1, 1, 2, 1])
    np.testing.assert_array_equal(y, LOG["label"])
    # row 0 (t=1): nothing before. Rows 1 and 3 (t=2): only t=1, not each other (same time).
    # Row 4 (t=3): 10, 11, 12, the last 2 kept. Row 6 (t=4): the same (13 was not clicked).
    # User 8: row 2 nothing; row 5 (t=5): item 10 was shown, not clicked: nothing.
    np.testing.assert_array_equal(x["hist_item_id"], [[0, 0], [1, 0], [0, 0], [1, 0], [2, 3], [0, 0], [2, 3]])
    np.testing.assert_array_equal(x["hist_cate"], [[0, 0], [1, 0], [0, 0], [1, 0], [1, 2], [0, 0], [1, 2]])
    np.testing.assert_array_equal(x["seq_length"], [[0], [1], [0], [1], [2], [0], [2]])
    np.testing.assert_array_equal(x["price"], LOG["price"])
    assert hist == ["item_id", "cate"]
    assert get_feature_names(fcs) == ["user_id", "item_id", "cate", "price", "hist_item_id", "seq_length",
                                      "hist_cate"]
    assert set(get_feature_names(fcs)) == set(x)
    by_name = {fc.name: fc for fc in fcs}
    assert by_name["item_id"].vocabulary_size == 7 and by_name["cate"].vocabulary_size == 4
    assert by_name["user_id"].vocabulary_size == 3 and isinstance(by_name["price"], DenseFeat)
    for name in ("hist_item_id", "hist_cate"):
        assert isinstance(by_name[name], VarLenSparseFeat) and by_name[name].maxlen == 2
        assert by_name[name].embedding_name == name[5:] and by_name[name].length_name == "seq_length"
    for name in ("user_id", "item_id", "cate", "hist_item_id", "hist_cate", "seq_length"):
        assert x[name].dtype == np.int32


def test_negatives():
    x, _, fcs, _, _ = sequences_from_events(LOG, maxlen=3, negatives=True, item_features=["cate"], seed=1)
    valid = x["hist_item_id"] != 0
    np.testing.assert_array_equal(x["neg_hist_item_id"] != 0, valid)
    assert np.all(x["neg_hist_item_id"][valid] != x["hist_item_id"][valid])
    assert x["neg_hist_item_id"].max() <= 6
    table = np.array([0, 1, 1, 2, 2, 3, 3])                                   # item code -> cate code
    np.testing.assert_array_equal(x["neg_hist_cate"], table[x["neg_hist_item_id"]])
    # one negative per behaviour: rows 4 and 6 hold the same behaviours, so the same negatives
    np.testing.assert_array_equal(x["neg_hist_item_id"][4], x["neg_hist_item_id"][6])
    assert [fc.name for fc in fcs if isinstance(fc, VarLenSparseFeat)] == [
        "hist_item_id", "hist_cate", "neg_hist_item_id", "neg_hist_cate"]
    assert {fc.embedding_name for fc in fcs if fc.name.startswith("neg_")} == {"item_id", "cate"}
    again = sequences_from_events(LOG, maxlen=3, negatives=True, item_features=["cate"], seed=1).x
    other = sequences_from_events(LOG, maxlen=3, negatives=True, item_features=["cate"], seed=2).x
    np.testing.assert_array_equal(again["neg_hist_item_id"], x["neg_hist_item_id"])
    assert not np.array_equal(other["neg_hist_item_id"], x["neg_hist_item_id"])
    np.testing.assert_array_equal(other["hist_item_id"], x["hist_item_id"])


def test_label_none_makes_every_event_a_behaviour():
    x, y, _, _, _ = sequences_from_events({k: v for k, v in LOG.items() if k != "label"}, label=None, maxlen=5)
    np.testing.assert_array_equal(y, np.ones(7))
    np.testing.assert_array_equal(x["hist_item_id"][6], [1, 2, 3, 4, 0])      # item 13 (t=3) is now one
    np.testing.assert_array_equal(x["hist_item_id"][5], [1, 0, 0, 0, 0])      # user 8's t=1 event


def test_pandas_dataframe_strings_and_datetimes():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(LOG).assign(
        user_id=lambda f: "u" + f["user_id"].astype(str),
        timestamp=lambda f: pd.Timestamp("2024-01-01") + pd.to_timedelta(f["timestamp"], unit="h"))
    from_frame = sequences_from_events(frame, maxlen=2, negatives=True, item_features=["cate"],
                                       sparse_features=["user_id"])
    from_dict = sequences_from_events(LOG, maxlen=2, negatives=True, item_features=["cate"],
                                      sparse_features=["user_id"])
    for k in from_dict.x:
        np.testing.assert_array_equal(from_frame.x[k], from_dict.x[k])
    np.testing.assert_array_equal(from_frame.vocabularies["user_id"], ["u7", "u8"])


def test_the_models_accept_it():
    from npctr.models import DIN, DNNModel
    x, _, fcs, hist, _ = sequences_from_events(LOG, maxlen=3, item_features=["cate"], dense_features=["price"])
    for model in (DIN(fcs, hist, dnn_hidden_units=(4,), att_hidden_size=(4,)), DNNModel(fcs, dnn_hidden_units=(4,))):
        p = model.predict(x)
        assert p.shape == (7, 1) and np.all(np.isfinite(p))


def reference_histories(user, time, label, maxlen):
    """Per row, the rows of its history, by brute force: the same user's positives strictly
    before the row's time, ordered by (time, row), the last maxlen."""
    out = []
    for r in range(len(user)):
        before = [j for j in range(len(user)) if user[j] == user[r] and label[j] == 1 and time[j] < time[r]]
        out.append(sorted(before, key=lambda j: (time[j], j))[max(0, len(before) - maxlen):])
    return out


@st.composite
def event_logs(draw):
    n = draw(st.integers(1, 40))
    ints = st.lists(st.integers(0, 3), min_size=n, max_size=n)
    return {"user_id": np.array(draw(ints)),
            "timestamp": np.array(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))),
            "label": np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
            "item_id": 100 + np.arange(n)}                    # one item per event: an id names its event


@given(event_logs(), st.integers(1, 6), st.integers(0, 3))
def test_no_leakage_and_truncation_keeps_the_latest(log, maxlen, seed):
    x, y, _, _, vocab = sequences_from_events(log, maxlen=maxlen, negatives=len(log["item_id"]) > 1, seed=seed)
    expected = reference_histories(log["user_id"], log["timestamp"], log["label"], maxlen)
    event_of = np.append(-1, vocab["item_id"] - 100)           # item code -> its event's row
    for r, rows in enumerate(expected):
        length = int(x["seq_length"][r, 0])
        history = event_of[x["hist_item_id"][r, :length]]
        np.testing.assert_array_equal(history, rows)
        assert np.all(x["hist_item_id"][r, length:] == 0)
        # every behaviour: same user, a click, strictly before the row's time
        assert np.all(log["timestamp"][history] < log["timestamp"][r])
        assert np.all(log["user_id"][history] == log["user_id"][r]) and np.all(log["label"][history] == 1)
        if "neg_hist_item_id" in x:
            neg = x["neg_hist_item_id"][r]
            assert np.all(neg[:length] != x["hist_item_id"][r, :length]) and np.all(neg[length:] == 0)
            assert np.all((neg[:length] >= 1) & (neg[:length] <= len(vocab["item_id"])))
    np.testing.assert_array_equal(y, log["label"])


@given(event_logs(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter_when_times_differ(log, random):
    """Distinct times per user: the log's row order changes nothing, negatives included."""
    n = len(log["item_id"])
    log["timestamp"] = np.array(random.sample(range(1000), n))
    perm = np.array(random.sample(range(n), n))
    a = sequences_from_events(log, maxlen=4, negatives=n > 1, seed=3)
    b = sequences_from_events({k: v[perm] for k, v in log.items()}, maxlen=4, negatives=n > 1, seed=3)
    for k in a.x:
        np.testing.assert_array_equal(b.x[k], a.x[k][perm])


def bad(**changes):
    log = dict(LOG)
    log.update({k: v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        del log[k]
    return log


@pytest.mark.parametrize("events, kwargs, error, match", [
    ([1, 2], {}, TypeError, "events must be a dict"),
    (bad(timestamp=None), {}, ValueError, "no column 'timestamp'"),
    (LOG, dict(item="sku"), ValueError, "no column 'sku'"),
    ({k: v[:0] for k, v in LOG.items()}, {}, ValueError, "events is empty"),
    (bad(label=np.array([1, 0])), {}, ValueError, "same length"),
    (bad(item_id=LOG["item_id"].reshape(7, 1)), {}, ValueError, "must be 1-D"),
    (bad(item_id=LOG["item_id"] * 1.0), {}, TypeError, "integer or string ids.*missing values"),
    (bad(user_id=np.array([1, None, 2, 1, 1, 2, 1], dtype=object)), {}, ValueError, "missing values.*row 1"),
    (bad(user_id=np.array([None] * 7, dtype=object)), {}, ValueError, "missing values"),
    (bad(user_id=np.array([1, 2, np.nan, 1, 1, 2, 1], dtype=object)), {}, ValueError, "missing values.*row 2"),
    (bad(user_id=np.array([1, "a", 2, 1, 1, 2, 1], dtype=object)), {}, TypeError, "mixes id types"),
    (bad(timestamp=np.array([1, 2, np.nan, 2, 3, 5, 4])), {}, ValueError, "finite.*row 2"),
    (bad(timestamp=np.array([1, 2, np.inf, 2, 3, 5, 4])), {}, ValueError, "finite"),
    (bad(timestamp=np.array(["2024-01-01", "NaT"] + ["2024-01-02"] * 5, dtype="datetime64[s]")), {}, ValueError,
     "NaT"),
    (bad(timestamp=LOG["timestamp"].astype(str)), {}, TypeError, "numeric or datetime64"),
    (bad(timestamp=LOG["timestamp"] > 2), {}, TypeError, "numeric or datetime64"),
    (bad(label=np.array([1, 2, 0, 1, 0, 1, 1])), {}, ValueError, "only 0 and 1.*row 1"),
    (bad(label=LOG["label"].astype(str)), {}, TypeError, "label"),
    (bad(price=np.array([1, 2, np.nan, 1, 1, 1, 1.0])), dict(dense_features=["price"]), ValueError, "finite"),
    (bad(cate=np.array(["a", "a", "b", "b", "b", "c", "c"])), dict(item_features=["cate"]), ValueError,
     "item 10 has several values"),
    (LOG, dict(maxlen=0), ValueError, "maxlen must be an integer >= 1"),
    (LOG, dict(maxlen=2.0), ValueError, "maxlen"),
    (LOG, dict(maxlen=True), ValueError, "maxlen"),
    (LOG, dict(user=None), TypeError, "user must be a column name"),
    (LOG, dict(item_features="cate"), TypeError, "item_features must be a list"),
    (LOG, dict(sparse_features=["label"]), ValueError, "label column 'label' cannot also be a feature"),
    (LOG, dict(sparse_features=["item_id"]), ValueError, "used twice"),
    (LOG, dict(user="item_id"), ValueError, "different columns"),
    (bad(hist_item_id=LOG["item_id"]), dict(sparse_features=["hist_item_id"]), ValueError, "clash"),
    (LOG, dict(embedding_dim=0), ValueError, "embedding_dim"),
    (LOG, dict(seed=-1), ValueError, "seed"),
    (bad(item_id=np.full(7, 3)), dict(negatives=True), ValueError, "at least 2 distinct items"),
])
def test_bad_input(events, kwargs, error, match):
    with pytest.raises(error, match=match):
        sequences_from_events(events, **kwargs)


def test_bad_pandas_input():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(LOG)
    with pytest.raises(TypeError, match="timezone-aware"):
        sequences_from_events(frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="s", utc=True)))
    with pytest.raises(TypeError, match="float ids: missing values"):      # Int64 with NA -> float NaN
        sequences_from_events(frame.assign(user_id=pd.array([1, None, 2, 1, 1, 2, 1], dtype="Int64")))
    with pytest.raises(ValueError, match="missing values"):
        sequences_from_events(frame.assign(cate=["a", None, "a", "b", "b", "c", "c"]), item_features=["cate"])
    with pytest.raises(ValueError, match="no column 'user'"):
        sequences_from_events(frame, user="user")
    assert isinstance(sequences_from_events(frame).feature_columns[0], SparseFeat)


def test_blocks_of_rows_give_the_same_result(monkeypatch):
    """Histories are gathered in blocks of rows (bounded memory): block edges change nothing."""
    import npctr.datasets as datasets
    rng = np.random.default_rng(0)
    log = {"user_id": rng.integers(0, 5, 50), "item_id": rng.integers(0, 9, 50),
           "timestamp": rng.integers(0, 20, 50), "label": rng.integers(0, 2, 50)}
    whole = sequences_from_events(log, maxlen=4, negatives=True).x
    monkeypatch.setattr(datasets, "_ROW_BLOCK", 3)
    blocks = sequences_from_events(log, maxlen=4, negatives=True).x
    for k in whole:
        np.testing.assert_array_equal(blocks[k], whole[k])
    assert whole["seq_length"].max() == 4
