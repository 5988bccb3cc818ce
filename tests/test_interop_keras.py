"""npctr.interop.keras: DeepCTR (tf.keras 2 / Keras 3) weights by name.

* the importer's name mapping reproduces, independently, the mapping of every recorded
  DeepCTR layer case in tests/data/golden (78 cases, names as TensorFlow spelled them, with
  Keras's session-wide numbering: ``dnn_22/dice_10/batch_normalization_24/...``), and the
  imported layers reproduce the recorded outputs and gradients;
* Keras weights files in the layouts Keras writes (tf.keras 2 ``.h5`` from ``save_weights``
  and ``save``, Keras 3 ``.weights.h5``, ``.keras`` archives of both), written here with h5py;
* round trips, bad input (nothing half-loaded), and ``set_weights`` with a Keras 3 list.
"""
import json
import zipfile

import numpy as np
import pytest

from npctr import DNN, AttentionSequencePoolingLayer, LocalActivationUnit
from npctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from npctr.interop import keras_spec, load_keras_weights, to_keras_weights
from npctr.interop.keras import canonical_keys
from npctr.models import DIN, DNNModel

from test_golden_core import FOLDER_CONVENTIONS, GOLDEN, _build_layer, _inputs, _load, canon_to_path
from test_golden_asp import asp_canon_to_path


def normwise(actual, expected):
    """max|a - b| / max|b| (0 when both are exactly zero)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = np.max(np.abs(expected), initial=0.0)
    err = np.max(np.abs(actual - expected), initial=0.0)
    return err / scale if scale else err


def _golden_cases():
    out = []
    for folder in ("tf_legacy", "tf"):
        for case in json.loads((GOLDEN / folder / "_index.json").read_text())["cases"]:
            out.append(pytest.param(folder, case["name"], id=f"{folder}-{case['name']}"))
    return out


def _golden_layer(data, meta, folder):
    case = meta["case"]
    dtype = np.dtype(meta["dtype"]).name
    conventions = FOLDER_CONVENTIONS[folder]
    if case["kind"] == "asp":
        layer = AttentionSequencePoolingLayer(tuple(case["hidden"]), att_activation=case["act"],
                                              weight_normalization=case["wn"],
                                              return_score=case["return_score"], dtype=dtype,
                                              conventions=conventions)
        return layer, [data["in_query"], data["in_keys"], data["in_keys_length"]], ["query", "keys", None], \
            asp_canon_to_path
    inputs, names = _inputs(data, case)
    return _build_layer(case, dtype, conventions), inputs, names, canon_to_path


@pytest.mark.parametrize("folder,name", _golden_cases())
def test_recorded_deepctr_layers_import_by_name(folder, name):
    data, meta = _load(folder, name)
    layer, inputs, input_names, to_path = _golden_layer(data, meta, folder)
    layer.forward(inputs, training=False)                    # build
    names = [str(n) for n in data["weight_names"]]
    loaded = load_keras_weights(layer, {n: data[f"w{i}"] for i, n in enumerate(names)})
    assert sorted(loaded) == sorted(layer.weight_names())
    # an independent cross-check: the recording's neutral names say which weight each is
    spec = keras_spec(layer)
    path_of = {key: path for path, key in spec.items()}
    keys = canonical_keys(names)
    assert [path_of[keys[n]] for n in names] == [to_path(str(c)) for c in data["weight_canon"]]
    paths = [path_of[keys[n]] for n in names]
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(layer._lookup(p), data[f"w{i}"].astype(layer.dtype))

    # the imported layer reproduces DeepCTR's outputs and gradients
    rtol = 1e-12 if layer.dtype == np.float64 else 1e-5
    for mode, training in (("infer", False), ("train", True)):
        out = layer.forward(inputs, training=training, backprop=True)
        assert normwise(out, data[f"out_{mode}"]) <= rtol, mode
        grads = layer.backward(data["upstream"].astype(layer.dtype))
        grads = grads if isinstance(grads, list) else [grads]
        for g, n in zip(grads, input_names):
            if n is not None:
                assert normwise(g, data[f"grad_{mode}_in_{n}"]) <= rtol, (mode, n)
        overall = max(np.max(np.abs(data[f"grad_{mode}_w{i}"])) for i, p in enumerate(paths)
                      if p in layer.params) if layer.params else 0.0
        for i, p in enumerate(paths):
            if p in layer.params:
                recorded = data[f"grad_{mode}_w{i}"]
                tol = 1e-5 if recorded.dtype == np.float32 else rtol   # Keras 3 keeps Dice's alpha float32
                # an exact-zero gradient (a DNN bias or beta in front of a training-mode BN: the batch
                # mean removes any shift) holds round-off on both sides: judge it at the scale of
                # the layer's gradients
                scale = np.max(np.abs(recorded))
                if scale <= 100 * np.finfo(recorded.dtype).eps * overall:
                    scale = overall
                err = np.max(np.abs(layer.grads[p] - recorded))
                assert err <= tol * scale, (mode, p, err / scale)
    for i, p in enumerate(paths):          # moving statistics after the one training call
        if p in layer.state:
            assert normwise(layer.state[p], data[f"w{i}_after_train"]) <= rtol, p


# -- a DIN with DeepCTR's names ----------------------------------------------------------------
def din_columns(SparseFeat=SparseFeat, DenseFeat=DenseFeat, VarLenSparseFeat=VarLenSparseFeat, **dense_kwargs):
    """The README's DIN columns, in npctr's classes or a framework's (same signatures)."""
    return [SparseFeat("user", 3, embedding_dim=10), SparseFeat("gender", 2, embedding_dim=4),
            SparseFeat("item_id", 4, embedding_dim=8), SparseFeat("cate_id", 3, embedding_dim=4),
            DenseFeat("pay_score", 1, **dense_kwargs),
            VarLenSparseFeat(SparseFeat("hist_item_id", 4, embedding_dim=8, embedding_name="item_id"),
                             maxlen=4, length_name="seq_length"),
            VarLenSparseFeat(SparseFeat("hist_cate_id", 3, embedding_dim=4, embedding_name="cate_id"),
                             maxlen=4, length_name="seq_length")]


