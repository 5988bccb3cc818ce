"""The arrangements issue 15 (speed) added: each is exact algebra or the same operations in
another layout, so each is checked against the plain form (bit for bit where the operations are
the same, else 1e-12 / 1e-5 relative as every fast path)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npctr.feature_column import DenseFeat
from npctr.models import DNNModel
from npctr.ops.activations import (ACTIVATIONS, dice_gate, dice_gate_from_half_bn_, relu_, sigmoid, sigmoid_,
                                   sigmoid_backward)
from npctr.ops.batch_norm import negated_inference_affine
from npctr.ops.rows import GROUP, per_feature
from npctr.serving.prepared import ROW_GROUP, UnitVectors, Workspace, as_records, take_rows
from npctr._validation import check_finite_rows
from test_inference import RTOL, assert_matches, din, features

DTYPES = [np.float32, np.float64]


# -- ops -----------------------------------------------------------------------------------------
@given(st.integers(0, 2 ** 31), st.integers(0, 5 * GROUP), st.integers(1, 12), st.sampled_from(DTYPES),
       st.sampled_from([np.add, np.subtract, np.multiply, np.divide]), st.booleans())
def test_per_feature_is_the_broadcast_bit_for_bit(seed, rows, h, dtype, ufunc, in_place):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((1, rows, h)).astype(dtype)
    v = (rng.standard_normal((1, 1, h)) + 3).astype(dtype)
    want = ufunc(a, v)
    got = per_feature(ufunc, a, v, out=a) if in_place else per_feature(ufunc, a, v.reshape(h))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype and got.shape == want.shape


def test_per_feature_falls_back_where_grouping_would_change_the_result():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 300, 300)).astype(np.float32)
    column = rng.standard_normal((1, 300, 1)).astype(np.float32)       # a feature axis that is not last
    np.testing.assert_array_equal(per_feature(np.multiply, a, column), a * column)
    mixed = rng.standard_normal(300)                                    # float64 vector: NumPy promotes
    assert per_feature(np.multiply, a, mixed).dtype == np.float64
    np.testing.assert_array_equal(per_feature(np.multiply, a, mixed), a * mixed)
    strided = a[:, :, ::2]
    np.testing.assert_array_equal(per_feature(np.add, strided, column[0, :150, 0]), strided + column[0, :150, 0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_activations_equal_the_layers(dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 7)) * 40).astype(dtype)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(sigmoid_(x.copy()), sigmoid(x))
    np.testing.assert_array_equal(relu_(x.copy(), np.zeros_like(x)), np.maximum(x, 0))
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = sigmoid(x / 40)
    np.testing.assert_array_equal(sigmoid_backward(dy, y), dy * y * (1 - y))
    assert ACTIVATIONS["sigmoid"][1](dy, y).dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_dice_gate_tanh_form_is_the_gate(dtype):
    """(1 + a)/2 + (1 - a)/2 tanh(BN(x)/2) = a + (1 - a) sigmoid(BN(x)), BN(x)/2 from the halved affine map."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 6)).astype(dtype) * 3
    mean, var = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    gamma, beta, alpha = rng.uniform(0.5, 2, 6), rng.standard_normal(6), rng.uniform(-0.5, 0.9, 6)
    bn = gamma * (x - mean) / np.sqrt(var + 1e-3) + beta
    want = dice_gate(sigmoid(bn), alpha)
    a, c = negated_inference_affine(mean, var, 1e-3, gamma, beta, factor=-0.5)
    u = (x * a + c).astype(dtype)
    np.testing.assert_allclose(u, bn / 2, rtol=RTOL[np.dtype(dtype).name] * 10, atol=1e-6)
    got = dice_gate_from_half_bn_(u, ((1 + alpha) / 2).astype(dtype), ((1 - alpha) / 2).astype(dtype))
    np.testing.assert_allclose(got, want, rtol=RTOL[np.dtype(dtype).name], atol=1e-6 if dtype == np.float32 else 1e-15)


