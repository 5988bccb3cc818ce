"""Model files: one NumPy ``.npz`` archive, loaded with ``allow_pickle=False``.

Contents (every entry a plain array, so loading never runs code):

* ``__format__``: the file format version (``FORMAT_VERSION``, an integer);
* ``__npctr_version__``: the npctr version that wrote the file (a string);
* ``__config__``: a JSON string ``{"class": <model class name>, "config": model.get_config()}``;
* one array per weight and moving statistic, named by its path (``model.weight_names()``,
  e.g. ``dnn/kernel0``, ``dnn/bn0/moving_mean``).

``save_model`` writes to a temporary file in the target's directory
(``.<name>.<pid>.<random>.npz.tmp``), fsyncs it and renames it over the target
(``os.replace``), so a crash mid-save leaves any previous file intact; a later save of the
same path deletes the temp files such a crash left. The file gets the mode of the file it
replaces, or for a new file ``0o666`` minus the umask (as ``open`` would create it).
``load_model`` checks the format version, the class (registered with ``@register_model``;
importing npctr registers its own models), the JSON, and that the arrays match the rebuilt
model's weight names, shapes and dtypes exactly; anything else is a ``ValueError`` that says
what is wrong. NumPy only.
"""
import json
import os
import re
import secrets
import zipfile

import numpy as np

from . import initializers
from ._version import __version__
from .registry import MODEL_REGISTRY

FORMAT_VERSION = 1
_META = ("__format__", "__npctr_version__", "__config__")
#: temp files of a save in progress end so (``.gitignore`` matches ``*.npz.tmp``)
TEMP_SUFFIX = ".npz.tmp"


