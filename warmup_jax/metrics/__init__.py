"""Per-layer update metrics computed inside the compiled train step, and plots of runs.

:mod:`warmup_jax.metrics.update` holds the metric definitions (ℓ2 update norm, relative update,
angular update per tensor and per neuron, relative representation change, gradient SNR and
critical batch size, gradient-momentum alignment and cancellation; one function per family,
:func:`update_metrics` for all of them); the trainer computes them
under ``lax.cond`` when ``metrics.interval`` says so. :mod:`warmup_jax.metrics.plots` turns run
folders into PNG figures (``warmup-jax plot``).
"""

from warmup_jax.metrics.update import (
    find_first_moment,
    metrics_due,
    momentum_metrics,
    norm_and_angle_metrics,
    relative_representation_change,
    rrc_metrics,
    snr_metrics,
    stable_angle,
    update_metrics,
)

__all__ = [
    "find_first_moment",
    "metrics_due",
    "momentum_metrics",
    "norm_and_angle_metrics",
    "relative_representation_change",
    "rrc_metrics",
    "snr_metrics",
    "stable_angle",
    "update_metrics",
]
