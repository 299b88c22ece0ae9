"""Recipe registry, argument checking, and equivalence with optax when the new features are off."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import warmup_jax.optim as wo
from warmup_jax.optim import recipes

from . import _testlib

EXPECTED_NAMES = {
    "adamw",
    "lion",
    "lion_a",
    "lion_a_fast_momentum",
    "lion_ar",
    "lion_ar_rrc",
    "lion_ar_fast_momentum",
    "adamw_rotational",
    "gi_adam",
    "radam",
    "adamw_spectral_bound",
    "warmup_free",
}
NDIM_MASK = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)  # noqa: E731
TOKENS = jnp.array([1, 3, 3, 7, 0, 15, 2, 9, 4, 5, 6, 8, 10, 11, 12, 13, 14])  # every row


def _loss(params):
    """A small nonlinear model on the tiny GPT-shaped tree."""
    block = params["blocks"][0]
    h = params["wte"]["embedding"][TOKENS] * block["ln1"]["scale"]
    a = jnp.tanh(h @ block["mlp"]["fc"]["kernel"] * 30.0)
    b = jnp.tanh(h @ block["attn"]["qkv"]["kernel"] * 30.0)
    return jnp.mean((a - 0.3) ** 2) + jnp.mean((b + 0.2) ** 2) + jnp.mean(h**2)


def _assert_same_trajectory(tx_a, tx_b, params, rtol=0.0, extra=None, steps=10, jit=True):
    """Both optimizers see the same gradients along ``tx_a``'s trajectory; updates must match.

    Feeding both the same parameters each step keeps a 1-ulp difference from being amplified by
    the training dynamics. ``jit=False`` runs primitive by primitive: XLA may fuse two different
    graphs with different rounding (1-2 ulp), so bit-exactness of differently structured
    optimizers is checked eagerly.
    """
    state_a, state_b = tx_a.init(params), tx_b.init(params)

    def step(params, state_a, state_b):
        grads = jax.grad(_loss)(params)
        updates_a, state_a = tx_a.update(grads, state_a, params, **(extra or {}))
        updates_b, state_b = tx_b.update(grads, state_b, params)
        return optax.apply_updates(params, updates_a), state_a, state_b, updates_a, updates_b

    start = params
    for i in range(steps):
        if jit:
            params, state_a, state_b, updates_a, updates_b = jax.jit(step)(params, state_a, state_b)
        else:
            with jax.disable_jit():
                params, state_a, state_b, updates_a, updates_b = step(params, state_a, state_b)
        jax.tree.map(
            functools.partial(np.testing.assert_allclose, rtol=rtol, atol=0, err_msg=f"step {i + 1}"),
            updates_a,
            updates_b,
        )
    # The run moved: the comparison is not between two frozen copies.
    assert not np.allclose(params["wte"]["embedding"], start["wte"]["embedding"])


PARAMS = _testlib.tiny_params(jax.random.key(0), scale=0.3)
ALL_DECAY_RULES = [(r"(kernel|embedding)$", wo.DECAY), (r"scale$", wo.NO_DECAY)]


def test_registry_names_and_errors():
    assert set(recipes.RECIPES) == EXPECTED_NAMES
    assert recipes.NEEDS_MICRO_BATCH_STATS <= EXPECTED_NAMES
    assert recipes.get_recipe("lion_ar") is wo.lion_ar  # the registry holds the public aliases
    with pytest.raises(ValueError, match="allowed.*adamw"):
        recipes.get_recipe("lamb")
    with pytest.raises(TypeError, match=r"'bta'.*allowed.*'beta'"):
        recipes.build("lion_ar_fast_momentum", 1e-3, bta=0.9)
    with pytest.raises(ValueError, match=r"b2=1.5"):
        wo.adamw(1e-3, b2=1.5)
    with pytest.raises(ValueError, match=r"b1=nan"):
        wo.lion_ar(1e-3, b1=float("nan"))
    with pytest.raises(ValueError, match="angular_step"):
        wo.lion_ar(1e-3, angular_step="sideways")
    with pytest.raises(ValueError, match="plain_learning_rate"):
        wo.lion_ar(1e-3, angular_step="direct")
    for name, recipe in recipes.RECIPES.items():
        tx = recipe(learning_rate=optax.constant_schedule(1e-3))
        assert isinstance(tx, optax.GradientTransformationExtraArgs), name


def test_register_adds_to_the_one_registry():
    def sgd(learning_rate, *, momentum=0.9):
        return optax.sgd(learning_rate, momentum)

    try:
        recipes.register("test_sgd", sgd, needs_micro_batch_stats=True)
        assert recipes.get_recipe("test_sgd") is sgd
        assert recipes.hyperparameter_names("test_sgd") == ["momentum"]
        assert "test_sgd" in recipes.NEEDS_MICRO_BATCH_STATS
        with pytest.raises(recipes.UnknownHyperparameterError, match="nesterov"):
            recipes.check_hyperparameters("test_sgd", {"nesterov": True})
    finally:
        recipes.RECIPES.pop("test_sgd")
        recipes.NEEDS_MICRO_BATCH_STATS.discard("test_sgd")
    with pytest.raises(TypeError, match="callable"):
        recipes.register("broken", 3)


@pytest.mark.parametrize(
    ("name", "hparams", "expected"),
    [
        ("adamw", {}, 0.9),
        ("lion_ar", {"b1": 0.8}, 0.8),
        ("lion_ar_fast_momentum", {}, 0.98**2),  # Nesterov: beta m_t + (1-beta) g = beta^2 m_{t-1} + ...
        ("lion_a_fast_momentum", {"nesterov": False}, 0.98),
        ("lion_ar_fast_momentum", {"beta": 0.95}, 0.95**2),
    ],
)
def test_momentum_coefficient_comes_from_the_optimizer(name, hparams, expected):
    np.testing.assert_allclose(recipes.momentum_coefficient(name, hparams), expected, rtol=1e-12)


def test_aliases_are_importable_like_optax():
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    for alias in (wo.lion_ar, wo.lion_a, wo.lion_ar_fast_momentum, wo.lion_a_fast_momentum, wo.adamw_rotational):
        tx = optax.chain(optax.clip_by_global_norm(1.0), alias(1e-3))
        updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
        assert jax.tree.structure(updates) == jax.tree.structure(params), alias.__name__


def test_adamw_and_lion_recipes_are_optax():
    _assert_same_trajectory(
        wo.adamw(1e-2), optax.adamw(1e-2, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, mask=NDIM_MASK), PARAMS
    )
    _assert_same_trajectory(wo.lion(1e-3), optax.lion(1e-3, weight_decay=1.0, mask=NDIM_MASK), PARAMS)
    _assert_same_trajectory(wo.gi_adam(1e-2), wo.adamw(1e-2), PARAMS)
    _assert_same_trajectory(wo.radam(1e-2, weight_decay=0.0), optax.radam(1e-2, b1=0.9, b2=0.95, eps=1e-8), PARAMS)


def test_lion_a_without_zero_entries_is_lion():
    _assert_same_trajectory(wo.lion_a(1e-3), optax.lion(1e-3, weight_decay=1.0, mask=NDIM_MASK), PARAMS)
    _assert_same_trajectory(
        wo.lion_a_fast_momentum(1e-3, beta=0.9, nesterov=False, inverse_bias_correction=None),
        optax.lion(1e-3, b1=0.9, b2=0.9, weight_decay=1.0, mask=NDIM_MASK),
        PARAMS,
    )


def test_rotational_recipes_without_rotational_tensors_are_optax():
    mask = wo.decay_mask(ALL_DECAY_RULES)
    _assert_same_trajectory(
        wo.lion_ar(1e-3, rules=ALL_DECAY_RULES), optax.lion(1e-3, weight_decay=1.0, mask=mask), PARAMS
    )
    adamw_rotational = wo.adamw_rotational(1e-2, rules=ALL_DECAY_RULES)
    adamw = optax.adamw(1e-2, b1=0.9, b2=0.95, weight_decay=0.1, mask=mask)
    _assert_same_trajectory(adamw_rotational, adamw, PARAMS, jit=False)
    _assert_same_trajectory(adamw_rotational, adamw, PARAMS, rtol=2.5e-7)  # 2 ulp under jit


def test_rrc_off_and_fast_momentum_off_reduce_to_lion_ar():
    grads = jax.grad(_loss)(PARAMS)
    single = wo.MicroBatchStats(jax.tree.map(lambda g: jnp.sum(g * g), grads), 1, 8)
    _assert_same_trajectory(wo.lion_ar_rrc(1e-3), wo.lion_ar(1e-3), PARAMS, extra={"micro_batch_stats": single})
    # Nesterov with beta is Lion with (beta^2, beta); the two evaluate the sign's argument in a
    # different order, so compare eagerly, where rounding is the same for both up to 1 ulp.
    _assert_same_trajectory(
        wo.lion_ar_fast_momentum(1e-3, beta=0.9, inverse_bias_correction=None),
        wo.lion_ar(1e-3, b1=0.81, b2=0.9),
        PARAMS,
        rtol=1e-6,
    )


def test_lion_ar_rrc_needs_stats_and_scales_down():
    tx = wo.lion_ar_rrc(1e-3)
    grads = jax.grad(_loss)(PARAMS)
    with pytest.raises(ValueError, match="micro_batch_stats"):
        tx.update(grads, tx.init(PARAMS), PARAMS)
    # Aligned micro-batch gradients (high SNR): the rotation shrinks.
    stats = _testlib.micro_batch_stats(grads, num_micro_batches=8, micro_batch_size=4, noise=0.01)
    with_rrc, _ = tx.update(grads, tx.init(PARAMS), PARAMS, micro_batch_stats=stats)
    plain_tx = wo.lion_ar(1e-3)
    plain, _ = plain_tx.update(grads, plain_tx.init(PARAMS), PARAMS)
    kernel = lambda u: u["blocks"][0]["mlp"]["fc"]["kernel"]  # noqa: E731
    assert 0 < jnp.linalg.norm(kernel(with_rrc)) < 0.5 * jnp.linalg.norm(kernel(plain))


def test_warmup_free_is_lion_ar_rrc_with_its_keywords():
    grads = jax.grad(_loss)(PARAMS)
    stats = _testlib.micro_batch_stats(grads, num_micro_batches=4, micro_batch_size=4, noise=0.5)
    free, rrc = wo.warmup_free(0.1), wo.lion_ar_rrc(0.1)
    state_free, state_rrc = free.init(PARAMS), rrc.init(PARAMS)
    for _ in range(3):
        u_free, state_free = free.update(grads, state_free, PARAMS, micro_batch_stats=stats)
        u_rrc, state_rrc = rrc.update(grads, state_rrc, PARAMS, micro_batch_stats=stats)
        jax.tree.map(np.testing.assert_array_equal, u_free, u_rrc)
    assert float(optax.tree.norm(u_free)) > 0
    assert recipes.hyperparameter_names("warmup_free") == recipes.hyperparameter_names("lion_ar_rrc")
    assert "warmup_free" in recipes.NEEDS_MICRO_BATCH_STATS
    with pytest.raises(recipes.UnknownHyperparameterError, match="nesterov"):
        recipes.check_hyperparameters("warmup_free", {"nesterov": True})
    with pytest.raises(ValueError, match="micro_batch_stats"):
        wo.warmup_free(0.1).update(grads, wo.warmup_free(0.1).init(PARAMS), PARAMS)


def test_gi_adam_init_sets_second_moment_and_first_step():
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
    g0 = _testlib.random_like(jax.random.key(1), PARAMS)
    g1 = jax.grad(_loss)(PARAMS)
    for tx in (wo.gi_adam(lr), optax.inject_hyperparams(wo.gi_adam)(learning_rate=lr)):
        state = wo.gi_adam_init(tx, PARAMS, g0)
        updates, _ = tx.update(g1, state, PARAMS)

        def expected(g_init, g, p):
            m_hat = (1 - b1) * g / (1 - b1)
            v_hat = (b2 * g_init**2 + (1 - b2) * g**2) / (1 - b2)
            decay = wd * p if p.ndim >= 2 else 0.0
            return -lr * (m_hat / (np.sqrt(v_hat) + eps) + decay)

        jax.tree.map(
            lambda u, a, b, c: np.testing.assert_allclose(u, expected(a, b, c), rtol=2e-5, atol=1e-9),
            updates,
            g0,
            g1,
            PARAMS,
        )
    with pytest.raises(ValueError, match="ScaleByAdamState"):
        wo.gi_adam_init(wo.lion(1e-3), PARAMS, g0)
