"""``python -m npctr compare A B [--rtol R] [--all] [-q]``: normwise agreement of two golden files or folders.

``B`` is the reference. For every array both sides hold, the normwise relative error
``max|a - b| / max|b|`` (:mod:`npctr.testing`, the one implementation of the rule). A reference
array that is **round-off next to its group** -- ``max|b| <= rtol * G``, with ``G`` the largest
entry of the reference arrays of its kind in that mode (the keys sharing its first two parts,
e.g. every ``train/grad_weight/...``) -- is judged at ``G`` and marked ``round-off zero``: the
gradient of a DNN bias in front of a training-mode BatchNormalization is zero in exact
arithmetic and 1e-17 in any floating-point backend.

The command fails (exit 1) when an error exceeds ``rtol``, an array of ``A`` is not in ``B`` or
has another shape, ``A`` has none of the reference's outputs (``infer/output``,
``train/output``), or nothing at all was compared (an empty file or folder). Arrays of ``B``
that ``A`` does not have (a backend that computes only the inference output) are listed as not
compared; ``--all`` makes them failures. Usage errors (a bad ``--rtol``, an unreadable file,
complex, object or string arrays) exit 2 with one line. Default ``rtol``: 1e-12 when both sides
are float64, 1e-5 otherwise.
"""
import os
import sys

from ..testing import check_real, check_rtol, closeness, default_rtol
from ._cli import FAILED, OK, USAGE, Parser, UsageError, fail
from .golden import read_golden

#: the quantities a backend's file must share with the reference (at least one of them)
OUTPUTS = ("infer/output", "train/output")
NOTHING = "(no quantity in common)"


def group_of(key):
    """The group whose largest entry judges a round-off zero: the first two parts of the key
    (``train/grad_weight/dnn/bias0`` -> ``train/grad_weight``); a shorter key is its own group."""
    parts = key.split("/")
    return "/".join(parts[:2]) if len(parts) >= 3 else key


def group_scales(reference):
    """``{group: largest |entry| of the group's arrays}`` of the reference arrays."""
    scales = {}
    for key, value in reference.items():
        v = check_real(value, f"reference array {key!r}")
        if v.size:
            finite = abs(v.astype(float))
            finite = finite[finite < float("inf")]
            g = group_of(key)
            scales[g] = max(scales.get(g, 0.0), float(finite.max(initial=0.0)))
    return scales


def compare_arrays(a, b, rtol=None, require_all=False, *, by_group=False, scales=None):
    """Compare ``a`` with the reference ``b`` (dicts of arrays).

    Returns ``(rows, ok, rtol)``: one row ``(key, error, scale, status)`` per key of either
    side (``error`` and ``scale`` None when not compared), plus a row for a missing output or
    for nothing compared; ``ok`` is True when every compared array agrees, something was
    compared and, if ``b`` has outputs, ``a`` has one. Non-real arrays are a ``TypeError``,
    a bad ``rtol`` a ``ValueError``.

    ``by_group=True`` judges every array at its group's scale (``max|a - b| <= rtol * G``), the
    rule for a float32 backend against a float64 reference: float32 round-off of a gradient that
    is a sum of cancelling terms (a bias's, a BN beta's) scales with the terms, not the sum.
    ``scales`` ``{group: scale}`` sets a group's scale where the reference arrays do not show it
    (a layer's ``loss/value``, ``sum(output * g)``: the sum of ``|output * g|``).
    """
    for side, arrays in (("A", a), ("B", b)):
        for key, value in arrays.items():
            check_real(value, f"{side}'s array {key!r}")
    rtol = default_rtol(*a.values(), *b.values()) if rtol is None else check_rtol(rtol)
    scales = {**group_scales(b), **(scales or {})}
    rows, ok, compared = [], True, 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            missing_in_a = key not in a
            fails = require_all or not missing_in_a
            rows.append((key, None, None, ("not in A, not compared" if missing_in_a and not fails
                                           else f"only in {'B' if missing_in_a else 'A'}, FAIL")))
            ok &= not fails
            continue
        x, y = a[key], b[key]
        if x.shape != y.shape:
            rows.append((key, None, None, f"shape {x.shape} vs {y.shape}, FAIL"))
            ok = False
            continue
        group = scales.get(group_of(key))
        result = closeness(x, y, rtol, scale=group)
        compared += 1
        status = ""
        if result.round_off_zero:
            status = "exact zero" if not y.any() else "round-off zero"
        elif by_group and group is not None and group > result.scale:
            error = result.error * result.scale / group
            result = result._replace(error=error, scale=group, passed=bool(error <= rtol))
            status = "group scale"
        if not result.passed:
            status = (status + ", " if status else "") + "FAIL"
            ok = False
        rows.append((key, result.error, result.scale, status))
    if not compared:
        rows.append((NOTHING, None, None, "nothing compared, FAIL"))
        ok = False
    elif any(k in b for k in OUTPUTS) and not any(k in a and k in b for k in OUTPUTS):
        rows.append((" or ".join(k for k in OUTPUTS if k in b), None, None,
                     "required output not in A, FAIL"))
        ok = False
    return rows, ok, rtol