def make_din(**kwargs):
    kwargs = {"dnn_hidden_units": (4, 4), "dnn_use_bn": True, "att_hidden_size": (8, 4), **kwargs}
    return DIN(din_columns(), ["item_id", "cate_id"], **kwargs)


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights({p: rng.uniform(0.5, 1.5, model._lookup(p).shape) for p in model.weight_names()})
    return model


# tf.keras 2's names for make_din() (printed by DeepCTR 0.9.4 for this very DIN), in its order
TF_KERAS_DIN_NAMES = [
    "sparse_seq_emb_hist_item_id/embeddings:0", "sparse_seq_emb_hist_cate_id/embeddings:0",
    "sparse_emb_user/embeddings:0", "sparse_emb_gender/embeddings:0",
    "attention_sequence_pooling_layer/local_activation_unit/kernel:0",
    "attention_sequence_pooling_layer/local_activation_unit/bias:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/kernel0:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/kernel1:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/bias0:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/bias1:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice/dice_alpha:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice_1/dice_alpha:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice/batch_normalization/moving_mean:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice/batch_normalization/moving_variance:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice_1/batch_normalization_1/moving_mean:0",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice_1/batch_normalization_1/moving_variance:0",
    "dnn/kernel0:0", "dnn/kernel1:0", "dnn/bias0:0", "dnn/bias1:0",
    "dnn/batch_normalization/gamma:0", "dnn/batch_normalization/beta:0",
    "dnn/batch_normalization_1/gamma:0", "dnn/batch_normalization_1/beta:0",
    "dnn/batch_normalization/moving_mean:0", "dnn/batch_normalization/moving_variance:0",
    "dnn/batch_normalization_1/moving_mean:0", "dnn/batch_normalization_1/moving_variance:0",
    "dense/kernel:0", "prediction_layer/global_bias:0"]

EXPECTED_PATHS = {
    "sparse_seq_emb_hist_item_id/embeddings:0": "sparse_emb_item_id/embeddings",
    "sparse_emb_user/embeddings:0": "sparse_emb_user/embeddings",
    "attention_sequence_pooling_layer/local_activation_unit/dnn/dice_1/batch_normalization_1/moving_mean:0":
        "attention_sequence_pooling_layer/local_att/dnn/activation1/bn/moving_mean",
    "dnn/batch_normalization_1/gamma:0": "dnn/bn1/gamma",
    "dense/kernel:0": "dense/kernel", "prediction_layer/global_bias:0": "prediction_layer/global_bias",
}


