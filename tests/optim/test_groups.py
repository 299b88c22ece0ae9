"""Parameter groups from path rules, on plain dicts and on Flax NNX ``nnx.State``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import warmup_jax.optim as wo

from . import _testlib


def test_gpt2_rules_label_every_path():
    params = _testlib.tiny_params(jax.random.key(0))
    labels = wo.param_labels(params, wo.GPT2_RULES)
    assert labels["blocks"][0]["attn"]["qkv"]["kernel"] == wo.ROTATIONAL
    assert labels["wte"]["embedding"] == wo.ROTATIONAL
    assert labels["blocks"][0]["ln1"]["scale"] == wo.NO_DECAY
    # The rank rule agrees for this model.
    assert wo.param_labels(params) == labels
    mask = wo.decay_mask(wo.GPT2_RULES)(params)
    assert mask["blocks"][0]["mlp"]["fc"]["kernel"] and not mask["blocks"][0]["ln1"]["scale"]


def test_uncovered_parameter_and_bad_rules_are_errors():
    params = _testlib.tiny_params(jax.random.key(0))
    with pytest.raises(ValueError, match=r"blocks/0/ln1/scale"):
        wo.param_labels(params, [(r"kernel$", wo.ROTATIONAL), (r"embedding$", wo.DECAY)])
    with pytest.raises(ValueError, match="allowed labels"):
        wo.label_fn([(r".*", "frozen")])
    with pytest.raises(ValueError, match="regex"):
        wo.label_fn([(r"(", wo.DECAY)])
    with pytest.raises(ValueError, match="missing"):
        wo.partition({wo.ROTATIONAL: optax.identity()})


def test_first_matching_rule_wins():
    params = {"head": {"kernel": jnp.ones((2, 2))}, "body": {"kernel": jnp.ones((2, 2))}}
    labels = wo.param_labels(params, [(r"^head/", wo.NO_DECAY), (r"kernel$", wo.ROTATIONAL)])
    assert labels == {"head": {"kernel": wo.NO_DECAY}, "body": {"kernel": wo.ROTATIONAL}}


class _Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc = nnx.Linear(16, 8, use_bias=True, rngs=rngs)
        self.ln = nnx.LayerNorm(8, rngs=rngs)
        self.out = nnx.Linear(8, 4, use_bias=False, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.ln(self.fc(x))))


RULES = [(r"kernel$", wo.ROTATIONAL), (r"(bias|scale)$", wo.NO_DECAY)]


def _loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def test_rules_and_recipes_on_nnx_state_match_plain_dicts():
    model = _Tiny(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    labels = wo.param_labels(state, RULES)
    pure_labels = wo.param_labels(nnx.to_pure_dict(state), RULES)
    assert jax.tree.leaves(labels) == jax.tree.leaves(pure_labels)

    x = jax.random.normal(jax.random.key(1), (32, 16))
    y = jax.random.normal(jax.random.key(2), (32, 4))
    tx = wo.lion_ar(1e-2, rules=RULES)

    # The same recipe on a plain dict of the same parameters.
    graphdef, params = nnx.split(model, nnx.Param)
    pure = nnx.to_pure_dict(params)
    pure_state = tx.init(pure)

    # nnx.Optimizer drives the transform on nnx.State (paths like fc/kernel/value).
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        grads = nnx.grad(_loss)(model, x, y)
        optimizer.update(model, grads)

    losses = []
    for _ in range(5):
        losses.append(float(_loss(model, x, y)))
        train_step(model, optimizer)
        grads = jax.grad(lambda p: _loss(nnx.merge(graphdef, _replace(params, p)), x, y))(pure)
        updates, pure_state = tx.update(grads, pure_state, pure)
        pure = optax.apply_updates(pure, updates)
    assert losses[-1] < losses[0]
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), after, pure)
    # Rotational kernels kept their column norms; the LayerNorm gain moved freely.
    np.testing.assert_allclose(
        jnp.linalg.norm(after["fc"]["kernel"], axis=0),
        jnp.linalg.norm(nnx.to_pure_dict(params)["fc"]["kernel"], axis=0),
        rtol=1e-5,
    )


def _replace(state, pure):
    """``state`` (an nnx.State of Params) with the arrays of the nested dict ``pure``."""
    new = jax.tree.map(lambda x: x, state)
    nnx.replace_by_pure_dict(new, pure)
    return new


def test_center_rotational_params_on_nnx_state():
    model = _Tiny(nnx.Rngs(3))
    state = nnx.state(model, nnx.Param)
    centred = wo.center_rotational_params(state, rules=RULES)
    kernel = nnx.to_pure_dict(centred)["fc"]["kernel"]
    np.testing.assert_allclose(jnp.mean(kernel, axis=0), 0.0, atol=1e-6)
    np.testing.assert_array_equal(nnx.to_pure_dict(centred)["ln"]["scale"], nnx.to_pure_dict(state)["ln"]["scale"])
