"""Warmup helpers of the seed papers: polynomial warmup, Porian's rule, the catapult finder."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import warmup_jax.optim as wo


def test_polynomial_warmup_values():
    schedule = wo.polynomial_warmup_schedule(0.1, 1.0, 10, power=2.0)
    np.testing.assert_allclose(schedule(0), 0.1, rtol=1e-6)
    np.testing.assert_allclose(schedule(5), 0.1 + 0.9 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(schedule(10), 1.0, rtol=1e-6)
    np.testing.assert_allclose(schedule(50), 1.0, rtol=1e-6)
    decay = wo.polynomial_warmup_schedule(0.0, 1.0, 4, after_warmup=optax.linear_schedule(1.0, 0.0, 10))
    np.testing.assert_allclose([decay(t) for t in (2, 4, 9, 14)], [0.5, 1.0, 0.5, 0.0], atol=1e-6)
    # eta_init above the target: no warmup at all.
    flat = wo.polynomial_warmup_schedule(2.0, 1.0, 10)
    np.testing.assert_allclose([flat(t) for t in (0, 3, 20)], 1.0)
    with pytest.raises(ValueError, match="power"):
        wo.polynomial_warmup_schedule(0.0, 1.0, 10, power=0.0)


def test_porian_warmup_and_param_count():
    assert wo.porian_warmup_steps(124_000_000, 480 * 1024) == 253
    assert wo.porian_warmup_steps(10, 5) == 2 and wo.porian_warmup_steps(11, 5) == 3
    assert wo.count_params({"a": jnp.zeros((3, 4)), "b": [jnp.zeros(5)]}) == 17
    with pytest.raises(ValueError):
        wo.porian_warmup_steps(0, 5)


def _quadratic(curvatures, seed=0):
    """L(x) = x^T H x / 2 with H = Q diag(curvatures) Q^T, started on the top eigenvector.

    Along an eigenvector a gradient step multiplies x by (1 - eta lambda): the loss rises exactly
    when eta > 2 / lambda.
    """
    lam = jnp.asarray(curvatures, jnp.float32)
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(seed), (lam.size, lam.size)))
    hessian = (q * lam) @ q.T
    params = {"x": q[:, jnp.argmax(lam)]}
    return params, lambda p: 0.5 * p["x"] @ hessian @ p["x"]


def test_catapult_finder_returns_two_over_lambda_max_for_gd():
    lam_max = 4.0
    params, loss = _quadratic([0.5, 1.0, lam_max, 2.0])
    start = params["x"]
    eta_c = 2.0 / lam_max
    found = wo.find_catapult_lr(loss, params, optax.sgd, initial_lr=1e-3)
    assert eta_c < found <= 2 * eta_c  # the doubling brackets it
    refined = wo.find_catapult_lr(loss, params, optax.sgd, initial_lr=1e-3, num_bisection_steps=30)
    np.testing.assert_allclose(refined, eta_c, rtol=1e-4)
    np.testing.assert_array_equal(params["x"], start)  # trial steps were discarded


def test_catapult_finder_errors():
    params, loss = _quadratic([1.0])
    with pytest.raises(ValueError, match="already rises"):
        wo.find_catapult_lr(loss, params, optax.sgd, initial_lr=10.0)
    with pytest.raises(ValueError, match="no loss increase"):
        wo.find_catapult_lr(loss, params, optax.sgd, initial_lr=1e-9, max_doublings=3)


def test_trapezoid_schedule_still_exported():
    schedule = wo.trapezoid_schedule(1.0, 100, warmup_steps=10)
    assert float(schedule(0)) == 0.0 and float(schedule(30)) == 1.0
    assert jax.numpy.isclose(schedule(75), 0.5)
