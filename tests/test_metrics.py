"""Exact AUC (ties), log loss, accuracy, mse; Keras's BCE value."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st, assume

from npctr.training import metrics
from npctr.training.metrics import roc_auc, log_loss, binary_accuracy, average_ranks


def brute_force_auc(y, s):
    pos = [si for yi, si in zip(y, s) if yi == 1]
    neg = [si for yi, si in zip(y, s) if yi == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_with_ties_hand_example():
    y = [1, 0, 1, 0, 1]
    s = [0.9, 0.9, 0.5, 0.1, 0.1]
    # pairs (pos, neg): (0.9,0.9)=.5 (0.9,0.1)=1 (0.5,0.9)=0 (0.5,0.1)=1 (0.1,0.9)=0 (0.1,0.1)=.5 -> 3/6
    assert roc_auc(y, s) == 0.5
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert roc_auc([1, 0], [0.2, 0.8]) == 0.0


def test_average_ranks():
    np.testing.assert_array_equal(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


labels_scores = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 5).map(lambda k: k / 5.0), min_size=n, max_size=n)))   # many ties


@given(labels_scores)
def test_auc_matches_pairwise_count(data):
    y, s = data
    assume(0 < sum(y) < len(y))
    a = roc_auc(y, s)
    assert 0.0 <= a <= 1.0
    assert a == pytest.approx(brute_force_auc(y, s), abs=1e-12)


@given(labels_scores)
def test_auc_label_flip_and_monotone_invariance(data):
    y, s = data
    assume(0 < sum(y) < len(y))
    y, s = np.array(y), np.array(s)
    a = roc_auc(y, s)
    assert roc_auc(1 - y, s) == pytest.approx(1 - a, abs=1e-12)
    assert roc_auc(y, np.exp(3 * s) - 7) == pytest.approx(a, abs=1e-12)     # strictly increasing map
    assert roc_auc(y, -s) == pytest.approx(1 - a, abs=1e-12)


def test_auc_single_class_is_an_error():
    with pytest.raises(ValueError, match="one class"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])


def test_logloss_is_keras_bce_by_hand():
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.8, 0.3, 1.0, 0.0])
    eps = 1e-7
    # clip to [eps, 1 - eps], then -[y log(p + eps) + (1 - y) log(1 - p + eps)]
    by_hand = -(np.log(0.8 + eps) + np.log(1 - 0.3 + eps) + np.log(1 - eps + eps) + np.log(1 - eps + eps)) / 4
    assert log_loss(y, p) == pytest.approx(by_hand, rel=1e-15)
    assert np.isfinite(log_loss([1.0], [0.0]))   # clipped: -log(2e-7)
    assert log_loss([1.0], [0.0]) == pytest.approx(-np.log(2e-7), rel=1e-12)


def test_accuracy_threshold_strict():
    # predicted classes (p > 0.5): [0, 0, 1, 0]; the first sample (p = 0.5, label 1) is wrong
    assert binary_accuracy([1, 0, 1, 0], [0.5, 0.5, 0.51, 0.2]) == 0.75


def test_mse():
    assert metrics.mean_squared_error([1.0, 2.0], [1.5, 0.0]) == pytest.approx((0.25 + 4.0) / 2, rel=1e-15)


@pytest.mark.parametrize("name,key", [("auc", "auc"), ("AUC", "auc"), ("binary_crossentropy", "binary_crossentropy"),
                                      ("logloss", "logloss"), ("accuracy", "accuracy"), ("acc", "acc"),
                                      ("mse", "mse")])
def test_get_names(name, key):
    k, fn = metrics.get(name)
    assert k == key and callable(fn)


def test_get_unknown():
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get("f1")