def _files(path):
    if os.path.isdir(path):
        return {name: os.path.join(path, name) for name in sorted(os.listdir(path)) if name.endswith(".npz")}
    if not os.path.exists(path):
        raise UsageError(f"no such file or folder: {path!r}")
    return {os.path.basename(path): path}


def _parser():
    parser = Parser(
        prog="python -m npctr compare",
        description="Normwise relative error max|a-b|/max|b| per quantity of two golden files or folders "
                    "(B is the reference); exit status 1 above the tolerance or when nothing was compared, "
                    "2 on usage errors.")
    parser.add_argument("a", help="the backend's file or folder")
    parser.add_argument("b", help="the reference (golden) file or folder")
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance, a finite number > 0 (default 1e-12 for float64 pairs, 1e-5 otherwise)")
    parser.add_argument("--all", action="store_true", help="every quantity (and file) of B must be in A")
    parser.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    return parser


def _pairs(a, b):
    files_a, files_b = _files(a), _files(b)
    if os.path.isdir(a) or os.path.isdir(b):
        return [(n, files_a.get(n), files_b.get(n)) for n in sorted(set(files_a) | set(files_b))]
    return [(os.path.basename(b), a, b)]


def run(args, out=None):
    """Compare as the command does; returns the exit status (raises ``UsageError`` etc.)."""
    out = sys.stdout if out is None else out
    if args.rtol is not None:
        try:
            check_rtol(args.rtol, "--rtol")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    compared = failed = files = 0
    worst, worst_key, all_ok = 0.0, None, True
    for name, path_a, path_b in _pairs(args.a, args.b):
        if path_a is None or path_b is None:
            fails = path_b is None or args.all
            print(f"{name}: only in {'A' if path_b is None else 'B'}" + (", FAIL" if fails else ", not compared"),
                  file=out)
            all_ok &= not fails
            failed += fails
            continue
        (a, _), (b, _) = read_golden(path_a), read_golden(path_b)
        rows, ok, rtol = compare_arrays(a, b, args.rtol, args.all)
        files += 1
        all_ok &= ok
        print(f"== {name}  (rtol {rtol:.0e})", file=out)
        for key, rel, scale, status in rows:
            if rel is not None:
                compared += 1
                if not rel <= worst:
                    worst, worst_key = rel, f"{name}:{key}"
            failed += "FAIL" in status
            if args.quiet and "FAIL" not in status:
                continue
            shown = f"{rel:9.2e}" if rel is not None else " " * 9
            note = status
            for zero in ("round-off zero", "exact zero"):
                if status.startswith(zero):
                    note = f"{zero}, judged at {scale:.2e}" + status[len(zero):]
            print(f"  {shown}  {key}" + (f"  [{note}]" if note else ""), file=out)
    if not compared:
        all_ok = False
    where = f" ({worst_key})" if worst_key else ""
    if all_ok:
        print(f"OK: {compared} quantities in {files} file(s) agree; worst normwise relative error "
              f"{worst:.2e}{where}", file=out)
        return OK
    reason = "nothing was compared" if not compared else f"{failed} failure(s)"
    print(f"FAILED: {reason}; {compared} quantities compared in {files} file(s), worst normwise relative "
          f"error {worst:.2e}{where}", file=out)
    return FAILED


def main(argv=None):
    try:
        return run(_parser().parse_args(argv))
    except (UsageError, ValueError, TypeError, OSError) as exc:
        fail("compare", exc, sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
