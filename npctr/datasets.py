r"""Click data in DeepCTR's DIN / DIEN input format: synthetic and seeded, or built from an event log.

:func:`make_din_data` draws a catalogue of items, each in one category, and users
with a few categories of interest; every sample is an impression: a user, a
behaviour history of varying length (items mostly from the user's interests, some
browsing noise), a candidate item, and a click. The click depends on the candidate
*relative to the history*:

.. math::
    \Pr(\text{click}) = \sigma\bigl(b_0 + b_c\,[\text{candidate's category occurs in the history}]
    + b_i\,[\text{candidate item occurs in the history}] + u_{\text{user}}
    + b_p\,(\text{pay\_score} - \tfrac12)\bigr)

Candidates are drawn half from the categories of the history and half uniformly, so
the candidate alone says nothing (every category is a candidate equally often): what
predicts the click is whether *some* behaviour matches it. Attention over the history
(DIN) can pick that behaviour out; mean pooling dilutes it among the other behaviours
of a varied history, which is why a mean-pooling DNN predicts these clicks worse.

:func:`make_dien_data` draws the same kind of impressions from users whose interest
*drifts*: which of their interests is active changes over the history, and the click
depends on the interest active now, which only the order of the behaviours reveals
(see its docstring). :func:`sequences_from_events` builds the same inputs from a real
event log, one row per interaction, without leaking the future into a history.

Id 0 is padding everywhere (histories are padded at the end, as DeepCTR's
``pad_sequences(..., padding='post')``); real ids start at 1.
"""
from typing import NamedTuple

import numpy as np

from .feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from ._validation import check_positive_int


class _Catalogue(NamedTuple):
    """Items 1..n_items, each in one category 1..n_cates (index 0: padding)."""
    item_cate: np.ndarray     # (n_items + 1,) the category of each item id
    by_cate: np.ndarray       # (n_items,) item ids sorted by category
    cate_count: np.ndarray    # (n_cates + 1,) items per category
    cate_start: np.ndarray    # (n_cates + 1,) where each category's items start in by_cate


def _draw_catalogue(rng, n_items, n_cates):
    """Spread the items evenly over the categories, in a random order."""
    item_cate = np.zeros(n_items + 1, dtype=np.int64)
    item_cate[1:] = 1 + rng.permutation(n_items) % n_cates
    by_cate = np.argsort(item_cate[1:], kind="stable") + 1
    cate_count = np.bincount(item_cate[1:], minlength=n_cates + 1)
    cate_start = np.concatenate([[0], np.cumsum(cate_count)[:-1]])
    return _Catalogue(item_cate, by_cate, cate_count, cate_start)


def _items_in(catalogue, cates, rng):
    """A uniform item of each given category (any shape; category 0 gives some item, mask it)."""
    count = catalogue.cate_count[cates]
    return catalogue.by_cate[catalogue.cate_start[cates] + (rng.random(cates.shape) * count).astype(np.int64)]


def _other_items(rng, positives, n_items):
    """A uniform item of 1..n_items other than each positive (any shape), without rejection:
    draw r in 1..n_items-1 and skip over the positive (r >= positive -> r + 1)."""
    r = rng.integers(1, n_items, size=positives.shape)
    return r + (r >= positives)


def _draw_user_traits(rng, n_users, user_effect):
    """Gender (1 or 2) and a per-user logit offset of std ``user_effect``, for ids 0..n_users."""
    gender = rng.integers(1, 3, size=n_users + 1)
    user_bias = rng.normal(0.0, user_effect, size=n_users + 1) if user_effect else np.zeros(n_users + 1)
    return gender, user_bias


def _draw_clicks(rng, logit):
    """0/1 clicks, float64, with probability sigmoid(logit)."""
    return (rng.random(logit.shape) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)


