"""From configuration to an ``optax.GradientTransformation``.

``optim.name`` selects an entry of the one optimizer registry, :mod:`warmup_jax.optim.recipes`
(the paper's optimizers under their alias names, e.g. ``adamw``, ``lion_ar``; users add their own
with :func:`register_optimizer`); ``optim.hparams`` are its keyword hyperparameters.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import optax

from warmup_jax.errors import ConfigError
from warmup_jax.optim import recipes
from warmup_jax.optim.schedules import trapezoid_schedule

OptimizerFactory = Callable[..., optax.GradientTransformation]


def register_optimizer(
    name: str, *, needs_micro_batch_stats: bool = False, needs_initial_gradient: bool = False
) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Decorator: makes ``factory(learning_rate, **hparams)`` selectable as ``optim.name=name``.

    Example::

        @register_optimizer("sgd_momentum")
        def sgd_momentum(learning_rate, *, momentum=0.9):
            return optax.sgd(learning_rate, momentum)
    """

    def decorate(factory: OptimizerFactory) -> OptimizerFactory:
        return recipes.register(
            name,
            factory,
            needs_micro_batch_stats=needs_micro_batch_stats,
            needs_initial_gradient=needs_initial_gradient,
        )

    return decorate


def available_optimizers() -> dict[str, OptimizerFactory]:
    """Every optimizer ``optim.name`` may select (a copy of the registry)."""
    return dict(recipes.RECIPES)


def build_schedule(
    optim_cfg,
    total_steps: int,
    *,
    tokens_per_step: Callable[[int], int] | None = None,
    warmup_init_lr: float | None = None,
) -> optax.Schedule:
    """The trapezoid schedule of ``optim_cfg`` over ``total_steps``.

    The warmup starts at ``warmup_init_lr`` (default ``optim.warmup_init_lr``; the trainer passes the
    measured catapult learning rate with ``optim.catapult_init_lr``).

    With ``optim.schedule_unit="tokens"`` (for sequence-length warmup) the warmup stays step-based
    but the plateau and cooldown follow the fraction of the run's tokens consumed so far, as
    DeepSpeed recommends; ``tokens_per_step(step)`` gives the tokens trained at each step.
    """
    base = trapezoid_schedule(
        optim_cfg.lr,
        total_steps,
        warmup_steps=optim_cfg.warmup_steps,
        cooldown_fraction=optim_cfg.cooldown_fraction,
        init_value=optim_cfg.warmup_init_lr if warmup_init_lr is None else warmup_init_lr,
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
    """Raises ConfigError unless ``optim.name`` exists and takes every key of ``optim.hparams``, and
    the recipe accepts every value (momenta in [0, 1), eps >= 0, ...: the recipe's own checks)."""
    if optim_cfg.name not in recipes.RECIPES:
        raise ConfigError(
            f"optim.name={optim_cfg.name!r} is not a known optimizer; allowed: {', '.join(sorted(recipes.RECIPES))}"
        )
    allowed = recipes.hyperparameter_names(optim_cfg.name)
    for key in optim_cfg.hparams:
        if allowed is not None and key not in allowed:
            raise ConfigError(
                f"optim.hparams.{key} is not a hyperparameter of optimizer {optim_cfg.name!r}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )
    try:  # building the transformation checks every value (it touches no arrays)
        recipes.build(optim_cfg.name, optim_cfg.lr, **optim_cfg.hparams)
    except (ValueError, TypeError) as e:
        message = str(e)
        named = message.split("=", 1)[0] in optim_cfg.hparams
        if not named:
            message = f"={dict(optim_cfg.hparams)!r} is not accepted by optimizer {optim_cfg.name!r}: {message}"
        raise ConfigError(f"optim.hparams.{message}" if named else f"optim.hparams{message}") from None
    return recipes.get_recipe(optim_cfg.name)


def momentum_coefficient(optim_cfg) -> float | None:
    """The weight of the old momentum in the optimizer's update direction (for the momentum metrics).

    See :func:`warmup_jax.optim.recipes.momentum_coefficient`: ``b1`` for AdamW and Lion, ``beta**2``
    for the Nesterov high-momentum recipes; ``None`` if the optimizer has neither keyword.
    """
    check_optimizer_config(optim_cfg)
    return recipes.momentum_coefficient(optim_cfg.name, optim_cfg.hparams)


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
    special = recipes.NEEDS_MICRO_BATCH_STATS | recipes.NEEDS_INITIAL_GRADIENT
    if optim_cfg.catapult_init_lr and optim_cfg.name in special:
        raise ConfigError(
            f"optim.catapult_init_lr=true: the catapult search takes plain first steps of the optimizer, which "
            f"{optim_cfg.name!r} does not (it needs micro-batch statistics or a state built from a gradient); "
            f"allowed with every optimizer except {', '.join(sorted(special))}"
        )


def needs_initial_gradient(optim_cfg) -> bool:
    """Whether the optimizer state is built from one gradient (``warmup_jax.optim.gi_adam_init``)."""
    return optim_cfg.name in recipes.NEEDS_INITIAL_GRADIENT


def build_optimizer(optim_cfg, schedule: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """``optim.name`` with ``optim.hparams`` and learning rate ``schedule``.

    Clipping at ``optim.grad_clip`` is not part of it: the train step clips the mean gradient once
    and rescales the micro-batch statistics by the same factor (``make_train_step(grad_clip=...)``).
    """
    factory = check_optimizer_config(optim_cfg)
    try:
        tx = factory(learning_rate=schedule, **optim_cfg.hparams)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optim.hparams={optim_cfg.hparams!r} rejected by {optim_cfg.name!r}: {e}") from e
    return tx
