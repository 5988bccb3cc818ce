"""DeepCTR (TensorFlow, tf.keras 2 or Keras 3) weights in and out of npctr, by name.

A Keras variable name is a path of layer names and a variable name:
``attention_sequence_pooling_layer/local_activation_unit/dnn/dice_1/batch_normalization_1/moving_mean:0``.
Keras numbers repeated layer names (``dnn_22``, ``dice_10``) with a session-wide counter, so the
numbers say nothing by themselves; their *order* among siblings does (layers are created, and
numbered, in order). Matching is therefore by structure:

1. ``:0`` is dropped;
2. every auto-named layer segment (``dnn``, ``dice``, ``batch_normalization``, ...) becomes
   ``(base, ordinal)``: its rank, by number, among the siblings of the same base under the
   same parent (``dice_10``, ``dice_11`` under one DNN are the DNN's Dice 0 and Dice 1);
   explicitly named layers (``sparse_emb_user``) keep their name;
3. the result is looked up in the model's spec, ``{npctr path: key}`` (``keras_spec``).

So ``dnn_22/batch_normalization_23/gamma:0`` and ``dnn/batch_normalization_1/gamma`` are the same
weight: the second BatchNormalization's gamma of the model's DNN (npctr ``dnn/bn1/gamma``).
"""
import io
import json
import re
import zipfile

import numpy as np

from ..layers.activation import Dice, PReLU
from ..layers.base import Layer, _snake_case
from ..layers.core import DNN, LocalActivationUnit, PredictionLayer
from ..layers.dense import Dense
from ..layers.embedding import Embedding
from ..layers.normalization import BatchNormalization
from ..layers.sequence import AttentionSequencePoolingLayer
from ..models.base import Model
from ._names import ExportedWeights, check_conventions, load_matched, source_path, take_prefix, to_numpy

#: Keras's default names of the layers npctr mirrors (the ones Keras numbers)
AUTO_NAMES = {"dnn", "batch_normalization", "dice", "p_re_lu", "local_activation_unit",
              "attention_sequence_pooling_layer", "dense", "prediction_layer", "embedding",
              "activation", "dropout"}
#: npctr layer class -> its Keras name (a standalone layer's own segment)
KERAS_BASE = {DNN: "dnn", BatchNormalization: "batch_normalization", Dice: "dice", PReLU: "p_re_lu",
              LocalActivationUnit: "local_activation_unit",
              AttentionSequencePoolingLayer: "attention_sequence_pooling_layer", Dense: "dense",
              PredictionLayer: "prediction_layer", Embedding: "embedding"}
_SUFFIX = re.compile(r"^(.*)_(\d+)$")
_TF_OUTPUT = re.compile(r":\d+$")


# -- the model's side: npctr path -> canonical Keras key ---------------------------------------
def _entries(layer):
    """``(npctr path, key)`` for ``layer``'s weights, keys relative to the layer itself."""
    own = list(layer._params) + list(layer._state)
    if isinstance(layer, Model):
        yield from _feature_model_entries(layer)
        return
    for key in own:
        yield key, (key,)
    counts = {}
    for child_key, child in layer._layers.items():
        base = _child_base(layer, child)
        if base is None:
            continue
        ordinal = counts.get(base, 0)
        counts[base] = ordinal + 1
        for path, key in _entries(child):
            yield f"{child_key}/{path}", ((base, ordinal),) + key


def _child_base(parent, child):
    """The Keras base name of a child layer with weights (None: no weights, skipped)."""
    if not (child.params or child.state):
        return None
    for cls, base in KERAS_BASE.items():
        if isinstance(child, cls):
            return base
    raise TypeError(f"no Keras name is known for {type(child).__name__} inside {type(parent).__name__}")


