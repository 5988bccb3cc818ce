"""DeepCTR (0.9.4, TensorFlow) as a conformance backend: tf.keras 2 (``TF_USE_LEGACY_KERAS=1``,
profile ``tf_keras``) or Keras 3 (profile ``keras3``), whichever the environment gives TensorFlow.

Each case is built from DeepCTR's own classes (``deepctr.layers.core.DNN``,
``LocalActivationUnit``, ``deepctr.layers.sequence.AttentionSequencePoolingLayer``,
``deepctr.models.DIN``) with ``floatx`` set to the case's dtype, its weights set by name
(``npctr.interop.to_keras_weights(target, like=keras_layer)``), and run as Keras runs it:
``training=False`` / ``training=True`` calls, ``tf.GradientTape`` for every gradient of
``sum(output * upstream)`` (inputs and trainable weights; embeddings' ``IndexedSlices`` made
dense), the non-trainable weights after the training call, and for a DIN the objective
``train_step`` differentiates, ``model.compute_loss(x, y, y_pred)`` (compiled loss plus
``model.losses``). ``'prelu'`` is given to DeepCTR as the ``PReLU`` class (its ``activation_layer``
takes a class for that).

**Framework bugs that block a case** (reported *blocked*, never patched silently):

* a float64 model with Dice: DeepCTR's ``Dice.build`` creates ``dice_alpha`` as float32
  (hard-coded), and the float64 layer fails on ``float32 * float64``;
* on Keras 3, the DIN: ``Concat.compute_mask`` calls ``K.ndim`` and TensorFlow ops on
  KerasTensors, so ``DIN(...)`` raises while building;
* a float64 DIN with a pooled (non-history) sequence: ``SequencePoolingLayer`` builds a float32
  mask and length, which meet the float64 embeddings.

``NPCTR_DEEPCTR_PATCHES=1`` in the environment applies the two patches ``tools/record_tf.py``
records with (Dice's alpha in the layer's dtype; Keras 3's ``Concat.compute_mask`` rewritten with
``keras.ops``): the math is unchanged, the cases run, and every report names the patches.
"""
import os

import numpy as np

from ...interop.keras import map_keras_names, to_keras_weights

NAME = "DeepCTR (TensorFlow)"
LEGACY = os.environ.get("TF_USE_LEGACY_KERAS", "") not in ("", "0")
PROFILES = ("tf_keras",) if LEGACY else ("keras3",)
DTYPES = ("float64", "float32")
KINDS = ("dnn", "lau", "asp", "din")
PATCH = os.environ.get("NPCTR_DEEPCTR_PATCHES", "") not in ("", "0")
_patched = []


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    if LEGACY:
        import tf_keras as keras
    else:
        import keras
    import deepctr  # noqa: F401
    if PATCH and not _patched:
        apply_patches(keras)
    return tf, keras


def available():
    try:
        _tf()
    except ImportError as exc:
        return (f"DeepCTR on TensorFlow is not installed ({exc}): pip install tensorflow deepctr==0.9.4 "
                "(and tf-keras with TF_USE_LEGACY_KERAS=1 for tf.keras 2)")
    return None


def versions():
    tf, keras = _tf()
    import deepctr
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "deepctr": deepctr.__version__,
            "profile": PROFILES[0], "patches": list(_patched)}


def _uses_dice(case):
    c = case.config
    return "dice" in {c.get("activation"), c.get("att_activation"), c.get("dnn_activation")}


def skip_reason(case):
    if case.kind == "din" and case.dtype == "float64" and _pooled(case):
        return ("framework bug: DeepCTR's SequencePoolingLayer builds a float32 mask and length, which meet the "
                "float64 embeddings of a pooled sequence")
    if PATCH:
        return None
    if case.dtype == "float64" and _uses_dice(case):
        return ("framework bug: DeepCTR's Dice creates dice_alpha as float32 (hard-coded), so a float64 model "
                "with Dice fails (NPCTR_DEEPCTR_PATCHES=1 applies tools/record_tf.py's patch)")
    if case.kind == "din" and not LEGACY:
        return ("framework bug: DeepCTR 0.9.4's DIN does not build on Keras 3 (Concat.compute_mask calls K.ndim "
                "on KerasTensors; NPCTR_DEEPCTR_PATCHES=1 applies tools/record_tf.py's patch)")
    return None


