"""DeepCTR's feature columns: ``SparseFeat``, ``VarLenSparseFeat``, ``DenseFeat``.

Same fields, defaults and input naming as ``deepctr.feature_column`` (0.9.4).
Inputs to a model are a dict of NumPy arrays keyed by feature name:
``SparseFeat`` ``(batch_size,)`` or ``(batch_size, 1)`` ids, ``VarLenSparseFeat``
``(batch_size, maxlen)`` ids with 0 as padding, its ``length_name`` ``(batch_size, 1)``,
``DenseFeat`` ``(batch_size, dimension)`` (or ``(batch_size,)`` when ``dimension == 1``).
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ._validation import check_positive_int

DEFAULT_GROUP_NAME = "default_group"


class SparseFeat(namedtuple("SparseFeat", ["name", "vocabulary_size", "embedding_dim", "use_hash",
                                           "vocabulary_path", "dtype", "embeddings_initializer",
                                           "embedding_name", "group_name", "trainable"])):
    """A categorical feature with one id per sample.

    ``embedding_dim='auto'`` gives ``6 * int(vocabulary_size ** 0.25)`` as DeepCTR.
    ``embeddings_initializer=None`` means DeepCTR's normal(0, 1e-4).
    Features with the same ``embedding_name`` share one table.
    """
    __slots__ = ()

    def __new__(cls, name, vocabulary_size, embedding_dim=4, use_hash=False, vocabulary_path=None,
                dtype="int32", embeddings_initializer=None, embedding_name=None,
                group_name=DEFAULT_GROUP_NAME, trainable=True):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        vocabulary_size = check_positive_int(vocabulary_size, f"vocabulary_size of {name!r}")
        if embedding_dim == "auto":
            embedding_dim = 6 * int(pow(vocabulary_size, 0.25))
        embedding_dim = check_positive_int(embedding_dim, f"embedding_dim of {name!r} (or 'auto')")
        if use_hash:
            raise ValueError(f"use_hash=True (feature {name!r}) is not supported by npctr: "
                             "hash ids to [0, vocabulary_size) before calling the model")
        if embedding_name is None:
            embedding_name = name
        return super().__new__(cls, name, vocabulary_size, embedding_dim, use_hash, vocabulary_path, dtype,
                               embeddings_initializer, embedding_name, group_name, trainable)

    def __hash__(self):
        return self.name.__hash__()


class VarLenSparseFeat(namedtuple("VarLenSparseFeat", ["sparsefeat", "maxlen", "combiner", "length_name",
                                                       "weight_name", "weight_norm"])):
    """A sequence of ids (a behaviour history), 0 as padding, pooled by ``combiner``."""
    __slots__ = ()

    def __new__(cls, sparsefeat, maxlen, combiner="mean", length_name=None, weight_name=None,
                weight_norm=True):
        if not isinstance(sparsefeat, SparseFeat):
            raise TypeError(f"sparsefeat must be a SparseFeat, got {type(sparsefeat).__name__}")
        maxlen = check_positive_int(maxlen, f"maxlen of {sparsefeat.name!r}")
        if combiner not in ("sum", "mean", "max"):
            raise ValueError(f"combiner of {sparsefeat.name!r} must be 'sum', 'mean' or 'max', got {combiner!r}")
        if weight_name is not None:
            raise ValueError(f"weight_name (feature {sparsefeat.name!r}) is not supported by npctr yet")
        return super().__new__(cls, sparsefeat, maxlen, combiner, length_name, weight_name, weight_norm)

    name = property(lambda self: self.sparsefeat.name)
    vocabulary_size = property(lambda self: self.sparsefeat.vocabulary_size)
    embedding_dim = property(lambda self: self.sparsefeat.embedding_dim)
    use_hash = property(lambda self: self.sparsefeat.use_hash)
    vocabulary_path = property(lambda self: self.sparsefeat.vocabulary_path)
    dtype = property(lambda self: self.sparsefeat.dtype)
    embeddings_initializer = property(lambda self: self.sparsefeat.embeddings_initializer)
    embedding_name = property(lambda self: self.sparsefeat.embedding_name)
    group_name = property(lambda self: self.sparsefeat.group_name)
    trainable = property(lambda self: self.sparsefeat.trainable)

    def __hash__(self):
        return self.name.__hash__()


#: name -> function: the transforms a ``DenseFeat`` can be saved with (by name)
DENSE_TRANSFORMS = {"log1p": np.log1p, "sqrt": np.sqrt, "abs": np.abs}


def register_transform(name, fn):
    """Make ``fn`` (elementwise, ``(batch_size, dimension)`` in and out) a named dense
    transform: ``DenseFeat(..., transform_fn=name)`` or ``transform_fn=fn`` can then be saved
    in a model file, which stores the name. Returns ``fn``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    known = DENSE_TRANSFORMS.get(name)
    if known is not None and known is not fn:
        raise ValueError(f"a different transform is already registered as {name!r}: {known!r}")
    DENSE_TRANSFORMS[name] = fn
    return fn


