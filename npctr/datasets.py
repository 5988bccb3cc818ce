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
import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from .feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from ._validation import as_array, check_positive_int, check_seed, float_array


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


def _drifting_interests(rng, user, k_user, interests, maxlen, drift):
    """The active interest at steps 0..maxlen: ``(n_samples, maxlen + 1)`` categories.

    Step 0 is a uniform interest of the user; after every step the interest moves, with
    probability ``drift``, to one of the user's OTHER interests, uniformly. The chain is
    symmetric, so it is reversible: a history read backwards is as likely as forwards,
    and the bag of behaviours cannot tell its first interest from its last.
    """
    n_samples = len(user)
    k = k_user[user][:, None]
    moves = rng.random((n_samples, maxlen + 1)) < drift
    offset = 1 + (rng.random((n_samples, maxlen + 1)) * (k - 1)).astype(np.int64)   # 1..k-1: another one
    step = np.where(moves, offset, 0)
    step[:, 0] = (rng.random(n_samples) * k[:, 0]).astype(np.int64)                 # the start
    return interests[user[:, None], np.cumsum(step, axis=1) % k]


def _dien_candidates(rng, catalogue, past, valid, now, p_current, p_past, n_cates):
    """Candidate categories: the interest active now (``p_current``), an interest active at a
    uniform earlier behaviour but not now (``p_past``; uniform if the history shows none), or
    uniform (the rest); and a uniform item of each."""
    n_samples = len(now)
    kind = rng.random(n_samples)
    was_other = valid & (past != now[:, None])
    earlier = np.argmax(np.where(was_other, rng.random(past.shape), -1.0), axis=1)
    uniform = rng.integers(1, n_cates + 1, size=n_samples)
    cand_cate = np.where(kind < p_current, now,
                         np.where((kind < p_current + p_past) & was_other.any(axis=1),
                                  past[np.arange(n_samples), earlier], uniform))
    return cand_cate, _items_in(catalogue, cand_cate, rng)


