"""The compiled train and eval steps.

``train_step(state, tokens_KxbxT1) -> (state, metrics)``: gradient accumulation over the K
micro-batches with ``lax.scan``; besides the summed gradient it accumulates, per tensor, the sum
of squared norms of the micro-batch gradients, which the SNR estimator needs
(:class:`warmup_jax.optim.snr.MicroBatchStats`). Optimizers that accept optax extra arguments
receive those statistics as ``micro_batch_stats``.

With ``metrics`` (a :class:`warmup_jax.config.MetricsConfig` that is enabled) the step also
computes the per-layer update metrics of :mod:`warmup_jax.metrics.update` under ``lax.cond`` on
a predicate of ``state.step``, so one compiled step serves steps with and without metrics. They
are returned packed in one float32 vector, ``metrics["update_metrics"]`` (zeros on other steps),
whose names ``train_step.metric_names`` lists (filled when the step is traced). The forward pass
then records a token subsample of every Dense layer's inputs and outputs for the RRC; the
trajectory is unchanged.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from warmup_jax.metrics import update as update_lib
from warmup_jax.model.gpt import ModelDef, cross_entropy_loss, forward_capturing_dense
from warmup_jax.optim.snr import MicroBatchStats, global_norm_clip_factor, rescale_micro_batch_stats


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: number of optimizer updates done
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key data (checkpoint-friendly); wrapped inside the step


def init_train_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    key_data = jax.random.key_data(jax.random.key(seed))
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), key_data)


def make_loss_fn(model_def: ModelDef, dropout: float, *, capture_tokens: int = 0):
    """``loss_fn(params, tokens_BxT1, key) -> loss``; with ``capture_tokens > 0`` it returns
    ``(loss, captured)``, the Dense layers' inputs and outputs at that many token positions."""

    def loss_fn(params, tokens_BxT1, key):
        model = model_def.merge(params)
        rngs = nnx.Rngs(dropout=key) if dropout > 0 else None
        kwargs = dict(deterministic=dropout == 0, rngs=rngs)
        if capture_tokens:
            logits, captured = forward_capturing_dense(model, tokens_BxT1[:, :-1], num_tokens=capture_tokens, **kwargs)
            return cross_entropy_loss(logits, tokens_BxT1[:, 1:]), captured
        logits = model(tokens_BxT1[:, :-1], **kwargs)
        return cross_entropy_loss(logits, tokens_BxT1[:, 1:])

    return loss_fn


