"""Judging a backend's numbers for a case: :func:`check_case` (for a backend's own pytest suite) and
:func:`judge` (the report the command prints), both by ``npctr.testing``'s normwise rule through
``compare``'s :func:`~npctr.interop.compare.compare_arrays` -- the one implementation.

A case passes when every quantity the backend returned agrees with npctr's reference (1e-12 for
float64 results, each array normwise, a reference that is round-off next to its group -- every
``train/grad_weight/...`` of the case, say -- judged at the group's scale; 1e-5 for float32 results,
each array at its group's scale, since float32 round-off of a sum of cancelling terms scales with
the terms), the backend returned at least one output, no quantity the reference lacks and no shape
mismatch.
"""
from dataclasses import dataclass, field

import numpy as np

from ..interop.compare import compare_arrays

PASS, FAIL, BLOCKED, ERROR = "pass", "fail", "blocked", "error"


@dataclass
class CaseReport:
    """The verdict on one case: ``status`` is ``pass``, ``fail``, ``blocked`` (the adapter says a
    framework bug or a missing option keeps it from running the case: not a failure) or ``error``
    (the adapter raised: a failure); ``rows`` are ``(quantity, error, scale, status)``."""
    case: object
    status: str
    rtol: float = None
    rows: list = field(default_factory=list)
    reason: str = ""
    notes: list = field(default_factory=list)

    @property
    def failed(self):
        return self.status in (FAIL, ERROR)

    @property
    def worst(self):
        """The largest normwise error among the compared quantities (0 if none)."""
        return max((e for _, e, _, _ in self.rows if e is not None), default=0.0)

    def failures(self):
        return [r for r in self.rows if "FAIL" in r[3]]

    def to_json(self):
        def num(v):
            return None if v is None else float(v)
        return {**self.case.to_json(), "status": self.status, "reason": self.reason, "notes": list(self.notes),
                "rtol": num(self.rtol), "worst": float(self.worst),
                "quantities": [{"key": k, "error": num(e), "scale": num(s), "status": st}
                               for k, e, s, st in self.rows]}

    def message(self):
        """Several lines: the case's configuration and each failing quantity with its error."""
        lines = [self.case.describe()]
        if self.status == ERROR:
            lines.append(f"  the adapter raised: {self.reason}")
        for key, err, scale, status in self.failures():
            shown = f"{err:.3e} (scale {scale:.3e}, rtol {self.rtol:.0e})" if err is not None else ""
            lines.append(f"  {key}: {status} {shown}".rstrip())
        return "\n".join(lines)


def _results(results):
    """``(arrays, notes)`` from what an adapter's ``run`` returned: a dict, or ``(dict, notes)``."""
    notes = []
    if isinstance(results, tuple) and len(results) == 2:
        results, notes = results
    if not isinstance(results, dict):
        raise TypeError(f"an adapter returns a dict {{quantity: array}} (or (dict, notes)), got "
                        f"{type(results).__name__}")
    return {str(k): np.asarray(v) for k, v in results.items()}, [str(n) for n in notes]


def judge(case, results):
    """The :class:`CaseReport` of ``results`` (what the adapter's ``run(case)`` returned)."""
    arrays, notes = _results(results)
    # a float32 backend against the float64 reference: each array at its group's scale (compare_arrays)
    float32 = any(v.dtype.kind == "f" and v.dtype != np.float64 for v in arrays.values())
    scales = None
    if case.kind != "din":         # a layer's loss/value is sum(output * g): its terms set its round-off
        scales = {"loss/value": float(np.sum(np.abs(case.reference["train/output"] * case.reference["upstream"])))}
    rows, ok, rtol = compare_arrays(arrays, case.expected(), by_group=float32, scales=scales)
    return CaseReport(case, PASS if ok else FAIL, rtol, rows, notes=notes)


def check_case(case, results):
    """Assert that a backend's ``results`` for ``case`` agree with npctr's reference.

    ``results`` maps golden keys (``infer/output``, ``train/grad_input/keys``,
    ``train/grad_weight/<npctr path>``, ``train/moving/<path>``, ``loss/value``, ...) to arrays;
    return only what the backend computes. Raises ``AssertionError`` naming the case's
    configuration and every failing quantity; returns the :class:`CaseReport` otherwise.
    """
    report = judge(case, results)
    if report.failed:
        raise AssertionError(report.message())
    return report
