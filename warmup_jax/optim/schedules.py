"""Learning-rate schedules built from optax primitives."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax


def trapezoid_schedule(
    peak_value: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    cooldown_fraction: float = 0.5,
    init_value: float = 0.0,
    end_value: float = 0.0,
) -> optax.Schedule:
    """Linear warmup, constant plateau, linear cooldown (the paper's schedule).

    With step index ``s`` starting at 0 (optax counts updates from 0)::

            lr(s) = init + (peak - init) * s / T_w                      s < T_w
                        = peak                                                T_w <= s < T - T_cd
                        = peak + (end - peak) * (s - (T - T_cd)) / T_cd        T - T_cd <= s < T
                        = end                                                 s >= T

    where ``T_cd = round(cooldown_fraction * T)``. With ``init_value = 0`` the first update of a
    warmed-up run has learning rate 0, as in nanoGPT. ``warmup_steps = 0`` starts at the peak.

    Args:
        peak_value: learning rate of the plateau.
        total_steps: ``T``, the number of optimizer steps of the run.
        warmup_steps: ``T_w``; 0 disables warmup.
        cooldown_fraction: fraction of ``T`` spent in the final linear cooldown (0.5 in the paper).
        init_value: learning rate at step 0 of the warmup.
        end_value: learning rate reached at step ``T``.

    Returns:
        An ``optax.Schedule``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive")
    if not 0.0 <= cooldown_fraction <= 1.0:
        raise ValueError(f"cooldown_fraction={cooldown_fraction} must lie in [0, 1]")
    cooldown_steps = int(round(cooldown_fraction * total_steps))
    plateau_steps = total_steps - warmup_steps - cooldown_steps
    if warmup_steps < 0 or plateau_steps < 0:
        raise ValueError(
            f"warmup_steps={warmup_steps} plus cooldown ({cooldown_steps} steps) exceeds "
            f"total_steps={total_steps}; allowed: 0 <= warmup_steps <= {total_steps - cooldown_steps}"
        )
    pieces, boundaries = [], []
    if warmup_steps > 0:
        pieces.append(optax.linear_schedule(init_value, peak_value, warmup_steps))
        boundaries.append(warmup_steps)
    pieces.append(optax.constant_schedule(peak_value))
    if cooldown_steps > 0:
        boundaries.append(warmup_steps + plateau_steps)
        pieces.append(optax.linear_schedule(peak_value, end_value, cooldown_steps))
    return optax.join_schedules(pieces, boundaries)


def polynomial_warmup_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    *,
    power: float = 1.0,
    after_warmup: optax.Schedule | None = None,
) -> optax.Schedule:
    r"""Kalra & Barkeshli's warmup from :math:`\eta_{init}`, then a given schedule.

    .. math::

        \eta_s = \min\big(\eta_{init} + (\eta_{trgt} - \eta_{init})\,(s / T_w)^k,\ \eta_{trgt}\big)
        \qquad s \le T_w

    and ``after_warmup(s - T_w)`` (default: constant :math:`\eta_{trgt}`) afterwards. With
    :math:`\eta_{init}` from :func:`warmup_jax.optim.find_catapult_lr` the warmup skips the steps
    spent below the critical learning rate; if :math:`\eta_{init} \ge \eta_{trgt}` there is no
    warmup at all.

    Args:
        init_value: :math:`\eta_{init}` (learning rate at step 0).
        peak_value: :math:`\eta_{trgt}`.
        warmup_steps: :math:`T_w` (0: no warmup).
        power: :math:`k` (1: linear).
        after_warmup: schedule for the steps after the warmup, counted from 0.

    Returns:
        An ``optax.Schedule``.
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps} must be >= 0")
    if power <= 0:
        raise ValueError(f"power={power} must be > 0")
    after = optax.constant_schedule(peak_value) if after_warmup is None else after_warmup
    if warmup_steps == 0:
        return after

    def warmup(step):
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
        value = init_value + (peak_value - init_value) * frac**power
        return jnp.minimum(value, peak_value)

    return optax.join_schedules([warmup, after], [warmup_steps])


def count_params(params: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(params)))


def porian_warmup_steps(num_params: int, tokens_per_step: int) -> int:
    r"""Porian et al.'s warmup length: as many tokens as the model has parameters.

    ``ceil(N / tokens_per_step)`` steps. The rule "warmup tokens = N" is recalled from the paper
    and consistent with its code (docs/methods.md, "Porian's warmup rule"). GPT-2 124M at 480 x 1024 tokens per step:
    253 steps, about 5% of 5000.

    Args:
        num_params: :math:`N` (see :func:`count_params`).
        tokens_per_step: tokens per optimizer step (batch size x sequence length).

    Returns:
        The number of warmup steps.
    """
    if num_params <= 0 or tokens_per_step <= 0:
        raise ValueError(f"num_params={num_params} and tokens_per_step={tokens_per_step} must be positive")
    return -(-int(num_params) // int(tokens_per_step))