def make_train_step(
    model_def: ModelDef,
    tx: optax.GradientTransformation,
    *,
    dropout: float = 0.0,
    metrics: Any = None,
    grad_clip: float = 0.0,
):
    """The train step. ``metrics``: a ``MetricsConfig`` (see the module docstring); ``grad_clip``: the
    global-norm clip at the head of ``tx`` (see ``build_optimizer``), which the micro-batch statistics
    passed to ``tx`` and the momentum cancellation ratio account for."""
    if metrics is not None and not metrics.enabled:
        metrics = None
    passes_stats = isinstance(tx, optax.GradientTransformationExtraArgs)

    def train_step(state: TrainState, tokens_KxbxT1: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        num_micro, micro_size = tokens_KxbxT1.shape[:2]
        key, step_key = jax.random.split(jax.random.wrap_key_data(state.rng))
        capture = -(-metrics.rrc_tokens // num_micro) if metrics is not None else 0
        grad_fn = jax.value_and_grad(make_loss_fn(model_def, dropout, capture_tokens=capture), has_aux=capture > 0)
        due = (
            None
            if metrics is None
            else update_lib.metrics_due(
                state.step + 1,
                interval=metrics.interval,
                dense_interval=metrics.dense_interval,
                dense_until_step=metrics.dense_until_step,
            )
        )
        # Per-micro-batch squared gradient norms, by parameter path: per tensor, and per layer for
        # stacked blocks (what the metrics report). The optimizer gets per-tensor sums of the same
        # values. Computed unconditionally: XLA drops them when neither the optimizer nor the
        # metrics read them, and otherwise they cost one fused reduction over each gradient.
        sq_norms_of = functools.partial(update_lib.sq_norms, stacked=model_def.stacked)

        def accumulate(carry, inputs):
            grad_sum, sq_norm_sum, loss_sum = carry
            tokens, index = inputs
            value, grads = grad_fn(state.params, tokens, jax.random.fold_in(step_key, index))
            loss, captured = value if capture else (value, None)
            new_carry = (
                optax.tree.add(grad_sum, grads),
                optax.tree.add(sq_norm_sum, sq_norms_of(grads)),
                loss_sum + loss,
            )
            return new_carry, captured

        init = (
            optax.tree.zeros_like(state.params),
            jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(sq_norms_of, state.params)),
            0.0,
        )
        (grad_sum, sq_norm_sum, loss_sum), captured = jax.lax.scan(
            accumulate, init, (tokens_KxbxT1, jnp.arange(num_micro))
        )
        grads = optax.tree.scale(1.0 / num_micro, grad_sum)
        extra = {}
        if passes_stats:
            per_tensor = {path: jnp.sum(value) for path, value in sq_norm_sum.items()}
            optimizer_stats = MicroBatchStats(per_tensor, num_micro, micro_size)
            if grad_clip > 0:
                # The optimizer's chain clips the mean gradient it receives; scale the micro-batch
                # gradients alike so that both norms of the SNR estimator describe the same gradients.
                optimizer_stats = rescale_micro_batch_stats(optimizer_stats, global_norm_clip_factor(grads, grad_clip))
            extra["micro_batch_stats"] = optimizer_stats
        updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
        params = optax.apply_updates(state.params, updates)
        out = {
            "loss": loss_sum / num_micro,
            "grad_norm": optax.tree.norm(grads),
            "update_norm": optax.tree.norm(updates),
            "param_norm": optax.tree.norm(params),
        }
        if metrics is not None:
            stats = MicroBatchStats(sq_norm_sum, num_micro, micro_size)
            captured = {
                layer: _merge_micro_batches(xy, update_lib.stack_prefix(layer, model_def.stacked) is not None)
                for layer, xy in (captured or {}).items()
            }
            out["update_metrics"] = _gated_update_metrics(
                metrics,
                train_step.metric_names,
                due,
                state,
                updates,
                grad_sum,
                stats,
                captured,
                grad_clip,
                model_def.stacked,
            )
        new_state = TrainState(state.step + 1, params, opt_state, jax.random.key_data(key))
        return new_state, out

    train_step.metric_names = []
    return train_step


def _merge_micro_batches(xy: tuple[jax.Array | None, ...], stacked: bool) -> tuple[jax.Array | None, ...]:
    """A layer's captured arrays over the K micro-batches, ``(K, N, C)`` -> ``(K*N, C)``; for a stacked
    layer ``(K, L, N, C)`` -> ``(L, K*N, C)``; None (a head without captured outputs) stays None."""

    def merge(x):
        if x is None:
            return None
        if stacked:
            return jnp.moveaxis(x, 0, 1).reshape(x.shape[1], -1, x.shape[-1])
        return x.reshape(-1, x.shape[-1])

    return tuple(merge(x) for x in xy)


def _gated_update_metrics(
    cfg,
    names: list[str],
    due: jax.Array,
    state: TrainState,
    updates,
    grad_sum,
    stats: MicroBatchStats,
    captured,
    grad_clip: float,
    stacked: tuple[str, ...],
) -> jax.Array:
    """The update metrics packed in a float32 vector, computed only when due (``lax.cond``).

    Fills ``names`` (the order of the vector) at trace time. The branch recomputes the new
    parameters from the old ones and the updates (the same ``apply_updates``, so the same values)
    instead of taking both parameter sets: then it only reads buffers that the donated state is
    about to overwrite, and XLA can order it first instead of copying them. It takes the summed
    gradient (the accumulation's own output buffer) rather than the mean, which the optimizer's
    fused pass never writes out.
    """
    beta = 0.9 if cfg.momentum_beta is None else cfg.momentum_beta

    def values(old, upd, g_sum, sum_sq_norms, first_moment, c) -> dict[str, jax.Array]:
        micro_stats = stats._replace(sum_sq_norms=sum_sq_norms)  # K and b stay static ints
        grads = optax.tree.scale(1.0 / stats.num_micro_batches, g_sum)
        return update_lib.update_metrics(
            old,
            optax.apply_updates(old, upd),
            grads=grads,
            micro_batch_stats=micro_stats,
            first_moment=first_moment,
            momentum_beta=beta,
            grad_clip=grad_clip,
            captured=c,
            stacked=stacked,
        )

    operands = (
        state.params,
        updates,
        grad_sum,
        stats.sum_sq_norms,
        update_lib.find_first_moment(state.opt_state, state.params),
        captured,
    )
    names[:] = sorted(jax.eval_shape(values, *operands))
    return jax.lax.cond(
        due,
        lambda ops: jnp.stack([v for _, v in sorted(values(*ops).items())]),
        lambda ops: jnp.zeros((len(names),), jnp.float32),
        operands,
    )


def make_mean_gradient(model_def: ModelDef):
    """``mean_gradient(params, tokens_KxbxT1) -> grads``: the loss gradient averaged over K
    micro-batches, without dropout (for optimizers initialised from one gradient, e.g. GI-Adam)."""
    grad_fn = jax.grad(make_loss_fn(model_def, 0.0))

    def mean_gradient(params: Any, tokens_KxbxT1: jax.Array) -> Any:
        def accumulate(grad_sum, tokens):
            return optax.tree.add(grad_sum, grad_fn(params, tokens, None)), None

        grad_sum, _ = jax.lax.scan(accumulate, optax.tree.zeros_like(params), tokens_KxbxT1)
        return optax.tree.scale(1.0 / tokens_KxbxT1.shape[0], grad_sum)

    return mean_gradient


def make_eval_step(model_def: ModelDef):
    loss_fn = make_loss_fn(model_def, 0.0)

    def eval_step(params: Any, tokens_BxT1: jax.Array) -> jax.Array:
        return loss_fn(params, tokens_BxT1, None)

    return eval_step
