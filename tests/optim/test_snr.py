"""The micro-batch SNR estimator and the RRC factor built on it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import warmup_jax.optim as wo
from warmup_jax.optim import snr

from . import _testlib


def test_noise_and_signal_closed_form():
    # |G|^2 = 3, S = 24, b = 2, B = 8: E|g_b|^2 = 3 + 12 = 15, E|g_B|^2 = 3 + 3 = 6.
    noise, signal = snr.noise_and_signal(15.0, 6.0, 2, 8)
    np.testing.assert_allclose(noise, 24.0, rtol=1e-6)
    np.testing.assert_allclose(signal, 3.0, rtol=1e-6)
    np.testing.assert_allclose(snr.phi(signal, noise), 0.125, rtol=1e-6)
    # Negative estimates are clamped in phi, not in the estimator.
    assert float(snr.phi(-1.0, 2.0)) == 0.0
    assert np.isfinite(float(snr.phi(1.0, -1.0)))


def _synthetic_micro_batches(rng, repeats, num_micro_batches, b, dim, phi_true):
    """Micro-batch means g_k = G + xi_k with per-sequence covariance trace S = dim."""
    sigma2 = 1.0  # per coordinate, per sequence
    noise_trace = dim * sigma2
    g_true = rng.standard_normal(dim)
    g_true *= np.sqrt(phi_true * noise_trace) / np.linalg.norm(g_true)
    xi = rng.standard_normal((repeats, num_micro_batches, dim)) * np.sqrt(sigma2 / b)
    return g_true[None, None, :] + xi


def test_estimator_recovers_known_phi():
    rng = np.random.default_rng(0)
    num, b, dim, phi_true = 40, 12, 2000, 2.51e-3
    g_k = _synthetic_micro_batches(rng, 200, num, b, dim, phi_true).astype(np.float32)
    mean_small = np.mean(np.sum(g_k**2, axis=-1), axis=1)
    big = np.sum(np.mean(g_k, axis=1) ** 2, axis=-1)
    noise, signal = snr.noise_and_signal(mean_small, big, b, num * b)
    np.testing.assert_allclose(np.mean(noise), dim, rtol=0.01)
    np.testing.assert_allclose(np.mean(signal) / np.mean(noise), phi_true, rtol=0.03)
    # The factor the paper's setting gives (0.67 at phi = 2.51e-3, B = 480).
    f = snr.rrc_factor(phi_true, num * b)
    np.testing.assert_allclose(f, 1.0 / np.sqrt(1.0 + 480 * phi_true), rtol=1e-6)
    assert abs(float(f) - 0.67) < 0.01

    # Same data through the pytree path and the EMA state: the smoothed ratio converges too.
    state = snr.init_snr_state({"w": jnp.zeros(dim)})
    for rep in range(200):
        grads = {"w": jnp.asarray(g_k[rep].mean(axis=0))}
        stats = wo.MicroBatchStats({"w": jnp.asarray(np.sum(g_k[rep] ** 2))}, num, b)
        n_rep, s_rep = snr.per_tensor_noise_and_signal(grads, stats)
        state = snr.update_snr_state(state, n_rep, s_rep, decay=0.99)
    np.testing.assert_allclose(snr.snr_from_state(state)["w"], phi_true, rtol=0.15)
    assert int(state.count) == 200


def _phi_sequence(noise, signal, **kwargs):
    state = snr.init_snr_state(per_tensor=False)
    out = []
    for n, s in zip(noise, signal):
        state = snr.update_snr_state(state, jnp.float32(n), jnp.float32(s), decay=0.9, **kwargs)
        out.append(float(snr.snr_from_state(state)))
    return out


def test_smoothing_is_a_zero_initialised_ema():
    # Worked by hand, d = 0.9, estimates S = 4, 1, 2 and |G|^2 = 1, 3, 0.5:
    #   t=1: S = 0.4,   G = 0.1           phi = 1/4
    #   t=2: S = 0.46,  G = 0.39          phi = 39/46
    #   t=3: S = 0.614, G = 0.401         phi = 401/614
    # (the ratio of the bias-corrected EMAs; "first" would give 1/4, 12/37, 1.13/3.53).
    noise, signal = [4.0, 1.0, 2.0], [1.0, 3.0, 0.5]
    np.testing.assert_allclose(_phi_sequence(noise, signal), [1 / 4, 39 / 46, 401 / 614], rtol=1e-6)
    np.testing.assert_allclose(_phi_sequence(noise, signal, start="first"), [1 / 4, 1.2 / 3.7, 1.13 / 3.53], rtol=1e-6)
    # An invalid step (K = 1) leaves the EMA where it was.
    state = snr.init_snr_state(per_tensor=False)
    state = snr.update_snr_state(state, jnp.float32(4.0), jnp.float32(1.0), valid=False)
    assert int(state.count) == 0 and float(state.noise) == 0.0
    with pytest.raises(ValueError, match="start"):
        snr.update_snr_state(state, 1.0, 1.0, start="last")


def test_global_is_sum_of_per_tensor():
    key = jax.random.key(0)
    grads = _testlib.random_like(key, _testlib.tiny_params(key))
    stats = _testlib.micro_batch_stats(grads)
    noise, signal = snr.per_tensor_noise_and_signal(grads, stats)
    g_noise, g_signal = snr.global_noise_and_signal(grads, stats)
    np.testing.assert_allclose(g_noise, sum(jax.tree.leaves(noise)), rtol=1e-6)
    np.testing.assert_allclose(g_signal, sum(jax.tree.leaves(signal)), rtol=1e-6)


def test_rrc_factor_forms_and_clamp():
    np.testing.assert_allclose(snr.rrc_factor(0.0, 480), 1.0)
    np.testing.assert_allclose(snr.rrc_factor(1.0, 3), 0.5)
    np.testing.assert_allclose(snr.rrc_factor(1.0, 3, form="gain", gain_ratio=2.0), np.sqrt(4.0 / 13.0), rtol=1e-6)
    np.testing.assert_allclose(snr.rrc_factor(1e6, 480, clamp=(1e-3, 1.0)), 1e-3)
    with pytest.raises(ValueError, match="gain_ratio"):
        snr.rrc_factor(1.0, 3, form="gain")


def _rrc_tx(**kwargs):
    return wo.scale_by_step_factors(optax.identity(), [wo.snr_rrc_factor(clamp=None, **kwargs)])


def test_rrc_factor_applied_per_tensor_and_global():
    key = jax.random.key(1)
    grads = _testlib.random_like(key, _testlib.tiny_params(key))
    stats = _testlib.micro_batch_stats(grads, num_micro_batches=4, micro_batch_size=3)
    batch = 12
    noise, signal = snr.per_tensor_noise_and_signal(grads, stats)

    tx = _rrc_tx()
    updates, _ = tx.update(grads, tx.init(grads), grads, micro_batch_stats=stats)
    expected = jax.tree.map(lambda g, s, n: g / np.sqrt(1 + batch * s / n), grads, signal, noise)
    chex_close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5)  # noqa: E731
    jax.tree.map(chex_close, updates, expected)

    tx = _rrc_tx(per_tensor=False)
    updates, _ = tx.update(grads, tx.init(grads), grads, micro_batch_stats=stats)
    g_noise, g_signal = snr.global_noise_and_signal(grads, stats)
    factor = 1 / np.sqrt(1 + batch * g_signal / g_noise)
    jax.tree.map(lambda u, g: chex_close(u, g * factor), updates, grads)


def test_missing_stats_is_a_clear_error():
    tx = _rrc_tx()
    params = {"w": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match="micro_batch_stats"):
        tx.update(params, tx.init(params), params)


def test_single_micro_batch_gives_factor_one_and_no_estimate():
    params = {"w": jnp.ones((3, 2))}
    grads = {"w": jnp.full((3, 2), 0.5)}
    stats = wo.MicroBatchStats({"w": jnp.asarray(1.5)}, 1, 8)
    tx = _rrc_tx()
    updates, state = jax.jit(lambda g, s, p: tx.update(g, s, p, micro_batch_stats=stats))(
        grads, tx.init(params), params
    )
    np.testing.assert_array_equal(updates["w"], grads["w"])
    snr_state = state.factor_states[0]
    assert int(snr_state.count) == 0
    assert float(snr_state.noise["w"]) == 0.0


def test_stats_matched_by_path_inside_partition():
    key = jax.random.key(2)
    params = _testlib.tiny_params(key)
    grads = _testlib.random_like(key, params)
    stats = _testlib.micro_batch_stats(grads)  # holds every tensor, incl. the masked-out ones
    tx = wo.partition({wo.ROTATIONAL: _rrc_tx(), wo.DECAY: optax.identity(), wo.NO_DECAY: optax.identity()})
    updates, _ = tx.update(grads, tx.init(params), params, micro_batch_stats=stats)
    np.testing.assert_array_equal(updates["blocks"][0]["ln1"]["scale"], grads["blocks"][0]["ln1"]["scale"])
    assert float(jnp.max(jnp.abs(updates["wte"]["embedding"]))) < float(jnp.max(jnp.abs(grads["wte"]["embedding"])))


def test_clipping_with_rescaled_stats_keeps_phi():
    key = jax.random.key(3)
    grads = _testlib.random_like(key, _testlib.tiny_params(key), scale=10.0)
    stats = _testlib.micro_batch_stats(grads, noise=0.5)
    clip = snr.global_norm_clip_factor(grads, 1.0)
    assert float(clip) < 1.0
    clipped = jax.tree.map(lambda g: g * clip, grads)
    noise, signal = snr.global_noise_and_signal(grads, stats)
    c_noise, c_signal = snr.global_noise_and_signal(clipped, snr.rescale_micro_batch_stats(stats, clip))
    np.testing.assert_allclose(snr.phi(c_signal, c_noise), snr.phi(signal, noise), rtol=1e-4)
