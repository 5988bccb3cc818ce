"""Running an adapter over the cases: :func:`load_adapter`, :func:`run_suite`, and the command line
``python -m npctr conformance``.

Exit status: 0 when every case the adapter ran agrees within tolerance and at least one case was
compared; 1 on any failing quantity, on an adapter error, or when nothing was compared (every case
blocked or skipped); 2 on usage errors (an unknown adapter module or kind, a bad ``--cases`` /
``--seed``, an adapter whose framework is not installed). Every line of output names the case;
a failure prints the case's configuration, the quantity and its error.
"""
import importlib
import importlib.util
import json
import os
import sys
import time

from .._version import __version__
from ..interop._cli import FAILED, OK, USAGE, Parser, UsageError, fail, one_line
from .cases import KINDS, DTYPES, conformance_cases
from .check import BLOCKED, ERROR, CaseReport, judge

SHIPPED = "npctr.conformance.adapters."


def load_adapter(name):
    """An adapter module by import name (``mybackend.npctr_adapter``), by the name of a shipped
    one (``deepctr_torch``, ``deepctr_keras``, ``onnxruntime``) or by the path of a ``.py`` file.
    Raises ``ValueError`` when it cannot be imported or lacks ``run(case)``."""
    if name.endswith(".py") or os.sep in name:
        if not os.path.isfile(name):
            raise ValueError(f"no adapter file {name!r}")
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = None
        for candidate in ((SHIPPED + name,) if "." not in name else ()) + (name,):
            try:
                module = importlib.import_module(candidate)
                break
            except ModuleNotFoundError as exc:
                if exc.name is None or not candidate.startswith(exc.name):
                    raise ValueError(f"adapter {candidate!r} failed to import: {exc}") from exc
        if module is None:
            raise ValueError(f"no adapter module {name!r} (a module path such as mybackend.npctr_adapter, a "
                             "shipped adapter: deepctr_torch, deepctr_keras, onnxruntime, or a .py file)")
    if not callable(getattr(module, "run", None)):
        raise ValueError(f"adapter {name!r} has no run(case) function (see npctr.conformance.adapters)")
    return module


def adapter_scope(adapter, kinds=KINDS):
    """``(kinds, profiles, dtypes)`` the adapter runs, among the requested ``kinds``."""
    supported = getattr(adapter, "KINDS", KINDS)
    kinds = [k for k in kinds if k in supported]
    return kinds, list(getattr(adapter, "PROFILES", ())) or None, list(getattr(adapter, "DTYPES", DTYPES))


def run_case(adapter, case):
    """The :class:`CaseReport` of one case: blocked (the adapter's ``skip_reason``), the adapter's
    error, or the judgement of its numbers."""
    skip = getattr(adapter, "skip_reason", None)
    reason = skip(case) if skip is not None else None
    if reason:
        return CaseReport(case, BLOCKED, reason=str(reason))
    try:
        results = adapter.run(case)
    except Exception as exc:          # noqa: BLE001 - an adapter's crash is that case's failure
        return CaseReport(case, ERROR, reason=one_line(exc))
    try:
        return judge(case, results)
    except (TypeError, ValueError) as exc:       # non-real arrays, a malformed result
        return CaseReport(case, ERROR, reason=f"its results cannot be judged: {one_line(exc)}")


def run_suite(adapter, kinds=KINDS, n=20, seed=0, progress=None):
    """Reports for ``n`` cases of the adapter's kinds, profiles and dtypes (``progress(report)``
    is called after each)."""
    kinds, profiles, dtypes = adapter_scope(adapter, kinds)
    if not kinds:
        raise ValueError(f"the adapter runs none of the kinds {list(kinds)}: its KINDS are "
                         f"{list(getattr(adapter, 'KINDS', KINDS))}")
    reports = []
    for case in conformance_cases(kinds, n, seed, profiles=profiles, dtypes=dtypes):
        report = run_case(adapter, case)
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