def transform_name(transform_fn, feature):
    """The name a ``transform_fn`` is saved under (None stays None); ValueError if it has none."""
    if transform_fn is None or isinstance(transform_fn, str):
        return transform_fn
    for name, fn in DENSE_TRANSFORMS.items():
        if fn is transform_fn:
            return name
    raise ValueError(f"feature {feature!r}: transform_fn {transform_fn!r} is not a registered transform, "
                     "so it cannot be saved in a model file (loading never runs unnamed code); register "
                     "it first with npctr.feature_column.register_transform(name, fn) (known: "
                     f"{sorted(DENSE_TRANSFORMS)})")


class DenseFeat(namedtuple("DenseFeat", ["name", "dimension", "dtype", "transform_fn"])):
    """A real-valued feature of ``dimension`` values per sample.

    ``transform_fn``: None, a callable or a registered name (``DENSE_TRANSFORMS``: ``'log1p'``,
    ``'sqrt'``, ``'abs'``, or one added with ``register_transform``), applied to the feature's
    ``(batch_size, dimension)`` values before they enter the DNN, as DeepCTR does. Only a
    registered transform can be saved in a model file.
    """
    __slots__ = ()

    def __new__(cls, name, dimension=1, dtype="float32", transform_fn=None):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        dimension = check_positive_int(dimension, f"dimension of {name!r}")
        if isinstance(transform_fn, str):
            if transform_fn not in DENSE_TRANSFORMS:
                raise ValueError(f"transform_fn of {name!r} must be a callable or a registered transform "
                                 f"name {sorted(DENSE_TRANSFORMS)}, got {transform_fn!r}")
        elif transform_fn is not None and not callable(transform_fn):
            raise TypeError(f"transform_fn of {name!r} must be None, a callable or a registered name, "
                            f"got {transform_fn!r}")
        return super().__new__(cls, name, dimension, dtype, transform_fn)

    @property
    def transform(self):
        """The ``transform_fn`` as a function (None if there is none)."""
        fn = self.transform_fn
        return DENSE_TRANSFORMS[fn] if isinstance(fn, str) else fn

    def __hash__(self):
        return self.name.__hash__()


def build_input_features(feature_columns):
    """Input name -> column, in DeepCTR's order (a VarLen's ``length_name`` follows it)."""
    features = OrderedDict()
    for fc in feature_columns:
        if isinstance(fc, (SparseFeat, DenseFeat, VarLenSparseFeat)):
            features[fc.name] = fc
            if isinstance(fc, VarLenSparseFeat) and fc.length_name is not None:
                features.setdefault(fc.length_name, fc)
        else:
            raise TypeError(f"Invalid feature column type, got {type(fc).__name__}")
    return features


def get_feature_names(feature_columns):
    """The input names a model built from ``feature_columns`` expects, in DeepCTR's order."""
    return list(build_input_features(feature_columns))


def feature_columns_to_config(feature_columns):
    """JSON-able description of feature columns (for model files)."""
    out = []
    for fc in feature_columns:
        cfg = fc._asdict()
        if isinstance(fc, VarLenSparseFeat):
            cfg["sparsefeat"] = feature_columns_to_config([fc.sparsefeat])[0]
        if isinstance(fc, DenseFeat):
            cfg["transform_fn"] = transform_name(fc.transform_fn, fc.name)
        init = cfg.get("embeddings_initializer")
        if init is not None and not isinstance(init, str):
            raise ValueError(f"feature {fc.name!r}: a callable embeddings_initializer cannot be saved "
                             "in a config")
        out.append({"class": type(fc).__name__, "config": cfg})
    return out


def feature_columns_from_config(config):
    """Inverse of ``feature_columns_to_config``."""
    classes = {"SparseFeat": SparseFeat, "VarLenSparseFeat": VarLenSparseFeat, "DenseFeat": DenseFeat}
    example = ('{"class": "SparseFeat", "config": {"name": "item_id", "vocabulary_size": 100, '
               '"embedding_dim": 4}}')
    if isinstance(config, (str, bytes, dict)) or not hasattr(config, "__iter__"):
        raise ValueError(f"feature columns must be a list of column configs such as {example}, got {config!r:.200}")
    out = []
    for item in config:
        if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
            raise ValueError(f"a feature column config is {{\"class\": ..., \"config\": {{its arguments}}}}, "
                             f"e.g. {example}; got {item!r:.200}")
        cls = classes.get(item.get("class"))
        if cls is None:
            raise ValueError(f"unknown feature column class {item.get('class')!r} (SparseFeat, VarLenSparseFeat, "
                             "DenseFeat)")
        cfg = dict(item["config"])
        if cls is VarLenSparseFeat and "sparsefeat" not in cfg:
            raise ValueError("a VarLenSparseFeat config holds its SparseFeat's config under \"sparsefeat\", e.g. "
                             '{"class": "VarLenSparseFeat", "config": {"sparsefeat": {"class": "SparseFeat", '
                             '"config": {"name": "hist_item_id", "vocabulary_size": 100, "embedding_name": '
                             f'"item_id"}}}}, "maxlen": 5, "length_name": "seq_length"}}}}; got {item!r:.200}')
        if cls is VarLenSparseFeat:
            cfg["sparsefeat"] = feature_columns_from_config([cfg["sparsefeat"]])[0]
        out.append(cls(**cfg))
    return out