def _table_layer_names(model):
    """DeepCTR's ``create_embedding_dict``: the Keras layer that holds each embedding table.

    Tables are keyed by ``embedding_name``: first every ``SparseFeat`` makes
    ``sparse_emb_<embedding_name>``, then every ``VarLenSparseFeat`` makes
    ``sparse_seq_emb_<feature>`` and replaces the entry for its ``embedding_name``; a replaced
    layer is never called, so never built, and has no weights. Returns
    ``({embedding_name: layer name}, {replaced layer names})``.
    """
    from ..feature_column import SparseFeat, VarLenSparseFeat
    names, replaced = {}, set()
    columns = model.dnn_feature_columns
    for fc in columns:
        if isinstance(fc, SparseFeat):
            names[fc.embedding_name] = f"sparse_emb_{fc.embedding_name}"
    for fc in columns:
        if isinstance(fc, VarLenSparseFeat):
            if fc.embedding_name in names:
                replaced.add(names[fc.embedding_name])
            names[fc.embedding_name] = f"sparse_seq_emb_{fc.name}"
    return names, replaced - set(names.values())


def _feature_model_entries(model):
    tables, _ = _table_layer_names(model)
    for child_key, child in model._layers.items():
        if isinstance(child, Embedding):
            emb_name = child_key[len("sparse_emb_"):]
            base = tables[emb_name]
        else:
            base = _child_base(model, child)
            if base is None:
                continue
        for path, key in _entries(child):
            yield f"{child_key}/{path}", ((base, 0),) + key


def keras_spec(model):
    """``{npctr path: canonical Keras key}`` for every weight of ``model`` (a layer or model).

    A standalone layer's keys start with its own segment (``("dnn", 0)``), as a Keras layer's
    variable names start with the layer's name; a model's start with its layers' names.
    """
    spec = dict(_entries(model))
    if not isinstance(model, Model):
        own = (_own_base(model), 0)
        spec = {path: (own,) + key for path, key in spec.items()}
    missing = set(model.weight_names()) - set(spec)
    if missing:
        raise TypeError(f"no Keras name is known for {sorted(missing)} of {type(model).__name__}")
    return spec


def _own_base(layer):
    for cls, base in KERAS_BASE.items():
        if isinstance(layer, cls):
            return base
    raise TypeError(f"no Keras name is known for a standalone {type(layer).__name__}")


def _ignored_keys(model):
    """Keys of weights DeepCTR may save that npctr has no use for (replaced tables)."""
    if not isinstance(model, Model) or not hasattr(model, "sparse_columns"):
        return set()
    _, replaced = _table_layer_names(model)
    return {((name, 0), "embeddings") for name in replaced}


# -- the source's side: Keras names -> canonical keys -----------------------------------------
def _split(name):
    return _TF_OUTPUT.sub("", str(name)).split("/")


def _segment(seg):
    """``dnn_22`` -> ``("dnn", 22)``, ``dnn`` -> ``("dnn", 0)``; other names keep their name."""
    m = _SUFFIX.match(seg)
    if m and m.group(1) in AUTO_NAMES:
        return m.group(1), int(m.group(2))
    return seg, 0


def canonical_keys(names):
    """``{Keras name: canonical key}``: numbered layer segments replaced by their rank among
    same-base siblings (see the module docstring)."""
    parsed = {name: [_segment(s) for s in _split(name)[:-1]] + [_split(name)[-1]] for name in names}
    # ordinals level by level: siblings are segments with the same canonical parent
    ordinals = {}
    depth = max((len(p) for p in parsed.values()), default=0)
    canon_prefix = {name: () for name in names}
    for level in range(depth - 1):
        siblings = {}
        for name, p in parsed.items():
            if level < len(p) - 1:
                base, number = p[level]
                siblings.setdefault((canon_prefix[name], base), set()).add(number)
        for (parent, base), numbers in siblings.items():
            for rank, number in enumerate(sorted(numbers)):
                ordinals[(parent, base, number)] = rank
        for name, p in parsed.items():
            if level < len(p) - 1:
                base, number = p[level]
                canon_prefix[name] += ((base, ordinals[(canon_prefix[name], base, number)]),)
    return {name: canon_prefix[name] + (parsed[name][-1],) for name in names}


def _relative_to(model, keys):
    """Give a standalone layer's source keys its own leading segment if they all lack it."""
    if isinstance(model, Model):
        return keys
    own = _own_base(model)
    if keys and not any(isinstance(k[0], tuple) and k[0][0] == own for k in keys.values()):
        return {name: ((own, 0),) + key for name, key in keys.items()}
    return keys


