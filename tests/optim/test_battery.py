"""The optax battery (after ``optax/contrib/_common_test.py``) for every new transformation.

Each optimizer must: run under ``jax.jit`` (state donated) without recompiling; keep parameter
dtypes (float32, bfloat16) and its state's shapes/dtypes through ``lax.cond``; work under
``optax.inject_hyperparams`` (learning rate read back from the state) and ``optax.MultiSteps``;
accept a schedule as learning rate; keep the state's sharding on 8 fake devices.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import warmup_jax.optim as wo
from warmup_jax.optim import recipes

from . import _testlib


def _lion_nesterov(learning_rate, beta=0.98):
    return optax.chain(wo.scale_by_lion_nesterov(beta), optax.scale_by_learning_rate(learning_rate))


def _fixed_norm(learning_rate, kappa=1.0):
    return optax.chain(
        optax.scale_by_lion(), wo.scale_to_fixed_norm(kappa), optax.scale_by_learning_rate(learning_rate)
    )


def _ibc(learning_rate, beta=0.9):
    return optax.chain(
        optax.scale_by_adam(), wo.scale_by_inverse_bias_correction(beta), optax.scale_by_learning_rate(learning_rate)
    )


def _step_factors(learning_rate, ema_decay=0.9):
    return wo.scale_by_step_factors(
        optax.adamw(learning_rate), [wo.snr_rrc_factor(ema_decay=ema_decay), wo.inverse_bias_correction_factor(0.9)]
    )


def _spectral_bound(learning_rate, threshold=0.1):
    return optax.chain(
        optax.scale_by_adam(), optax.scale_by_learning_rate(learning_rate), wo.scale_by_spectral_bound(threshold)
    )


_LION_EQ = functools.partial(wo.lion_equilibrium_angle, b1=0.9, b2=0.99)

# name -> (factory taking learning_rate, extra kwargs, static_args for inject_hyperparams)
OPTIMIZERS = {name: (recipe, {}, ()) for name, recipe in recipes.RECIPES.items()}
OPTIMIZERS.update(
    {
        "scale_by_rotational_lion": (
            functools.partial(wo.scale_by_rotational, optax.scale_by_lion()),
            {"weight_decay": 1.0, "equilibrium": _LION_EQ},
            ("equilibrium",),
        ),
        "scale_by_rotational_adam_ema_factors": (
            functools.partial(wo.scale_by_rotational, optax.scale_by_adam()),
            {
                "normalization": "ema",
                "exact_angle": True,
                "step_factors": (wo.snr_rrc_factor(), wo.inverse_bias_correction_factor(0.9)),
            },
            (),
        ),
        "scale_by_lion_nesterov": (_lion_nesterov, {}, ()),
        "scale_to_fixed_norm": (_fixed_norm, {}, ()),
        "scale_by_inverse_bias_correction": (_ibc, {}, ()),
        "scale_by_step_factors": (_step_factors, {}, ()),
        # A threshold low enough to bind on the test's data, traced under inject_hyperparams.
        "scale_by_spectral_bound": (_spectral_bound, {"threshold": 1e-3}, ()),
    }
)
# Recipes that are plain optax chains (adamw, lion, radam; gi_adam is adamw with another init)
# only get the cheap checks; everything new gets the whole battery.
OPTAX_RECIPES = ("adamw", "gi_adam", "lion", "radam")
NAMES = sorted(OPTIMIZERS)
NEW_NAMES = [name for name in NAMES if name not in OPTAX_RECIPES]
LR = 1e-3


def _make(name, learning_rate=LR):
    factory, kwargs, _ = OPTIMIZERS[name]
    return factory(learning_rate=learning_rate, **kwargs)


def _data(dtype=jnp.float32, step=0):
    key = jax.random.key(0)
    params = _testlib.tiny_params(key, dtype, scale=0.5)
    grads = _testlib.random_like(jax.random.fold_in(key, step + 1), params)
    return params, grads, _testlib.micro_batch_stats(grads)


def _types(tree):
    return jax.tree.map(lambda x: (jnp.shape(x), jnp.asarray(x).dtype), tree)


@pytest.mark.parametrize(
    "name,dtype",
    [pytest.param(n, jnp.float32, id=f"{n}-f32") for n in NAMES]
    + [pytest.param(n, jnp.bfloat16, id=f"{n}-bf16") for n in NEW_NAMES],
)
def test_jit_dtype_and_state_stable_under_cond(name, dtype):
    tx = _make(name)
    params, grads, stats = _data(dtype)
    state = tx.init(params)
    init_types = _types(state)
    traces = []

    # Donated like in a training step: this also checks that no two state leaves share a buffer.
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, grads, stats, pred):
        traces.append(None)
        # Both branches must have identical types: updates with the dtype of params, a state
        # whose shapes and dtypes do not change.
        updates, state = jax.lax.cond(
            pred,
            lambda: tx.update(grads, state, params, micro_batch_stats=stats),
            lambda: (jax.tree.map(jnp.zeros_like, params), state),
        )
        return optax.apply_updates(params, updates), state

    for i, pred in enumerate([True, False, True]):
        params, state = step(params, state, grads, stats, jnp.asarray(pred))
        assert _types(state) == init_types
        assert all(x.dtype == dtype for x in jax.tree.leaves(params))
        assert all(bool(jnp.all(jnp.isfinite(x.astype(jnp.float32)))) for x in jax.tree.leaves(params)), f"step {i}"
    assert len(traces) == 1, "the update recompiled"


@pytest.mark.parametrize("name", NEW_NAMES)
def test_inject_hyperparams_and_schedule(name):
    _, _, static_args = OPTIMIZERS[name]
    factory, kwargs, _ = OPTIMIZERS[name]
    schedule = optax.linear_schedule(LR, 2 * LR, 4)
    plain = _make(name, schedule)
    injected = optax.inject_hyperparams(factory, static_args=static_args)(learning_rate=schedule, **kwargs)
    params, _, _ = _data()
    s_plain, s_inj = plain.init(params), injected.init(params)
    update_plain, update_inj = jax.jit(plain.update), jax.jit(injected.update)
    for t in range(3):
        _, grads, stats = _data(step=t)
        u_plain, s_plain = update_plain(grads, s_plain, params, micro_batch_stats=stats)
        u_inj, s_inj = update_inj(grads, s_inj, params, micro_batch_stats=stats)
        jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-9), u_inj, u_plain)
        np.testing.assert_allclose(s_inj.hyperparams["learning_rate"], schedule(t), rtol=1e-6)
        params = optax.apply_updates(params, u_plain)


@pytest.mark.parametrize("name", NEW_NAMES)
def test_multi_steps(name):
    tx = _make(name)
    multi = optax.MultiSteps(tx, every_k_schedule=3)
    params, _, _ = _data()
    state = multi.init(params)
    update = jax.jit(multi.update)
    grads_seq = [_data(step=t)[1] for t in range(3)]
    _, _, stats = _data()
    for t, grads in enumerate(grads_seq):
        updates, state = update(grads, state, params, micro_batch_stats=stats)
        if t < 2:
            jax.tree.map(lambda u: np.testing.assert_array_equal(u, 0.0), updates)
    mean = jax.tree.map(lambda *g: sum(g) / 3.0, *grads_seq)
    expected, _ = jax.jit(tx.update)(mean, tx.init(params), params, micro_batch_stats=stats)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=1e-8), updates, expected)


@pytest.mark.parametrize(
    "name,axis_type",
    [pytest.param(n, "auto", id=f"{n}-auto") for n in NAMES]
    + [pytest.param(n, "explicit", id=f"{n}-explicit") for n in NEW_NAMES],
)
def test_state_keeps_sharding_on_8_devices(name, axis_type):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (fake) devices; see tests/conftest.py")
    kind = {"auto": jax.sharding.AxisType.Auto, "explicit": jax.sharding.AxisType.Explicit}
    mesh = jax.make_mesh((8,), ("x",), axis_types=(kind[axis_type],))
    P = jax.sharding.PartitionSpec  # noqa: N806
    specs = {  # fan-in axis sharded for kernels (reduced per neuron), neuron axis for embeddings
        "blocks": {
            0: {
                "attn": {"qkv": {"kernel": P("x", None)}},
                "mlp": {"fc": {"kernel": P(None, "x")}},
                "ln1": {"scale": P("x")},
            }
        },
        "wte": {"embedding": P("x", None)},
    }
    tx = _make(name)
    with jax.set_mesh(mesh):
        params, grads, stats = _data()
        put = lambda x, s: jax.device_put(x, jax.sharding.NamedSharding(mesh, s))  # noqa: E731
        params, grads = jax.tree.map(put, params, specs), jax.tree.map(put, grads, specs)
        state0 = tx.init(params)
        _, state1 = jax.jit(functools.partial(tx.update, micro_batch_stats=stats))(grads, state0, params)
        leaves0, leaves1 = jax.tree.leaves(state0), jax.tree.leaves(state1)
        assert len(leaves0) == len(leaves1)
        for a, b in zip(leaves0, leaves1):
            assert jax.typeof(a) == jax.typeof(b)
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (a.sharding, b.sharding)
        # Parameter-shaped state (momenta: a leaf at a parameter's path, of its shape) is really
        # sharded, not gathered.
        keystr = jax.tree_util.keystr
        param_shapes = [(keystr(k), x.shape) for k, x in jax.tree_util.tree_flatten_with_path(params)[0]]
        moments = [
            x
            for k, x in jax.tree_util.tree_flatten_with_path(state1)[0]
            if any(keystr(k).endswith(path) and x.shape == shape for path, shape in param_shapes)
        ]
        assert moments and all(not x.sharding.is_fully_replicated for x in moments)