def _check_dien_args(drift, p_current, p_past):
    for name, value in (("drift", drift), ("p_current", p_current), ("p_past", p_past)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if p_current + p_past > 1:
        raise ValueError(f"p_current + p_past must be <= 1 (the rest are uniform candidates), "
                         f"got {p_current!r} + {p_past!r}")


def make_dien_data(n_samples, n_users=1000, n_items=1000, n_cates=100, maxlen=30, n_interests=(3, 8),
                   drift=0.1, noise=0.1, p_current=0.4, p_past=0.3, negatives=True, embedding_dim=8,
                   base_logit=-2.0, interest_effect=4.0, user_effect=0.3, pay_effect=0.5,
                   return_truth=False, seed=2024):
    r"""Seeded synthetic DIEN data: users whose interest drifts, clicks that follow the interest active now.

    The generative model, per impression (``docs/datasets.md`` has the measured AUCs):

    1. The catalogue and the users are drawn as in :func:`make_din_data`: items spread over
       categories; user :math:`u` has :math:`k_u` distinct categories of interest.
    2. **The interest drifts.** Behaviour :math:`t = 0` is in a uniform interest of the user;
       after each behaviour the active interest :math:`z_t` moves with probability ``drift``
       to another of the user's interests (uniformly), else it stays: the history is a run of
       segments of about ``1 / drift`` behaviours, one interest each. The history holds the
       last ``length`` behaviours (uniform in 1..``maxlen``), the most recent at
       ``length - 1``; each is an item of :math:`z_t` (or, with probability ``noise``, of a
       uniform category: browsing). The interest at the impression :math:`z_{\text{now}}` is
       one more step of the same chain: the last behaviour's interest, or (probability
       ``drift``) the next one.
    3. **Candidates** are of the interest active now (``p_current``), of an interest active
       earlier in the history but not now (``p_past``), or uniform (the rest).
    4. **The click** depends on the interest active now, not on the bag of everything the
       user ever clicked:

    .. math::
        \Pr(\text{click}) = \sigma\bigl(b_0 + b_z\,[\text{candidate's category} = z_{\text{now}}]
        + u_{\text{user}} + b_p\,(\text{pay\_score} - \tfrac12)\bigr)

    Why this separates DIEN from DIN by construction: a past-interest candidate and a
    current-interest candidate both occur in the history, about equally often (segments have
    memoryless lengths), and the interest chain is symmetric, hence reversible: the *bag* of
    behaviours that DIN attends over (DeepCTR's DIN has no position information) is as likely
    to come from the reversed history, so it cannot say which of the user's interests is the
    current one. Only the order can: the recent end of the sequence, which a GRU over the
    behaviours (DIEN's interest extractor and evolution) reads. The oracle score
    ``click_probability`` (``return_truth=True``) knows :math:`z_{\text{now}}`: with the
    defaults its AUC is about 0.89, matching the candidate's category with the last 3
    behaviours gives 0.81 and its share of the whole history 0.74 (validation AUCs on 100,000
    impressions, ``python tools/measure_dien_data.py --no-train``).

    Parameters
    ----------
    n_samples : int
        Number of impressions.
    n_users, n_items, n_cates : int, default 1000, 1000, 100
        Users, catalogue size and number of categories (items spread evenly over categories).
    maxlen : int, default 30
        History length; each history has between 1 and ``maxlen`` behaviours.
    n_interests : (int, int), default (3, 8)
        Each user has between ``n_interests[0]`` and ``n_interests[1]`` categories of interest.
    drift : float, default 0.1
        Probability that the active interest moves to another of the user's interests after
        a behaviour (mean segment length ``1 / drift``).
    noise : float, default 0.1
        Fraction of behaviours in a uniform category instead of the active interest.
    p_current, p_past : float, default 0.4, 0.3
        Fractions of candidates from the interest active now and from an earlier, inactive
        one; the rest are uniform over the categories.
    negatives : bool, default True
        Also return ``neg_hist_item_id`` / ``neg_hist_cate_id`` and their columns (DIEN's
        ``use_negsampling``). They are drawn either way, so the other arrays do not depend on it;
        pass False to feed DIN or a DNN, which would pool them as ordinary sequence features.
    embedding_dim : int, default 8
    base_logit, interest_effect, user_effect, pay_effect : float
        :math:`b_0`, :math:`b_z`, the std of the per-user offset :math:`u`, :math:`b_p`.
    return_truth : bool, default False
        Also return the hidden state (below).
    seed : int, default 2024

    Returns
    -------
    x : dict of ndarray
        As :func:`make_din_data` (``user``, ``gender``, ``item_id``, ``cate_id``,
        ``pay_score``, ``hist_item_id``, ``hist_cate_id`` ``(n_samples, maxlen)`` 0-padded at the
        end, ``seq_length`` ``(n_samples, 1)``), plus with ``negatives`` ``neg_hist_item_id``,
        ``neg_hist_cate_id`` ``(n_samples, maxlen)`` int32: at each valid step a uniform item of
        the catalogue other than the behaviour at that step, and its category; 0 past the length.
    y : ndarray, ``(n_samples,)`` float64 of 0/1 clicks.
    feature_columns : list
        :func:`make_din_data`'s, plus the ``neg_hist_`` ``VarLenSparseFeat`` sharing the tables,
        all with ``length_name='seq_length'`` (the name DeepCTR-TF's DIEN requires).
    history_feature_list : list
        ``['item_id', 'cate_id']``.
    truth : dict of ndarray, only with ``return_truth``
        ``interest`` ``(n_samples, maxlen)`` int32 the active interest at each behaviour
        (0 past the length), ``current_interest`` ``(n_samples,)`` int32 :math:`z_{\text{now}}`,
        ``click_probability`` ``(n_samples,)`` float64 (the oracle score).
    """
    _check_synthetic_args(dict(n_samples=n_samples, n_users=n_users, n_items=n_items, n_cates=n_cates,
                               maxlen=maxlen, embedding_dim=embedding_dim), n_interests, noise)
    _check_dien_args(drift, p_current, p_past)
    if n_items < 2:
        raise ValueError(f"n_items must be >= 2 (a negative is an item other than the behaviour), got {n_items}")
    rng = np.random.default_rng(seed)
    catalogue = _draw_catalogue(rng, n_items, n_cates)
    k_user, interests = _draw_interests(rng, n_users, n_cates, n_interests)
    gender, user_bias = _draw_user_traits(rng, n_users, user_effect)
    user = rng.integers(1, n_users + 1, size=n_samples)
    length = rng.integers(1, maxlen + 1, size=n_samples)
    valid = np.arange(maxlen)[None, :] < length[:, None]

    chain = _drifting_interests(rng, user, k_user, interests, maxlen, drift)
    past, now = np.where(valid, chain[:, :maxlen], 0), chain[np.arange(n_samples), length]
    is_noise = rng.random((n_samples, maxlen)) < noise
    hist_cate = np.where(valid, np.where(is_noise, rng.integers(1, n_cates + 1, size=past.shape), past), 0)
    hist_item = np.where(valid, _items_in(catalogue, hist_cate, rng), 0)
    neg_item = np.where(valid, _other_items(rng, hist_item, n_items), 0)
    cand_cate, cand_item = _dien_candidates(rng, catalogue, past, valid, now, p_current, p_past, n_cates)

    pay_score = rng.random(n_samples)
    logit = base_logit + interest_effect * (cand_cate == now) + user_bias[user] + pay_effect * (pay_score - 0.5)
    y = _draw_clicks(rng, logit)

    x = _impression_inputs(user, gender, cand_item, cand_cate, pay_score, hist_item, hist_cate, length)
    if negatives:
        x["neg_hist_item_id"] = neg_item.astype(np.int32)
        x["neg_hist_cate_id"] = catalogue.item_cate[neg_item].astype(np.int32)
    columns = _impression_columns(n_users, n_items, n_cates, maxlen, embedding_dim, negatives)
    out = (x, y, columns, ["item_id", "cate_id"])
    if return_truth:
        out += ({"interest": past.astype(np.int32), "current_interest": now.astype(np.int32),
                 "click_probability": 1.0 / (1.0 + np.exp(-logit))},)
    return out


# ---------------------------------------------------------------------------------------------
# DIN / DIEN inputs from an event log

class EventSequences(NamedTuple):
    """What :func:`sequences_from_events` returns (unpacks like :func:`make_din_data`, plus one)."""
    x: dict
    y: np.ndarray
    feature_columns: list
    history_feature_list: list
    vocabularies: dict


#: rows gathered at a time: bounds the temporary index arrays to about 2**16 x maxlen
_ROW_BLOCK = 1 << 16


def _event_columns(events, columns):
    """``{column: 1-D ndarray}`` for the named columns of a mapping of arrays or a pandas DataFrame
    (pandas is imported only here, and only if ``events`` is not a mapping)."""
    if isinstance(events, Mapping):                 # a dict, an np.load(...) of an .npz, ...
        get, have = events.__getitem__, list(events)
    else:
        try:
            import pandas
        except ImportError:
            pandas = None
        if pandas is None or not isinstance(events, pandas.DataFrame):
            raise TypeError("events must be a dict of 1-D arrays (column name -> values, one row per "
                            f"interaction) or a pandas DataFrame, got {type(events).__name__}")
        get, have = (lambda name: events[name].to_numpy()), list(events.columns)
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"events has no column {missing[0]!r} (events needs {list(columns)}; "
                         f"it has {have[:20]}{' ...' if len(have) > 20 else ''})")
    out = {}
    for c in columns:
        values = as_array(get(c), f"events[{c!r}]")
        if values.ndim != 1:
            raise ValueError(f"events[{c!r}] must be 1-D (one value per interaction), got shape {values.shape}")
        out[c] = values
    sizes = {c: len(v) for c, v in out.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the columns of events must have the same length, got {sizes}")
    if not next(iter(sizes.values())):
        raise ValueError("events is empty: it needs at least one interaction")
    return out


def _encode_ids(values, column):
    """Raw ids -> (vocabulary, codes 1..len(vocabulary)): id k is ``vocabulary[k - 1]`` (0 is padding)."""
    if values.dtype.kind not in "iuUSO":
        raise TypeError(f"events[{column!r}] must hold integer or string ids, got dtype {values.dtype}"
                        + (" (float ids: missing values? encode them first)" if values.dtype.kind == "f" else ""))
    if values.dtype.kind == "O":
        missing = np.equal(values, None) | np.not_equal(values, values)        # None, NaN, pd.NA
        if missing.any():
            row = int(np.argmax(missing))
            raise ValueError(f"events[{column!r}] has missing values ({values[row]!r} at row {row}, "
                             f"{int(missing.sum())} of {len(values)} rows): drop or fill them first")
    try:
        vocabulary, codes = np.unique(values, return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"events[{column!r}] mixes id types that cannot be ordered: {exc}") from None
    return vocabulary, codes.reshape(-1).astype(np.int64) + 1


def _time_ranks(values, column):
    """Timestamps -> dense ranks 0..K-1 (equal times, equal ranks) and K. Numbers or datetime64."""
    kind = values.dtype.kind
    if kind not in "iufMm":
        raise TypeError(f"events[{column!r}] (time) must be numeric or datetime64, got dtype {values.dtype}"
                        + (" (timezone-aware times: convert with .dt.tz_convert(None))" if kind == "O" else ""))
    bad = np.isnat(values) if kind in "Mm" else ~np.isfinite(values) if kind == "f" else None
    if bad is not None and bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"events[{column!r}] (time) must be finite, not NaN / NaT / inf: row {row} is "
                         f"{values[row]} ({int(bad.sum())} such rows)")
    times, ranks = np.unique(values, return_inverse=True)
    return ranks.reshape(-1).astype(np.int64), len(times)


