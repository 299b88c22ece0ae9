"""The compiled train and eval steps.

``train_step(state, tokens_KxbxT1) -> (state, metrics)``: gradient accumulation over the K
micro-batches with ``lax.scan``; besides the summed gradient it accumulates, per tensor, the sum
of squared norms of the micro-batch gradients, which the SNR estimator needs
(:class:`warmup_jax.optim.snr.MicroBatchStats`). Optimizers that accept optax extra arguments
receive those statistics as ``micro_batch_stats``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from warmup_jax.model.gpt import ModelDef, cross_entropy_loss
from warmup_jax.optim.snr import MicroBatchStats


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: number of optimizer updates done
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key data (checkpoint-friendly); wrapped inside the step


def init_train_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    key_data = jax.random.key_data(jax.random.key(seed))
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), key_data)


def make_loss_fn(model_def: ModelDef, dropout: float):
    def loss_fn(params, tokens_BxT1, key):
        model = model_def.merge(params)
        rngs = nnx.Rngs(dropout=key) if dropout > 0 else None
        logits = model(tokens_BxT1[:, :-1], deterministic=dropout == 0, rngs=rngs)
        return cross_entropy_loss(logits, tokens_BxT1[:, 1:])

    return loss_fn


def make_train_step(model_def: ModelDef, tx: optax.GradientTransformation, *, dropout: float = 0.0):
    loss_fn = make_loss_fn(model_def, dropout)
    grad_fn = jax.value_and_grad(loss_fn)
    passes_stats = isinstance(tx, optax.GradientTransformationExtraArgs)

    def train_step(state: TrainState, tokens_KxbxT1: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        num_micro, micro_size = tokens_KxbxT1.shape[:2]
        key, step_key = jax.random.split(jax.random.wrap_key_data(state.rng))

        def accumulate(carry, inputs):
            grad_sum, sq_norm_sum, loss_sum = carry
            tokens, index = inputs
            loss, grads = grad_fn(state.params, tokens, jax.random.fold_in(step_key, index))
            sq_norms = jax.tree_util.tree_map(lambda g: jnp.sum(jnp.square(g.astype(jnp.float32))), grads)
            return (optax.tree.add(grad_sum, grads), optax.tree.add(sq_norm_sum, sq_norms), loss_sum + loss), None

        zeros = optax.tree.zeros_like(state.params)
        init = (zeros, jax.tree_util.tree_map(lambda _: jnp.zeros((), jnp.float32), state.params), 0.0)
        (grad_sum, sq_norm_sum, loss_sum), _ = jax.lax.scan(
            accumulate, init, (tokens_KxbxT1, jnp.arange(num_micro))
        )
        grads = optax.tree.scale(1.0 / num_micro, grad_sum)
        extra = {}
        if passes_stats:
            extra["micro_batch_stats"] = MicroBatchStats(sq_norm_sum, num_micro, micro_size)
        updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss_sum / num_micro,
            "grad_norm": optax.tree.norm(grads),
            "update_norm": optax.tree.norm(updates),
            "param_norm": optax.tree.norm(params),
        }
        new_state = TrainState(state.step + 1, params, opt_state, jax.random.key_data(key))
        return new_state, metrics

    return train_step


def make_eval_step(model_def: ModelDef):
    loss_fn = make_loss_fn(model_def, 0.0)

    def eval_step(params: Any, tokens_BxT1: jax.Array) -> jax.Array:
        return loss_fn(params, tokens_BxT1, None)

    return eval_step
