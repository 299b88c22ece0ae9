"""Optax transformations of the warmup paper: LionA, LionAR, SNR/RRC scaling, inverse bias
correction; parameter groups, named recipes, and the seed papers' warmup helpers.

Depends on jax, optax, chex and numpy only. See ``docs/optimizers.md`` for usage.
"""

from warmup_jax.optim import recipes, snr
from warmup_jax.optim.catapult import find_catapult_lr
from warmup_jax.optim.factors import (
    ScaleByCountState,
    ScaleByStepFactorsState,
    StepFactor,
    inverse_bias_correction,
    inverse_bias_correction_factor,
    scale_by_inverse_bias_correction,
    scale_by_step_factors,
    snr_rrc_factor,
)
from warmup_jax.optim.gi_adam import gi_adam_init
from warmup_jax.optim.groups import (
    DECAY,
    GPT2_RULES,
    LABELS,
    NO_DECAY,
    ROTATIONAL,
    decay_mask,
    label_fn,
    param_labels,
    partition,
)
from warmup_jax.optim.lion import (
    adamw_matched_kappa,
    fast_sign,
    scale_by_fused_lion,
    scale_by_lion_nesterov,
    scale_to_fixed_norm,
)
from warmup_jax.optim.neurons import (
    NeuronDimensionNumbers,
    center_rotational_params,
    default_dimension_numbers,
    neuron_axes,
)
from warmup_jax.optim.recipes import RECIPES, get_recipe
from warmup_jax.optim.rotational import (
    ScaleByRotationalState,
    adamw_equilibrium_angle,
    lion_equilibrium_angle,
    scale_by_rotational,
    sgdm_equilibrium_angle,
)
from warmup_jax.optim.schedules import count_params, polynomial_warmup_schedule, porian_warmup_steps, trapezoid_schedule
from warmup_jax.optim.snr import MicroBatchStats

__all__ = [
    "DECAY",
    "GPT2_RULES",
    "LABELS",
    "NO_DECAY",
    "RECIPES",
    "ROTATIONAL",
    "MicroBatchStats",
    "NeuronDimensionNumbers",
    "ScaleByCountState",
    "ScaleByRotationalState",
    "ScaleByStepFactorsState",
    "StepFactor",
    "adamw_equilibrium_angle",
    "adamw_matched_kappa",
    "center_rotational_params",
    "count_params",
    "decay_mask",
    "default_dimension_numbers",
    "fast_sign",
    "find_catapult_lr",
    "get_recipe",
    "gi_adam_init",
    "inverse_bias_correction",
    "inverse_bias_correction_factor",
    "label_fn",
    "lion_equilibrium_angle",
    "neuron_axes",
    "param_labels",
    "partition",
    "polynomial_warmup_schedule",
    "porian_warmup_steps",
    "recipes",
    "scale_by_fused_lion",
    "scale_by_inverse_bias_correction",
    "scale_by_lion_nesterov",
    "scale_by_rotational",
    "scale_by_step_factors",
    "scale_to_fixed_norm",
    "sgdm_equilibrium_angle",
    "snr",
    "snr_rrc_factor",
    "trapezoid_schedule",
]