# -- reading sources ---------------------------------------------------------------------------
def _variable_name(variable):
    path = getattr(variable, "path", None)      # Keras 3: the full path; tf.keras 2: the name
    return path if isinstance(path, str) and path else variable.name


def read_keras_source(source, prefix=None):
    """``{Keras name: ndarray}`` from a live Keras model/layer, a dict or a weights file."""
    path = source_path(source)
    if path is not None:
        weights = read_keras_file(path)
    elif isinstance(source, dict):
        weights = dict(source)
    elif hasattr(source, "weights") and not isinstance(source, Layer):
        weights = {}
        for variable in source.weights:
            name = _variable_name(variable)
            if name in weights:
                raise ValueError(f"load_keras_weights: the Keras model has two variables named {name!r}")
            weights[name] = to_numpy(variable, name)
    elif isinstance(source, (list, tuple)):
        raise TypeError("load_keras_weights matches weights by name, never by position: pass the "
                        "Keras model or layer itself, a dict {variable name: array} or a weights file, "
                        "not a list (get_weights() order differs between tf.keras 2 and Keras 3)")
    else:
        raise TypeError(f"load_keras_weights: source must be a Keras model or layer, a dict "
                        f"{{name: array}} or a path to a .h5 / .weights.h5 / .keras file, got "
                        f"{type(source).__name__}")
    return take_prefix(weights, prefix, "/", lambda name: _TF_OUTPUT.sub("", str(name)), "load_keras_weights")


def _require_h5py():
    try:
        import h5py
    except ImportError as exc:      # pragma: no cover - h5py is installed in the test environment
        raise ImportError("reading Keras weights files needs h5py (pip install 'npctr[h5]'); "
                          "or pass the Keras model itself or a dict {name: array}") from exc
    return h5py


def read_keras_file(path):
    """``{Keras variable name: ndarray}`` from a ``.h5`` (tf.keras 2 ``save_weights`` or
    ``save``), ``.weights.h5`` or ``.keras`` (Keras 3, tf.keras 2's v3 format) file, with h5py."""
    h5py = _require_h5py()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if "model.weights.h5" not in members:
                raise ValueError(f"{path!r} is a zip archive but not a .keras file "
                                 f"(no model.weights.h5; members {members[:10]})")
            config = json.loads(archive.read("config.json")) if "config.json" in members else None
            blob = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(blob, "r") as f:
            return _read_v3(f, path, _config_group_names(config))
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{path!r} is not a Keras weights file (.h5, .weights.h5 or .keras): "
                         f"not an HDF5 file ({exc})") from exc
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:
            return _read_legacy(root)
        if "layers" in f or "vars" in f:
            return _read_v3(f, path, {})
    raise ValueError(f"{path!r} is an HDF5 file but not in a Keras weights layout "
                     "(neither tf.keras 2's layer_names/weight_names nor Keras 3's layers/.../vars)")


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_legacy(root):
    """tf.keras 2 ``.h5``: a group per layer, attribute ``weight_names`` gives full names."""
    out = {}
    for layer_name in root.attrs["layer_names"]:
        group = root[_text(layer_name)]
        for weight_name in group.attrs.get("weight_names", []):
            weight_name = _text(weight_name)
            out[weight_name] = np.asarray(group[weight_name][()])
    return out


def _config_group_names(config):
    """A ``.keras`` file's top-level group names -> layer names: groups are named after the
    layer's class (``embedding``, ``embedding_1``, ...) in config order, the names are in the config."""
    if not config:
        return {}
    layers = config.get("config", {}).get("layers", [])
    counts, names = {}, {}
    for layer in layers:
        base = _snake_case(layer.get("class_name", ""))
        n = counts.get(base, 0)
        counts[base] = n + 1
        names[base if n == 0 else f"{base}_{n}"] = layer.get("config", {}).get("name", base)
    return names


# attribute names DeepCTR's layers keep their children under (what a v3 file's groups are named)
_ATTRIBUTE_ALIASES = {"local_att": "local_activation_unit", "bn": "batch_normalization"}


