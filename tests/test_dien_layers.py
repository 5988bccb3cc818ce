"""DIEN's layers and their equations: ``npctr.ops.gru`` (both GRU layouts, the attention gates, the masked
step, backpropagation through time), ``DynamicGRU`` and ``AuxiliaryLoss``.

Float64 central differences of every input and every weight (``assert_gradients_ok``'s defaults: step
1e-6, relative error <= 1e-7), lengths 0..T in every batch; exact properties (padded steps: zero output,
frozen state, exactly zero gradient; AGRU's unused update gate: exactly zero gradient; a tied bias: the
sum of both uses); a deliberately wrong backward is caught; hypothesis properties; clear errors.
"""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npctr.conventions as conventions_mod
from npctr import DynamicGRU, AuxiliaryLoss, assert_gradients_ok, check_gradients
from npctr.ops import gru as ops_gru
from npctr.ops.gru import KerasGRUWeights, TorchGRUWeights, gru_sequence, gru_sequence_backward, weight_shapes
from npctr.ops.losses import torch_bce, log_loss

B, T, D, H = 5, 4, 3, 2
LENGTHS = np.array([[0], [1], [4], [2], [3]])          # 0 .. T in one batch
RNG = np.random.default_rng(7)
X = RNG.standard_normal((B, T, D))
ATT = RNG.uniform(0.1, 0.9, (B, T, 1))
PROFILES = ("tf_keras", "torch")


def _gru(conventions, gru_type, return_sequence=True, seed=3, num_units=H):
    layer = DynamicGRU(num_units, gru_type, return_sequence=return_sequence, conventions=conventions, seed=seed)
    layer.forward(_inputs(gru_type), training=False)
    rng = np.random.default_rng(seed)
    for w in layer.params.values():                 # generic weights: every path carries a gradient
        w[...] = 0.6 * rng.standard_normal(w.shape)
    return layer


def _inputs(gru_type, x=X, lengths=LENGTHS, att=ATT):
    return [x, lengths] + ([att] if gru_type in ("AGRU", "AUGRU") else [])


# -- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("gru_type", ["GRU", "AIGRU", "AGRU", "AUGRU"])
@pytest.mark.parametrize("return_sequence", [True, False])
def test_dynamic_gru_gradients(conventions, gru_type, return_sequence):
    layer = _gru(conventions, gru_type, return_sequence)
    results = assert_gradients_ok(layer, _inputs(gru_type))
    assert "input[0]" in results and all(k in results for k in layer.params)


class _OpsGRU:
    """``ops.gru`` wrapped for the gradient checker: any layout with any AUGRU meaning (the profiles
    pair keras with 'keep' and torch with 'update'; the equations allow every pair)."""

    def __init__(self, layout, gru_type, augru_gate, seed=0):
        rng = np.random.default_rng(seed)
        self._params = {k: 0.6 * rng.standard_normal(s) for k, s in weight_shapes(layout, D, H).items()}
        self.cls, self.gru_type, self.augru_gate = ops_gru.WEIGHTS[layout], gru_type, augru_gate

    params = property(lambda self: self._params)
    grads = property(lambda self: self._grads)

    def forward(self, inputs, training=False, backprop=None):
        x, att = inputs
        weights = self.cls(*(self._params[k] for k in self.cls._fields))
        out, final, self._cache = gru_sequence(x, np.arange(T) < LENGTHS, weights, self.gru_type, att,
                                               self.augru_gate, keep_cache=True)
        return np.concatenate([out.reshape(B, -1), final], axis=1)

    def backward(self, g):
        d_out, d_final = g[:, :T * H].reshape(B, T, H), g[:, T * H:]
        d_x, d_w, d_att = gru_sequence_backward(d_out, d_final, self._cache)
        self._grads = d_w._asdict()
        return [d_x, d_att[:, :, None]]


@pytest.mark.parametrize("layout", ["keras", "torch"])
@pytest.mark.parametrize("augru_gate", ["keep", "update"])
def test_ops_augru_both_meanings_in_both_layouts(layout, augru_gate):
    assert_gradients_ok(_OpsGRU(layout, "AUGRU", augru_gate), [X, ATT.copy()])


