"""npctr.ops.blocks: the ops' large passes in row blocks over the cores.

The layers' own tests run on arrays far below the sizes at which the ops fan out, so the blocked
code is proven here with the thresholds lowered (``forced_blocks``): every pass of every size is
cut into blocks, GEMMs into several row blocks, and run on two or three threads. Then the
gradient checks of the layers that use blocked ops must hold, the results must be bit for bit
the same whatever the thread count, and element-wise passes bit for bit what a single call gives.
"""
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npctr.ops import blocks
from npctr.ops.activations import dice_backward, sigmoid, sigmoid_backward
from npctr.ops.rows import per_feature

import test_gradients_core as core
import test_gradients_din as din
import test_shared_padding as shared


@pytest.fixture
def forced_blocks(monkeypatch):
    """Every pass fans out: thresholds at their minimum, OpenBLAS taken as single-threaded."""
    monkeypatch.setattr(blocks, "MIN_ELEMENTS", 1)
    monkeypatch.setattr(blocks, "MIN_GEMM_ROWS", 2)
    monkeypatch.setattr(blocks, "GEMM_BLOCK_ROWS", 3)
    monkeypatch.setattr(blocks, "blas_threads", lambda: 1)
    calls = []
    run = blocks.run
    monkeypatch.setattr(blocks, "run", lambda fn, bounds: (calls.append(len(bounds)), run(fn, bounds))[1])
    previous = blocks.num_threads()
    blocks.set_num_threads(2)
    yield calls
    blocks.set_num_threads(previous)


# -- the plans ----------------------------------------------------------------------------------
@given(st.integers(0, 10_000), st.integers(1, 64))
def test_even_bounds_cover_the_rows_in_equal_contiguous_blocks(n, parts):
    bounds = blocks.even_bounds(n, parts)
    assert len(bounds) == parts and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(blocks.MIN_GEMM_ROWS, 200_000))
def test_gemm_plan_depends_on_the_rows_alone(n):
    bounds = blocks.gemm_plan(n)
    assert len(bounds) % blocks.GEMM_BLOCKS_MULTIPLE == 0
    assert max(hi - lo for lo, hi in bounds) <= blocks.GEMM_BLOCK_ROWS
    previous = blocks.num_threads()
    try:
        for threads in (1, 2, 3):
            blocks.set_num_threads(threads)
            assert blocks.gemm_plan(n) == bounds
    finally:
        blocks.set_num_threads(previous)


# -- element-wise passes: bit for bit one call's result ------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_ops_in_blocks_equal_one_call(forced_blocks, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5, 6)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    v = rng.standard_normal(6).astype(dtype)
    p = 1 / (1 + np.exp(-x))
    gate = 0.2 + 0.8 * p
    alpha = rng.standard_normal(6).astype(dtype)
    # the equations written out in full, as the ops compute them without blocks
    np.testing.assert_array_equal(per_feature(np.multiply, x, v), x * v)
    e = np.exp(-x)
    e += 1.0
    np.testing.assert_array_equal(sigmoid(x), np.divide(1.0, e))
    expected = dy * p
    expected *= 1 - p
    np.testing.assert_array_equal(sigmoid_backward(dy, p), expected)
    u = dy * x
    u *= 1.0 - p
    d_alpha, d_normalized, direct = dice_backward(dy, x, p, gate, alpha, (0, 1))
    np.testing.assert_array_equal(d_alpha, np.sum(u, axis=(0, 1)))
    u *= p
    u *= 1.0 - alpha
    np.testing.assert_array_equal(d_normalized, u)
    np.testing.assert_array_equal(direct, dy * gate)
    assert forced_blocks, "the blocked paths were not taken"


# -- the layers' gradient checks with every pass in blocks ---------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "dice", "prelu"])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_local_activation_unit_gradients_in_blocks(forced_blocks, activation, split, training):
    core.test_local_activation_unit((6, 3), activation, split, training)
    core.test_local_activation_unit_bn_dropout(activation, split, training)
    assert forced_blocks


@pytest.mark.parametrize("training", [False, True])
def test_dice_batch_norm_dnn_gradients_in_blocks(forced_blocks, training):
    core.test_dice((4, 5, 3), training)
    core.test_batch_normalization((4, 5, 3), -1, True, True, training)
    core.test_dnn_activations("dice", True, training)
    core.test_dense("sigmoid", True, (4, 5, 3))
    assert forced_blocks


@pytest.mark.parametrize("activation", ["sigmoid", "dice"])
@pytest.mark.parametrize("weight_normalization", [False, True])
def test_attention_pooling_gradients_in_blocks(forced_blocks, activation, weight_normalization):
    for supports_masking in (False, True):
        din.test_attention_sequence_pooling(activation, True, weight_normalization, False, supports_masking, True)
    assert forced_blocks


