"""Finite-difference gradient checks for any npctr layer (or a layer of your own).

The scalar checked is ``L = sum(forward(inputs) * g)`` for a fixed random upstream
gradient ``g``, so ``backward(g)`` must return ``dL/d inputs`` and set
``dL/d params``. Each input element and each weight element is nudged by
``+-eps`` and ``L`` re-evaluated (central differences, float64). Before every
evaluation the layer's moving statistics and random generators are restored, so
BatchNormalization updates and dropout masks are the same in every evaluation.

Typical use::

    from npctr import DNN, assert_gradients_ok
    assert_gradients_ok(DNN((8, 4), use_bn=True), x, training=True)
"""
from typing import NamedTuple

import numpy as np


class GradCheckResult(NamedTuple):
    name: str
    rel_error: float    # max|analytic - numeric| / max(max|analytic|, max|numeric|)
    abs_error: float    # max|analytic - numeric|
    passed: bool


# central-difference stencils: offsets (in steps) and weights, divided by the step
_STENCILS = {
    2: ((1, 0.5), (-1, -0.5)),                                          # error O(eps^2)
    4: ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12)),        # error O(eps^4)
}


def numerical_gradient(f, x, eps=1e-6, order=2):
    """Central-difference gradient of the scalar ``f()`` w.r.t. the array ``x``.

    ``order=2``: ``(f(x+h) - f(x-h)) / 2h``; ``order=4``: the five-point stencil
    ``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h``, whose truncation error
    is small enough to allow a larger step (e.g. 1e-4) and so a round-off error
    about a hundred times smaller: use it where a gradient is small next to the
    scale of ``f`` (deep inside a model). ``x`` is perturbed in place, one
    element at a time, and restored.
    """
    if order not in _STENCILS:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    stencil = _STENCILS[order]
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        original = x[idx]
        total = 0.0
        for steps, weight in stencil:
            x[idx] = original + steps * eps
            total += weight * f()
        x[idx] = original
        grad[idx] = total / eps
    return grad


def _dense(g, shape):
    """Sparse row gradients (embeddings) expose ``to_dense``; arrays pass through."""
    if hasattr(g, "to_dense"):
        return g.to_dense(shape)
    return np.asarray(g)


def _leaves(inputs, grads, prefix="input"):
    """Pairs (name, input array, analytic gradient) for every floating input."""
    if isinstance(inputs, dict):
        for key in inputs:
            g = None if grads is None else grads.get(key)
            yield from _leaves(inputs[key], g, f"{prefix}[{key!r}]")
    elif isinstance(inputs, (list, tuple)):
        for i, x in enumerate(inputs):
            g = None if grads is None else grads[i]
            yield from _leaves(x, g, f"{prefix}[{i}]")
    elif isinstance(inputs, np.ndarray) and inputs.dtype.kind == "f":
        yield prefix, inputs, grads


def _copy(inputs):
    if isinstance(inputs, dict):
        return {k: _copy(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [_copy(v) for v in inputs]
    return np.array(inputs, copy=True)


def _compare(name, analytic, numeric, rtol, atol):
    if analytic is None:
        analytic = np.zeros_like(numeric)
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        return GradCheckResult(name, np.inf, np.inf, False)
    abs_err = float(np.max(np.abs(analytic - numeric))) if numeric.size else 0.0
    scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    rel_err = abs_err / scale if scale > 0 else 0.0
    return GradCheckResult(name, rel_err, abs_err, bool(rel_err <= rtol or abs_err <= atol))


def check_gradients(layer, inputs, training=False, upstream=None, eps=1e-6, rtol=1e-7, atol=None,
                    seed=0, check_inputs=True, params=None, order=2):
    """Compare ``layer.backward`` with central differences.

    Parameters
    ----------
    layer : Layer
        Any object with ``forward(inputs, training, backprop)``, ``backward``,
        ``params``, ``grads`` and (optionally) ``snapshot``/``restore``.
    inputs : ndarray, list or dict of ndarrays
        Floating arrays are checked; integer arrays (ids, lengths) are not.
    training : bool
        Mode of every forward (dropout active, batch statistics).
    upstream : ndarray, optional
        ``g`` in ``L = sum(output * g)``; standard normal (``seed``) by default.
    eps, rtol, atol : float
        Step and the pass criterion ``rel_error <= rtol or abs_error <= atol``.
        ``atol=None`` uses the round-off floor of a central difference,
        ``64 * machine_eps * sum(|output * g|) / eps``: below it a numeric
        derivative cannot tell a true zero (e.g. a bias followed by batch norm
        in training mode) from noise.
    params : iterable of str, optional
        Parameter paths to check (default: all).
    order : {2, 4}
        The central-difference stencil (see ``numerical_gradient``).

    Returns
    -------
    dict name -> GradCheckResult, one per input and parameter.
    """
    inputs = _copy(inputs)
    if not getattr(layer, "built", True):
        layer.forward(inputs, training=False)   # builds; inference touches no state or generator
    snap = layer.snapshot() if hasattr(layer, "snapshot") else None
    output = layer.forward(inputs, training=training, backprop=True)
    if upstream is None:
        upstream = np.random.default_rng(seed).standard_normal(np.shape(output))
    upstream = np.asarray(upstream, dtype=np.float64)
    if atol is None:
        terms = np.abs(np.asarray(output, dtype=np.float64) * upstream)
        atol = 64 * np.finfo(np.float64).eps * max(float(np.sum(terms)), 1.0) / eps
    input_grads = layer.backward(upstream.astype(output.dtype))
    all_params = layer.params
    param_grads = layer.grads
    names = list(all_params) if params is None else list(params)
    analytic = {k: np.array(_dense(param_grads[k], all_params[k].shape), dtype=np.float64) for k in names}

    def loss():
        if snap is not None:
            layer.restore(snap)
        out = layer.forward(inputs, training=training, backprop=False)
        return float(np.sum(np.asarray(out, dtype=np.float64) * upstream))

    results = {}
    if check_inputs:
        for name, x, g in _leaves(inputs, input_grads):
            results[name] = _compare(name, g, numerical_gradient(loss, x, eps, order), rtol, atol)
    for k in names:
        results[k] = _compare(k, analytic[k], numerical_gradient(loss, all_params[k], eps, order), rtol, atol)
    if snap is not None:
        layer.restore(snap)
    return results


def assert_gradients_ok(layer, inputs, **kwargs):
    """``check_gradients`` and raise ``AssertionError`` naming every failing array."""
    results = check_gradients(layer, inputs, **kwargs)
    failed = [r for r in results.values() if not r.passed]
    if failed:
        lines = [f"  {r.name}: rel_error={r.rel_error:.3g} abs_error={r.abs_error:.3g}" for r in failed]
        raise AssertionError("gradient check failed for:\n" + "\n".join(lines))
    return results
