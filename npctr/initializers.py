"""Weight initializers with DeepCTR's (tf.keras) semantics, drawn from a NumPy Generator.

Inside ``with placeholders():`` (what ``load_model`` builds a model in, before the stored
arrays replace every weight) no initializer draws or allocates: each returns a read-only,
zero-strided view of the right shape and dtype, and ``Layer.add_weight`` stores such views
as they are. A model built so has no usable weights until they are all replaced.
"""
import contextlib
import functools
import inspect
import threading

import numpy as np

_mode = threading.local()


@contextlib.contextmanager
def placeholders(max_weights=None):
    """Build layers without drawing or allocating their weights (see the module docstring).

    ``max_weights``: a ``ValueError`` as soon as more weights than that are added (a model file
    holds one array per weight: a config describing more cannot match it, however long it
    would take to build).
    """
    previous = getattr(_mode, "placeholders", False), getattr(_mode, "budget", None)
    _mode.placeholders, _mode.budget = True, max_weights
    try:
        yield
    finally:
        _mode.placeholders, _mode.budget = previous


def placeholders_active():
    return getattr(_mode, "placeholders", False)


def placeholder_weight(shape, dtype):
    """The placeholder ``Layer.add_weight`` stores for one weight, counted against ``max_weights``."""
    budget = getattr(_mode, "budget", None)
    if budget is not None:
        if budget <= 0:
            raise ValueError("the config describes more weights than the file's arrays")
        _mode.budget = budget - 1
    return placeholder(shape, dtype)


def placeholder(shape, dtype=np.float64):
    """A read-only array of ``shape`` and ``dtype`` that occupies no memory (one zero, broadcast)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), tuple(shape))


def _skipped_by_placeholders(init):
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(*args, **kwargs):
        if placeholders_active():
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return placeholder(bound.arguments["shape"], bound.arguments["dtype"])
        return init(*args, **kwargs)
    return wrapper

# Standard deviation of a standard normal truncated to [-2, 2]; tf.keras divides by it
# so that the truncated draws keep the intended variance.
_TRUNCATED_STD = 0.87962566103423978


def truncated_normal(rng, shape, stddev, dtype=np.float64):
    """Normal(0, stddev) truncated at two standard deviations (redrawn outside)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return (z * stddev).astype(dtype)


def _fans(shape):
    if len(shape) < 2:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


@_skipped_by_placeholders
def glorot_normal(rng, shape, dtype=np.float64):
    """tf.keras ``GlorotNormal``: truncated normal with variance 2 / (fan_in + fan_out)."""
    fan_in, fan_out = _fans(shape)
    stddev = np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD
    return truncated_normal(rng, shape, stddev, dtype)


@_skipped_by_placeholders
def glorot_uniform(rng, shape, dtype=np.float64):
    """tf.keras ``GlorotUniform``: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


@_skipped_by_placeholders
def random_normal(rng, shape, stddev=0.05, mean=0.0, dtype=np.float64):
    """tf.keras ``RandomNormal`` (DeepCTR's embeddings use stddev 1e-4)."""
    return (mean + stddev * rng.standard_normal(shape)).astype(dtype)


@_skipped_by_placeholders
def zeros(rng, shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


@_skipped_by_placeholders
def ones(rng, shape, dtype=np.float64):
    return np.ones(shape, dtype=dtype)


INITIALIZERS = {"glorot_normal": glorot_normal, "glorot_uniform": glorot_uniform,
                "random_normal": random_normal, "zeros": zeros, "ones": ones}


def get(identifier):
    """An initializer by name (as Keras spells it) or a callable ``f(rng, shape, dtype)``."""
    if callable(identifier):
        return identifier
    if identifier not in INITIALIZERS:
        raise ValueError(f"unknown initializer {identifier!r}; expected one of {sorted(INITIALIZERS)}")
    return INITIALIZERS[identifier]
