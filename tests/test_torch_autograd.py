"""An independent cross-check of npctr's hand-written backward passes against PyTorch autograd.

The functions ``t_*`` below re-implement, in a few lines of float64 PyTorch each, the math that
``docs/`` states for every layer (not npctr's code). Each test builds an npctr layer, gives every
weight and moving statistic a random value, runs npctr's forward and backward, and compares

* the outputs,
* the gradients of ``sum(output * g)`` (``g`` random) with respect to every float input and every
  parameter (embedding tables: ``RowGrad.to_dense()``),
* the moving statistics after the forward (updated in training mode, unchanged in inference),

with what PyTorch's autograd computes from the same weights. Both sides evaluate the same formulas in
float64, so only round-off may differ: the tolerance is ``RTOL = 1e-12`` relative to the largest
magnitude of the compared array (``max|a - b| <= RTOL * max|b|``), not per element, because a
gradient entry that is a small difference of large terms has a large relative round-off.

Skipped when torch is not installed (``pip install torch==2.13.0``; the CPU build is enough).
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npctr import (Dense, BatchNormalization, Dice, PReLU, DNN, LocalActivationUnit,  # noqa: E402
                   SequencePoolingLayer, AttentionSequencePoolingLayer, PredictionLayer)
from npctr.sparse import RowGrad  # noqa: E402
from npctr.models import DIN, DNNModel  # noqa: E402
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402

RTOL = 1e-12
SOFTMAX_PAD = -2.0 ** 32 + 1
REPORT = os.environ.get("NPCTR_REPORT_ERRORS")     # print every relative error (pytest -s)


def assert_close(actual, expected, what, rtol=RTOL, scale=None):
    """``max|actual - expected| <= rtol * scale``, ``scale = max|expected|`` unless given."""
    actual = actual.to_dense() if isinstance(actual, RowGrad) else np.asarray(actual)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    assert actual.dtype == np.float64 and expected.dtype == np.float64, what
    if scale is None:
        scale = np.max(np.abs(expected), initial=0.0)
    err = np.max(np.abs(actual - expected), initial=0.0)
    rel = err / scale if scale > 0 else err
    if REPORT:
        print(f"REL {rel:.3e} {what}")
    assert err <= rtol * scale, f"{what}: max abs error {err:.3e}, relative {rel:.3e} (scale {scale:.3e})"


# --------------------------------------------------------------------------------------------------
# The math of docs/, in PyTorch. P: path -> parameter tensor (requires_grad); S: path -> moving
# statistic; a training forward writes updated statistics into `new_state` (same paths).
# --------------------------------------------------------------------------------------------------

def t_dense(x, kernel, bias=None):
    y = x @ kernel
    return y if bias is None else y + bias


def t_batch_norm(x, P, S, prefix, training, new_state, epsilon=1e-3, momentum=0.99, affine=True):
    """Keras BatchNormalization on the last axis: biased batch variance in training.

    The moving update is npctr's default profile's ("tf_keras", docs/conventions.md):
    ``moving -= (moving - stat) * float32(1 - momentum)``, as tf.keras 2 computes it.
    """
    axes = tuple(range(x.dim() - 1))
    if training:
        mean = x.mean(dim=axes)
        variance = ((x - mean) ** 2).mean(dim=axes)
        decay = float(np.float32(1 - momentum))
        for name, stat in (("moving_mean", mean), ("moving_variance", variance)):
            new_state[prefix + name] = S[prefix + name] - (S[prefix + name] - stat.detach()) * decay
    else:
        mean, variance = S[prefix + "moving_mean"], S[prefix + "moving_variance"]
    y = (x - mean) / torch.sqrt(variance + epsilon)
    return y * P[prefix + "gamma"] + P[prefix + "beta"] if affine else y


def t_dice(x, P, S, prefix, training, new_state):
    p = torch.sigmoid(t_batch_norm(x, P, S, prefix + "bn/", training, new_state, epsilon=1e-9, affine=False))
    alpha = P[prefix + "dice_alpha"]
    return alpha * (1 - p) * x + p * x


def t_prelu(x, alpha):
    return torch.relu(x) + alpha * torch.clamp(x, max=0)


def t_activation(z, activation, P, S, prefix, training, new_state):
    if activation in ("dice", "Dice"):
        return t_dice(z, P, S, prefix, training, new_state)
    if activation in ("prelu", "PReLU"):
        return t_prelu(z, P[prefix + "alpha"])
    return {"linear": lambda v: v, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "softmax": lambda v: torch.softmax(v, dim=-1)}[activation](z)


def t_dnn(x, P, S, prefix, hidden_units, activation, use_bn, training, new_state, dropout_masks=None):
    a = x
    for i in range(len(hidden_units)):
        z = t_dense(a, P[f"{prefix}kernel{i}"], P[f"{prefix}bias{i}"])
        if use_bn:
            z = t_batch_norm(z, P, S, f"{prefix}bn{i}/", training, new_state)
        a = t_activation(z, activation, P, S, f"{prefix}activation{i}/", training, new_state)
        if dropout_masks is not None:
            a = a * dropout_masks[i]          # npctr's own (already scaled) mask: dropout is random
    return a


def t_lau(query, keys, P, S, prefix, hidden_units, activation, use_bn, training, new_state):
    """LocalActivationUnit: DNN([q, k, q - k, q * k]) @ kernel + bias, (B, T, 1)."""
    q = query.expand_as(keys)
    u = torch.cat([q, keys, q - keys, q * keys], dim=-1)
    h = t_dnn(u, P, S, prefix + "dnn/", hidden_units, activation, use_bn, training, new_state)
    return t_dense(h, P[prefix + "kernel"], P[prefix + "bias"])


def t_attention_pooling(query, keys, valid, P, S, prefix, hidden_units, activation, weight_normalization,
                        return_score, training, new_state):
    """AttentionSequencePoolingLayer; ``valid`` (B, T) bool."""
    s = t_lau(query, keys, P, S, prefix + "local_att/", hidden_units, activation, False, training,
              new_state).transpose(1, 2)                                     # (B, 1, T)
    v = valid[:, None, :]
    if weight_normalization:
        w = torch.softmax(torch.where(v, s, torch.full_like(s, SOFTMAX_PAD)), dim=-1)
    else:
        w = torch.where(v, s, torch.zeros_like(s))
    return w if return_score else w @ keys


def t_sequence_pooling(x, valid, mode, length):
    """SequencePoolingLayer; ``valid`` (B, T) bool, ``length`` (B, 1)."""
    m = valid[:, :, None].to(x.dtype)
    if mode == "max":
        return torch.amax(x - (1 - m) * 1e9, dim=1, keepdim=True)      # ties share the gradient, as TF
    y = (x * m).sum(dim=1, keepdim=True)
    # the divisor length + 1e-8 in float32, as DeepCTR and DeepCTR-Torch form it (docs/sequence_pooling.md)
    return y / (length.to(torch.float32) + torch.tensor(1e-8, dtype=torch.float32)).to(x.dtype)[:, :, None] \
        if mode == "mean" else y


def t_prediction(x, P, prefix, task, use_bias=True):
    if task != "multiclass":
        x = x.reshape(-1, 1)
    if use_bias:
        x = x + P[prefix + "global_bias"]
    return {"binary": torch.sigmoid, "regression": lambda v: v,
            "multiclass": lambda v: torch.softmax(v, dim=-1)}[task](x)


def t_feature_model(x, P, S, new_state, columns, history_feature_list, training, *, dnn_hidden_units,
                    dnn_activation, dnn_use_bn, att_hidden_size=(), att_activation=None,
                    att_weight_normalization=False, task="binary"):
    """DIN (``history_feature_list`` non-empty) or DNNModel, from the feature dict (docs/din.md §4).

    ``x`` maps names to NumPy ids / lengths and to torch tensors for the dense features.
    """
    sparse = [fc for fc in columns if isinstance(fc, SparseFeat)]
    varlen = [fc for fc in columns if isinstance(fc, VarLenSparseFeat)]
    dense = [fc for fc in columns if isinstance(fc, DenseFeat)]
    history = [fc for fc in varlen if fc.name[len("hist_"):] in history_feature_list
               and fc.name.startswith("hist_")]
    pooled = [fc for fc in varlen if fc not in history]
    batch = len(np.asarray(x[columns[0].name]))

    def ids(name):
        return torch.as_tensor(np.asarray(x[name]).reshape(batch, -1))

    def embed(fc):                                    # (B, 1, E) or (B, T, E), by index
        return P[f"sparse_emb_{fc.embedding_name}/embeddings"][ids(fc.name)]

    pieces = [embed(fc) for fc in sparse]
    for fc in pooled:
        if fc.length_name is None:
            valid = ids(fc.name) != 0
            length = valid.sum(dim=1, keepdim=True)
        else:
            length = ids(fc.length_name)
            valid = torch.arange(fc.maxlen)[None, :] < length
        pieces.append(t_sequence_pooling(embed(fc), valid, fc.combiner, length))
    if history:
        query_cols = [fc for fc in sparse if fc.name in history_feature_list]     # column order
        query = torch.cat([embed(fc) for fc in query_cols], dim=-1)
        keys = torch.cat([embed(fc) for fc in history], dim=-1)
        valid = torch.stack([ids(fc.name) != 0 for fc in history]).all(dim=0)  # every field non-zero
        pieces.append(t_attention_pooling(query, keys, valid, P, S, "attention_sequence_pooling_layer/",
                                          att_hidden_size, att_activation, att_weight_normalization,
                                          False, training, new_state))
    u = torch.cat([torch.cat(pieces, dim=-1).reshape(batch, -1)]
                  + [x[fc.name].reshape(batch, fc.dimension) for fc in dense], dim=-1)
    a = t_dnn(u, P, S, "dnn/", dnn_hidden_units, dnn_activation, dnn_use_bn, training, new_state)
    return t_prediction(a @ P["dense/kernel"], P, "prediction_layer/", task)


# --------------------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------------------

def randomize(layer, rng):
    """Give every weight and moving statistic a random value (zeros and ones hide mistakes)."""
    new = {k: 0.6 * rng.standard_normal(v.shape) for k, v in layer.params.items()}
    for k, v in layer.state.items():
        new[k] = rng.uniform(0.5, 2.0, v.shape) if k.endswith("moving_variance") \
            else 0.3 * rng.standard_normal(v.shape)
    layer.set_weights(new)


def torch_weights(layer):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    state = {k: torch.tensor(v) for k, v in layer.state.items()}       # copies, taken before the forward
    return params, state


def compare(layer, y, input_grads, t_y, t_inputs, P, S, new_state, g, training, what):
    """Outputs, input gradients, parameter gradients and moving statistics against torch."""
    (t_y * torch.tensor(g)).sum().backward()
    assert_close(y, t_y, f"{what} output")
    for i, (d, t) in enumerate(zip(input_grads, t_inputs)):
        assert_close(d, t.grad, f"{what} d input {i}")
    grads = layer.grads
    assert set(grads) == set(P)
    for k, t in P.items():
        expected = t.grad if t.grad is not None else torch.zeros_like(t)
        assert_close(grads[k], expected, f"{what} d {k}", scale=zero_gradient_scale(layer, k, P, training))
    state = layer.state
    if training:            # every moving statistic belongs to a BatchNormalization (Dice's included)
        assert set(new_state) == set(S), (sorted(new_state), sorted(S))
    for k, before in S.items():
        assert_close(state[k], new_state[k] if training else before, f"{what} state {k}")


def zero_gradient_scale(layer, key, P, training):
    """The scale to compare a gradient that is 0 in exact arithmetic at; None for every other key.

    Both sides then hold round-off of the size of the terms that cancel, so the comparison is made
    at the scale of the matching kernel's gradient. Two such gradients:

    * a DNN bias followed by BatchNormalization in training mode (the batch mean removes any shift);
    * the attention score's bias with weight normalization (the softmax over T ignores a shift).
    """
    if key.endswith("local_att/bias") and (getattr(layer, "weight_normalization", False)
                                           or getattr(layer, "att_weight_normalization", False)):
        return float(torch.max(torch.abs(P[key[:-len("bias")] + "kernel"].grad)))
    prefix, _, index = key.rpartition("bias")
    if not (training and index.isdigit() and f"{prefix}bn{index}/gamma" in P):
        return None
    return float(torch.max(torch.abs(P[f"{prefix}kernel{index}"].grad)))


def run(layer, inputs, t_forward, training, seed=0, call_kwargs=None):
    """Build ``layer`` on ``inputs``, randomize it, then compare forward + backward with ``t_forward``.

    ``inputs`` is one array or a list; float arrays are differentiated, integer ones are not.
    ``t_forward(t_inputs, P, S, new_state)`` returns the torch output.
    """
    rng = np.random.default_rng(seed)
    call_kwargs = call_kwargs or {}
    layer(inputs, training=False, **call_kwargs)            # builds; inference changes nothing
    randomize(layer, rng)
    P, S = torch_weights(layer)
    y = layer.forward(inputs, training=training, backprop=True, **call_kwargs)
    g = rng.standard_normal(y.shape)
    d_inputs = layer.backward(g)
    listed = isinstance(inputs, list)
    d_inputs = d_inputs if listed else [d_inputs]
    t_inputs = [torch.tensor(a, requires_grad=np.asarray(a).dtype.kind == "f")
                for a in (inputs if listed else [inputs])]
    new_state = {}
    t_y = t_forward(t_inputs if listed else t_inputs[0], P, S, new_state)
    floats = [(d, t) for d, t in zip(d_inputs, t_inputs) if t.requires_grad]
    compare(layer, y, [d for d, _ in floats], t_y, [t for _, t in floats], P, S, new_state, g, training,
            type(layer).__name__)
    return layer


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("shape", [(7, 5), (4, 3, 5)])
def test_dense(activation, shape):
    x = np.random.default_rng(1).standard_normal(shape)
    run(Dense(6, activation=activation), x,
        lambda t, P, S, ns: t_activation(t_dense(t, P["kernel"], P["bias"]), activation, P, S, "", False, ns),
        training=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(9, 4), (5, 3, 4)])
def test_batch_normalization(training, shape):
    x = 2.0 + 1.5 * np.random.default_rng(2).standard_normal(shape)
    run(BatchNormalization(), x, lambda t, P, S, ns: t_batch_norm(t, P, S, "", training, ns), training)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(9, 4), (5, 3, 4)])
def test_dice(training, shape):
    x = 0.5 + np.random.default_rng(3).standard_normal(shape)
    run(Dice(), x, lambda t, P, S, ns: t_dice(t, P, S, "", training, ns), training)


@pytest.mark.parametrize("shape,shared_axes", [((8, 5), None), ((4, 3, 5), None), ((4, 3, 5), [1])])
def test_prelu(shape, shared_axes):
    x = np.random.default_rng(4).standard_normal(shape)
    run(PReLU(shared_axes=shared_axes), x, lambda t, P, S, ns: t_prelu(t, P["alpha"]), training=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("activation", ["relu", "dice", "prelu", "sigmoid", "tanh"])
def test_dnn(activation, use_bn, training):
    x = np.random.default_rng(5).standard_normal((10, 6))
    units = (8, 5, 3)
    run(DNN(units, activation=activation, use_bn=use_bn), x,
        lambda t, P, S, ns: t_dnn(t, P, S, "", units, activation, use_bn, training, ns), training)


def test_dnn_dropout_with_npctrs_masks():
    """Dropout masks are random: the torch side reuses the (scaled) masks npctr drew."""
    x = np.random.default_rng(6).standard_normal((10, 6))
    units = (8, 5)
    layer = DNN(units, activation="dice", use_bn=True, dropout_rate=0.4)

    def forward(t, P, S, ns):
        masks = [torch.tensor(np.asarray(layer._layers[f"dropout{i}"]._cache.scaled_mask)) for i in range(len(units))]
        assert all(m.shape == (10, u) and (m == 0).any() for m, u in zip(masks, units))
        return t_dnn(t, P, S, "", units, "dice", True, True, ns, dropout_masks=masks)

    run(layer, x, forward, training=True)


def test_dnn_3d_input_pools_statistics_over_batch_and_time():
    x = np.random.default_rng(7).standard_normal((4, 3, 6))
    run(DNN((5, 4), activation="dice", use_bn=True), x,
        lambda t, P, S, ns: t_dnn(t, P, S, "", (5, 4), "dice", True, True, ns), training=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("activation,use_bn,units", [("sigmoid", False, (8, 4)), ("dice", False, (8, 4)),
                                                     ("dice", True, (6,)), ("prelu", True, (8, 4)),
                                                     ("sigmoid", False, ())])
def test_local_activation_unit(activation, use_bn, units, split, training):
    rng = np.random.default_rng(8)
    query, keys = rng.standard_normal((5, 1, 4)), rng.standard_normal((5, 6, 4))
    run(LocalActivationUnit(units, activation=activation, use_bn=use_bn, split=split), [query, keys],
        lambda t, P, S, ns: t_lau(t[0], t[1], P, S, "", units, activation, use_bn, training, ns), training)


@pytest.mark.parametrize("supports_masking", [False, True])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_sequence_pooling(mode, supports_masking):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 5, 3))
    length = np.array([[3], [5], [0], [1]])                     # row 2 has no valid position
    valid = np.arange(5) < length
    layer = SequencePoolingLayer(mode, supports_masking=supports_masking)
    if supports_masking:
        run(layer, x, lambda t, P, S, ns: t_sequence_pooling(
            t, torch.as_tensor(valid), mode, torch.as_tensor(valid.sum(1, keepdims=True))),
            training=True, call_kwargs={"mask": valid})
    else:
        run(layer, [x, length], lambda t, P, S, ns: t_sequence_pooling(
            t[0], torch.as_tensor(valid), mode, t[1]), training=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("supports_masking", [False, True])
@pytest.mark.parametrize("return_score", [False, True])
@pytest.mark.parametrize("weight_normalization", [False, True])
@pytest.mark.parametrize("activation", ["sigmoid", "dice"])
def test_attention_sequence_pooling(activation, weight_normalization, return_score, supports_masking, training):
    rng = np.random.default_rng(10)
    query, keys = rng.standard_normal((4, 1, 6)), rng.standard_normal((4, 5, 6))
    length = np.array([[2], [5], [0], [3]])                     # row 2: all padding
    valid = np.arange(5) < length
    units = (8, 4)
    layer = AttentionSequencePoolingLayer(units, activation, weight_normalization=weight_normalization,
                                          return_score=return_score, supports_masking=supports_masking)

    def forward(t, P, S, ns):
        return t_attention_pooling(t[0], t[1], torch.as_tensor(valid), P, S, "", units, activation,
                                   weight_normalization, return_score, training, ns)

    if supports_masking:
        run(layer, [query, keys], forward, training, call_kwargs={"mask": valid})
    else:
        run(layer, [query, keys, length], forward, training)


@pytest.mark.parametrize("task,use_bias,shape", [("binary", True, (6, 1)), ("binary", False, (6, 1)),
                                                 ("regression", True, (6, 1)), ("regression", True, (6,)),
                                                 ("multiclass", True, (6, 3))])
def test_prediction_layer(task, use_bias, shape):
    x = np.random.default_rng(11).standard_normal(shape)
    run(PredictionLayer(task, use_bias=use_bias), x,
        lambda t, P, S, ns: t_prediction(t, P, "", task, use_bias), training=True)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

COLUMNS = [SparseFeat("user", 3, embedding_dim=5), SparseFeat("gender", 2, embedding_dim=3),
           SparseFeat("item_id", 3 + 1, embedding_dim=4), SparseFeat("cate_id", 2 + 1, embedding_dim=3),
           DenseFeat("pay_score", 1), DenseFeat("extra", 2),
           VarLenSparseFeat(SparseFeat("hist_item_id", 3 + 1, embedding_dim=4, embedding_name="item_id"),
                            maxlen=4, length_name="seq_length"),
           VarLenSparseFeat(SparseFeat("hist_cate_id", 2 + 1, embedding_dim=3, embedding_name="cate_id"),
                            maxlen=4, length_name="seq_length"),
           VarLenSparseFeat(SparseFeat("tags", 6, embedding_dim=2), maxlen=3, combiner="sum")]


def features(rng):
    """DIN_test's batch, one row more (all padding) and a mask-mode pooled sequence ``tags``."""
    return {"user": np.array([0, 1, 2, 1]), "gender": np.array([0, 1, 0, 1]),
            "item_id": np.array([1, 2, 3, 2]), "cate_id": np.array([1, 2, 2, 1]),
            "pay_score": rng.standard_normal(4), "extra": rng.standard_normal((4, 2)),
            "hist_item_id": np.array([[1, 2, 3, 0], [3, 2, 1, 0], [1, 2, 0, 0], [0, 0, 0, 0]]),
            "hist_cate_id": np.array([[1, 2, 2, 0], [2, 2, 1, 0], [1, 2, 0, 0], [0, 0, 0, 0]]),
            "seq_length": np.array([3, 3, 2, 0]),
            "tags": np.array([[1, 5, 0], [0, 0, 0], [2, 2, 3], [4, 0, 0]])}