def summary(reports):
    """``{status: count}`` plus the worst compared error."""
    counts = {}
    for r in reports:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def _print_report(report, out):
    case = report.case
    if report.status == BLOCKED:
        print(f"BLOCKED {case.describe()}\n        {report.reason}", file=out)
    elif report.failed:
        print("FAIL    " + report.message().replace("\n", "\n        "), file=out)
    else:
        print(f"ok      {case.id} [{case.profile} {case.dtype}] {case.spec['class']}: "
              f"{sum(e is not None for _, e, _, _ in report.rows)} quantities, worst {report.worst:.2e}"
              f" (rtol {report.rtol:.0e})", file=out)
    for note in report.notes:
        print(f"        note: {note}", file=out)


def _parser():
    parser = Parser(prog="python -m npctr conformance",
                    description="Draw conformance cases, compute npctr's reference, ask the adapter for the "
                                "backend's numbers and judge them (docs/verifying_backends.md). Exit 0 when "
                                "everything compared agrees and something was compared, 1 on any failure, "
                                "2 on usage errors.")
    parser.add_argument("--adapter", required=True,
                        help="adapter module: deepctr_torch, deepctr_keras, onnxruntime, a module path or a .py file")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of dnn,lau,asp,din (default all)")
    parser.add_argument("--cases", type=int, default=20, help="number of cases (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cases (default 0)")
    parser.add_argument("--report", default=None, help="write every case's verdict as JSON to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    return parser


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        kinds = [k for k in args.kinds.split(",") if k]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise UsageError(f"--kinds must be a comma-separated list of {','.join(KINDS)}, got {args.kinds!r}")
        if args.cases < 1:
            raise UsageError(f"--cases must be >= 1, got {args.cases}")
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        adapter = load_adapter(args.adapter)
        why_not = getattr(adapter, "available", lambda: None)()
        if why_not:
            raise UsageError(f"adapter {args.adapter!r} cannot run here: {why_not}")
        if not adapter_scope(adapter, kinds)[0]:
            raise UsageError(f"adapter {args.adapter!r} runs none of --kinds {args.kinds} (its kinds: "
                             f"{','.join(getattr(adapter, 'KINDS', KINDS))})")
    except (UsageError, ValueError, ImportError, OSError) as exc:
        fail("conformance", exc, sys.stderr)
        return USAGE
    out = sys.stdout
    start = time.perf_counter()

    def progress(report):
        if not args.quiet or report.failed:
            _print_report(report, out)

    reports = run_suite(adapter, kinds, args.cases, args.seed, progress)
    counts = summary(reports)
    compared = [r for r in reports if r.status not in (BLOCKED, ERROR)]
    failed = [r for r in reports if r.failed]
    worst = max((r.worst for r in compared), default=0.0)
    name = getattr(adapter, "NAME", args.adapter)
    line = (f"{name}: {len(reports)} cases: {counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
            f"{counts.get(ERROR, 0)} error, {counts.get(BLOCKED, 0)} blocked; worst normwise error of the "
            f"compared cases {worst:.2e} ({time.perf_counter() - start:.1f} s)")
    ok = not failed and bool(compared)
    print(("OK: " if ok else "FAILED: ") + line + ("" if compared else "; nothing was compared"), file=out)
    if args.report:
        versions = getattr(adapter, "versions", lambda: {})()
        document = {"format": "npctr-conformance-report", "npctr_version": __version__, "adapter": name,
                    "adapter_module": args.adapter, "versions": versions, "kinds": kinds, "cases_requested": args.cases,
                    "seed": args.seed, "ok": ok, "counts": counts, "worst": worst,
                    "cases": [r.to_json() for r in reports]}
        try:
            with open(args.report, "w") as f:
                json.dump(document, f, indent=1, default=str)
                f.write("\n")
        except OSError as exc:
            fail("conformance", exc, sys.stderr)
            return USAGE
    return OK if ok else FAILED
