"""LionA's exact norm, Nesterov momentum and inverse bias correction against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import warmup_jax.optim as wo

from . import _testlib


def test_nesterov_matches_closed_form():
    key = jax.random.key(0)
    beta = 0.98
    params = {"w": jnp.zeros((6, 5))}
    tx = wo.scale_by_lion_nesterov(beta)
    state = tx.init(params)
    m = np.zeros((6, 5))
    for t in range(10):
        g = np.asarray(jax.random.normal(jax.random.fold_in(key, t), (6, 5)), np.float64)
        updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        m = beta * m + (1 - beta) * g
        np.testing.assert_array_equal(updates["w"], np.sign(beta * m + (1 - beta) * g))
        np.testing.assert_allclose(state.mu["w"], m, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["linear", "sqrt"])
def test_inverse_bias_correction_matches_closed_form(mode):
    beta = 0.98
    tx = wo.scale_by_inverse_bias_correction(beta, mode)
    u = {"w": jnp.ones(3), "v": jnp.full((2, 2), -2.0, jnp.bfloat16)}
    state = tx.init(u)
    for t in range(1, 8):
        out, state = tx.update(u, state)
        f = 1 - beta**t if mode == "linear" else np.sqrt(1 - beta ** (2 * t))
        np.testing.assert_allclose(out["w"], f, rtol=1e-6)
        np.testing.assert_allclose(out["v"].astype(jnp.float32), -2.0 * f, rtol=1e-2)
        assert out["v"].dtype == jnp.bfloat16
    np.testing.assert_allclose(wo.inverse_bias_correction(50, 0.98), 1 - 0.98**50, rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        wo.scale_by_inverse_bias_correction(0.9, "cubic")


@pytest.mark.parametrize("beta", [0.9, 0.98, 0.999, 0.9999])
def test_inverse_bias_correction_precision(beta):
    # 1 - beta^t to a relative 1e-6 for beta up to 0.9999 and t up to 1e5, against float64.
    t = np.array([1, 2, 3, 10, 100, 1_000, 10_000, 100_000])
    exact = -np.expm1(t * np.log1p(-(1.0 - beta)))
    got = np.asarray(jax.jit(lambda c: wo.inverse_bias_correction(c, beta))(jnp.asarray(t, jnp.int32)))
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    got_sqrt = np.asarray(wo.inverse_bias_correction(jnp.asarray(t, jnp.int32), beta, "sqrt"))
    np.testing.assert_allclose(got_sqrt, np.sqrt(-np.expm1(2 * t * np.log(beta))), rtol=1e-6)


@pytest.mark.parametrize("kappa", [1.0, wo.adamw_matched_kappa(0.9)])
def test_lion_a_update_norm_is_exact(kappa):
    key = jax.random.key(1)
    params = _testlib.tiny_params(key)
    lr = 1e-3
    tx = wo.lion_a(lr, weight_decay=0.0, kappa=kappa)
    state = tx.init(params)
    for t in range(5):
        grads = _testlib.random_like(jax.random.fold_in(key, t), params)
        # Embedding rows of unseen tokens: zero gradient, hence sign 0 at the first step.
        grads["wte"]["embedding"] = grads["wte"]["embedding"].at[:5].set(0.0)
        updates, state = tx.update(grads, state, params)
        for u in jax.tree.leaves(updates):
            np.testing.assert_allclose(jnp.linalg.norm(u), lr * kappa * np.sqrt(u.size), rtol=2e-6)


def test_lion_a_fast_momentum_norm_follows_ibc():
    key = jax.random.key(2)
    params = {"w": jnp.ones((4, 4))}
    lr, beta = 1e-2, 0.98
    tx = wo.lion_a_fast_momentum(lr, beta=beta, weight_decay=0.0)
    state = tx.init(params)
    for t in range(1, 6):
        grads = {"w": jax.random.normal(jax.random.fold_in(key, t), (4, 4))}
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(jnp.linalg.norm(updates["w"]), lr * (1 - beta**t) * 4.0, rtol=1e-5)


def test_step_factors_without_factors_is_the_inner_transform():
    key = jax.random.key(3)
    params = _testlib.tiny_params(key)
    grads = _testlib.random_like(key, params)
    inner = optax.adamw(1e-3)
    tx = wo.scale_by_step_factors(inner, [])
    got, _ = tx.update(grads, tx.init(params), params)
    want, _ = inner.update(grads, inner.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, got, want)