def _labels(values, column):
    """0/1 labels as float64 (bool, integers or floats holding only 0 and 1)."""
    if values.dtype.kind not in "biuf":
        raise TypeError(f"events[{column!r}] (label) must be 0/1 numbers or booleans, got dtype {values.dtype}")
    y = values.astype(np.float64)
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"events[{column!r}] (label) must hold only 0 and 1, got {values[row].item()!r} "
                         f"at row {row}")
    return y


def _item_feature_table(item_codes, n_items, values, column, item, item_vocabulary):
    """An item attribute (e.g. its category) as a table indexed by item code: (vocabulary,
    table (n_items + 1,) with 0 for padding). Each item must have exactly one value."""
    vocabulary, codes = _encode_ids(values, column)
    pairs = np.unique(item_codes * (len(vocabulary) + 1) + codes)
    if len(pairs) != n_items:
        owners = pairs // (len(vocabulary) + 1)
        twice = owners[np.flatnonzero(owners[1:] == owners[:-1])[0]]
        found = vocabulary[pairs[owners == twice] % (len(vocabulary) + 1) - 1]
        raise ValueError(f"item feature {column!r} must be a function of the item ({item!r}), but item "
                         f"{item_vocabulary[twice - 1:twice].tolist()[0]!r} has several values: {found[:5].tolist()}")
    table = np.zeros(n_items + 1, dtype=np.int64)
    table[item_codes] = codes
    return vocabulary, table