def test_a_wrong_backward_is_caught(monkeypatch):
    """Drop the frozen path of the masked step (a padded step passes dh to h_{t-1}): the check fails."""
    layer = _gru("tf_keras", "GRU", return_sequence=False)
    monkeypatch.setattr(ops_gru, "masked_step_backward",
                        lambda d_h, d_o, valid: (np.where(valid, d_h + d_o, 0.0), np.zeros_like(d_h)))
    results = check_gradients(layer, _inputs("GRU"))
    assert not all(r.passed for r in results.values())


# -- exact properties -----------------------------------------------------------------------------
@pytest.mark.parametrize("conventions", PROFILES)
@pytest.mark.parametrize("gru_type", ["GRU", "AGRU", "AUGRU"])
def test_padding_outputs_state_and_gradients(conventions, gru_type):
    layer = _gru(conventions, gru_type)
    out = layer.forward(_inputs(gru_type), training=True)
    valid = np.arange(T) < LENGTHS
    assert np.all(out[~valid] == 0)                                     # output 0 past the length
    final = _gru(conventions, gru_type, return_sequence=False).forward(_inputs(gru_type))[:, 0]
    last = np.array([out[b, LENGTHS[b, 0] - 1] if LENGTHS[b, 0] else np.zeros(H) for b in range(B)])
    assert np.array_equal(final, last)                                  # the state frozen at L - 1
    grads = layer.backward(np.ones_like(out))
    assert np.all(grads[0][~valid] == 0)                                # padded inputs: exactly 0
    if gru_type != "GRU":
        assert np.all(grads[2][~valid] == 0)


@pytest.mark.parametrize("conventions", PROFILES)
def test_agru_update_gate_gets_exactly_zero_gradient(conventions):
    layer = _gru(conventions, "AGRU")
    layer.backward(np.ones_like(layer.forward(_inputs("AGRU"), training=True)))
    g = layer.grads
    if conventions == "torch":                                          # z block: columns H..2H
        assert np.all(g["kernel_ih"][:, H:2 * H] == 0) and np.all(g["bias_ih"][H:2 * H] == 0)
    else:                                                               # u: columns H..2H of the gates
        assert np.all(g["gates_kernel"][:, H:] == 0) and np.all(g["gates_bias"][H:] == 0)


def test_torch_augru_bias_is_one_weight_used_twice():
    tied = _gru("torch", "AUGRU")
    assert sorted(tied.params) == ["bias", "kernel_hh", "kernel_ih"]
    out = tied.forward(_inputs("AUGRU"), training=True)
    tied.backward(np.ones_like(out))
    weights = TorchGRUWeights(tied.params["kernel_ih"], tied.params["kernel_hh"], tied.params["bias"],
                              tied.params["bias"])
    _, _, cache = gru_sequence(X, np.arange(T) < LENGTHS, weights, "AUGRU", ATT, "update", keep_cache=True)
    _, d_w, _ = gru_sequence_backward(np.ones_like(out), None, cache)
    np.testing.assert_allclose(tied.grads["bias"], d_w.bias_ih + d_w.bias_hh, rtol=0, atol=1e-15)
    assert not np.allclose(d_w.bias_ih, d_w.bias_hh)                    # two different uses


def _one_step(weights, x, h, gru_type, a, augru_gate):
    """One step of the ops' cell from the state ``h``: ``g h + (1 - g) c``."""
    if isinstance(weights, KerasGRUWeights):
        xg, xc = ops_gru.input_projection(x, weights)
        r, u, c, _ = ops_gru.keras_cell(xg, xc, h, weights)
    else:
        (gi,) = ops_gru.input_projection(x, weights)
        r, u, c, _ = ops_gru.torch_cell(gi, h, weights)
    return ops_gru.mix(h, c, ops_gru.keep_gate(gru_type, u, a, augru_gate))


