"""Model files: one NumPy ``.npz`` archive, loaded with ``allow_pickle=False``.

Contents (every entry a plain array, so loading never runs code):

* ``__format__``: the file format version (``FORMAT_VERSION``, an integer);
* ``__npctr_version__``: the npctr version that wrote the file (a string);
* ``__config__``: a JSON string ``{"class": <model class name>, "config": model.get_config()}``;
* one array per weight and moving statistic, named by its path (``model.weight_names()``,
  e.g. ``dnn/kernel0``, ``dnn/bn0/moving_mean``).

``save_model`` writes to a temporary file in the target's directory, fsyncs it and
renames it over the target (``os.replace``), so a crash mid-save leaves any previous
file intact. ``load_model`` checks the format version, the class (registered with
``@register_model``), the JSON, and that the arrays match the rebuilt model's weight
names, shapes and dtypes exactly; anything else is a ``ValueError`` that says what is
wrong. NumPy only.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT_VERSION = 1
_META = ("__format__", "__npctr_version__", "__config__")


def _npctr_version():
    from . import __version__
    return __version__


def save_model(model, path):
    """Write ``model`` (config, every weight and moving statistic) to ``path`` atomically.

    The file is written exactly at ``path`` (no ``.npz`` suffix is appended).
    """
    from .models.base import MODEL_REGISTRY
    cls_name = type(model).__name__
    if MODEL_REGISTRY.get(cls_name) is not type(model):
        raise ValueError(f"{cls_name} is not registered: decorate the class with "
                         "npctr.models.base.register_model so load_model can rebuild it")
    try:
        config_json = json.dumps({"class": cls_name, "config": model.get_config()}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{cls_name}.get_config() is not JSON-serializable: {exc}") from exc
    arrays = {"__format__": np.array(FORMAT_VERSION, dtype=np.int64),
              "__npctr_version__": np.array(_npctr_version()),
              "__config__": np.array(config_json)}
    for name in model.weight_names():
        if name in arrays or name.endswith(".npy"):
            raise ValueError(f"weight name {name!r} clashes with the file format's entries")
        arrays[name] = np.ascontiguousarray(model._lookup(name))

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _read_archive(path, names=None):
    """The arrays of the file (only ``names`` if given), read eagerly; any damage becomes a ValueError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError(f"{path!r} is a single .npy array, not an npctr model file (.npz)")
            return {name: data[name] for name in data.files if names is None or name in names}
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"{path!r} holds pickled objects; npctr model files never do, "
                             "and loading them would run code: refusing") from exc
        raise ValueError(f"{path!r} is not a readable npctr model file: {exc}") from exc
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zipfile.LargeZipFile) as exc:
        raise ValueError(f"{path!r} is not a readable npctr model file (truncated or corrupted?): "
                         f"{type(exc).__name__}: {exc}") from exc


def _scalar(arrays, key, kind, path):
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in kind:
        raise ValueError(f"{path!r}: entry {key} must be a scalar of kind {kind!r}, "
                         f"got dtype {value.dtype} shape {value.shape}")
    return value.item()


def _parse_meta(arrays, path):
    """Check the format entries; return ``(class name, config)``."""
    missing_meta = [k for k in _META if k not in arrays]
    if missing_meta:
        raise ValueError(f"{path!r} is not an npctr model file: it lacks {missing_meta}")
    version = _scalar(arrays, "__format__", "iu", path)
    if version != FORMAT_VERSION:
        raise ValueError(f"{path!r} has model file format version {version}, this npctr "
                         f"({_npctr_version()}) reads version {FORMAT_VERSION}; the file was "
                         f"written by npctr {arrays['__npctr_version__']}")
    config_json = _scalar(arrays, "__config__", "U", path)
    try:
        meta = json.loads(config_json)
        cls_name, config = meta["class"], meta["config"]
        if not isinstance(cls_name, str) or not isinstance(config, dict):
            raise TypeError("'class' must be a string and 'config' an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path!r}: the model config (__config__) is not valid: {exc}") from exc
    return cls_name, config


def read_model_config(path):
    """``(class name, config)`` of the model file at ``path`` (or an open binary file),
    without reading its weights."""
    path = path if hasattr(path, "read") else os.fspath(path)
    return _parse_meta(_read_archive(path, names=_META), path)


def load_model(path):
    """Rebuild the model saved at ``path``; it predicts exactly what the saved one did.

    Raises ``ValueError`` for a truncated or corrupted file, a file of another format
    version, an unknown model class, a bad config, or arrays that do not match the
    rebuilt model's weight names, shapes or dtypes. ``FileNotFoundError`` if there is
    no file.
    """
    from .models.base import MODEL_REGISTRY
    from . import models as _models  # noqa: F401  (registers npctr's own models)
    path = os.fspath(path)
    arrays = _read_archive(path)
    cls_name, config = _parse_meta(arrays, path)
    cls = MODEL_REGISTRY.get(cls_name)
    if cls is None:
        raise ValueError(f"{path!r} holds a {cls_name!r} model, which is not a registered model class "
                         f"(known: {sorted(MODEL_REGISTRY)}); import the module that defines it first")
    try:
        model = cls.from_config(config)
        if not model.built:
            model.build(None)
    except Exception as exc:
        raise ValueError(f"{path!r}: could not rebuild {cls_name} from its config: "
                         f"{type(exc).__name__}: {exc}") from exc

    names = model.weight_names()
    stored = [k for k in arrays if k not in _META]
    missing = [k for k in names if k not in arrays]
    extra = [k for k in stored if k not in set(names)]
    if missing or extra:
        raise ValueError(f"{path!r} does not match the {cls_name} its config describes: "
                         f"missing arrays {missing}, unexpected arrays {extra}")
    problems = []
    for name in names:
        target, value = model._lookup(name), arrays[name]
        if value.shape != target.shape:
            problems.append(f"{name}: shape {value.shape}, expected {target.shape}")
        elif value.dtype != target.dtype:
            problems.append(f"{name}: dtype {value.dtype}, expected {target.dtype}")
    if problems:
        raise ValueError(f"{path!r}: arrays do not match the {cls_name} its config describes: "
                         + "; ".join(problems))
    model.set_weights({name: arrays[name] for name in names})
    return model
