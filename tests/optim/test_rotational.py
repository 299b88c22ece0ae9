"""Rotational updates: exact angles and norms, a NumPy reference of LionAR, centring."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import warmup_jax.optim as wo

from . import _testlib

ANGLE_TOL = 1e-5  # rad
NORM_TOL = 1e-6  # relative
# docs/optimizers.md ("Speed") suggests this on CPU: the invariants must survive reassociation.
FAST_MATH = {"xla_cpu_enable_fast_math": True}


def _run(tx, params, steps, key, extra=None, compiler_options=None):
    """Applies ``steps`` updates with fresh random gradients; yields (before, after, state)."""
    state = tx.init(params)
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, **(extra or {})), compiler_options=compiler_options)
    for i in range(steps):
        grads = _testlib.random_like(jax.random.fold_in(key, i), params)
        updates, state = update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        yield params, new_params, state
        params = new_params


@pytest.mark.parametrize("exact_angle,compiler_options", [(False, None), (True, None), (False, FAST_MATH)])
def test_every_neuron_turns_by_the_target_angle_and_keeps_its_norm(exact_angle, compiler_options):
    key = jax.random.key(0)
    params = {
        "fc": {"kernel": jax.random.normal(key, (20, 7))},  # neurons: columns
        "wte": {"embedding": jax.random.normal(jax.random.fold_in(key, 1), (9, 18))},  # rows
        "stacked": {"kernel": jax.random.normal(jax.random.fold_in(key, 2), (3, 16, 4))},
    }
    axes = {"fc": (0,), "wte": (1,), "stacked": (1,)}
    lr, wd, b1, b2 = 1e-3, 1.0, 0.9, 0.99
    tx = wo.scale_by_rotational(
        optax.scale_by_lion(b1, b2),
        lr,
        weight_decay=wd,
        equilibrium=functools.partial(wo.lion_equilibrium_angle, b1=b1, b2=b2),
        exact_angle=exact_angle,
    )
    eta_r = float(wo.lion_equilibrium_angle(lr, wd, b1, b2))
    target = eta_r if exact_angle else np.arctan(eta_r)
    init_norms = {k: _testlib.neuron_norms(jax.tree.leaves(v)[0], axes[k]) for k, v in params.items()}
    for before, after, _ in _run(tx, params, 10, key, compiler_options=compiler_options):
        for name, ax in axes.items():
            w0, w1 = jax.tree.leaves(before[name])[0], jax.tree.leaves(after[name])[0]
            angles = _testlib.neuron_angles(w0, w1, ax)
            np.testing.assert_allclose(angles, target, atol=ANGLE_TOL, err_msg=name)
            np.testing.assert_allclose(_testlib.neuron_norms(w1, ax), init_norms[name], rtol=NORM_TOL, err_msg=name)


def test_step_factors_scale_the_angle():
    key = jax.random.key(1)
    params = {"k": jax.random.normal(key, (16, 8))}
    beta, eta_r = 0.9, 0.02
    tx = wo.scale_by_rotational(optax.scale_by_adam(), eta_r, step_factors=[wo.inverse_bias_correction_factor(beta)])
    for t, (before, after, _) in enumerate(_run(tx, params, 5, key), start=1):
        angles = _testlib.neuron_angles(before["k"], after["k"], (0,))
        np.testing.assert_allclose(angles, np.arctan(eta_r * (1 - beta**t)), atol=ANGLE_TOL)


def test_ema_normalization_is_exact_at_step_one_only():
    key = jax.random.key(2)
    params = {"k": jax.random.normal(key, (32, 16))}
    eta_r = 0.01
    tx = wo.scale_by_rotational(optax.scale_by_adam(), eta_r, normalization="ema")
    runs = list(_run(tx, params, 4, key))
    first = _testlib.neuron_angles(runs[0][0]["k"], runs[0][1]["k"], (0,))
    np.testing.assert_allclose(first, np.arctan(eta_r), atol=ANGLE_TOL)
    later = _testlib.neuron_angles(runs[-1][0]["k"], runs[-1][1]["k"], (0,))
    assert np.max(np.abs(later - np.arctan(eta_r))) > 1e-4  # it drifts, as REQ's does
    np.testing.assert_allclose(
        _testlib.neuron_norms(runs[-1][1]["k"], (0,)), _testlib.neuron_norms(params["k"], (0,)), rtol=NORM_TOL
    )


def test_zero_neurons_and_zero_directions_are_left_alone():
    w = jnp.array([[1.0, 0.0, 2.0], [2.0, 0.0, -1.0]])  # column 1 has norm 0
    tx = wo.scale_by_rotational(optax.identity(), 0.1, zero_mean=False)
    grads = jnp.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    updates, _ = tx.update(grads, tx.init(w), w)
    assert np.all(np.isfinite(updates))
    np.testing.assert_array_equal(updates[:, 1], 0.0)
    # Column 2: the direction is radial only (w = (2, -1), u = (0, 0)), no turn.
    np.testing.assert_allclose(updates[:, 2], 0.0, atol=1e-7)


def test_direct_angular_step_and_schedule():
    key = jax.random.key(3)
    params = {"k": jax.random.normal(key, (10, 4))}
    schedule = optax.linear_schedule(0.0, 0.04, 4)
    tx = wo.scale_by_rotational(optax.scale_by_lion(), schedule)
    for t, (before, after, _) in enumerate(_run(tx, params, 4, key)):
        angles = _testlib.neuron_angles(before["k"], after["k"], (0,))
        np.testing.assert_allclose(angles, np.arctan(float(schedule(t))), atol=ANGLE_TOL)


def test_equilibrium_formulas():
    lr, wd = 6e-3, 0.1
    np.testing.assert_allclose(wo.adamw_equilibrium_angle(lr, wd, 0.9), np.sqrt(2 * lr * wd * 0.1 / 1.9), rtol=1e-6)
    np.testing.assert_allclose(wo.sgdm_equilibrium_angle(lr, wd, 0.9), np.sqrt(2 * lr * wd / 1.9), rtol=1e-6)
    expected = np.sqrt(np.pi / 2) * np.sqrt(2 * lr * wd) * np.sqrt(0.01 + 0.81 * 0.01 / 1.99)
    np.testing.assert_allclose(wo.lion_equilibrium_angle(lr, wd, 0.9, 0.99), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="weight_decay"):
        wo.scale_by_rotational(optax.scale_by_lion(), 1e-3, weight_decay=0.0, equilibrium=wo.lion_equilibrium_angle)


def test_dimension_numbers_defaults_and_validation():
    assert wo.neuron_axes("blocks/0/mlp/fc/kernel", (8, 32)) == (0,)
    assert wo.neuron_axes("wte/embedding", (50, 8)) == (1,)
    assert wo.neuron_axes("blocks/attn/qkv/kernel", (12, 8, 24)) == (1,)
    assert wo.neuron_axes("ln/scale", (8,)) == (0,)
    x = jnp.ones((4, 3))
    tx = wo.scale_by_rotational(optax.identity(), 0.1, dimension_numbers=wo.NeuronDimensionNumbers(0, 0))
    with pytest.raises(ValueError, match="overlap"):
        tx.init({"k": x})
    tx = wo.scale_by_rotational(optax.identity(), 0.1, dimension_numbers="tensor")
    assert tx.init({"k": x}).neuron_norms["k"].shape == (1, 1)
    with pytest.raises(ValueError, match="needs params"):
        tx.update({"k": x}, tx.init({"k": x}))


def test_center_rotational_params():
    key = jax.random.key(4)
    params = _testlib.tiny_params(key)
    params["blocks"][0]["ln1"]["scale"] = jnp.arange(8.0)
    centred = wo.center_rotational_params(params)
    kernel, emb = params["blocks"][0]["mlp"]["fc"]["kernel"], params["wte"]["embedding"]
    c_kernel, c_emb = centred["blocks"][0]["mlp"]["fc"]["kernel"], centred["wte"]["embedding"]
    np.testing.assert_allclose(jnp.mean(c_kernel, axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(jnp.mean(c_emb, axis=1), 0.0, atol=1e-7)
    np.testing.assert_allclose(_testlib.neuron_norms(c_kernel, (0,)), _testlib.neuron_norms(kernel, (0,)), rtol=1e-6)
    np.testing.assert_allclose(_testlib.neuron_norms(c_emb, (1,)), _testlib.neuron_norms(emb, (1,)), rtol=1e-6)
    np.testing.assert_array_equal(centred["blocks"][0]["ln1"]["scale"], jnp.arange(8.0))


# --- A NumPy reference of LionAR, written from the update rule in docs/methods.md (rows are neurons). -------------


def _reference_lion_ar(params, grads_seq, *, lr, wd, b1, b2, normalization, ema=0.9):
    """float64 LionAR: rotational Lion on ndim >= 2 tensors, plain Lion (no decay) on 1-D."""
    eta_r = np.sqrt(np.pi / 2) * np.sqrt(2 * lr * wd) * np.sqrt((1 - b1) ** 2 + b1**2 * (1 - b2) / (1 + b2))
    # Flax kernels are (in, out): neurons are columns; transpose them to rows here.
    rows = {
        k: (np.asarray(v, np.float64).T if k.endswith("kernel") else np.asarray(v, np.float64))
        for k, v in params.items()
    }
    mom = {k: np.zeros_like(v) for k, v in rows.items()}
    radius = {k: np.linalg.norm(v, axis=-1, keepdims=True) for k, v in rows.items() if v.ndim == 2}
    q = {k: np.zeros_like(r) for k, r in radius.items()}
    history = []
    for t, grads in enumerate(grads_seq, start=1):
        for k, w in rows.items():
            g = np.asarray(grads[k], np.float64)
            g = g.T if k.endswith("kernel") else g
            u = np.sign(b1 * mom[k] + (1 - b1) * g)
            mom[k] = b2 * mom[k] + (1 - b2) * g
            if w.ndim == 1:
                rows[k] = w - lr * u
                continue
            r = radius[k]
            u = u - np.sum(u * w, axis=-1, keepdims=True) / r**2 * w  # radial part out
            u = u - np.mean(u, axis=-1, keepdims=True)  # then centre
            sq = np.sum(u * u, axis=-1, keepdims=True)
            if normalization == "exact":
                s = np.sqrt(sq)
            else:
                q[k] = ema * q[k] + (1 - ema) * sq
                s = np.sqrt(q[k] / (1 - ema**t)) + 1e-8
            w_prime = w - eta_r * r * u / s
            rows[k] = w_prime * r / np.linalg.norm(w_prime, axis=-1, keepdims=True)
        history.append({k: (v.T if k.endswith("kernel") else v) for k, v in rows.items()})
    return history


@pytest.mark.parametrize("normalization,compiler_options", [("exact", None), ("ema", None), ("exact", FAST_MATH)])
def test_lion_ar_matches_numpy_reference(normalization, compiler_options):
    key = jax.random.key(5)
    keys = jax.random.split(key, 3)
    params = {
        "fc/kernel": jax.random.normal(keys[0], (10, 6)),
        "wte/embedding": jax.random.normal(keys[1], (7, 10)),
        "ln/scale": jnp.ones(6),
    }
    params = wo.center_rotational_params(params)  # REQ-compatible: centred before init
    grads_seq = [_testlib.random_like(jax.random.fold_in(keys[2], i), params) for i in range(20)]
    lr, wd, b1, b2 = 2e-3, 1.0, 0.9, 0.99
    tx = wo.lion_ar(lr, b1=b1, b2=b2, weight_decay=wd, normalization=normalization)
    reference = _reference_lion_ar(params, grads_seq, lr=lr, wd=wd, b1=b1, b2=b2, normalization=normalization)
    state = tx.init(params)
    update = jax.jit(tx.update, compiler_options=compiler_options)
    for step, grads in enumerate(grads_seq):
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        for name in params:
            np.testing.assert_allclose(
                params[name], reference[step][name], atol=2e-5, rtol=0, err_msg=f"{name} at step {step + 1}"
            )