def test_cells_match_a_direct_transcription_of_the_frameworks():
    """One step of each cell against the frameworks' formulas as written (SEMANTICS.md)."""
    rng = np.random.default_rng(1)
    x, h, a = rng.standard_normal((3, D)), rng.standard_normal((3, H)), rng.uniform(size=(3, 1))
    sig = lambda z: 1 / (1 + np.exp(-z))                                 # noqa: E731
    kg, bg, kc, bc = (rng.standard_normal(s) for s in weight_shapes("keras", D, H).values())
    gates = sig(np.concatenate([x, h], 1) @ kg + bg)
    r, u = gates[:, :H], gates[:, H:]
    c = np.tanh(np.concatenate([x, r * h], 1) @ kc + bc)
    expected = {"GRU": u * h + (1 - u) * c, "AGRU": (1 - a) * h + a * c,
                "AUGRU": (1 - a) * u * h + (1 - (1 - a) * u) * c}
    for gru_type, want in expected.items():
        got = _one_step(KerasGRUWeights(kg, bg, kc, bc), x, h, gru_type, a, "keep")
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    wih, whh, bih, bhh = (rng.standard_normal(s) for s in weight_shapes("torch", D, H).values())
    gi, gh = x @ wih + bih, h @ whh + bhh
    r, z = sig(gi[:, :H] + gh[:, :H]), sig(gi[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    expected = {"GRU": (1 - z) * n + z * h, "AGRU": (1 - a) * h + a * n, "AUGRU": (1 - a * z) * h + a * z * n}
    for gru_type, want in expected.items():
        got = _one_step(TorchGRUWeights(wih, whh, bih, bhh), x, h, gru_type, a, "update")
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_inference_caches_nothing_and_float32_stays_float32():
    layer = _gru("tf_keras", "AUGRU")
    layer.forward(_inputs("AUGRU"), training=False)
    assert layer._cache is None
    layer32 = DynamicGRU(None, "GRU", dtype="float32")
    assert layer32.forward([X.astype(np.float32), LENGTHS]).dtype == np.float32
    assert layer32.num_units == D                                        # DeepCTR's default: the input size


def test_config_round_trip_and_weights():
    for conventions in PROFILES:
        layer = _gru(conventions, "AUGRU", return_sequence=False)
        copy = DynamicGRU.from_config(layer.get_config())
        copy.forward(_inputs("AUGRU"))
        copy.set_weights(layer.get_weights())
        np.testing.assert_array_equal(copy.forward(_inputs("AUGRU")), layer.forward(_inputs("AUGRU")))
        assert copy.conventions.name == conventions


@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2 ** 31 - 1),
       st.sampled_from(["GRU", "AGRU", "AUGRU"]), st.sampled_from(PROFILES))
def test_property_rows_and_padding_are_independent(batch, t_max, seed, gru_type, conventions):
    """A row's outputs do not depend on its padded inputs nor on the other rows; shapes."""
    rng = np.random.default_rng(seed)
    x, att = rng.standard_normal((batch, t_max, 3)), rng.uniform(size=(batch, t_max, 1))
    lengths = rng.integers(0, t_max + 1, (batch, 1))
    layer = DynamicGRU(2, gru_type, conventions=conventions, seed=seed % 1000)
    out = layer.forward(_inputs(gru_type, x, lengths, att))
    assert out.shape == (batch, t_max, 2)
    pad = np.arange(t_max) >= lengths
    x2, att2 = x.copy(), att.copy()
    x2[pad], att2[pad] = rng.standard_normal((pad.sum(), 3)) * 100, rng.uniform(size=(pad.sum(), 1))
    np.testing.assert_array_equal(layer.forward(_inputs(gru_type, x2, lengths, att2)), out)
    one = layer.forward(_inputs(gru_type, x[:1], lengths[:1], att[:1]))
    np.testing.assert_allclose(one, out[:1], rtol=1e-13, atol=1e-15)


# -- the auxiliary loss ---------------------------------------------------------------------------
E = 3
CLICK, NOCLICK, STATES = (RNG.standard_normal((B, T, s)) for s in (E, E, H))


def _aux(conventions, seed=0):
    layer = AuxiliaryLoss((5, 3, 1), conventions=conventions)
    layer.forward([STATES, CLICK, NOCLICK, LENGTHS], training=False)
    rng = np.random.default_rng(seed)
    for w in layer.params.values():
        w[...] = 0.7 * rng.standard_normal(w.shape)
    return layer


@pytest.mark.parametrize("conventions", PROFILES)
def test_auxiliary_loss_gradients(conventions):
    assert_gradients_ok(_aux(conventions), [STATES, CLICK, NOCLICK, LENGTHS])