def _behaviour_order(user_codes, time_ranks, n_times, positive):
    """The positive interactions sorted by user, then time, then row (stable): every user's
    behaviour sequence, one after the other. Returns the sort key of every row, the rows of
    the behaviours in that order, and their keys."""
    key = user_codes * n_times + time_ranks
    behaviours = np.flatnonzero(positive)
    behaviours = behaviours[np.argsort(key[behaviours], kind="stable")]
    return key, behaviours, key[behaviours]


def _history_steps(key, sorted_key, user_codes, n_times, maxlen):
    """Per row: how many behaviours its history keeps (``length``) and where they end in the
    sorted behaviours. A row's history is its user's behaviours at times strictly before the
    row's (``searchsorted`` left of its key), of which the last ``maxlen``."""
    end = np.searchsorted(sorted_key, key, side="left")
    start = np.searchsorted(sorted_key, user_codes * n_times, side="left")
    length = np.minimum(end - start, maxlen)
    return end, length


def _gather_histories(sequences, end, length, maxlen):
    """For each row, ``sequences[name][end - length : end]`` left-aligned, 0-padded at the end
    (DeepCTR's ``padding='post'``): ``{name: (n_rows, maxlen) int32}``.

    Only the valid positions are touched (``sum(length)`` of them: histories are often much
    shorter than ``maxlen``): row ``r``'s ``j``-th behaviour is ``end[r] - length[r] + j``.
    Vectorized over rows, in blocks of ``_ROW_BLOCK`` rows to bound the index arrays."""
    n_rows = len(end)
    out = {name: np.zeros((n_rows, maxlen), dtype=np.int32) for name in sequences}
    for lo in range(0, n_rows, _ROW_BLOCK):
        block_length = length[lo:lo + _ROW_BLOCK]
        rows = np.repeat(np.arange(lo, lo + len(block_length)), block_length)
        first = np.cumsum(block_length) - block_length                  # where each row starts in `rows`
        steps = np.arange(len(rows)) - np.repeat(first, block_length)   # j = 0..length-1 within a row
        source = np.repeat(end[lo:lo + _ROW_BLOCK] - block_length, block_length) + steps
        flat = rows * maxlen + steps
        for name, values in sequences.items():
            out[name].reshape(-1)[flat] = values[source]
    return out


