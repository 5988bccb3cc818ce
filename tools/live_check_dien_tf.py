"""Live check of npctr's DIEN against DeepCTR 0.9.4 on tf.keras 2, on a configuration no recording covers.

    TF_USE_LEGACY_KERAS=1 /work/refenv/bin/python tools/live_check_dien_tf.py [float64|float32]

(TensorFlow 2.21 with tf-keras, deepctr 0.9.4; npctr from this checkout; the recorder's run-time
patches of tools/record_dien_tf.py, including the one that builds the auxiliary loss for every
``gru_type``, and one more for DeepCTR's SequencePoolingLayer's float32 mask). A non-history
``VarLenSparseFeat`` pooled into the DNN input (DeepCTR-TF's ``"pooled"`` piece of
``dien_dnn_input``), Dice in the attention, BatchNormalization and three hidden layers in the
output DNN, a length-0 row, every ``gru_type`` with negative sampling. Every variable (the untracked
AGRU/AUGRU ``gru2/...`` ones included) gets a normal(0, 0.3) value; npctr loads them from the LIVE
Keras model through ``load_keras_weights`` and exports them back with ``to_keras_weights(like=model)``.
Printed: the worst difference of the inference output and of every gradient of ``compute_loss``
(normwise relative per array; exactly-zero gradients against their layer's scale).
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as K  # noqa: E402

import record_dien_tf as R  # noqa: E402
from deepctr.feature_column import (SparseFeat as TfSparse, VarLenSparseFeat as TfVarLen,  # noqa: E402
                                    DenseFeat as TfDense)
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from npctr.interop import load_keras_weights, to_keras_weights, map_keras_names  # noqa: E402
from npctr.models import DIEN  # noqa: E402

T, B = 6, 24


def columns(sparse, varlen, dense, dtype):
    cols = [sparse("user", 5, 3), sparse("item_id", 25, 4), sparse("cate_id", 7, 4),
            dense("pay", 1) if dense is DenseFeat else dense("pay", 1, dtype=dtype)]
    for prefix in ("hist_", "neg_hist_"):
        cols += [varlen(sparse(prefix + "item_id", 25, 4, embedding_name="item_id"), T, length_name="seq_length"),
                 varlen(sparse(prefix + "cate_id", 7, 4, embedding_name="cate_id"), T, length_name="seq_length")]
    cols.append(varlen(sparse("tags", 9, 3), 4, length_name="tags_len"))      # pooled by DeepCTR-TF
    return cols


def inputs(dtype, seed=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, B)
    lengths[:3] = [0, 1, T]
    valid = np.arange(T) < lengths[:, None]
    x = {"user": rng.integers(0, 5, B), "item_id": rng.integers(1, 25, B), "cate_id": rng.integers(1, 7, B),
         "pay": rng.standard_normal(B).astype(dtype), "seq_length": lengths,
         "tags": rng.integers(1, 9, (B, 4)), "tags_len": rng.integers(0, 5, B)}
    for prefix in ("hist_", "neg_hist_"):
        x[prefix + "item_id"] = np.where(valid, rng.integers(1, 25, (B, T)), 0)
        x[prefix + "cate_id"] = np.where(valid, rng.integers(1, 7, (B, T)), 0)
    x = {k: (v.astype(np.int32) if v.dtype.kind == "i" else v) for k, v in x.items()}
    return x, rng.integers(0, 2, B).astype(dtype)


def check(gru_type, dtype, x, y):
    args = dict(gru_type=gru_type, use_negsampling=True, alpha=0.3, use_bn=True, dnn_hidden_units=(16, 8, 4),
                att_hidden_units=(8, 4), att_activation="dice", l2_reg_embedding=1e-3, l2_reg_dnn=1e-2)
    K.backend.clear_session()
    K.backend.set_floatx(dtype)
    R.dien_module.interest_evolution = R._INTEREST_EVOLUTION_AUX       # the auxiliary loss for every type
    keras = R.dien_module.DIEN(columns(TfSparse, TfVarLen, TfDense, dtype), ["item_id", "cate_id"], **args)
    keras.compile("sgd", "binary_crossentropy")
    rng = np.random.default_rng(7)
    variables = list(keras.weights) + R.untracked_variables(keras)
    for v in variables:
        if "moving_variance" in v.name:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(dtype))
        else:
            v.assign((0.3 * rng.standard_normal(v.shape)).astype(dtype))
    model = DIEN(columns(SparseFeat, VarLenSparseFeat, DenseFeat, dtype), ["item_id", "cate_id"],
                 conventions="tf_keras", dtype=dtype, **args)
    load_keras_weights(model, keras)                                    # the live model, untracked ones included
    exported = to_keras_weights(model, like=keras)
    assert sorted(exported) == sorted(v.name for v in variables)
    assert all(np.array_equal(exported[v.name], v.numpy()) for v in variables)
    features = {k: tf.constant(v) for k, v in x.items()}
    inference = np.abs(model.predict(x) - tf.function(lambda f: keras(f, training=False))(features).numpy()).max()

    @tf.function
    def objective(f, labels):
        with tf.GradientTape() as tape:
            pred = keras(f, training=True)
            loss = keras.compute_loss(f, labels, pred)
        return loss, tape.gradient(loss, variables)

    loss, grads = objective(features, tf.constant(y.reshape(-1, 1)))
    total, mine = model.loss_and_gradients(x, y)
    paths = map_keras_names(model, [v.name for v in variables])
    pairs = [(v, g) for v, g in zip(variables, grads) if v.trainable]   # (moving statistics: no gradient)
    scales = {}
    for v, g in pairs:
        layer = paths[v.name].rsplit("/", 1)[0]
        scales[layer] = max(scales.get(layer, 0.0), float(np.max(np.abs(tf.convert_to_tensor(g).numpy()))))
    worst, which = 0.0, None
    for v, g in pairs:
        theirs = tf.convert_to_tensor(g).numpy()
        scale, layer_scale = float(np.max(np.abs(theirs))), scales[paths[v.name].rsplit("/", 1)[0]]
        if scale <= 1e3 * np.finfo(dtype).eps * layer_scale:      # exactly 0 up to round-off
            scale = layer_scale
        err = float(np.max(np.abs(mine[paths[v.name]] - theirs))) / scale
        if err > worst:
            worst, which = err, v.name
    print(f"{gru_type:5s} {dtype}: inference {inference:.1e}, objective {abs(total / float(loss) - 1):.1e}, "
          f"worst gradient {worst:.1e} ({which})")


def patch_sequence_pooling():
    """DeepCTR's SequencePoolingLayer (length mode) hard-codes float32 in its mask and its mean's
    divisor, as the DIEN code the recorder patches does: a float64 model fails there. The mask in the
    input's dtype; the divisor ``length + 1e-8`` still formed in float32 (DeepCTR's value), then cast."""
    layer = R.deepctr_sequence.SequencePoolingLayer
    layer.call = R.C.resource_patch(layer.call, [
        ("self.seq_len_max, dtype=tf.float32)", "self.seq_len_max, dtype=uiseq_embed_list.dtype)"),
        ("tf.cast(user_behavior_length, tf.float32) + self.eps",
         "tf.cast(tf.cast(user_behavior_length, tf.float32) + self.eps, hist.dtype)")],
        R.deepctr_sequence)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    dtype = argv[0] if argv else "float64"
    R.apply_patches()
    patch_sequence_pooling()
    x, y = inputs(dtype)
    for gru_type in ("GRU", "AIGRU", "AGRU", "AUGRU"):
        check(gru_type, dtype, x, y)


if __name__ == "__main__":
    main()