def tf_keras_din_weights(model):
    """make_din()'s weights under tf.keras 2's names (from npctr's values, mapped by hand)."""
    spec = keras_spec(model)
    path_of = {key: path for path, key in spec.items()}
    keys = canonical_keys(TF_KERAS_DIN_NAMES)
    return {n: model._lookup(path_of[keys[n]]).copy() for n in TF_KERAS_DIN_NAMES}


def test_din_tf_keras_names_map_to_npctr_paths():
    model = make_din()
    path_of = {key: path for path, key in keras_spec(model).items()}
    keys = canonical_keys(TF_KERAS_DIN_NAMES)
    mapped = {n: path_of[keys[n]] for n in TF_KERAS_DIN_NAMES}
    for name, path in EXPECTED_PATHS.items():
        assert mapped[name] == path
    assert sorted(mapped.values()) == sorted(model.weight_names())       # one-to-one


def test_din_session_numbering_does_not_matter():
    """A second DIN in the same Keras session gets dnn_1, dice_2, batch_normalization_3, ..."""
    source = randomize(make_din(), 1)
    weights = tf_keras_din_weights(source)
    second_session = {"local_activation_unit": "local_activation_unit_1", "dice": "dice_6",
                      "dice_1": "dice_7", "batch_normalization": "batch_normalization_8",
                      "batch_normalization_1": "batch_normalization_9"}
    renumbered = {}
    for name, value in weights.items():
        *layers, variable = name.replace(":0", "").split("/")
        layers = [second_session.get(seg, seg) for seg in layers]
        if layers[0] == "dnn":
            layers[0] = "dnn_1"
        elif "dnn" in layers:
            layers[layers.index("dnn")] = "dnn_2"
        renumbered["/".join(layers + [variable])] = value
    target = make_din()
    load_keras_weights(target, renumbered)
    for path in source.weight_names():
        np.testing.assert_array_equal(target._lookup(path), source._lookup(path))


@pytest.mark.parametrize("model_fn", [make_din, lambda: make_din(dnn_use_bn=False, att_activation="sigmoid"),
                                      lambda: DNNModel(din_columns(), dnn_hidden_units=(4, 3), dnn_use_bn=True)])
def test_round_trip_through_keras_names_is_exact(model_fn):
    source = randomize(model_fn(), 2)
    weights = to_keras_weights(source)
    assert all(not n.endswith(":0") for n in weights)
    target = model_fn()
    load_keras_weights(target, weights)
    for path in source.weight_names():
        np.testing.assert_array_equal(target._lookup(path), source._lookup(path))
    # with tf.keras 2's ':0' spelling too
    target2 = model_fn()
    load_keras_weights(target2, {n + ":0": v for n, v in weights.items()})
    for path in source.weight_names():
        np.testing.assert_array_equal(target2._lookup(path), source._lookup(path))


def test_to_keras_weights_like_gives_the_frameworks_own_names():
    source = randomize(make_din(), 3)
    weights = to_keras_weights(source, like=TF_KERAS_DIN_NAMES)
    assert set(weights) == set(TF_KERAS_DIN_NAMES)
    expected = tf_keras_din_weights(source)
    for name in TF_KERAS_DIN_NAMES:
        np.testing.assert_array_equal(weights[name], expected[name])


@pytest.mark.parametrize("layer_fn,shape", [
    (lambda: DNN((5, 3), activation="dice", use_bn=True), (7, 6)),
    (lambda: DNN((4,), activation="prelu"), (7, 6)),
    (lambda: LocalActivationUnit((6, 4), activation="dice"), [(3, 1, 4), (3, 5, 4)]),
])
def test_layer_round_trip_with_and_without_own_prefix(layer_fn, shape):
    source, target, target2 = layer_fn(), layer_fn(), layer_fn()
    for layer in (source, target, target2):
        layer.build(shape)
    randomize(source, 4)
    weights = to_keras_weights(source)
    own = next(iter(weights)).split("/")[0]
    load_keras_weights(target, {n.replace(own + "/", own + "_22/", 1): v for n, v in weights.items()})
    load_keras_weights(target2, {n.split("/", 1)[1]: v for n, v in weights.items()})   # no prefix
    for path in source.weight_names():
        np.testing.assert_array_equal(target._lookup(path), source._lookup(path))
        np.testing.assert_array_equal(target2._lookup(path), source._lookup(path))


