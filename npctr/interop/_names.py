"""What the Keras and Torch importers share: turning a source into ``{name: ndarray}``,
and loading ``{npctr path: array}`` all at once or not at all.

Each importer builds a *spec* from the npctr model, ``{npctr path: source key}``, where
the key is the framework's name for that weight in a canonical form (see
``npctr.interop.keras`` and ``npctr.interop.torch``). Matching is by these keys, never by
position.
"""
import os

import numpy as np


def to_numpy(value, name):
    """A NumPy array from an array, a torch tensor (duck-typed: never imports torch) or a
    TensorFlow / Keras variable (``.numpy()``)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):        # torch.Tensor / Parameter
        value = value.detach().cpu().numpy()
    elif not isinstance(value, np.ndarray) and hasattr(value, "numpy"):
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"weight {name!r} must be a numeric array, got dtype {array.dtype} "
                        f"({type(value).__name__})")
    return array


def source_path(source):
    """``source`` as a filesystem path string if it is one, else None."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return None


def take_prefix(weights, prefix, separator, strip, what):
    """The entries of ``weights`` under ``prefix`` (a layer or module path), the prefix removed.
    ``strip(name)`` is the name compared (e.g. without TensorFlow's ``:0``)."""
    if prefix is None:
        return weights
    start = prefix.rstrip(separator) + separator
    taken = {name[len(start):]: value for name, value in weights.items() if strip(name).startswith(start)}
    if not taken:
        raise ValueError(f"{what}: no weight name starts with prefix {prefix!r}")
    return taken


def _listing(names, limit=40):
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


class ExportedWeights(dict):
    """``{name: array}`` exported by npctr (``to_keras_weights``, ``to_torch_state_dict``), tagged
    with the conventions profile of the model it came from, so that loading it back into a model
    of that profile is not mistaken for a framework's weights loaded into the wrong profile."""

    def __init__(self, items, conventions):
        super().__init__(items)
        self.conventions = conventions


def profile_matters(model):
    """Whether ``model``'s numbers depend on its conventions profile: a model (loss, history mask,
    optimizer), or any BatchNormalization or Dice inside (their constants)."""
    from ..layers.activation import Dice
    from ..layers.normalization import BatchNormalization
    from ..models.base import Model
    return isinstance(model, Model) or any(isinstance(layer, (BatchNormalization, Dice))
                                           for _, layer in model.sublayers())


def check_conventions(model, source, profiles, framework, what):
    """Refuse weights of ``framework`` (whose profiles are ``profiles``) for a model of another
    profile whose numbers depend on it; a source exported by npctr is judged by its own profile."""
    origin = getattr(source, "conventions", None)
    allowed = (origin,) if origin is not None else profiles
    name = model.conventions.name
    if name in allowed or not profile_matters(model):
        return
    if origin is not None:
        detail = f"these weights were exported by npctr from a model of the {origin!r} conventions profile"
        hint = f"conventions={origin!r}"
    else:
        detail = f"these are {framework} weights"
        hint = " or ".join(f"conventions={p!r}" for p in profiles)
    raise ValueError(f"{what}: {detail}, and {type(model).__name__} {model.name!r} follows the {name!r} profile "
                     f"({model.conventions.framework}), whose constants (BatchNormalization, Dice, the history "
                     f"mask, the loss) give other numbers. Build it with {hint}, or pass "
                     "check_conventions=False to load them anyway")


def load_matched(model, spec, source, canonical, strict, framework, convert=None, ignored=(), before_write=None):
    """Load ``source`` ``{name: array}`` into ``model`` through ``spec`` ``{npctr path: key}``.

    ``canonical(names) -> {name: key}`` maps the source's names to keys. ``convert(path,
    array, target) -> array`` turns a source array into npctr's layout (default: unchanged).
    Names whose key is in ``ignored`` are skipped. Every check (unknown and duplicate
    names, missing weights with ``strict``, shapes, then ``before_write()``) runs before
    anything is written, so on any error the model is unchanged. Returns the list of npctr
    paths loaded.
    """
    keys = canonical(list(source))
    by_key = {}
    duplicates = []
    for name, key in keys.items():
        if key in ignored:
            continue
        if key in by_key:
            duplicates.append((by_key[key], name))
        else:
            by_key[key] = name
    if duplicates:
        raise ValueError(f"load_{framework}: these {framework} names refer to the same weight: "
                         + "; ".join(f"{a!r} and {b!r}" for a, b in duplicates))
    path_of = {key: path for path, key in spec.items()}
    unknown = [name for key, name in by_key.items() if key not in path_of]
    missing = [path for path, key in spec.items() if key not in by_key]
    if unknown or (strict and missing):
        hint = ""
        if before_write is not None:
            try:
                before_write()
            except ValueError as exc:        # the names differ because the profile does: say so first
                hint = f"\n  {exc}"
        raise ValueError(
            f"load_{framework}: the weights do not match {type(model).__name__} {model.name!r} by name.{hint}\n"
            f"  {framework} names that match no npctr weight: {_listing(unknown)}\n"
            f"  npctr weights with no {framework} name: {_listing(missing)}"
            + ("\n  (strict=False loads a subset, but every given name must match)" if not unknown else "")
            + f"\n  expected {framework} names (npctr path -> name): "
            + _listing(f"{p} -> {format_key(k)}" for p, k in spec.items()))
    values = {}
    problems = []
    for key, name in by_key.items():
        path = path_of[key]
        target = model._lookup(path)
        array = to_numpy(source[name], name)
        if convert is not None:
            array = convert(path, array, target)
        if array.shape != target.shape:
            problems.append(f"{name!r} -> {path}: shape {tuple(np.shape(source[name]))}, "
                            f"expected {target.shape}")
            continue
        values[path] = array
    if problems:
        raise ValueError(f"load_{framework}: wrong shapes (nothing was loaded): " + "; ".join(problems))
    if before_write is not None:
        before_write()
    model.set_weights(values, strict=False)
    return list(values)


def format_key(key):
    """A canonical key as text (keys are strings or tuples of segments)."""
    if isinstance(key, str):
        return key
    return "/".join(s if isinstance(s, str) else (s[0] if s[1] == 0 else f"{s[0]}[{s[1]}]") for s in key)
