"""Training with the shared-padding LocalActivationUnit (every all-padding position of a row
computed once, weighted by its count in Dice's batch statistics) gives the results of
computing every position: predictions, every gradient and the moving statistics, to
round-off (1e-12 relative in float64). The central-difference checks of DIN in
tests/test_gradients_din.py run through this path too (their histories have padding)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import npctr.layers.core as core
from npctr.layers.sequence import AttentionSequencePoolingLayer
from npctr.sparse import RowGrad
from test_inference import din, features


def train_step(model, x, seed):
    """One training forward and backward; returns predictions, gradients, new moving statistics."""
    snap = model.snapshot()
    p = model.forward(x, training=True)
    model.backward(np.random.default_rng(seed).standard_normal(p.shape).astype(model.dtype))
    grads = {k: (v.to_dense() if isinstance(v, RowGrad) else v).copy() for k, v in model.grads.items()}
    state = {k: v.copy() for k, v in model.state.items()}
    model.restore(snap)
    return p, grads, state


def both_paths(model, x, seed=0):
    out = {}
    try:
        for flag in (False, True):
            core.SHARE_PADDING = flag
            out[flag] = train_step(model, x, seed)
    finally:
        core.SHARE_PADDING = True
    return out[False], out[True]


def assert_same(plain, shared, rtol):
    (p0, g0, s0), (p1, g1, s1) = plain, shared
    np.testing.assert_allclose(p1, p0, rtol=rtol, atol=0)
    for k in g0:
        # relative to the gradients of the same layer: a gradient that is zero by symmetry (the
        # score bias under a softmax, shift-invariant) is round-off of that size on both sides
        layer = k.rsplit("/", 1)[0]
        scale = max(float(np.max(np.abs(v))) for key, v in g0.items() if key.rsplit("/", 1)[0] == layer)
        np.testing.assert_allclose(g1[k], g0[k], rtol=rtol, atol=rtol * scale, err_msg=k)
    for k in s0:
        np.testing.assert_allclose(s1[k], s0[k], rtol=rtol, atol=0, err_msg=k)


OPTIONS = [{}, {"att_weight_normalization": True}, {"dnn_use_bn": True, "dnn_activation": "dice"},
           {"att_activation": "sigmoid"}, {"att_hidden_size": (5,)}, {"conventions": "keras3"}]


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_shared_padding_training_matches_every_position(dtype, rtol, options):
    model, cols = din(dtype, **options)
    x = features(cols, 29, np.random.default_rng(3), empty_rows=0.3)
    assert_same(*both_paths(model, x), rtol)


@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 7), maxlen=st.integers(1, 6),
       empty=st.sampled_from([0.0, 0.5, 1.0]), wn=st.booleans())
def test_property_any_padding(seed, n, maxlen, empty, wn):
    model, cols = din(maxlen=maxlen, seed=seed, att_weight_normalization=wn)
    x = features(cols, n, np.random.default_rng(seed), empty_rows=empty)
    assert_same(*both_paths(model, x, seed), 1e-12)


def test_shared_path_is_taken_and_skipped_where_it_must_be():
    model, cols = din()
    x = features(cols, 12, np.random.default_rng(4), empty_rows=0.5)
    model.forward(x, training=True)
    lau = model._layers["attention_sequence_pooling_layer"]._layers["local_att"]
    assert isinstance(lau._cache, core.SharedPaddingCache)
    prelu, cols = din(att_activation="prelu")                  # a per-position alpha: no sharing
    prelu.forward(x, training=True)
    lau = prelu._layers["attention_sequence_pooling_layer"]._layers["local_att"]
    assert isinstance(lau._cache, core.LocalActivationUnitCache)


def test_only_masked_positions_are_shared():
    """A valid position with the shared key keeps its own score (and gradient)."""
    rng = np.random.default_rng(5)
    layer = AttentionSequencePoolingLayer((4,), "dice", supports_masking=True)
    q, k = rng.standard_normal((3, 1, 2)), rng.standard_normal((3, 4, 2))
    k[:, 2:] = k[:, 3:4]                                       # positions 2, 3 share a key
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    shared = np.zeros((3, 4), bool)
    shared[:, 2:] = True
    dy = rng.standard_normal((3, 1, 2))
    results = []
    for flag in (False, True):
        core.SHARE_PADDING = flag
        try:
            y = layer.forward_with_scores([q, k], training=True, mask=mask, shared_keys=shared)[0]
            grads = layer.backward(dy)
        finally:
            core.SHARE_PADDING = True
        results.append((y, grads, {key: v.copy() for key, v in layer.grads.items()}))
    (y0, d0, g0), (y1, d1, g1) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-12)
    for a, b in zip(d0, d1):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    for key in g0:
        np.testing.assert_allclose(g1[key], g0[key], rtol=1e-12, atol=1e-15, err_msg=key)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_torch_profile_affine_dice_and_length_mask(dtype, rtol):
    """conventions='torch': affine Dice BN (gamma/beta gradients), unbiased moving variance over
    the full count, history masked by length (shared only where masked and all padding)."""
    from npctr.feature_column import VarLenSparseFeat
    from npctr.models import DIN
    from test_inference import columns, randomize
    cols, hist = columns(pooled=False)
    cols = [VarLenSparseFeat(fc.sparsefeat, fc.maxlen, length_name="hist_len") if fc.name == "hist_item" else fc
            for fc in cols]
    model = randomize(DIN(cols, hist, dnn_hidden_units=(8, 5), att_hidden_size=(6, 4), dtype=dtype,
                          conventions="torch"), np.random.default_rng(16))
    rng = np.random.default_rng(17)
    x = features(cols, 31, rng, empty_rows=0.3)
    x["hist_len"] = rng.integers(0, 7, size=(31, 1))
    assert any(k.endswith("bn/gamma") for k in model.params)
    assert_same(*both_paths(model, x), rtol)
