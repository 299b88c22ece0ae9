"""From configuration to an ``optax.GradientTransformation``: the optimizer registry.

Built-in baselines are ``adamw`` (PyTorch/nanoGPT semantics: decoupled weight decay scaled by
the learning rate, on tensors with ndim >= 2 only) and ``lion``. The paper's recipes from
:mod:`warmup_jax.optim.recipes` are added, and users can add their
own with :func:`register_optimizer`. Every factory takes ``learning_rate`` (a float or an optax
schedule) plus keyword hyperparameters, which come from ``optim.hparams`` in the config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax
import numpy as np
import optax

from warmup_jax.errors import ConfigError
from warmup_jax.optim import groups, recipes
from warmup_jax.optim.schedules import trapezoid_schedule

OptimizerFactory = Callable[..., optax.GradientTransformation]
_REGISTRY: dict[str, OptimizerFactory] = {}


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Decorator: makes ``name`` selectable as ``optim.name``."""

    def decorate(factory: OptimizerFactory) -> OptimizerFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def decay_mask(params):
    """True for tensors that get weight decay: matrices and embeddings, not LayerNorm gains or biases
    (nanoGPT's ndim >= 2 rule; the rank labels of ``warmup_jax.optim.groups``, which exempt ``scale``
    and ``bias`` by name so that stacked layers' gains of shape (L, d) are exempt too)."""
    return groups.decay_mask()(params)


@register_optimizer("adamw")
def adamw(learning_rate, *, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1):
    """The paper's baseline: AdamW with PyTorch semantics; decay on ndim >= 2 tensors only."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)


@register_optimizer("lion")
def lion(learning_rate, *, b1=0.9, b2=0.99, weight_decay=1.0):
    """Lion (Chen et al. 2023); decay on ndim >= 2 tensors only."""
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)


def available_optimizers() -> dict[str, OptimizerFactory]:
    """Built-in and registered optimizers, plus the paper's recipes (which take precedence)."""
    found = dict(_REGISTRY)
    found.update(recipes.RECIPES)
    found.update({k: v for k, v in _REGISTRY.items() if k not in found})
    return found


def _check_hparams(name: str, factory: OptimizerFactory, hparams: dict) -> None:
    signature = inspect.signature(factory)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return  # the factory validates its own keywords
    allowed = [p for p in signature.parameters if p != "learning_rate"]
    for key in hparams:
        if key not in allowed:
            raise ConfigError(
                f"optim.hparams.{key} is not a hyperparameter of optimizer {name!r}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )


def build_schedule(
    optim_cfg, total_steps: int, *, tokens_per_step: Callable[[int], int] | None = None
) -> optax.Schedule:
    """The trapezoid schedule of ``optim_cfg`` over ``total_steps``.

    With ``optim.schedule_unit="tokens"`` (for sequence-length warmup) the warmup stays step-based
    but the plateau and cooldown follow the fraction of the run's tokens consumed so far, as
    DeepSpeed recommends; ``tokens_per_step(step)`` gives the tokens trained at each step.
    """
    base = trapezoid_schedule(
        optim_cfg.lr,
        total_steps,
        warmup_steps=optim_cfg.warmup_steps,
        cooldown_fraction=optim_cfg.cooldown_fraction,
        end_value=optim_cfg.end_lr,
    )
    if optim_cfg.schedule_unit == "steps" or tokens_per_step is None:
        return base
    cumulative = np.concatenate([[0], np.cumsum([tokens_per_step(s) for s in range(total_steps)])])
    token_steps = jax.numpy.asarray(cumulative / cumulative[-1] * total_steps, jax.numpy.float32)
    warmup = optim_cfg.warmup_steps

    def schedule(step):
        effective = token_steps[jax.numpy.clip(step, 0, total_steps)]
        return base(jax.numpy.where(step < warmup, step, jax.numpy.maximum(effective, warmup)))

    return schedule


def check_optimizer_config(optim_cfg) -> OptimizerFactory:
    """Raises ConfigError unless ``optim.name`` exists and takes every key of ``optim.hparams``."""
    optimizers = available_optimizers()
    if optim_cfg.name not in optimizers:
        raise ConfigError(
            f"optim.name={optim_cfg.name!r} is not a known optimizer; allowed: {', '.join(sorted(optimizers))}"
        )
    factory = optimizers[optim_cfg.name]
    _check_hparams(optim_cfg.name, factory, optim_cfg.hparams)
    return factory


def check_optimizer_fits_training(optim_cfg, train_cfg) -> None:
    """Raises ConfigError when the optimizer needs something the training setup does not give.

    Optimizers in ``recipes.NEEDS_MICRO_BATCH_STATS`` estimate the gradient SNR from the
    micro-batches of gradient accumulation, so they need ``train.grad_accum_steps >= 2``.
    """
    if optim_cfg.name in recipes.NEEDS_MICRO_BATCH_STATS and train_cfg.grad_accum_steps < 2:
        raise ConfigError(
            f"train.grad_accum_steps={train_cfg.grad_accum_steps}: optimizer {optim_cfg.name!r} estimates the "
            "gradient signal-to-noise ratio from the micro-batches of gradient accumulation; allowed: >= 2"
        )


def needs_initial_gradient(optim_cfg) -> bool:
    """Whether the optimizer state is built from one gradient (``warmup_jax.optim.gi_adam_init``)."""
    return optim_cfg.name in recipes.NEEDS_INITIAL_GRADIENT


def build_optimizer(optim_cfg, schedule: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """``optim.name`` with ``optim.hparams``, after global-norm clipping at ``optim.grad_clip``."""
    factory = check_optimizer_config(optim_cfg)
    try:
        tx = factory(learning_rate=schedule, **optim_cfg.hparams)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optim.hparams={optim_cfg.hparams!r} rejected by {optim_cfg.name!r}: {e}") from e
    if optim_cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), tx)
    return tx