def _check_event_args(user, item, time, label, maxlen, item_features, sparse_features, dense_features,
                      length_name):
    """The column names (str, distinct, no clash with the generated features) and maxlen."""
    for name, value in (("user", user), ("item", item), ("time", time), ("length_name", length_name)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a column name (a non-empty str), got {value!r}")
    if label is not None and (not isinstance(label, str) or not label):
        raise TypeError(f"label must be a column name (a non-empty str) or None, got {label!r}")
    lists = {"item_features": item_features, "sparse_features": sparse_features, "dense_features": dense_features}
    for name, value in lists.items():
        if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
            raise TypeError(f"{name} must be a list of column names, got {value!r}")
    if isinstance(maxlen, bool) or not isinstance(maxlen, numbers.Integral) or maxlen < 1:
        raise ValueError(f"maxlen must be an integer >= 1, got {maxlen!r}")
    features = [item, *item_features, *sparse_features, *dense_features]
    if label is not None and label in features:
        raise ValueError(f"the label column {label!r} cannot also be a feature (that would leak the click)")
    if user == item:
        raise ValueError(f"user and item must be different columns, got {user!r} for both")
    if len(set(features)) != len(features):
        raise ValueError(f"a column is used twice among item, item_features, sparse_features and "
                         f"dense_features: {features}")
    generated = {length_name} | {p + f for f in (item, *item_features) for p in ("hist_", "neg_hist_")}
    clash = sorted(generated & set(features))
    if clash:
        raise ValueError(f"column {clash[0]!r} would clash with a generated input "
                         f"(hist_ / neg_hist_ histories, length {length_name!r}): rename it")
    return features


def _encode_features(table, item, item_features, sparse_features, dense_features):
    """Every feature of the rows: ``(vocabularies, values, item_tables)``. Ids are encoded
    1..V in sorted order of the raw values; item features are looked up per item (so the
    histories can carry them); dense features are finite floats."""
    vocabularies, values, item_tables = {}, {}, {}
    vocabularies[item], values[item] = _encode_ids(table[item], item)
    for name in item_features:
        vocabularies[name], item_tables[name] = _item_feature_table(
            values[item], len(vocabularies[item]), table[name], name, item, vocabularies[item])
        values[name] = item_tables[name][values[item]]
    for name in sparse_features:
        vocabularies[name], values[name] = _encode_ids(table[name], name)
    for name in dense_features:
        values[name] = float_array(table[name], f"events[{name!r}] (dense feature)")
        bad = ~np.isfinite(values[name])
        if bad.any():
            raise ValueError(f"events[{name!r}] (dense feature) must be finite: row {int(np.argmax(bad))} "
                             f"is {values[name][np.argmax(bad)]}")
    return vocabularies, values, item_tables


def _event_columns_for_model(vocabularies, item, item_features, sparse_features, dense_features, maxlen,
                             embedding_dim, length_name, negatives):
    """The feature columns, in DeepCTR's order: sparse, candidate, dense, histories, negatives."""
    def sparse(name):
        return SparseFeat(name, len(vocabularies[name]) + 1, embedding_dim=embedding_dim)
    histories = [(name, len(vocabularies[name]) + 1) for name in (item, *item_features)]
    return [*map(sparse, sparse_features), *map(sparse, (item, *item_features)),
            *(DenseFeat(name, 1) for name in dense_features),
            *_history_columns(histories, maxlen, embedding_dim, length_name),
            *(_history_columns(histories, maxlen, embedding_dim, length_name, "neg_hist_") if negatives else [])]


def sequences_from_events(events, user="user_id", item="item_id", time="timestamp", label="label", maxlen=50,
                          negatives=False, item_features=(), sparse_features=(), dense_features=(),
                          embedding_dim=8, length_name="seq_length", seed=2024):
    """DIN / DIEN inputs from an event log: for every interaction, the user's history before it.

    Row ``i`` of every output is event ``i`` of ``events`` (any row order: the log is sorted
    internally, stably, by user then time), its candidate the event's item, its label the event's.
    Its history is the items of the same user's **positive** interactions (``label == 1``; all of
    them with ``label=None``) at times **strictly before** the event's, oldest first:

    - *No leakage*: an interaction at the same timestamp as the row (the row itself included) is
      never in its history, since their order is unknown. Everything returned for row ``i`` is
      computed from events before it, except the id encoding (``vocabularies``) and the
      negatives' catalogue, which span the whole log.
    - *Positives only*, as DIN's and DIEN's Amazon and Taobao preprocessing: an impression that
      was not clicked is a row (a label-0 sample) but never a behaviour.
    - ``maxlen``: the most recent ``maxlen`` behaviours are kept (Keras ``pad_sequences``'s
      default ``truncating='pre'``), left-aligned and 0-padded at the end (``padding='post'``),
      as DeepCTR's DIN and DIEN read them with the length feature; a row without an earlier
      behaviour has length 0 (DeepCTR-Torch cannot train on a batch whose rows all have length 0).
    - ``negatives``: one negative per behaviour, a uniform item of the catalogue (every item of the
      log) other than the behaviour's item, drawn once per behaviour (seeded), so a behaviour has
      the same negative in every history holding it; item features of a negative are its own.

    Vectorized: a stable sort of the positives by (user, time) and one ``searchsorted`` per row;
    no Python loop over events or users.

    Parameters
    ----------
    events : dict of 1-D arrays, or pandas.DataFrame
        One row per interaction. Ids (user, item, item and sparse features): integers or strings,
        no missing values. Time: numbers or datetime64, finite (ties allowed). Label: 0/1.
    user, item, time : str, default 'user_id', 'item_id', 'timestamp'
        Column names. The candidate feature is named after ``item``, the history ``hist_<item>``.
    label : str or None, default 'label'
        The 0/1 click column; None: every event is a positive interaction (``y`` all ones).
    maxlen : int, default 50
    negatives : bool, default False
        Also build ``neg_hist_<x>`` for every history feature (DIEN's ``use_negsampling``).
    item_features : list of str
        Columns that are attributes of the item (e.g. its category): the candidate's and
        ``hist_<x>`` / ``neg_hist_<x>`` histories, sharing one table (``embedding_name``). Each item
        must have one value.
    sparse_features, dense_features : list of str
        Other per-row features (e.g. the user id, a price), not part of the history.
    embedding_dim : int, default 8
    length_name : str, default 'seq_length'
        The length feature (DeepCTR-TF's DIEN requires ``'seq_length'``).
    seed : int, default 2024
        Seeds the negatives.

    Returns
    -------
    EventSequences
        ``(x, y, feature_columns, history_feature_list, vocabularies)``: ``x`` ids ``(n_events,)``
        int32 (encoded 1..V), dense ``(n_events,)`` float, histories ``(n_events, maxlen)`` int32,
        ``length_name`` ``(n_events, 1)`` int32; ``y`` ``(n_events,)`` float64; the columns for
        ``DIN`` / ``DIEN`` / ``DNNModel``; ``history_feature_list`` ``[item, *item_features]``;
        ``vocabularies[name][k - 1]`` is the raw value of id ``k`` of each id feature.
    """
    features = _check_event_args(user, item, time, label, maxlen, item_features, sparse_features,
                                 dense_features, length_name)
    embedding_dim, seed = check_positive_int(embedding_dim, "embedding_dim"), check_seed(seed)
    table = _event_columns(events, list(dict.fromkeys([user, time, *([label] if label else []), *features])))
    _, user_codes = _encode_ids(table[user], user)
    time_ranks, n_times = _time_ranks(table[time], time)
    y = _labels(table[label], label) if label is not None else np.ones(len(user_codes))
    vocabularies, values, item_tables = _encode_features(table, item, item_features, sparse_features,
                                                         dense_features)
    n_items = len(vocabularies[item])
    if negatives and n_items < 2:
        raise ValueError(f"negatives=True needs at least 2 distinct items in events[{item!r}] (a negative "
                         f"is an item other than the behaviour's), got {n_items}")

    key, behaviours, sorted_key = _behaviour_order(user_codes, time_ranks, n_times, y == 1)
    end, length = _history_steps(key, sorted_key, user_codes, n_times, maxlen)
    behaviour_items = {"hist_": values[item][behaviours]}         # per behaviour, in (user, time) order
    if negatives:
        behaviour_items["neg_hist_"] = _other_items(np.random.default_rng(seed), behaviour_items["hist_"], n_items)
    sequences = {prefix + name: (items if name == item else item_tables[name][items])
                 for prefix, items in behaviour_items.items() for name in (item, *item_features)}
    x = {name: values[name].astype(np.int32) for name in (*sparse_features, item, *item_features)}
    x.update({name: values[name] for name in dense_features})
    x.update(_gather_histories(sequences, end, length, maxlen))
    x[length_name] = length.reshape(-1, 1).astype(np.int32)
    columns = _event_columns_for_model(vocabularies, item, item_features, sparse_features, dense_features,
                                       maxlen, embedding_dim, length_name, negatives)
    return EventSequences(x, y, columns, [item, *item_features], vocabularies)