@pytest.mark.parametrize("conventions", PROFILES)
def test_auxiliary_loss_value_and_reduction(conventions):
    layer = _aux(conventions)
    loss = float(layer.forward([STATES, CLICK, NOCLICK, LENGTHS]))
    dnn = layer.get_layer("dnn")
    p = dnn.forward(np.concatenate([STATES, CLICK], -1))[..., 0]
    q = dnn.forward(np.concatenate([STATES, NOCLICK], -1))[..., 0]
    m = np.arange(T) < LENGTHS
    if conventions == "torch":        # mean over the 2N valid entries, torch's clamped BCE
        want = (torch_bce(1.0, p[m]).sum() + torch_bce(0.0, q[m]).sum()) / (2 * m.sum())
    else:                             # DeepCTR-TF: plain logs, masked sum over all B (T - 1) positions
        want = np.mean(np.where(m, -np.log(p) - np.log(1 - q), 0.0))
    np.testing.assert_allclose(loss, want, rtol=1e-14)
    assert np.isclose(log_loss(np.float64(1), np.float64(0.25)), -np.log(0.25))


@pytest.mark.parametrize("conventions", PROFILES)
def test_auxiliary_loss_without_valid_entries_is_zero(conventions):
    layer = _aux(conventions)
    assert float(layer.forward([STATES, CLICK, NOCLICK, np.zeros((B, 1), int)], training=True)) == 0.0
    d_states, d_click, d_noclick, _ = layer.backward(1.0)
    assert not (d_states.any() or d_click.any() or d_noclick.any() or any(g.any() for g in layer.grads.values()))


def test_auxiliary_loss_saturation_tf_is_inf_torch_is_clamped():
    for conventions, finite in (("tf_keras", False), ("torch", True)):
        layer = _aux(conventions)
        last = layer.get_layer("dnn").params["bias2"]
        last[...] = -1e3                                   # p = q = 0: -log p is inf, torch clamps at 100
        with np.errstate(over="ignore"):
            loss = float(layer.forward([STATES, CLICK, NOCLICK, LENGTHS]))
        assert np.isfinite(loss) == finite
        if finite:
            n = int((np.arange(T) < LENGTHS).sum())
            assert loss == 100.0 * n / (2 * n)             # every click term 100, every no-click 0


# -- errors ---------------------------------------------------------------------------------------
def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="gru_type must be one of .*got 'LSTM'"):
        DynamicGRU(2, "LSTM")
    with pytest.raises(ValueError, match="num_units must be a positive integer or None, got 0"):
        DynamicGRU(0)
    layer = DynamicGRU(2, "AGRU")
    with pytest.raises(ValueError, match="inputs"):
        layer.forward([X, LENGTHS])                                 # AGRU needs the scores
    with pytest.raises(ValueError, match=r"att_score must have shape \(batch_size, T, 1\)"):
        layer.forward([X, LENGTHS, ATT[:, :2]])
    with pytest.raises(ValueError, match="sequence_length must be >= 0"):
        DynamicGRU(2).forward([X, -LENGTHS - 1])
    with pytest.raises(ValueError, match="rnn_input must have rank 3"):
        DynamicGRU(2).forward([X[0], LENGTHS])
    built = DynamicGRU(2)
    built.forward([X, LENGTHS])
    with pytest.raises(ValueError, match="rnn_input must have last dimension 3"):
        built.forward([X[..., :2], LENGTHS])
    with pytest.raises(ValueError, match="hidden_units must end in 1"):
        AuxiliaryLoss((4, 2))
    with pytest.raises(ValueError, match="h_states .* must agree"):
        AuxiliaryLoss((3, 1)).forward([STATES[:, :2], CLICK, NOCLICK, LENGTHS])
    with pytest.raises(ValueError, match="conventions must be one of"):
        DynamicGRU(2, conventions="jax")


def test_every_profile_has_the_dien_fields():
    fields = ("gru_layout", "augru_gate", "augru_tied_bias", "aux_loss_reduction", "aux_loss_log_clamp",
              "dien_dnn_input", "dien_dense_float32", "dien_attention_rows")
    for name in conventions_mod.list_conventions():
        profile = conventions_mod.get(name)
        assert all(hasattr(profile, f) for f in fields)
    assert replace(conventions_mod.get("keras3"), name="tf_keras", framework="") == replace(
        conventions_mod.get("tf_keras"), framework="", bn_moving_update="lerp", bn_decay_float32=False,
        loss="keras3", l2_float32=True)                        # Keras 3's DIEN fields are tf.keras 2's