def save_model(model, path):
    """Write ``model`` (config, every weight and moving statistic) to ``path`` atomically.

    The file is written exactly at ``path`` (no ``.npz`` suffix is appended).
    """
    cls_name = type(model).__name__
    if MODEL_REGISTRY.get(cls_name) is not type(model):
        raise ValueError(f"{cls_name} is not registered: decorate the class with "
                         "npctr.models.register_model so load_model can rebuild it")
    try:
        config_json = json.dumps({"class": cls_name, "config": model.get_config()}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{cls_name}.get_config() is not JSON-serializable: {exc}") from exc
    arrays = {"__format__": np.array(FORMAT_VERSION, dtype=np.int64),
              "__npctr_version__": np.array(__version__),
              "__config__": np.array(config_json)}
    arrays.update(_weight_arrays(model))

    _write_atomically(path, arrays)


def _weight_arrays(model):
    arrays = {}
    for name in model.weight_names():
        if name.startswith("__") or name.endswith(".npy"):
            raise ValueError(f"weight name {name!r} clashes with the file format's entries")
        arrays[name] = np.ascontiguousarray(model._lookup(name))
    return arrays


def _write_atomically(path, arrays):
    """``np.savez`` to a temp file next to ``path``, fsync, rename over ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temps(path)
    tmp = _temp_path(path)
    # created like any new file (mode 0o666 minus the umask), or given the replaced file's mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            except FileNotFoundError:
                pass
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


def _temp_path(path):
    """``.<name>.<pid>.<random>.npz.tmp`` next to ``path`` (``.gitignore``'s ``*.npz.tmp``)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _remove_stale_temps(path):
    """Delete temp files of an earlier save of ``path`` whose process no longer runs (a killed
    save); a save in progress in another live process keeps its file."""
    head, tail = os.path.split(path)
    pattern = re.compile(re.escape(f".{tail}.") + r"(\d+)\.[0-9a-f]+" + re.escape(TEMP_SUFFIX) + "$")
    try:
        names = os.listdir(head or ".")
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(head, name))
        except OSError:
            pass


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True       # exists (another user's) or cannot tell: keep its file
    return True


#: leading bytes -> what a file that is not an npz archive looks like
_SIGNATURES = (
    (b"\x93NUMPY", "a single NumPy .npy array (npctr model files are .npz archives)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. a Keras .h5 model: import its weights with "
                         "npctr.interop.load_keras_weights)"),
    (b"\x80", "a Python pickle"),
    (b"\x1f\x8b", "a gzip file"),
    (b"{", "JSON text"),
)


def _not_npz(path):
    """What ``path`` (a path or an open binary file) looks like if it is not a zip archive
    (None if it starts like one)."""
    if hasattr(path, "read"):
        start = path.tell()
        head = path.read(512)
        path.seek(start)
    else:
        with open(path, "rb") as f:
            head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    if not head:
        return "an empty (0-byte) file"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(c < " " and c not in "\t\r\n" for c in text):
        return f"binary data starting with {head[:8]!r}"
    return f"a text file starting with {text[:40]!r}"


def _read_archive(path, names=None):
    """The arrays of the file (only ``names`` if given), read eagerly; any damage becomes a ValueError."""
    looks_like = _not_npz(path)          # FileNotFoundError passes through
    if looks_like is not None:
        raise ValueError(f"{path!r} is not an npctr model file (a NumPy .npz zip archive): it looks "
                         f"like {looks_like}")
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
                         f"({__version__}) reads version {FORMAT_VERSION}; the file was "
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
    path = os.fspath(path)
    arrays = _read_archive(path)
    cls_name, config = _parse_meta(arrays, path)
    cls = MODEL_REGISTRY.get(cls_name)
    if cls is None:
        raise ValueError(f"{path!r} holds a {cls_name!r} model, which is not a registered model class "
                         f"(known: {sorted(MODEL_REGISTRY)}); import the module that defines it first")
    try:
        with initializers.placeholders():     # shapes only: no draws, no memory, until checked
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
    for name in names:                        # the loaded arrays become the weights: no copy
        value = arrays[name]
        if not (value.flags.writeable and value.flags.c_contiguous):
            value = np.array(value)
        model._adopt(name, value)
    return model


#: the entry that marks a weights file (``save_weights``)
WEIGHTS_MARK = "__npctr_weights__"


def save_weights(model, path):
    """Write every weight and moving statistic of ``model`` (any npctr Layer), by path name,
    to one ``.npz`` file at ``path``, atomically; no config (Keras's ``save_weights``)."""
    arrays = {WEIGHTS_MARK: np.array(FORMAT_VERSION, dtype=np.int64)}
    arrays.update(_weight_arrays(model))
    _write_atomically(path, arrays)


def load_weights(model, path):
    """Load the weights saved by ``save_weights`` (or those of a model file) into ``model``,
    by name. Every weight of ``model`` must be in the file with its shape and dtype, and the
    file must hold no other weights; otherwise a ``ValueError`` lists the differences and
    nothing is changed. Loading never runs code."""
    path = os.fspath(path)
    arrays = _read_archive(path)
    if WEIGHTS_MARK not in arrays and "__config__" not in arrays:
        raise ValueError(f"{path!r} is not an npctr weights file (npctr.io.save_weights) or model file")
    stored = {k: v for k, v in arrays.items() if k != WEIGHTS_MARK and k not in _META}
    names = model.weight_names()
    missing = [k for k in names if k not in stored]
    extra = [k for k in stored if k not in set(names)]
    problems = [f"{k}: shape {stored[k].shape}, expected {model._lookup(k).shape}" for k in names
                if k in stored and stored[k].shape != model._lookup(k).shape]
    problems += [f"{k}: dtype {stored[k].dtype}, expected {model._lookup(k).dtype}" for k in names
                 if k in stored and stored[k].shape == model._lookup(k).shape
                 and stored[k].dtype != model._lookup(k).dtype]
    if missing or extra or problems:
        raise ValueError(f"{path!r} does not hold the weights of this {type(model).__name__}: missing "
                         f"{missing}, unexpected {extra}" + ("; " + "; ".join(problems) if problems else ""))
    model.set_weights({k: stored[k] for k in names})