def _history_columns(features, maxlen, embedding_dim, length_name, prefix="hist_"):
    """``VarLenSparseFeat`` ``<prefix><name>`` for each ``(name, vocabulary_size)``, sharing the
    candidate's table (``embedding_name=name``), with the length feature ``length_name``."""
    return [VarLenSparseFeat(SparseFeat(prefix + name, size, embedding_dim=embedding_dim, embedding_name=name),
                             maxlen, length_name=length_name) for name, size in features]


def _impression_columns(n_users, n_items, n_cates, maxlen, embedding_dim, negatives=False):
    """The synthetic data's columns: user, gender, candidate, pay_score, the histories
    (and the negative histories), as DeepCTR's DIN / DIEN examples."""
    histories = [("item_id", n_items + 1), ("cate_id", n_cates + 1)]
    return [
        SparseFeat("user", n_users + 1, embedding_dim=embedding_dim),
        SparseFeat("gender", 3, embedding_dim=4),
        SparseFeat("item_id", n_items + 1, embedding_dim=embedding_dim),
        SparseFeat("cate_id", n_cates + 1, embedding_dim=embedding_dim),
        DenseFeat("pay_score", 1),
        *_history_columns(histories, maxlen, embedding_dim, "seq_length"),
        *(_history_columns(histories, maxlen, embedding_dim, "seq_length", "neg_hist_") if negatives else []),
    ]


def _impression_inputs(user, gender, cand_item, cand_cate, pay_score, hist_item, hist_cate, length):
    """The model input dict, in DeepCTR's dtypes (int32 ids, float32 dense, (n, 1) length)."""
    i32 = np.int32
    return {"user": user.astype(i32), "gender": gender[user].astype(i32), "item_id": cand_item.astype(i32),
            "cate_id": cand_cate.astype(i32), "pay_score": pay_score.astype(np.float32),
            "hist_item_id": hist_item.astype(i32), "hist_cate_id": hist_cate.astype(i32),
            "seq_length": length.reshape(-1, 1).astype(i32)}


def _check_synthetic_args(sizes, n_interests, noise):
    """Shared checks of make_din_data / make_dien_data; ``sizes``: name -> positive int."""
    for name, value in sizes.items():
        check_positive_int(value, name)
    lo_k, hi_k = n_interests
    if not 1 <= lo_k <= hi_k <= sizes["n_cates"]:
        raise ValueError(f"n_interests must be (lo, hi) with 1 <= lo <= hi <= n_cates, got {n_interests!r}")
    if sizes["n_items"] < sizes["n_cates"]:
        raise ValueError(f"n_items ({sizes['n_items']}) must be >= n_cates ({sizes['n_cates']}): "
                         "every category needs an item")
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")


def _draw_interests(rng, n_users, n_cates, n_interests):
    """Each user's number of interests k_u and interests (the first k_u of each row of a
    ``(n_users + 1, hi)`` array of distinct categories)."""
    lo_k, hi_k = n_interests
    k_user = rng.integers(lo_k, hi_k + 1, size=n_users + 1)
    interests = np.argsort(rng.random((n_users + 1, n_cates)), axis=1)[:, :hi_k] + 1
    return k_user, interests


def _din_histories(rng, catalogue, user, k_user, interests, maxlen, noise, n_cates):
    """make_din_data's histories: every behaviour from a uniform interest of the user (or, with
    probability ``noise``, a uniform category); returns hist_item, hist_cate (0-padded), length."""
    n_samples = len(user)
    length = rng.integers(1, maxlen + 1, size=n_samples)
    valid = np.arange(maxlen)[None, :] < length[:, None]
    pick = (rng.random((n_samples, maxlen)) * k_user[user][:, None]).astype(np.int64)
    hist_cate = interests[user[:, None], pick]
    is_noise = rng.random((n_samples, maxlen)) < noise
    hist_cate = np.where(is_noise, rng.integers(1, n_cates + 1, size=(n_samples, maxlen)), hist_cate)
    hist_item = _items_in(catalogue, hist_cate, rng)
    return np.where(valid, hist_item, 0), np.where(valid, hist_cate, 0), length


