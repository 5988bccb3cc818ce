"""Model files: one NumPy ``.npz`` archive, read as an untrusted file (no pickles, no code).

Contents (every entry a plain array, so loading never runs code):

* ``__format__``: the file format version (``FORMAT_VERSION``, an integer);
* ``__npctr_version__``: the npctr version that wrote the file (a string);
* ``__config__``: a JSON string ``{"class": <model class name>, "config": model.get_config()}``;
* one array per weight and moving statistic, named by its path (``model.weight_names()``,
  e.g. ``dnn/kernel0``, ``dnn/bn0/moving_mean``), stored uncompressed (``np.savez``).

``save_model`` writes to a temporary file in the target's directory
(``.<name>.<pid>.<random>.npz.tmp``), fsyncs it and renames it over the target
(``os.replace``), so a crash mid-save leaves any previous file intact; a later save of the
same path deletes the temp files such a crash left. The file gets the mode of the file it
replaces, or for a new file ``0o666`` minus the umask (as ``open`` would create it).

**What loading a file may cost.** ``load_model`` reads a file as safetensors reads one:
the archive's directory, then the config, then each array's header, and only then array data
(:mod:`npctr._npz`). The config alone decides which arrays exist, with which shapes and dtypes:
it implies ``N`` bytes of weights, and the file must hold exactly those arrays, stored, with
exactly those sizes. So before any array data is read it is known that loading will allocate
``N`` bytes, no more than the file itself holds, and ``N`` may not exceed ``max_bytes``
(default ``MAX_WEIGHT_BYTES``, 16 GiB). Everything else is refused with a ``ValueError`` that
says what is wrong, at a cost that does not grow with what the file claims: a path that is not
a regular file (FIFO, device, directory); a zip directory of more than 10,000 entries or 2 MiB;
an entry that is not one of the config's arrays, a duplicate, a compressed, encrypted,
overlapping or truncated member; an ``.npy`` header over 4 KiB, with Python objects (pickles)
or sizes that do not match its member; a config over ``MAX_CONFIG_CHARS`` characters, of an
unknown class, or that cannot be rebuilt; a format version this npctr does not read; data whose
CRC-32 is wrong. The model is rebuilt from its config with placeholder weights (no draws, no
memory), so an absurd config (a vocabulary of 2e9, hidden units of 1e7) costs nothing before
it is refused. ``benchmarks/bench_hostile_files.py`` measures the refusals of 22 kinds of hostile
file (each in at most 0.25 s and 10 MB above the interpreter's own memory) and a 1.5 GB model's load
(0.85x ``np.load``'s time, 1.00x its memory); tables in ``docs/training.md``. NumPy and the
standard library only.
"""
import contextlib
import json
import os

import numpy as np

from . import initializers, _files
from ._npz import Archive
from ._validation import check_positive_int
from ._version import __version__
from .registry import MODEL_REGISTRY