def run_model(model, training, torch_kwargs, seed=12):
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    x = features(rng)
    P, S = torch_weights(model)
    y = model.forward(x, training=training, backprop=True)
    g = rng.standard_normal(y.shape)
    d_dense = model.backward(g)
    t_x = {k: (torch.tensor(v, requires_grad=True) if v.dtype.kind == "f" else v) for k, v in x.items()}
    new_state = {}
    t_y = t_feature_model(t_x, P, S, new_state, COLUMNS, getattr(model, "history_feature_list", []), training,
                          **torch_kwargs)
    names = sorted(d_dense)
    assert names == ["extra", "pay_score"]
    compare(model, y, [d_dense[n] for n in names], t_y, [t_x[n] for n in names], P, S, new_state, g,
            training, type(model).__name__)
    return model, P


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("att_activation,weight_normalization,split", [("dice", False, True),
                                                                       ("dice", True, False),
                                                                       ("sigmoid", True, True)])
def test_din(att_activation, weight_normalization, split, training):
    model = DIN(COLUMNS, ["item_id", "cate_id"], dnn_use_bn=True, dnn_hidden_units=(6, 5),
                att_hidden_size=(8, 4), att_activation=att_activation,
                att_weight_normalization=weight_normalization, split=split)
    _, P = run_model(model, training, dict(
        dnn_hidden_units=(6, 5), dnn_activation="relu", dnn_use_bn=True, att_hidden_size=(8, 4),
        att_activation=att_activation, att_weight_normalization=weight_normalization))
    grads = model.grads
    assert isinstance(grads["sparse_emb_item_id/embeddings"], RowGrad)
    # the padding row: zero without batch statistics in the attention and without the softmax's 1/T
    # for the all-padding row, non-zero otherwise (docs/din.md §5); torch agrees in both cases
    pad_row = grads["sparse_emb_item_id/embeddings"].to_dense()[0]
    pooled_by_batch_stats = training and att_activation == "dice"
    assert np.any(pad_row != 0) == (pooled_by_batch_stats or weight_normalization)


@pytest.mark.parametrize("training", [True, False])
def test_din_regression_prelu_dnn(training):
    model = DIN(COLUMNS, ["cate_id", "item_id"], dnn_hidden_units=(5,), dnn_activation="prelu",
                att_hidden_size=(6,), att_activation="dice", task="regression")
    run_model(model, training, dict(dnn_hidden_units=(5,), dnn_activation="prelu", dnn_use_bn=False,
                                    att_hidden_size=(6,), att_activation="dice", task="regression"))


@pytest.mark.parametrize("training", [True, False])
def test_dnn_model(training):
    model = DNNModel(COLUMNS, dnn_use_bn=True, dnn_hidden_units=(6, 4), dnn_activation="dice")
    run_model(model, training, dict(dnn_hidden_units=(6, 4), dnn_activation="dice", dnn_use_bn=True))