def _pooled(case):
    history = {"hist_" + f for f in case.config["history_feature_list"]}
    return any(c["class"] == "VarLenSparseFeat" and c["config"]["sparsefeat"]["config"]["name"] not in history
               for c in case.config["dnn_feature_columns"])


def apply_patches(keras):
    """Patch DeepCTR 0.9.4 at run time so a float64 Dice and (on Keras 3) DIN's ``Concat`` mask work:
    the two patches ``tools/record_tf.py`` records with. Returns their descriptions (also kept in
    ``versions()["patches"]``). The math is DeepCTR's; nothing in site-packages is edited."""
    import deepctr.layers.activation as act
    import deepctr.layers.utils as utils

    def dice_build(self, input_shape):
        self.bn = act.BatchNormalization(axis=self.axis, epsilon=self.epsilon, center=False, scale=False)
        self.alphas = self.add_weight(shape=(input_shape[-1],), initializer=act.Zeros(), dtype=self.dtype,
                                      name="dice_alpha")
        act.Layer.build(self, input_shape)
        self.uses_learning_phase = True

    act.Dice.build = dice_build
    _patched.append("deepctr.layers.activation.Dice.build: dice_alpha in the layer's dtype (tools/record_tf.py)")
    if not LEGACY:
        from keras import ops

        def concat_compute_mask(self, inputs, mask=None):
            if not self.supports_masking:
                return None
            if mask is None:
                mask = [getattr(i, "_keras_mask", None) for i in inputs]
            if all(m is None for m in mask):
                return None
            masks = []
            for input_i, mask_i in zip(inputs, mask):
                if mask_i is None:
                    masks.append(ops.ones_like(input_i, dtype="bool"))
                elif len(mask_i.shape) < len(input_i.shape):
                    masks.append(ops.expand_dims(mask_i, axis=-1))
                else:
                    masks.append(mask_i)
            return ops.all(ops.concatenate(masks, axis=self.axis), axis=-1, keepdims=False)

        utils.Concat.compute_mask = concat_compute_mask
        _patched.append("deepctr.layers.utils.Concat.compute_mask: the same AND of masks with keras.ops "
                        "(tools/record_tf.py)")
    return list(_patched)


# -- building ------------------------------------------------------------------------------------
def _activation(name, keras):
    return keras.layers.PReLU if name == "prelu" else name


def _layer(case, keras):
    from deepctr.layers.core import DNN, LocalActivationUnit
    from deepctr.layers.sequence import AttentionSequencePoolingLayer
    c = case.config
    if case.kind == "dnn":
        return DNN(tuple(c["hidden_units"]), activation=_activation(c["activation"], keras), use_bn=c["use_bn"],
                   output_activation=c["output_activation"])
    if case.kind == "lau":
        return LocalActivationUnit(tuple(c["hidden_units"]), activation=_activation(c["activation"], keras),
                                   use_bn=c["use_bn"])
    return AttentionSequencePoolingLayer(tuple(c["att_hidden_units"]), _activation(c["att_activation"], keras),
                                         weight_normalization=c["weight_normalization"],
                                         return_score=c["return_score"], supports_masking=c["supports_masking"])


def _din(case, keras):
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
    from deepctr.models import DIN
    from ...feature_column import feature_columns_from_config
    from ...feature_column import SparseFeat as NpSparse, DenseFeat as NpDense
    c = case.config
    columns = []
    for fc in feature_columns_from_config(c["dnn_feature_columns"]):
        if isinstance(fc, NpSparse):
            columns.append(SparseFeat(fc.name, fc.vocabulary_size, fc.embedding_dim, embedding_name=fc.embedding_name))
        elif isinstance(fc, NpDense):
            columns.append(DenseFeat(fc.name, fc.dimension, dtype=case.dtype))
        else:
            columns.append(VarLenSparseFeat(SparseFeat(fc.name, fc.vocabulary_size, fc.embedding_dim,
                                                       embedding_name=fc.embedding_name),
                                            maxlen=fc.maxlen, combiner=fc.combiner, length_name=fc.length_name))
    model = DIN(columns, list(c["history_feature_list"]), dnn_use_bn=c["dnn_use_bn"],
                dnn_hidden_units=tuple(c["dnn_hidden_units"]), dnn_activation=_activation(c["dnn_activation"], keras),
                att_hidden_size=tuple(c["att_hidden_size"]), att_activation=_activation(c["att_activation"], keras),
                att_weight_normalization=c["att_weight_normalization"], l2_reg_dnn=c["l2_reg_dnn"],
                l2_reg_embedding=c["l2_reg_embedding"], dnn_dropout=0, seed=c["seed"], task=c["task"])
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy" if c["task"] == "binary" else "mse")
    return model


