"""The finite-difference checker itself: stencils, argument checks."""
import numpy as np
import pytest

from npctr import numerical_gradient, check_gradients


def test_stencils_match_the_derivative_of_a_smooth_function():
    x = np.array([0.3, -1.2, 2.0])
    exact = np.cos(x) * np.exp(np.sin(x))                # d/dx exp(sin x)
    f = lambda: float(np.sum(np.exp(np.sin(x))))           # noqa: E731 (reads x as perturbed)
    second = numerical_gradient(f, x, eps=1e-6, order=2)
    fourth = numerical_gradient(f, x, eps=1e-3, order=4)
    assert np.max(np.abs(second - exact)) < 1e-9
    # O(eps^4) truncation: a step of 1e-3 is already exact to ~1e-12
    assert np.max(np.abs(fourth - exact)) < 1e-11
    # the two-point stencil at that step is far worse: the orders really differ
    assert np.max(np.abs(numerical_gradient(f, x, eps=1e-3, order=2) - exact)) > 1e-8
    assert np.array_equal(x, [0.3, -1.2, 2.0])             # restored after perturbation


def test_unknown_order_is_refused():
    with pytest.raises(ValueError, match="order must be 2 or 4, got 3"):
        numerical_gradient(lambda: 0.0, np.zeros(2), order=3)


def test_check_gradients_accepts_the_fourth_order_stencil():
    from npctr import DNN
    x = np.random.default_rng(0).standard_normal((6, 4))
    results = check_gradients(DNN((3,), activation="tanh"), x, order=4, eps=1e-4)
    assert all(r.passed and r.rel_error < 1e-9 for r in results.values())