# -- serving layout helpers ---------------------------------------------------------------------
def test_records_and_take_rows_copy_strided_columns_exactly():
    rng = np.random.default_rng(3)
    table = rng.standard_normal((40, 8))
    ids = rng.integers(0, 40, 500)
    out = np.full((500, 20), np.nan)
    take_rows(table, ids, out[:, 4:12], Workspace())
    np.testing.assert_array_equal(out[:, 4:12], table[ids])
    assert np.isnan(out[:, :4]).all() and np.isnan(out[:, 12:]).all()
    dst = np.zeros((5, 6))
    as_records(dst[:, 2:5])[...] = as_records(np.arange(15.0).reshape(5, 3))
    np.testing.assert_array_equal(dst[:, 2:5], np.arange(15.0).reshape(5, 3))


def test_unit_vectors_group_rows_only_when_they_divide():
    v = np.arange(3.0)
    z = np.zeros((ROW_GROUP * 2, 3))
    grouped, (tiled,) = UnitVectors(v).views(z)
    assert grouped.shape == (2, ROW_GROUP * 3) and np.shares_memory(grouped, z)
    grouped += tiled
    np.testing.assert_array_equal(z, np.broadcast_to(v, z.shape))
    assert UnitVectors(v).views(np.zeros((5, 3)))[0].shape == (5, 3)


def test_finiteness_by_sum_still_finds_every_bad_value_and_passes_overflowing_sums():
    big = np.full((4, 3), np.finfo(np.float32).max, np.float32)     # finite, but the sum is inf
    check_finite_rows(big, "x")
    bad = np.ones((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2"):
        check_finite_rows(bad, "x")
    bad[2, 1] = -np.inf
    with pytest.raises(ValueError, match="row 2"):
        check_finite_rows(bad, "x")


# -- the Predictor --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_large_batches_many_groups_and_chunks(dtype, threads):
    """Hundreds of valid positions per chunk (several ROW_GROUPs and a padded remainder), chunks
    shared between the calling thread and the pool."""
    model, cols = din(dtype, maxlen=40, att_hidden_size=(16, 8), att_activation="dice")
    x = features(cols, 333, np.random.default_rng(4))
    predictor = model.inference(threads=threads, chunk_rows=50)
    got = assert_matches(model, x, predictor)
    np.testing.assert_array_equal(model.inference(threads=1, chunk_rows=50).predict(x), got)


def test_model_predict_default_is_one_step_of_the_predictor():
    model, cols = din("float32", maxlen=20)
    x = features(cols, 150, np.random.default_rng(5))
    np.testing.assert_array_equal(model.predict(x), model.inference().predict(x))
    np.testing.assert_array_equal(model.predict(x, batch_size=32), model.inference().predict(x, batch_size=32))


@pytest.mark.parametrize("x_dtype,shape", [(np.float32, (70, 9)), (np.float64, (70, 9)), (np.float32, (70,))])
def test_dnn_on_one_dense_feature_read_in_place_or_copied(x_dtype, shape):
    dim = shape[1] if len(shape) == 2 else 1
    model = DNNModel([DenseFeat("x", dim)], dnn_hidden_units=(6, 4), dtype="float32")
    x = {"x": np.random.default_rng(6).standard_normal(shape).astype(x_dtype)}
    assert model.inference()._weights().dense_input == "x"
    assert_matches(model, x, model.inference(chunk_rows=16))


def test_one_row_dice_has_nothing_to_overflow():
    """The small path's tanh-form Dice: a near-constant unit (tiny moving variance) gives huge
    |BN(x)| and still no floating-point warning, and the same predictions."""
    model, cols = din("float32", att_activation="dice", dnn_activation="dice", dnn_use_bn=True)
    for path, w in model.state.items():
        if path.endswith("activation0/bn/moving_variance"):
            w[...] = 1e-12
    model.weights_changed()
    x = features(cols, 1, np.random.default_rng(7), lengths=[4])
    assert model.inference()._weights().small.exp_free
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = model.inference().predict(x)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(got, model.forward(x), rtol=RTOL["float32"], atol=0)
