"""Argument checks shared by every public entry point.

Every check raises ``TypeError`` or ``ValueError`` naming the argument, what was
expected and what was received, so bad input never surfaces as a NumPy
broadcasting error deep inside a layer.
"""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def resolve_dtype(dtype, name="dtype"):
    """Return ``np.dtype`` for 'float32'/'float64' (or None); reject anything else."""
    if dtype is None:
        return None
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}") from exc
    if resolved not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def as_array(x, name):
    """``np.asarray(x)``, with a ragged nested list (rows of different lengths) a ValueError
    naming ``name`` instead of NumPy's "inhomogeneous shape" error (NumPy >= 1.24) or an array of
    objects (older NumPy, with a deprecation warning)."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        if isinstance(x, (list, tuple)):
            raise _ragged(x, name) from None
        raise
    if arr.dtype == object and isinstance(x, (list, tuple)) and len(_row_lengths(x)) > 1:
        raise _ragged(x, name)
    return arr


def _row_lengths(x):
    return sorted({len(r) if hasattr(r, "__len__") else 0 for r in x})


def _ragged(x, name):
    lengths = _row_lengths(x)
    return ValueError(f"{name} must be a rectangular array (every row of the same length), got a "
                      f"ragged {type(x).__name__} of {len(x)} rows with lengths "
                      f"{lengths[:10]}{' ...' if len(lengths) > 10 else ''}")


def float_array(x, name, dtype=None):
    """Convert ``x`` to a floating ndarray without copying when it already is one.

    ``dtype=None`` keeps float32 input as float32 and turns everything else into
    float64 (NumPy's default), so float32 in gives float32 out.
    """
    if isinstance(x, (list, tuple)) and len(x) and any(isinstance(v, np.ndarray) for v in x):
        raise TypeError(f"{name} must be one array, got a {type(x).__name__} of arrays")
    arr = as_array(x, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.dtype(np.float64)
    return arr.astype(dtype, copy=False)


def int_array(x, name):
    """Convert ``x`` to an integer ndarray; floats with integral values are refused."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr


def check_rank(x, name, rank=None, min_rank=None):
    if rank is not None and x.ndim != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {x.shape} (rank {x.ndim})")
    if min_rank is not None and x.ndim < min_rank:
        raise ValueError(
            f"{name} must have rank >= {min_rank}, got shape {x.shape} (rank {x.ndim})")


def check_last_dim(x, name, expected):
    if x.shape[-1] != expected:
        raise ValueError(
            f"{name} must have last dimension {expected} (the size the layer was built for), "
            f"got shape {x.shape}")


def check_shape(x, name, expected):
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def check_list(inputs, name, length):
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"{name} must be a list of {length} arrays, got {type(inputs).__name__}")
    if len(inputs) != length:
        raise ValueError(f"{name} must be a list of {length} arrays, got {len(inputs)}")


def check_units(units, name):
    """``units`` must be a sequence of positive integers (may be empty)."""
    if isinstance(units, (str, bytes)) or not hasattr(units, "__iter__"):
        raise TypeError(f"{name} must be a sequence of positive integers, got {units!r}")
    units = tuple(units)
    for u in units:
        if isinstance(u, bool) or not isinstance(u, numbers.Integral) or u <= 0:
            raise ValueError(f"{name} must contain positive integers, got {units!r}")
    return tuple(int(u) for u in units)


def check_positive_int(value, name):
    """A positive integer (Python or NumPy, not bool), returned as a plain ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive(value, name):
    """A positive, finite real number (not bool), returned as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r} of type {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_rate(rate, name):
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {rate!r}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
    return float(rate)


def check_nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a non-negative number, got {value!r}")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite (and >= 0), got {value!r}")
    return float(value)


def check_seed(seed, name="seed"):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def as_feature_dict(x, names, name="x"):
    """A model's input as a dict keyed by feature name: a dict as is, or a list / tuple of
    arrays in ``names`` order (Keras's list form)."""
    if isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(f"{name} given as a list must hold {len(names)} arrays in the order "
                             f"{list(names)}, got {len(x)}")
        return dict(zip(names, x))
    if not isinstance(x, dict):
        raise TypeError(f"{name} must be a dict of arrays keyed by feature name {list(names)}, "
                        f"got {type(x).__name__}")
    return x


def check_finite_rows(a, name, hint="pass check_finite=False to skip this check"):
    """A float array without NaN or inf; else a ``ValueError`` naming ``name``, the first bad
    row (first axis) and its value. Integer arrays pass unchecked."""
    if a.dtype.kind != "f" or a.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = a.sum()             # one pass, no temporary: a NaN or inf anywhere makes the sum one
    if math.isfinite(total):
        return
    finite = np.isfinite(a)         # (or the sum of finite values overflowed)
    if finite.all():
        return
    bad = ~finite.reshape(a.shape[0], -1)
    row = int(np.argmax(bad.any(axis=1)))
    value = a.reshape(a.shape[0], -1)[row][bad[row]][0]
    raise ValueError(f"{name} holds NaN or infinite values: the first is {value} at row {row}; {hint}")


def check_device(device):
    """DeepCTR-Torch's ``device`` argument: npctr computes with NumPy on the CPU, so only
    ``'cpu'`` (any case, or a ``torch.device('cpu')``) is accepted."""
    text = str(device)
    if isinstance(device, (str,)) or type(device).__name__ == "device":
        if text.lower() == "cpu":
            return "cpu"
    raise ValueError(f"device must be 'cpu' (npctr computes with NumPy on the CPU; there is no GPU "
                     f"support), got {device!r}")