FORMAT_VERSION = 1
_META = ("__format__", "__npctr_version__", "__config__")
#: temp files of a save in progress end so (``.gitignore`` matches ``*.npz.tmp``)
TEMP_SUFFIX = ".npz.tmp"
#: the most bytes of weights a model file may describe (``load_model(path, max_bytes=...)``
#: overrides it): far above any DIN served from one process's memory, far below what an
#: absurd config (a vocabulary of 2e9) claims
MAX_WEIGHT_BYTES = 16 * 2 ** 30
#: the longest config JSON, in characters: 1 Mi (a DIN's feature column takes ~250 characters, so
#: about 4,000 columns; rebuilding a config of this size takes ~0.1 s)
MAX_CONFIG_CHARS = 2 ** 20
#: longest npctr version string stored in a file
_MAX_VERSION_CHARS = 64


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
    """``np.savez`` to a temp file next to ``path``, fsync, rename over ``path`` (``npctr._files``)."""
    path = os.fspath(path)
    fd, tmp = _files.create_temp(path, TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        _files.replace(tmp, path)
    except OSError as exc:
        _files.unlink_quietly(tmp)
        named = _files.with_path(exc, path)         # e.g. a full disk: the message says where
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        _files.unlink_quietly(tmp)
        raise


#: leading bytes -> what a file that is not an npz archive looks like
_SIGNATURES = (
    (b"\x93NUMPY", "a single NumPy .npy array (npctr model files are .npz archives)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. a Keras .h5 model: import its weights with "
                         "npctr.interop.load_keras_weights)"),
    (b"\x80", "a Python pickle"),
    (b"\x1f\x8b", "a gzip file"),
    (b"{", "JSON text"),
)


def _not_npz(f):
    """What the open binary file ``f`` looks like if it is not a zip archive (None if it starts
    like one)."""
    start = f.tell()
    head = f.read(512)
    f.seek(start)
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


@contextlib.contextmanager
def _archive(path):
    """The model file at ``path`` (a path or an open binary file) as an :class:`npctr._npz.Archive`;
    a file that is not a zip archive is a ValueError saying what it looks like."""
    if hasattr(path, "read"):
        f, owned, label = path, False, repr(getattr(path, "name", "<file object>"))
    else:
        f, _ = _files.open_regular(path, "model file")      # FileNotFoundError passes through
        owned, label = True, repr(path)
    try:
        looks_like = _not_npz(f)
        if looks_like is not None:
            raise ValueError(f"{label} is not an npctr model file (a NumPy .npz zip archive): it looks "
                             f"like {looks_like}")
        with Archive(f, label, "npctr model file") as archive:
            yield archive
    finally:
        if owned:
            f.close()


def _names(names, limit=20):
    """A list of names for a message, at most ``limit`` of them (a hostile file may hold thousands)."""
    names = list(names)
    if len(names) <= limit:
        return repr(names)
    return repr(names[:limit])[:-1] + f", ... and {len(names) - limit} more]"


def _scalar(archive, key, kind, max_bytes):
    """The value of the scalar entry ``key`` (dtype kind in ``kind``, at most ``max_bytes``)."""
    member = archive.header(key)
    if member.shape != () or member.dtype.kind not in kind or member.nbytes > max_bytes:
        raise archive.error(f"entry {key} must be a scalar of kind {kind!r} of at most {max_bytes} bytes, "
                            f"got dtype {member.dtype} shape {member.shape}")
    return archive.read(member).item()


def _parse_meta(archive):
    """Check the format entries; return ``(class name, config)``."""
    label = archive.label
    missing_meta = [k for k in _META if k not in archive.names]
    if missing_meta:
        raise ValueError(f"{label} is not an npctr model file: it lacks {missing_meta}")
    _check_version(archive, _scalar(archive, "__format__", "iu", 8), "model file")
    member = archive.header("__config__")
    if member.dtype.kind == "U" and member.nbytes > 4 * MAX_CONFIG_CHARS:
        raise archive.error(f"the config is {member.nbytes // 4:,} characters long, more than "
                            f"npctr.io.MAX_CONFIG_CHARS = {MAX_CONFIG_CHARS:,}", "__config__")
    config_json = _scalar(archive, "__config__", "U", 4 * MAX_CONFIG_CHARS)
    try:
        meta = json.loads(config_json)
        cls_name, config = meta["class"], meta["config"]
        if not isinstance(cls_name, str) or not isinstance(config, dict):
            raise TypeError("'class' must be a string and 'config' an object")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError(f"{label}: the model config (__config__) is not valid: "
                         f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return cls_name, config


def _check_version(archive, version, what):
    if version == FORMAT_VERSION:
        return
    written_by = "an unknown npctr version"
    if "__npctr_version__" in archive.names:
        try:
            written_by = f"npctr {_scalar(archive, '__npctr_version__', 'U', 4 * _MAX_VERSION_CHARS)}"
        except ValueError:
            pass
    raise ValueError(f"{archive.label} has {what} format version {version}, this npctr ({__version__}) reads "
                     f"version {FORMAT_VERSION}; the file was written by {written_by}")


def _read_weights(archive, targets, ignore, describe, max_bytes=None, verb="match"):
    """The arrays ``targets`` (name -> the weight they replace) from the archive, each checked
    against its target's shape and dtype, and their total against ``max_bytes``, before any
    array data is read. ``ignore``: entries that are not weights; ``describe`` (and ``verb``)
    say in messages what the file should hold."""
    label = archive.label
    stored = [k for k in archive.names if k not in ignore]
    missing = [k for k in targets if k not in archive.names]
    extra = [k for k in stored if k not in targets]
    if missing or extra:
        raise ValueError(f"{label} does not {verb} {describe}: missing arrays {_names(missing)}, "
                         f"unexpected arrays {_names(extra)}")
    members = {name: archive.header(name) for name in targets}
    problems = []
    for name, target in targets.items():
        m = members[name]
        if m.shape != target.shape:
            problems.append(f"{name}: shape {m.shape}, expected {target.shape}")
        elif m.dtype != target.dtype:
            problems.append(f"{name}: dtype {m.dtype}, expected {target.dtype}")
        elif m.fortran_order and len(m.shape) > 1:
            problems.append(f"{name}: stored in Fortran order (npctr writes C order)")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ValueError(f"{label}: arrays do not match {describe}: {shown}")
    total = sum(m.nbytes for m in members.values())
    if max_bytes is not None and total > max_bytes:
        raise ValueError(f"{label}: {describe} has {total:,} bytes of weights, more than max_bytes={max_bytes:,} "
                         f"(npctr.io.MAX_WEIGHT_BYTES); pass load_model(path, max_bytes=...) to load it anyway")
    return {name: archive.read(m) for name, m in members.items()}


def read_model_config(path):
    """``(class name, config)`` of the model file at ``path`` (or an open binary file),
    without reading its weights."""
    path = path if hasattr(path, "read") else os.fspath(path)
    with _archive(path) as archive:
        return _parse_meta(archive)


def _rebuild(cls_name, config, label, max_weights=None):
    """The model a config describes, with placeholder weights (shapes only: no draws, no memory);
    building stops at the ``max_weights + 1``-th weight (the file holds ``max_weights`` arrays)."""
    cls = MODEL_REGISTRY.get(cls_name)
    if cls is None:
        raise ValueError(f"{label} holds a {cls_name!r} model, which is not a registered model class "
                         f"(known: {sorted(MODEL_REGISTRY)}); import the module that defines it first")
    try:
        with initializers.placeholders(max_weights):
            model = cls.from_config(config)
            if not model.built:
                model.build(None)
    except Exception as exc:
        raise ValueError(f"{label}: could not rebuild {cls_name} from its config: "
                         f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    return model


def load_model(path, max_bytes=None):
    """Rebuild the model saved at ``path``; it predicts exactly what the saved one did.

    ``path`` names a regular file (or is an open binary file). The config decides which
    arrays the file must hold, with which shapes and dtypes; they are checked, with the file's
    directory and every array header, before any array data is read, so loading allocates
    exactly the model's weights, never more than the file holds, and at most ``max_bytes``
    (None: ``MAX_WEIGHT_BYTES``, 16 GiB; see the module docstring for every rule).

    Raises ``ValueError`` for anything but a well-formed model file of this format version:
    a special file (FIFO, device, directory), a truncated or corrupted archive, unknown,
    duplicate, compressed or missing arrays, shapes, dtypes or sizes that do not match the
    config, pickled objects, an unknown model class, a bad or oversized config, weights above
    ``max_bytes``. ``FileNotFoundError`` if there is no file.
    """
    path = path if hasattr(path, "read") else os.fspath(path)
    max_bytes = MAX_WEIGHT_BYTES if max_bytes is None else check_positive_int(max_bytes, "max_bytes")
    with _archive(path) as archive:
        cls_name, config = _parse_meta(archive)
        model = _rebuild(cls_name, config, archive.label, len(archive.names))
        targets = {name: model._lookup(name) for name in model.weight_names()}
        arrays = _read_weights(archive, targets, _META, f"the {cls_name} its config describes", max_bytes)
    for name, value in arrays.items():          # the loaded arrays become the weights: no copy
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
    by name. Every weight of ``model`` must be in the file with its shape and dtype, the file
    must hold no other weights and be of this format version; otherwise a ``ValueError`` lists
    the differences and nothing is changed. The file is read as ``load_model`` reads one
    (headers checked before any data). Loading never runs code."""
    path = path if hasattr(path, "read") else os.fspath(path)
    with _archive(path) as archive:
        if WEIGHTS_MARK in archive.names:
            _check_version(archive, _scalar(archive, WEIGHTS_MARK, "iu", 8), "weights file")
        elif "__format__" in archive.names:
            _check_version(archive, _scalar(archive, "__format__", "iu", 8), "model file")
        else:
            raise ValueError(f"{archive.label} is not an npctr weights file (npctr.io.save_weights) or model file")
        targets = {name: model._lookup(name) for name in model.weight_names()}
        arrays = _read_weights(archive, targets, {WEIGHTS_MARK, *_META},
                               f"the weights of this {type(model).__name__}", verb="hold")
    model.set_weights(arrays)