def make_din_data(n_samples, n_users=200, n_items=500, n_cates=50, maxlen=20, n_interests=(2, 6),
                  noise=0.3, embedding_dim=8, base_logit=-1.5, cate_effect=3.0, item_effect=1.0,
                  user_effect=0.3, pay_effect=0.5, seed=2024):
    """Seeded synthetic DIN data.

    Parameters
    ----------
    n_samples : int
        Number of impressions.
    n_users : int, default 200
    n_items, n_cates : int, default 500, 50
        Catalogue size and number of categories (items are spread evenly over categories).
    maxlen : int, default 20
        History length; each history has between 1 and ``maxlen`` behaviours.
    n_interests : (int, int), default (2, 6)
        Each user has between ``n_interests[0]`` and ``n_interests[1]`` categories of interest.
    noise : float, default 0.3
        Fraction of behaviours drawn uniformly from the catalogue instead of the interests.
    embedding_dim : int, default 8
        ``embedding_dim`` of the item and category feature columns.
    base_logit, cate_effect, item_effect, user_effect, pay_effect : float
        The click model above (``user_effect`` is the std of a per-user logit offset).
    seed : int, default 2024

    Returns
    -------
    x : dict of ndarray
        ``user``, ``gender``, ``item_id``, ``cate_id`` ``(n_samples,)`` int32;
        ``pay_score`` ``(n_samples,)`` float32; ``hist_item_id``, ``hist_cate_id``
        ``(n_samples, maxlen)`` int32, 0-padded; ``seq_length`` ``(n_samples, 1)`` int32.
    y : ndarray, ``(n_samples,)`` float64 of 0/1 clicks.
    feature_columns : list
        ``SparseFeat`` user/gender/item_id/cate_id, ``DenseFeat`` pay_score, and the two
        ``VarLenSparseFeat`` histories sharing the item/category tables (``embedding_name``)
        with ``length_name='seq_length'``, as DeepCTR's DIN example.
    history_feature_list : list
        ``['item_id', 'cate_id']``.
    """
    _check_synthetic_args(dict(n_samples=n_samples, n_users=n_users, n_items=n_items, n_cates=n_cates,
                               maxlen=maxlen, embedding_dim=embedding_dim), n_interests, noise)
    rng = np.random.default_rng(seed)
    catalogue = _draw_catalogue(rng, n_items, n_cates)
    k_user, interests = _draw_interests(rng, n_users, n_cates, n_interests)
    gender, user_bias = _draw_user_traits(rng, n_users, user_effect)

    user = rng.integers(1, n_users + 1, size=n_samples)
    hist_item, hist_cate, length = _din_histories(rng, catalogue, user, k_user, interests, maxlen, noise, n_cates)

    # candidates: half from a category of the history, half uniform over the catalogue
    related = rng.random(n_samples) < 0.5
    from_hist = hist_cate[np.arange(n_samples), (rng.random(n_samples) * length).astype(np.int64)]
    cand_cate = np.where(related, from_hist, rng.integers(1, n_cates + 1, size=n_samples))
    cand_item = _items_in(catalogue, cand_cate, rng)

    cate_match = np.any(hist_cate == cand_cate[:, None], axis=1)
    item_match = np.any(hist_item == cand_item[:, None], axis=1)
    pay_score = rng.random(n_samples)
    logit = (base_logit + cate_effect * cate_match + item_effect * item_match + user_bias[user]
             + pay_effect * (pay_score - 0.5))
    y = _draw_clicks(rng, logit)

    x = _impression_inputs(user, gender, cand_item, cand_cate, pay_score, hist_item, hist_cate, length)
    columns = _impression_columns(n_users, n_items, n_cates, maxlen, embedding_dim)
    return x, y, columns, ["item_id", "cate_id"]