def test_prefix_takes_a_sub_layer_of_a_din():
    din = randomize(make_din(), 5)
    weights = tf_keras_din_weights(din)
    asp = AttentionSequencePoolingLayer((8, 4), "dice", supports_masking=True)
    asp._layers["local_att"].build([(None, 1, 12), (None, 4, 12)])
    load_keras_weights(asp, weights, prefix="attention_sequence_pooling_layer")
    for path in asp.weight_names():
        np.testing.assert_array_equal(asp._lookup(path),
                                      din._lookup("attention_sequence_pooling_layer/" + path))


# -- bad input: a clear error, the model unchanged ---------------------------------------------
def _unchanged(model, before):
    for path, value in before.items():
        np.testing.assert_array_equal(model._lookup(path), value)


def _snapshot(model):
    return {p: model._lookup(p).copy() for p in model.weight_names()}


def test_unknown_and_missing_names_list_both_sides():
    model = make_din()
    before = _snapshot(model)
    weights = tf_keras_din_weights(randomize(make_din(), 6))
    weights["dnn/kernel7:0"] = np.zeros((4, 4))
    del weights["dense/kernel:0"]
    with pytest.raises(ValueError) as info:
        load_keras_weights(model, weights)
    message = str(info.value)
    assert "dnn/kernel7:0" in message and "dense/kernel" in message
    assert "match no npctr weight" in message and "npctr weights with no" in message
    _unchanged(model, before)
    with pytest.raises(ValueError, match="dnn/kernel7"):              # unknown names: always an error
        load_keras_weights(model, weights, strict=False)
    _unchanged(model, before)
    del weights["dnn/kernel7:0"]
    loaded = load_keras_weights(model, weights, strict=False)          # a subset loads
    assert "dense/kernel" not in loaded and len(loaded) == len(before) - 1
    np.testing.assert_array_equal(model._lookup("dense/kernel"), before["dense/kernel"])


def test_duplicate_names_are_refused():
    model = make_din()
    before = _snapshot(model)
    weights = tf_keras_din_weights(model)
    weights["dnn/kernel0"] = weights["dnn/kernel0:0"] + 1
    with pytest.raises(ValueError, match="same weight.*dnn/kernel0"):
        load_keras_weights(model, weights)
    _unchanged(model, before)


def test_wrong_shape_loads_nothing():
    model = make_din()
    before = _snapshot(model)
    weights = {n: v + 1 for n, v in tf_keras_din_weights(model).items()}
    weights["prediction_layer/global_bias:0"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"wrong shapes.*global_bias.*\(2,\).*expected \(1,\)"):
        load_keras_weights(model, weights)
    _unchanged(model, before)


def test_a_list_is_refused():
    with pytest.raises(TypeError, match="by name, never by position"):
        load_keras_weights(make_din(), make_din().get_weights())


# -- Keras weights files, in the layouts Keras writes ------------------------------------------
def _h5py():
    return pytest.importorskip("h5py")


def write_tf_keras_h5(path, weights, full_model=False):
    """tf.keras 2's save_weights(.h5) layout (save(.h5) puts it under /model_weights)."""
    h5 = _h5py()
    layers = {}
    for name, value in weights.items():
        layers.setdefault(name.split("/")[0], []).append((name, value))
    with h5.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        root.attrs["layer_names"] = np.array([n.encode() for n in list(layers) + ["concat"]])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.21.0"
        for layer, items in layers.items():
            group = root.create_group(layer)
            group.attrs["weight_names"] = np.array([n.encode() for n, _ in items])
            for name, value in items:
                group.create_dataset(name, data=value)
        root.create_group("concat").attrs["weight_names"] = np.array([], dtype=np.float64)


def test_tf_keras_h5_files(tmp_path):
    source = randomize(make_din(), 7)
    weights = tf_keras_din_weights(source)
    for full in (False, True):
        path = tmp_path / f"din_{full}.h5"
        write_tf_keras_h5(path, weights, full_model=full)
        target = make_din()
        load_keras_weights(target, str(path))
        for p in source.weight_names():
            np.testing.assert_array_equal(target._lookup(p), source._lookup(p))


