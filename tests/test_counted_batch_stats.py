"""Counted batch statistics (shared padding): the row-sparse count scaling is bit for bit the
broadcast product of the formulas in docs/local_activation_unit.md."""
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
    mean, variance, centred = batch_moments(x, axes, counts)
    want_mean = np.sum(x * counts, axis=axes, keepdims=True) / m
    want_centred = x - want_mean
    want_variance = np.sum(want_centred * want_centred * counts, axis=axes, keepdims=True) / m
    np.testing.assert_array_equal(mean, want_mean)
    np.testing.assert_array_equal(variance, want_variance)
    np.testing.assert_array_equal(centred, want_centred)

    _, cache = batch_norm_forward(x, mean, variance, None, None, 1e-9, axes, True, centred, counts)
    dy = np.random.default_rng(seed + 1).normal(size=x.shape).astype(dtype)
    dx = batch_norm_backward(dy, cache, with_beta=False)[0]
    x_hat, inv_std = cache.x_hat, cache.inv_std
    g_mean = np.sum(dy, axis=axes, keepdims=True) / m
    gx_mean = np.sum(dy * x_hat, axis=axes, keepdims=True) / m
    np.testing.assert_array_equal(dx, inv_std * (dy - counts * (g_mean + x_hat * gx_mean)))


@given(st.integers(0, 2 ** 31), st.booleans())
def test_times_counts_any_layout(seed, fortran):
    x, counts = _case(seed, 13, 4, np.float32, fortran)
    want = x * counts
    got = _times_counts(x, counts)
    assert got is x
    np.testing.assert_array_equal(got, want)
