r"""Assertions for checking another backend's numbers against npctr's: the normwise rule.

One implementation, used by ``python -m npctr compare``, by the conformance suite
(``npctr.conformance``) and by a backend's own tests::

    from npctr.testing import assert_close
    assert_close(my_output, reference_output)                  # float64: rtol 1e-12
    assert_close(my_bias_grad, ref_bias_grad, scale=4.2)       # a round-off zero: judged at 4.2

**The normwise rule.** An array ``actual`` agrees with the reference ``expected`` when

.. math::
    \frac{\max_i |a_i - e_i|}{S} \le \mathrm{rtol}, \qquad S = \max_i |e_i|,

one number per array, not per element: an element that is small only because of
cancellation is judged at the scale of the array it belongs to, as a backward pass or a
different summation order produces it.

**The round-off-zero rule.** Some references are zero in exact arithmetic and hold round-off
only (the gradient of a DNN bias in front of a training-mode BatchNormalization: the batch
mean removes any shift; the attention score's bias under softmax weight normalization): their
own :math:`S` is ~1e-17 and the rule above would fail every correct backend. Given the
``scale`` of the group the array belongs to (the largest entry of the arrays of its kind, e.g.
every weight gradient of the same mode), a reference with
:math:`\max_i |e_i| \le \mathrm{rtol} \cdot \mathrm{scale}` -- round-off next to its group,
or exactly zero -- is judged at :math:`S = \mathrm{scale}` instead. An all-zero reference with
no ``scale`` is judged at :math:`S = 1` (an absolute tolerance).

Default ``rtol``: :data:`RTOL_FLOAT64` (1e-12) when both arrays are float64 (or integer),
:data:`RTOL_FLOAT32` (1e-5) otherwise. Complex, object, string and other non-real arrays are a
``TypeError`` (an imaginary part is never silently dropped); a NaN anywhere fails (an infinity
agrees only with the same infinity at the same place). NumPy only: this module imports no
other part of npctr.
"""
import math
import numbers
from typing import NamedTuple

import numpy as np

#: default tolerance of float64 pairs: round-off of the same math in another operation order
RTOL_FLOAT64 = 1e-12
#: default tolerance when either side is float32 (or float16)
RTOL_FLOAT32 = 1e-5

__all__ = ["assert_close", "closeness", "Closeness", "default_rtol", "check_rtol", "check_real",
           "RTOL_FLOAT64", "RTOL_FLOAT32"]


class Closeness(NamedTuple):
    """How ``actual`` compares with ``expected`` under the normwise rule."""
    error: float            # max|actual - expected| / scale (inf when a NaN or a lone inf is involved)
    scale: float            # the S it was judged at
    round_off_zero: bool    # expected is round-off next to the given scale (or all zero): S is not its own
    rtol: float
    passed: bool


def check_real(array, name="array"):
    """``array`` as a NumPy array of real numbers (bool, integer or float); a ``TypeError``
    naming ``name`` for complex, object, string or structured arrays."""
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        what = {"c": "complex (an imaginary part would be dropped)", "O": "object", "U": "string",
                "S": "bytes", "V": "structured", "M": "datetime", "m": "timedelta"}.get(a.dtype.kind, "")
        raise TypeError(f"{name} must be a real numeric array (bool, int or float), got dtype {a.dtype}"
                        + (f": {what}" if what else ""))
    return a


def check_rtol(rtol, name="rtol"):
    """``rtol`` as a float; a ``ValueError`` unless it is a finite number > 0."""
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not math.isfinite(rtol) or rtol <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {rtol!r}")
    return float(rtol)


def default_rtol(*arrays):
    """1e-12 when every floating array is float64, else 1e-5."""
    floats = [np.asarray(a).dtype for a in arrays if np.asarray(a).dtype.kind == "f"]
    return RTOL_FLOAT64 if all(d == np.float64 for d in floats) else RTOL_FLOAT32


def closeness(actual, expected, rtol=None, *, scale=None):
    """The normwise comparison of ``actual`` with the reference ``expected`` (see the module
    docstring) as a :class:`Closeness`; ``passed`` says whether it is within ``rtol``.

    Raises ``TypeError`` for non-real arrays, ``ValueError`` for a bad ``rtol`` or ``scale``
    and for arrays of different shapes.
    """
    a, e = check_real(actual, "actual"), check_real(expected, "expected")
    if a.shape != e.shape:
        raise ValueError(f"actual has shape {a.shape}, expected {e.shape}")
    rtol = default_rtol(a, e) if rtol is None else check_rtol(rtol)
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) \
                or scale < 0:
            raise ValueError(f"scale must be a finite number >= 0 or None, got {scale!r}")
        scale = float(scale)
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore"):
        same = a64 == e64                      # inf agrees with the same inf; NaN never agrees
        diff = np.where(same, 0.0, np.abs(a64 - e64))
    err = float(np.max(diff, initial=0.0)) if not np.isnan(diff).any() else math.inf
    finite = e64[np.isfinite(e64)]
    own = float(np.max(np.abs(finite), initial=0.0))
    round_off_zero = False
    s = own
    if scale is not None and own <= rtol * scale and scale > 0:
        s, round_off_zero = scale, True
    elif own == 0.0:
        s, round_off_zero = 1.0, True
    error = err / s
    return Closeness(error, s, round_off_zero, rtol, bool(error <= rtol))


def assert_close(actual, expected, rtol=None, *, scale=None):
    """Assert that ``actual`` agrees with the reference ``expected`` under the normwise rule.

    Parameters
    ----------
    actual, expected : array_like of real numbers, the same shape
    rtol : float > 0, optional
        Default 1e-12 when both are float64, 1e-5 otherwise.
    scale : float >= 0, optional
        The scale of the group ``expected`` belongs to (e.g. the largest entry of every weight
        gradient of the same mode); a reference that is round-off next to it
        (``max|expected| <= rtol * scale``) is judged at ``scale``.

    Returns the :class:`Closeness`. Raises ``AssertionError`` (shape mismatch included) with
    the error, the scale and where the largest difference is; ``TypeError`` for complex,
    object or string arrays; ``ValueError`` for a bad ``rtol`` or ``scale``.
    """
    a, e = check_real(actual, "actual"), check_real(expected, "expected")
    if a.shape != e.shape:
        raise AssertionError(f"shapes differ: actual {a.shape}, expected {e.shape}")
    result = closeness(a, e, rtol, scale=scale)
    if not result.passed:
        raise AssertionError(describe_failure(a, e, result))
    return result


def describe_failure(actual, expected, result):
    """One line: the normwise error, the tolerance, the scale and the worst element."""
    a64 = np.asarray(actual, dtype=np.float64)
    e64 = np.asarray(expected, dtype=np.float64)
    where = ""
    if a64.size:
        with np.errstate(invalid="ignore"):
            diff = np.where(a64 == e64, 0.0, np.abs(a64 - e64))
        flat = int(np.argmax(np.where(np.isnan(diff), np.inf, diff)))
        idx = np.unravel_index(flat, a64.shape) if a64.ndim else ()
        where = f"; worst at index {tuple(int(i) for i in idx)}: actual {a64[idx]!r}, expected {e64[idx]!r}"
    judged = (f"judged at the group scale {result.scale:.3e} (the reference is round-off or zero)"
              if result.round_off_zero else f"scale max|expected| = {result.scale:.3e}")
    return (f"normwise relative error {result.error:.3e} > rtol {result.rtol:.0e} ({judged}){where}")