@pytest.mark.parametrize("options", shared.OPTIONS[:3])
def test_shared_padding_in_blocks_matches_every_position(forced_blocks, options):
    shared.test_shared_padding_training_matches_every_position("float64", 1e-12, options)
    assert forced_blocks


# -- results do not depend on the thread count ----------------------------------------------------
def _din(columns, history):
    from npctr.models import DIN
    return DIN(columns, history, dnn_hidden_units=(16, 8), att_hidden_size=(8, 4), att_activation="dice",
               dnn_use_bn=True, seed=5)


def _dien(columns, history):
    """The GRUs' backpropagation through time and the auxiliary loss."""
    from npctr.models import DIEN
    return DIEN(columns, history, gru_type="AUGRU", use_negsampling=True, dnn_hidden_units=(16, 8),
                att_hidden_units=(8, 4), seed=5)


@pytest.mark.parametrize("build,data", [(_din, "make_din_data"), (_dien, "make_dien_data")], ids=["din", "dien"])
def test_training_is_bit_for_bit_the_same_with_any_thread_count(forced_blocks, build, data):
    import npctr.datasets
    x, y, columns, history = getattr(npctr.datasets, data)(96, seed=3)

    def trained(threads):
        blocks.set_num_threads(threads)
        model = build(columns, history)
        model.compile("adam", "binary_crossentropy")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        return model.get_weights(), model.predict(x)

    one = trained(1)
    assert not forced_blocks, "one thread fanned out"
    for threads in (2, 3):
        weights, pred = trained(threads)
        for a, b in zip(one[0], weights):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(one[1], pred)
    assert forced_blocks, "the blocked paths were not taken"


# -- the pool -----------------------------------------------------------------------------------
def test_an_error_in_a_worker_reaches_the_caller_and_the_pool_goes_on(forced_blocks):
    worker_ran = threading.Event()

    def fn(lo, hi):
        if threading.current_thread() is not threading.main_thread():
            worker_ran.set()
            raise ArithmeticError(f"block {lo}")
        worker_ran.wait(timeout=10)      # the caller waits for the worker to take a block
    with pytest.raises(ArithmeticError, match="block"):
        blocks.run(fn, blocks.even_bounds(4, 4))
    seen = []
    blocks.run(lambda lo, hi: seen.append(lo), blocks.even_bounds(6, 3))
    assert sorted(seen) == [0, 2, 4]


def test_no_fan_out_inside_serial_one_thread_or_a_threaded_blas(forced_blocks, monkeypatch):
    x = np.ones((8, 4))
    with blocks.serial():
        sigmoid(x)
    blocks.set_num_threads(1)
    sigmoid(x)
    blocks.set_num_threads(2)
    monkeypatch.setattr(blocks, "blas_threads", lambda: 2)
    sigmoid(x)
    monkeypatch.setattr(blocks, "blas_threads", lambda: None)     # not OpenBLAS: unknown threads
    sigmoid(x)
    assert not forced_blocks
    monkeypatch.setattr(blocks, "blas_threads", lambda: 1)
    sigmoid(x)
    assert forced_blocks


def test_blocks_inside_blocks_stay_on_their_thread(forced_blocks):
    inner = []

    def fn(lo, hi):
        blocks.rows(lambda a, b: inner.append(threading.current_thread().name), 4, 10 ** 9)
    blocks.run(fn, blocks.even_bounds(4, 4))
    assert forced_blocks == [4]          # the inner calls did not fan out again
    assert len(inner) == 4


def test_workers_handle_floating_point_errors_as_the_caller_does(forced_blocks):
    """NumPy's error state is per thread: a worker's block overflows as the caller said."""
    import warnings
    big = np.full(8, 1e30, np.float32)

    def blocks_on_both_threads(state):
        worker_ran = threading.Event()

        def fn(lo, hi):
            if threading.current_thread() is threading.main_thread():
                worker_ran.wait(timeout=10)      # the worker takes a block before the caller's returns
            else:
                worker_ran.set()
                np.multiply(big, big)            # overflows
        with np.errstate(**state):
            blocks.run(fn, blocks.even_bounds(2, 2))
        assert worker_ran.is_set()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocks_on_both_threads({"over": "ignore"})       # no warning, anywhere
    with pytest.raises(FloatingPointError):
        blocks_on_both_threads({"over": "raise"})


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        blocks.set_num_threads(bad)


@pytest.mark.parametrize("value,expected", [("3", 3), ("1", 1), ("0", None), ("x", None), ("", None)])
def test_threads_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("NPCTR_NUM_THREADS", value)
    assert blocks._threads_from_environment() == (expected or blocks.usable_cores())
