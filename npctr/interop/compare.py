"""``python -m npctr compare A B [--rtol R]``: normwise agreement of two golden files or folders.

For every array both sides hold (``B`` is the reference), the normwise relative error
``max|a - b| / max|b|``. An array whose reference is exactly zero (e.g. the gradient of a bias in
front of a training-mode BatchNormalization) has no scale of its own: it is marked ``exact zero``
and judged at the largest ``max|b|`` of its group (the arrays sharing its key up to the last
``/``, e.g. the other weight gradients of the same layer). The command exits 1 if any error
exceeds ``rtol``, an array of ``A`` is not in ``B`` or has another shape, 0 otherwise. Arrays of
the reference ``B`` that ``A`` does not have (a backend that computes only the inference output)
are listed as not compared; ``--all`` makes them failures too. Default ``rtol``: 1e-12 when both
sides are float64, 1e-5 otherwise.
"""
import argparse
import os
import sys

import numpy as np

from .golden import read_golden


def _files(path):
    if os.path.isdir(path):
        return {name: os.path.join(path, name) for name in sorted(os.listdir(path)) if name.endswith(".npz")}
    return {os.path.basename(path): path}


def compare_arrays(a, b, rtol=None, require_all=False):
    """Rows ``(key, error, scale, status)``, whether all agree, and the tolerance used; ``b`` is the
    reference. An array only in ``b`` fails only with ``require_all``."""
    float_kinds = "fc"
    both64 = all(v.dtype == np.float64 for v in list(a.values()) + list(b.values()) if v.dtype.kind in float_kinds)
    if rtol is None:
        rtol = 1e-12 if both64 else 1e-5
    groups = {}
    for key, value in b.items():
        if value.dtype.kind in "biufc" and value.size:
            group = key.rsplit("/", 1)[0]
            groups[group] = max(groups.get(group, 0.0), float(np.max(np.abs(value.astype(np.float64)))))
    rows, ok = [], True
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
            rows.append((key, None, None, f"shape {x.shape} vs {y.shape}"))
            ok = False
            continue
        if y.dtype.kind not in "biufc" or x.dtype.kind not in "biufc":
            same = np.array_equal(x, y)
            rows.append((key, None, None, "equal" if same else "DIFFERENT"))
            ok &= bool(same)
            continue
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        err = float(np.max(np.abs(x64 - y64), initial=0.0))
        scale = float(np.max(np.abs(y64), initial=0.0))
        status = ""
        if scale == 0.0:
            scale = groups.get(key.rsplit("/", 1)[0], 0.0) or 1.0
            status = "exact zero"
        rel = err / scale
        if not rel <= rtol:          # NaN fails too
            status = (status + ", " if status else "") + "FAIL"
            ok = False
        rows.append((key, rel, scale, status))
    return rows, ok, rtol


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m npctr compare",
        description="Normwise relative error max|a-b|/max|b| per quantity of two golden files or folders "
                    "(B is the reference); exit status 1 above the tolerance.")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (default 1e-12 for float64 pairs, 1e-5 otherwise)")
    parser.add_argument("--all", action="store_true", help="every quantity (and file) of B must be in A")
    parser.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    args = parser.parse_args(argv)
    files_a, files_b = _files(args.a), _files(args.b)
    if os.path.isdir(args.a) or os.path.isdir(args.b):
        pairs = [(n, files_a.get(n), files_b.get(n)) for n in sorted(set(files_a) | set(files_b))]
    else:
        pairs = [(os.path.basename(args.b), args.a, args.b)]
    all_ok, worst = True, 0.0
    for name, path_a, path_b in pairs:
        if path_a is None or path_b is None:
            fails = path_b is None or args.all
            print(f"{name}: only in {'A' if path_b is None else 'B'}" + ("  FAIL" if fails else ", not compared"))
            all_ok &= not fails
            continue
        try:
            (a, _), (b, _) = read_golden(path_a), read_golden(path_b)
        except (ValueError, OSError) as exc:
            print(f"compare: {exc}", file=sys.stderr)
            return 2
        rows, ok, rtol = compare_arrays(a, b, args.rtol, args.all)
        all_ok &= ok
        print(f"== {name}  (rtol {rtol:.0e})")
        for key, rel, scale, status in rows:
            if rel is not None:
                worst = max(worst, rel) if rel == rel else float("inf")
            if args.quiet and "FAIL" not in status and status != "DIFFERENT":
                continue
            shown = f"{rel:9.2e}" if rel is not None else " " * 9
            print(f"  {shown}  {key}" + (f"  [{status}]" if status else ""))
    print(f"{'OK' if all_ok else 'FAILED'}: worst normwise relative error {worst:.2e}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