def _variable_names(layer_name, count, path):
    """The names of a layer's variables, in the order a v3 file numbers them (creation order)."""
    base = _segment(layer_name)[0]
    if base.startswith(("sparse_emb_", "sparse_seq_emb_")) or base == "embedding":
        names = ["embeddings"]
    elif base == "dnn" and count % 2 == 0:
        names = [f"kernel{i}" for i in range(count // 2)] + [f"bias{i}" for i in range(count // 2)]
    elif base == "batch_normalization" and count in (2, 4):
        names = ["gamma", "beta", "moving_mean", "moving_variance"][4 - count:]
    else:
        names = {"dice": ["dice_alpha"], "p_re_lu": ["alpha"], "local_activation_unit": ["kernel", "bias"],
                 "dense": ["kernel", "bias"][:count], "prediction_layer": ["global_bias"]}.get(base)
    if names is None or len(names) != count:
        raise ValueError(f"{path!r}: cannot name the {count} variables of layer {layer_name!r} (a v3 file "
                         "numbers them; npctr knows DeepCTR's DNN, Dice, BatchNormalization, "
                         "LocalActivationUnit, Dense, PredictionLayer and embeddings); pass a dict "
                         "{variable name: array} instead")
    return names


def _read_v3(f, path, top_names):
    """Keras 3 ``.weights.h5`` / ``.keras``: ``layers/<layer>/.../vars/<i>``; a ``vars`` group's
    ``name`` attribute (Keras 3) or the config (tf.keras 2's ``.keras``) names the layer."""
    out = {}

    def visit(group, parents, top):
        for key in group:
            child = group[key]
            if key == "vars" or not hasattr(child, "keys"):
                continue
            if "vars" not in child:              # a list attribute (bn_layers, activation_layers)
                visit(child, parents, top)
                continue
            name = child["vars"].attrs.get("name")
            if name is None:
                name = top_names.get(key, key) if top else _ATTRIBUTE_ALIASES.get(key, key)
            name = _text(name)
            variables = child["vars"]
            count = len(variables)
            if count:
                indices = sorted(variables, key=int)
                for index, var_name in zip(indices, _variable_names(name, count, path)):
                    out["/".join(parents + [name, var_name])] = np.asarray(variables[index][()])
            visit(child, parents + [name], False)

    if "layers" in f:
        visit(f["layers"], [], True)
    return out


# -- public API --------------------------------------------------------------------------------
def load_keras_weights(model, source, strict=True, prefix=None, check_conventions=True):
    """Load DeepCTR weights from Keras into an npctr layer or model, matching by name.

    Parameters
    ----------
    model : npctr Layer or Model (built)
    source : Keras model or layer (tf.keras 2 or Keras 3), dict or path
        A dict maps Keras variable names (``dnn/kernel0:0``, Keras 3 paths such as
        ``dnn_18/batch_normalization_15/gamma``) to arrays; a path is a ``.h5``,
        ``.weights.h5`` or ``.keras`` file, read with h5py (never by loading Keras).
    strict : bool, default True
        Every npctr weight must get a value and every Keras weight must find an npctr
        weight. With ``False`` a subset loads; names that match nothing are still an error.
    prefix : str, optional
        Take only the source's weights under this Keras layer path (e.g. a DIN's
        ``"attention_sequence_pooling_layer"`` for an npctr ``AttentionSequencePoolingLayer``).

    check_conventions : bool, default True
        DeepCTR's Keras weights go into a model built with ``conventions="tf_keras"`` (the
        default) or ``"keras3"``: a ``conventions="torch"`` model whose numbers depend on its
        profile (any model; a layer with a BatchNormalization or Dice) is refused with a
        ``ValueError`` naming the profiles to use. A dict exported by ``to_keras_weights`` is
        judged by the profile it was exported from. ``False`` loads anyway.

    Returns the list of npctr paths loaded. Raises ``ValueError`` listing both sides'
    unmatched names, duplicate names or wrong shapes, or a conventions mismatch; nothing is
    written unless all is well.
    """
    weights = read_keras_source(source, prefix)
    if source_path(source) is not None:
        weights = _name_tables_by_shape(model, weights, source_path(source))
    spec = keras_spec(model)
    return load_matched(model, spec, weights, lambda names: _relative_to(model, canonical_keys(names)),
                        strict, "keras_weights", ignored=_ignored_keys(model),
                        before_write=(lambda: _check_keras_conventions(model, source)) if check_conventions else None)


_CLASS_NAMED_TABLE = re.compile(r"^embedding(_\d+)?/embeddings$")


def _name_tables_by_shape(model, weights, path):
    """tf.keras 2's ``save_weights("x.weights.h5")`` names a model's top-level groups by class
    (``embedding``, ``embedding_1``, ...), not by layer name: a DIN's tables lose their names. Each
    such table is named by its shape when exactly one of the model's tables has that shape; if two
    tables share a shape, which is which cannot be known and the file is refused."""
    anonymous = [n for n in weights if _CLASS_NAMED_TABLE.match(n)]
    if not anonymous or not isinstance(model, Model) or not hasattr(model, "sparse_columns"):
        return weights
    tables, _ = _table_layer_names(model)
    expected = {f"{layer}/embeddings": model._lookup(f"sparse_emb_{emb}/embeddings").shape
                for emb, layer in tables.items()}
    expected = {n: shape for n, shape in expected.items() if n not in weights}
    renamed = dict(weights)
    for name in anonymous:
        shape = np.shape(weights[name])
        candidates = [n for n, s in expected.items() if s == shape]
        if len(candidates) != 1 or sum(np.shape(weights[a]) == shape for a in anonymous) != 1:
            raise ValueError(
                f"{path!r}: a tf.keras 2 .weights.h5 file names the model's embedding layers by class "
                f"({', '.join(sorted(anonymous))}), not by layer name, and its table {name!r} of shape {shape} "
                f"matches {len(candidates)} of {type(model).__name__}'s tables ({candidates}) by shape, so which "
                "table is which cannot be known. Save the weights with model.save_weights('x.h5') (HDF5, by "
                "layer name) or model.save('x.keras'), or pass the live Keras model")
        renamed[candidates[0]] = renamed.pop(name)
    return renamed


def _check_keras_conventions(model, source):
    check_conventions(model, source, ("tf_keras", "keras3"), "DeepCTR (Keras)", "load_keras_weights")


def map_keras_names(model, names):
    """``{Keras name: npctr path}`` for the Keras variable names of a model like ``model``
    (e.g. to compare gradients by name); names that match nothing map to None."""
    path_of = {key: path for path, key in keras_spec(model).items()}
    keys = _relative_to(model, canonical_keys(list(names)))
    return {name: path_of.get(key) for name, key in keys.items()}


def keras_default_name(key):
    """A canonical key as the variable name a fresh Keras session gives it (``dnn/dice_1/...``)."""
    return "/".join(s if isinstance(s, str) else (s[0] if s[1] == 0 else f"{s[0]}_{s[1]}") for s in key)


def to_keras_weights(model, like=None):
    """``{Keras variable name: ndarray}`` (copies) for every weight of ``model``.

    Without ``like``: the names a fresh Keras session gives DeepCTR's layers
    (``dnn/kernel0``, ``dnn/batch_normalization_1/gamma``). With ``like`` (a Keras model or
    layer, or its variable names): exactly that model's names, matched by structure, so
    ``keras_model.set_weights([w[_name(v)] for v in keras_model.weights])`` loads it, where
    ``_name(v)`` is ``v.path`` in Keras 3 and ``v.name`` in tf.keras 2.
    """
    spec = keras_spec(model)
    if like is None:
        return ExportedWeights({keras_default_name(key): model._lookup(path).copy() for path, key in spec.items()},
                               model.conventions.name)
    names = [_variable_name(v) for v in like.weights] if hasattr(like, "weights") else list(like)
    keys = _relative_to(model, canonical_keys(names))
    by_key = {key: name for name, key in keys.items()}
    path_of = {key: path for path, key in spec.items()}
    unknown = [n for n, k in keys.items() if k not in path_of and k not in _ignored_keys(model)]
    missing = [p for p, k in spec.items() if k not in by_key]
    if unknown or missing:
        raise ValueError(f"to_keras_weights: the Keras model does not match {type(model).__name__} by "
                         f"name: Keras names with no npctr weight {unknown}; npctr weights with no "
                         f"Keras name {missing}")
    return ExportedWeights({by_key[key]: model._lookup(path).copy() for path, key in spec.items()},
                           model.conventions.name)
