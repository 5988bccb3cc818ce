"""Counted batch statistics (shared padding): the count-weighted moments and backward are the
formulas of docs/local_activation_unit.md (the sums over rows to within their rounding: they are
GEMVs, another summation order than np.sum's), and the row-sparse count scaling is bit for bit the
broadcast product."""
import numpy as np
from hypothesis import given, strategies as st

from npctr.ops.batch_norm import (times_counts_ as _times_counts, batch_moments, batch_norm_backward,
                                        batch_norm_forward)


def _case(seed, rows, features, dtype, fortran):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, rows, features)).astype(dtype)
    counts = np.ones((1, rows, 1), dtype)
    picked = rng.random(rows) < 0.2
    counts[0, picked, 0] = rng.integers(2, 50, size=int(picked.sum()))
    if fortran:
        x = np.asfortranarray(x)
    return x, counts


@given(st.integers(0, 2 ** 31), st.integers(1, 40), st.integers(1, 9),
       st.sampled_from([np.float32, np.float64]), st.booleans())
def test_counted_moments_and_backward_are_the_broadcast_formulas(seed, rows, features, dtype, fortran):
    x, counts = _case(seed, rows, features, dtype, fortran)
    axes = (0, 1)
    m = counts.sum()
    eps = np.finfo(dtype).eps
    mean, variance, centred = batch_moments(x, axes, counts)
    wide, c = x.astype(np.float64), counts.astype(np.float64)
    want_mean = np.sum(wide * c, axis=axes, keepdims=True) / m
    # a sum of n terms is within n eps sum|terms| of the exact one (plus the rounding of the quotient)
    assert_sum_close(mean, want_mean, rows * eps * np.sum(np.abs(wide) * c, axis=axes, keepdims=True) / m, eps)
    np.testing.assert_array_equal(centred, x - mean)
    want_variance = np.sum((wide - mean) ** 2 * c, axis=axes, keepdims=True) / m
    assert_sum_close(variance, want_variance, 2 * rows * eps * want_variance, eps)

    _, cache = batch_norm_forward(x, mean, variance, None, None, 1e-9, axes, True, centred, counts)
    dy = np.random.default_rng(seed + 1).normal(size=x.shape).astype(dtype)
    dx = batch_norm_backward(dy, cache, with_beta=False)[0]
    x_hat, inv_std = cache.x_hat, cache.inv_std
    g_mean = np.sum(dy.astype(np.float64), axis=axes, keepdims=True) / m
    gx_mean = np.sum(dy.astype(np.float64) * x_hat, axis=axes, keepdims=True) / m
    want = inv_std * (dy - counts * (g_mean + x_hat * gx_mean))
    scale = inv_std * (np.abs(dy) + counts * (np.sum(np.abs(dy), axis=axes, keepdims=True)
                                              + np.abs(x_hat) * np.sum(np.abs(dy * x_hat), axis=axes, keepdims=True)) / m)
    assert np.all(np.abs(dx - want) <= 4 * rows * eps * scale), np.max(np.abs(dx - want) / scale)


def assert_sum_close(got, want, bound, eps):
    assert np.all(np.abs(got - want) <= bound + 2 * eps * np.abs(want)), (got, want, bound)


@given(st.integers(0, 2 ** 31), st.booleans())
def test_times_counts_any_layout(seed, fortran):
    x, counts = _case(seed, 13, 4, np.float32, fortran)
    want = x * counts
    got = _times_counts(x, counts)
    assert got is x
    np.testing.assert_array_equal(got, want)