def _name(variable):
    return variable.path if not LEGACY and getattr(variable, "path", None) else variable.name


# -- running -------------------------------------------------------------------------------------
def run(case):
    tf, keras = _tf()
    (keras.backend if LEGACY else keras.backend).clear_session()
    (keras.backend.set_floatx if LEGACY else keras.config.set_floatx)(case.dtype)
    target = case.build("float64")
    inputs = {k: (tf.constant(v) if np.asarray(v).dtype.kind == "f" else v) for k, v in case.inputs.items()}
    g = tf.constant(case.upstream)
    if case.kind == "din":
        layer = _din(case, keras)
        feed = {fc.name: inputs[fc.name] for fc in target.dnn_feature_columns}
        for fc in target.dnn_feature_columns:
            if getattr(fc, "length_name", None):
                feed[fc.length_name] = np.asarray(case.inputs[fc.length_name]).reshape(-1, 1)
        feed = {k: tf.reshape(tf.constant(v), (len(case.upstream), -1)) for k, v in feed.items()}
        watched = {fc.name: feed[fc.name] for fc in target.dense_columns}

        def call(training):
            return layer(feed, training=training)
    else:
        layer = _layer(case, keras)
        if case.kind == "dnn":
            args, watched = inputs["x"], {"x": inputs["x"]}
        else:
            watched = {"query": inputs["query"], "keys": inputs["keys"]}
            args = [inputs["query"], inputs["keys"]] + ([] if case.config.get("supports_masking") or case.kind == "lau"
                                                         else [tf.constant(case.inputs["keys_length"])])
        mask = [None, tf.constant(case.inputs["mask"])] if "mask" in case.inputs else None

        def call(training):
            return layer(args, training=training, **({"mask": mask} if mask is not None else {}))
    call(False)                                  # builds every weight (Keras 3 builds nested layers lazily)
    weights = to_keras_weights(target, like=layer)
    layer.set_weights([weights[_name(v)].astype(case.dtype) for v in layer.weights])
    paths = map_keras_names(target, [_name(v) for v in layer.weights])
    initial = [v.numpy().copy() for v in layer.weights]
    results = {}
    for mode, training in (("infer", False), ("train", True)):
        layer.set_weights(initial)
        with tf.GradientTape() as tape:
            tape.watch(list(watched.values()))
            out = call(training)
            objective = tf.reduce_sum(tf.reshape(out, g.shape) * g)
        grads = tape.gradient(objective, list(watched.values()) + list(layer.trainable_weights))
        results[f"{mode}/output"] = out.numpy().reshape(case.reference[f"{mode}/output"].shape)
        for name, grad in zip(watched, grads):
            results[f"{mode}/grad_input/{name}"] = np.asarray(tf.convert_to_tensor(grad)).reshape(
                np.shape(case.inputs[name]))
        for v, grad in zip(layer.trainable_weights, grads[len(watched):]):
            results[f"{mode}/grad_weight/{paths[_name(v)]}"] = (
                np.zeros(v.shape, case.dtype) if grad is None else tf.convert_to_tensor(grad).numpy())
        if training:
            for v in layer.non_trainable_weights:
                results[f"train/moving/{paths[_name(v)]}"] = v.numpy().copy()
            if case.kind != "din":
                results["loss/value"] = np.array(objective.numpy())
    notes = [f"patched: {p}" for p in _patched]
    if case.kind == "din":
        layer.set_weights(initial)
        y = tf.constant(case.inputs["y"].astype(case.dtype).reshape(-1, 1))
        with tf.GradientTape() as tape:
            y_pred = layer(feed, training=True)
            loss = layer.compute_loss(x=feed, y=y, y_pred=y_pred)
        grads = tape.gradient(loss, list(layer.trainable_weights))
        results["loss/value"] = np.array(loss.numpy())
        for v, grad in zip(layer.trainable_weights, grads):
            results[f"loss/grad_weight/{paths[_name(v)]}"] = (
                np.zeros(v.shape, case.dtype) if grad is None else tf.convert_to_tensor(grad).numpy())
    return results, notes
