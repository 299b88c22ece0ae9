"""Learning-rate schedules built from optax primitives."""

from __future__ import annotations

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