def write_keras3_weights_h5(f, source_layer_tree, named=True):
    """Keras 3's .weights.h5 layout: layers/<attr>/.../vars/<i>, vars' 'name' attribute."""
    def write(group, node):
        vars_group = group.create_group("vars")
        if named:
            vars_group.attrs["name"] = node["name"]
        for i, value in enumerate(node.get("vars", [])):
            vars_group.create_dataset(str(i), data=value)
        for attr, child in node.get("children", {}).items():
            if isinstance(child, list):
                container = group.create_group(attr)
                for key, item in child:
                    write(container.create_group(key), item)
            else:
                write(group.create_group(attr), child)
    layers = f.create_group("layers")
    for key, node in source_layer_tree.items():
        write(layers.create_group(key), node)
    f.create_group("vars")


def dnn_tree(dnn, name, bn_names, dice_names, dice_bn_names):
    """A DeepCTR DNN (use_bn, Dice) as Keras 3 stores it, from an npctr DNN's values."""
    n = len(dnn.hidden_units)
    v = dnn._lookup
    return {"name": name, "vars": [v(f"kernel{i}") for i in range(n)] + [v(f"bias{i}") for i in range(n)],
            "children": {
                "bn_layers": [(("batch_normalization" if i == 0 else f"batch_normalization_{i}"),
                               {"name": bn_names[i], "vars": [v(f"bn{i}/gamma"), v(f"bn{i}/beta"),
                                                              v(f"bn{i}/moving_mean"),
                                                              v(f"bn{i}/moving_variance")]})
                              for i in range(n)],
                "dropout_layers": [(("dropout" if i == 0 else f"dropout_{i}"), {"name": f"dropout_{i + 4}"})
                                   for i in range(n)],
                "activation_layers": [(("dice" if i == 0 else f"dice_{i}"),
                                       {"name": dice_names[i], "vars": [v(f"activation{i}/dice_alpha")],
                                        "children": {"bn": {"name": dice_bn_names[i],
                                                            "vars": [v(f"activation{i}/bn/moving_mean"),
                                                                     v(f"activation{i}/bn/moving_variance")]}}})
                                      for i in range(n)]}}


def test_keras3_weights_h5_and_keras_archives(tmp_path):
    h5 = _h5py()
    source = DNN((5, 3), activation="dice", use_bn=True)
    source.build((None, 6))
    randomize(source, 8)
    tree = {"dnn": dnn_tree(source, "dnn_18", ["batch_normalization_15", "batch_normalization_16"],
                            ["dice_4", "dice_5"], ["batch_normalization_17", "batch_normalization_18"]),
            "input_layer": {"name": "input_layer"}}
    path = tmp_path / "dnn.weights.h5"
    with h5.File(path, "w") as f:
        write_keras3_weights_h5(f, tree)
    for keras_file in (path, _as_keras_archive(tmp_path, path, "DNN")):
        target = DNN((5, 3), activation="dice", use_bn=True)
        target.build((None, 6))
        load_keras_weights(target, str(keras_file))
        for p in source.weight_names():
            np.testing.assert_array_equal(target._lookup(p), source._lookup(p))


def _as_keras_archive(tmp_path, weights_path, class_name, name="keras_file.keras"):
    archive = tmp_path / name
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"name": "input_layer"}},
        {"class_name": class_name, "config": {"name": "dnn_18"}}]}}
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("config.json", json.dumps(config))
        z.write(weights_path, "model.weights.h5")
    return archive


