"""scatter_rows's fast stable sort: exactly NumPy's stable argsort, hence the same sums."""
import numpy as np
from hypothesis import given, strategies as st

from npctr.sparse import _stable_order, scatter_rows


@given(st.sampled_from([1, 3, 256, 257, 50_000, 65_536, 65_537, 10 ** 7, 2 ** 32]),
       st.integers(0, 300), st.sampled_from([np.int64, np.int32, np.uint32, np.uint16]),
       st.integers(0, 2 ** 31))
def test_stable_order_is_argsorts(n_rows, size, dtype, seed):
    rng = np.random.default_rng(seed)
    high = min(n_rows, int(np.iinfo(dtype).max) + 1)
    ids = rng.integers(0, high, size=size).astype(dtype)
    ids[: size // 3] = 0                  # many repeats, as DIN's padding id
    np.testing.assert_array_equal(_stable_order(ids, n_rows), np.argsort(ids, kind="stable"))


def test_stable_order_out_of_range_ids_fall_back():
    ids = np.array([5, -1, 70_000, 5, 0])
    np.testing.assert_array_equal(_stable_order(ids, 10), np.argsort(ids, kind="stable"))


def test_scatter_rows_sums_in_input_order():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 70_000, size=2_000)
    ids[::3] = 0
    rows = rng.normal(size=(2_000, 4)).astype(np.float32)
    grad = scatter_rows(ids, rows, (70_000, 4))
    order = np.argsort(ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])
    np.testing.assert_array_equal(grad.values, np.add.reduceat(rows[order], starts, axis=0))
    np.testing.assert_array_equal(grad.indices, np.unique(ids))
