"""Adapters: small modules that run a conformance case in a backend.

An adapter is any importable module (or ``.py`` file) with

``run(case) -> dict``
    The backend's numbers for :class:`npctr.conformance.Case` ``case``, keyed as golden files
    key them, only what the backend computes: ``infer/output``, ``train/output``,
    ``infer/grad_input/<name>`` and ``train/grad_input/<name>`` (``x``; ``query``, ``keys``; a
    model's dense features), ``infer/grad_weight/<npctr path>`` and ``train/grad_weight/<path>``
    (gradients of ``L = sum(output * case.upstream)``), ``train/moving/<path>`` (moving statistics
    after exactly one training-mode call from the case's weights), ``loss/value`` and
    ``loss/grad_weight/<path>`` (a model's training objective and its gradient; a layer's
    ``loss/value`` is ``L``). It may return ``(dict, notes)``: notes (strings) say what it left out
    and why, and appear in the report.

optional ``NAME`` (str), ``KINDS``, ``PROFILES``, ``DTYPES`` (tuples)
    What it runs (default: every kind, profile and dtype); cases are drawn within them.

optional ``available() -> None | str``
    Why it cannot run here (its framework is not installed): the command exits 2 with it.

optional ``skip_reason(case) -> None | str``
    Why this case cannot run on the backend: a framework bug or a missing option. The case is
    reported as *blocked* with that reason -- never silently skipped, never patched behind the
    user's back.

optional ``versions() -> dict``
    Framework versions, for the report.

What a case gives an adapter: ``case.kind``, ``case.profile``, ``case.dtype``, ``case.config``
(constructor arguments), ``case.inputs`` (named arrays in the case's dtype), ``case.weights``
(``{npctr path: array}``), ``case.framework_weights("keras" | "torch")`` (the same under DeepCTR's
and DeepCTR-Torch's names and layouts), ``case.upstream``, and ``case.build()`` (the npctr layer or
model with the case's weights, e.g. to export it). ``npctr_self`` below is the smallest complete
adapter: npctr itself in the case's dtype.
"""