def test_tf_keras_dot_keras_archive_without_name_attributes(tmp_path):
    """tf.keras 2's .keras: groups named after classes (embedding, embedding_1, ...) in config
    order, no 'name' attributes; the config names the layers."""
    h5 = _h5py()
    source = randomize(make_din(dnn_use_bn=False, att_activation="sigmoid"), 9)
    v = source._lookup
    att = "attention_sequence_pooling_layer/local_att/"
    tables = [("sparse_seq_emb_hist_item_id", "item_id"), ("sparse_seq_emb_hist_cate_id", "cate_id"),
              ("sparse_emb_user", "user"), ("sparse_emb_gender", "gender")]
    tree = {("embedding" if i == 0 else f"embedding_{i}"): {"name": n, "vars": [v(f"sparse_emb_{e}/embeddings")]}
            for i, (n, e) in enumerate(tables)}
    tree["attention_sequence_pooling_layer"] = {"name": "x", "children": {"local_att": {
        "name": "x", "vars": [v(att + "kernel"), v(att + "bias")], "children": {"dnn": {
            "name": "x", "vars": [v(att + "dnn/kernel0"), v(att + "dnn/kernel1"), v(att + "dnn/bias0"),
                                  v(att + "dnn/bias1")]}}}}}
    tree["dnn"] = {"name": "x", "vars": [v("dnn/kernel0"), v("dnn/kernel1"), v("dnn/bias0"), v("dnn/bias1")]}
    tree["dense"] = {"name": "x", "vars": [v("dense/kernel")]}
    tree["prediction_layer"] = {"name": "x", "vars": [v("prediction_layer/global_bias")]}
    blob = tmp_path / "model.weights.h5"
    with h5.File(blob, "w") as f:
        write_keras3_weights_h5(f, tree, named=False)
    config = {"class_name": "Functional", "config": {"layers": (
        [{"class_name": "InputLayer", "config": {"name": "item_id"}}]
        + [{"class_name": "Embedding", "config": {"name": n}} for n, _ in tables]
        + [{"class_name": c, "config": {"name": n}} for c, n in (
            ("AttentionSequencePoolingLayer", "attention_sequence_pooling_layer"), ("DNN", "dnn"),
            ("Dense", "dense"), ("PredictionLayer", "prediction_layer"))])}}
    archive = tmp_path / "din.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.write(blob, "model.weights.h5")
    target = make_din(dnn_use_bn=False, att_activation="sigmoid")
    load_keras_weights(target, archive)
    for p in source.weight_names():
        np.testing.assert_array_equal(target._lookup(p), source._lookup(p))


def test_files_that_are_not_keras_weights(tmp_path):
    h5 = _h5py()
    model = make_din()
    before = _snapshot(model)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a Keras weights file.*not an HDF5 file"):
        load_keras_weights(model, text)
    other = tmp_path / "other.h5"
    with h5.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="not in a Keras weights layout"):
        load_keras_weights(model, other)
    archive = tmp_path / "a.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a .keras file"):
        load_keras_weights(model, archive)
    with pytest.raises(FileNotFoundError):
        load_keras_weights(model, tmp_path / "missing.h5")
    _unchanged(model, before)


# -- set_weights with a positional list --------------------------------------------------------
def _keras3_list(layer):
    return [layer._lookup(p).copy() for p in layer.weight_names("keras3")]


def test_set_weights_refuses_an_ambiguous_keras3_list():
    """DNN((16, 16), use_bn=True): every weight but the kernels has 16 entries, so a Keras 3
    list fits tf.keras 2's order too and would put moving means into gamma."""
    source, target = DNN((16, 16), use_bn=True), DNN((16, 16), use_bn=True)
    source.build((None, 8)), target.build((None, 8))
    randomize(source, 10)
    before = _snapshot(target)
    with pytest.raises(ValueError, match="ambiguous.*order='tf_keras' or 'keras3'"):
        target.set_weights(_keras3_list(source))
    _unchanged(target, before)
    target.set_weights(_keras3_list(source), order="keras3")
    for p in source.weight_names():
        np.testing.assert_array_equal(target._lookup(p), source._lookup(p))
    x = np.random.default_rng(0).standard_normal((5, 8))
    np.testing.assert_array_equal(target.forward(x), source.forward(x))


def test_set_weights_detects_a_keras3_list_by_shape():
    source, target = DNN((16, 8), use_bn=True), DNN((16, 8), use_bn=True)
    source.build((None, 8)), target.build((None, 8))
    randomize(source, 11)
    target.set_weights(_keras3_list(source))       # only Keras 3's order fits these shapes
    for p in source.weight_names():
        np.testing.assert_array_equal(target._lookup(p), source._lookup(p))


def test_get_weights_round_trip_is_never_ambiguous():
    source, target = DNN((16, 16), use_bn=True), DNN((16, 16), use_bn=True)
    source.build((None, 8)), target.build((None, 8))
    randomize(source, 12)
    target.set_weights(source.get_weights())
    target.set_weights(source.get_weights(order="keras3"))
    for p in source.weight_names():
        np.testing.assert_array_equal(target._lookup(p), source._lookup(p))
