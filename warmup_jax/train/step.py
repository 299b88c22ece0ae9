r"""The compiled train and eval steps.

``train_step(state, tokens_KxbxT1) -> (state, metrics)``: gradient accumulation over the K
micro-batches with ``lax.scan``; besides the summed gradient it accumulates, per tensor, the sum
of squared norms of the micro-batch gradients, which the SNR estimator needs
(:class:`warmup_jax.optim.snr.MicroBatchStats`). Optimizers that accept optax extra arguments
receive those statistics as ``micro_batch_stats``.

Gradient clipping happens here, once: with ``grad_clip > 0`` the mean gradient :math:`g` is
scaled by :math:`c = \min(1, \text{clip} / \|g\|)` (as ``optax.clip_by_global_norm`` does), the
micro-batch statistics by the same factor, and the optimizer and the update metrics both receive
the clipped gradient. The optimizer ``tx`` must therefore not clip again.

With ``metrics`` (a :class:`warmup_jax.config.MetricsConfig` that is enabled) the step also
computes the per-layer update metrics of :mod:`warmup_jax.metrics.update` under ``lax.cond`` on
a predicate of ``state.step``, so one compiled step serves steps with and without metrics. They
are returned as ``metrics["update_metrics"]``, a ``{name: float32 value}`` dict with the same
names on every step (zeros on the steps that are not due); the values of stacked (scanned) layers
and their layer groups stay ``(L,)`` vectors, named with ``warmup_jax.metrics.update.LAYER`` in
place of the index (``update_metrics(..., split_layers=False)``): one value per stacked tensor
instead of one per tensor and layer. The forward pass then records a token
subsample of every Dense layer's inputs and outputs for the RRC; the trajectory is unchanged.
:func:`pack_update_metrics` turns that dict into one vector, so that the host copies it in one
transfer (hundreds of scalars one by one cost tens of milliseconds) and the step returns one array
instead of hundreds, and gives the names of its entries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from warmup_jax.metrics import update as update_lib
from warmup_jax.model.gpt import ModelDef, cross_entropy_loss, forward_capturing_dense
from warmup_jax.optim.snr import MicroBatchStats, rescale_micro_batch_stats
from warmup_jax.optim.spectral import spectral_bound_scales


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


def clip_by_global_norm(grads: Any, max_norm: float, *, norm: jax.Array | None = None) -> tuple[Any, jax.Array]:
    """``(clipped gradient, c)`` with ``c = min(1, max_norm / ||g||)``: the values of
    ``optax.clip_by_global_norm(max_norm)`` (the same operations). ``max_norm <= 0``: no clipping,
    ``c = 1``. ``norm``: ``||g||`` when already computed."""
    if max_norm <= 0:
        return grads, jnp.ones((), jnp.float32)
    norm = optax.tree.norm(grads) if norm is None else norm
    keep = norm < max_norm
    clipped = jax.tree.map(lambda t: jax.lax.select(keep, t, (t / norm.astype(t.dtype)) * max_norm), grads)
    return clipped, jnp.where(keep, 1.0, max_norm / norm).astype(jnp.float32)


def make_train_step(
    model_def: ModelDef,
    tx: optax.GradientTransformation,
    *,
    dropout: float = 0.0,
    metrics: Any = None,
    grad_clip: float = 0.0,
    skip_nonfinite: bool = False,
):
    """The train step. ``metrics``: a ``MetricsConfig`` (see the module docstring); ``grad_clip``: the
    global-norm clip the step applies to the mean gradient before ``tx`` (0: none); ``tx`` must not clip.

    ``metrics["finite"]`` says whether the loss, the gradient norm and the new parameters' norm are
    all finite. With ``skip_nonfinite`` a step where they are not keeps the old parameters and
    optimizer state (the step counter and the RNG still advance: the batch is consumed)."""
    if metrics is not None and not metrics.enabled:
        metrics = None
    passes_stats = isinstance(tx, optax.GradientTransformationExtraArgs)

    def train_step(state: TrainState, tokens_KxbxT1: jax.Array) -> tuple[TrainState, dict[str, Any]]:
        num_micro, micro_size = tokens_KxbxT1.shape[:2]
        key, step_key = jax.random.split(jax.random.wrap_key_data(state.rng))
        capture = -(-metrics.rrc_tokens // num_micro) if metrics is not None else 0
        grad_fn = jax.value_and_grad(make_loss_fn(model_def, dropout, capture_tokens=capture), has_aux=capture > 0)
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
        with jax.named_scope("clip"):
            grad_norm = optax.tree.norm(grads)
            clipped, clip_factor = clip_by_global_norm(grads, grad_clip, norm=grad_norm)
        extra = {}
        if passes_stats:
            per_tensor = {path: jnp.sum(value) for path, value in sq_norm_sum.items()}
            optimizer_stats = MicroBatchStats(per_tensor, num_micro, micro_size)
            if grad_clip > 0:
                # The micro-batch gradients scaled like their mean, so that both norms of the SNR
                # estimator describe the same (clipped) gradients.
                optimizer_stats = rescale_micro_batch_stats(optimizer_stats, clip_factor)
            extra["micro_batch_stats"] = optimizer_stats
        with jax.named_scope("optimizer"):
            updates, opt_state = tx.update(clipped, state.opt_state, state.params, **extra)
            params = optax.apply_updates(state.params, updates)
        out = {
            "loss": loss_sum / num_micro,
            "grad_norm": grad_norm,  # before clipping
            "update_norm": optax.tree.norm(updates),
            "param_norm": optax.tree.norm(params),
        }
        bound = spectral_bound_scales(opt_state)
        if bound:  # a spectral step bound in the optimizer: how many matrices it held back, and how far
            scales = jnp.concatenate([jnp.ravel(x) for x in bound.values()])
            out["spectral_bound_fraction"] = jnp.mean((scales < 1.0).astype(jnp.float32))
            out["spectral_bound_min_scale"] = jnp.min(scales)
        if metrics is not None:
            due = update_lib.metrics_due(
                state.step + 1,
                interval=metrics.interval,
                dense_interval=metrics.dense_interval,
                dense_until_step=metrics.dense_until_step,
            )
            captured = {
                layer: _merge_micro_batches(xy, update_lib.stack_prefix(layer, model_def.stacked) is not None)
                for layer, xy in (captured or {}).items()
            }
            out["update_metrics"] = _gated_update_metrics(
                metrics,
                due,
                state,
                updates,
                grad_sum,
                MicroBatchStats(sq_norm_sum, num_micro, micro_size),
                captured,
                grad_clip,
                grad_norm,
                clip_factor,
                model_def.stacked,
            )
        finite = jnp.isfinite(out["loss"]) & jnp.isfinite(grad_norm) & jnp.isfinite(out["param_norm"])
        out["finite"] = finite
        if skip_nonfinite:
            params, opt_state = jax.tree_util.tree_map(
                lambda new, old: jnp.where(finite, new, old), (params, opt_state), (state.params, state.opt_state)
            )
        new_state = TrainState(state.step + 1, params, opt_state, jax.random.key_data(key))
        return new_state, out

    return train_step


def pack_update_metrics(train_step: Callable) -> tuple[Callable, Callable[..., tuple[str, ...]]]:
    """``(packed_step, metric_names)`` for a step of :func:`make_train_step`.

    ``packed_step`` is ``train_step`` with ``metrics["update_metrics"]`` concatenated into one
    float32 vector, in the order of ``metric_names(state, tokens_KxbxT1)``. That order comes from
    ``jax.eval_shape`` of the step (arrays or ``jax.ShapeDtypeStruct``; nothing is computed): the
    names are the keys of the dict the step returns, sorted, with a per-layer vector's entry written
    once per layer (``blocks.<layer>...`` -> ``blocks.0...``, ``blocks.1...``). ``packed_step``
    calls the step under its own ``jax.jit``, which reuses that abstract trace when ``packed_step``
    is traced with the same shapes, so naming the entries first costs no second trace of the step.
    """
    inner = jax.jit(train_step)

    def packed_step(state: TrainState, tokens_KxbxT1: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        new_state, out = inner(state, tokens_KxbxT1)
        if "update_metrics" in out:
            out = dict(out)
            values = out.pop("update_metrics")
            out["update_metrics"] = jnp.concatenate([jnp.ravel(values[name]) for name in sorted(values)])
        return new_state, out

    def metric_names(state: TrainState, tokens_KxbxT1: jax.Array) -> tuple[str, ...]:
        _, out = jax.eval_shape(inner, state, tokens_KxbxT1)
        shapes = out.get("update_metrics", {})
        return tuple(name for key in sorted(shapes) for name in update_lib.layer_names(key, shapes[key].shape))

    return packed_step, metric_names


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
    due: jax.Array,
    state: TrainState,
    updates,
    grad_sum,
    stats: MicroBatchStats,
    captured,
    grad_clip: float,
    grad_norm: jax.Array,
    clip_factor: jax.Array,
    stacked: tuple[str, ...],
) -> dict[str, jax.Array]:
    """The update metrics, ``{name: float32 value}`` (see the module docstring), computed only when
    due (``lax.cond``; zeros with the same names otherwise).

    The branch recomputes the new parameters from the old ones and the updates (the same
    ``apply_updates``, so the same values) instead of taking both parameter sets: then it only reads
    buffers that the donated state is about to overwrite, and XLA can order it first instead of
    copying them. It takes the summed gradient (the accumulation's own output buffer) and clips its
    mean like the step did (from the same norm), rather than taking the clipped mean, which the
    optimizer's fused pass never writes out.
    """
    beta = 0.9 if cfg.momentum_beta is None else cfg.momentum_beta

    def values(old, upd, g_sum, sum_sq_norms, first_moment, c, norm, factor) -> dict[str, jax.Array]:
        grads = optax.tree.scale(1.0 / stats.num_micro_batches, g_sum)
        grads, _ = clip_by_global_norm(grads, grad_clip, norm=norm)
        micro_stats = stats._replace(sum_sq_norms=sum_sq_norms)  # K and b stay static ints
        if grad_clip > 0:
            micro_stats = rescale_micro_batch_stats(micro_stats, factor)
        return update_lib.update_metrics(
            old,
            optax.apply_updates(old, upd),
            grads=grads,
            micro_batch_stats=micro_stats,
            first_moment=first_moment,
            momentum_beta=beta,
            captured=c,
            stacked=stacked,
            split_layers=False,
        )

    operands = (
        state.params,
        updates,
        grad_sum,
        stats.sum_sq_norms,
        update_lib.find_first_moment(state.opt_state, state.params),
        captured,
        grad_norm,
        clip_factor,
    )
    shapes = jax.eval_shape(values, *operands)
    return jax.lax.cond(
        due,
        lambda ops: values(*ops),
        lambda ops: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
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
