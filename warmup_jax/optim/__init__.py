"""Optax transformations of the warmup paper: LionA, LionAR, SNR/RRC scaling, inverse bias
correction; parameter groups, named recipes, and the seed papers' warmup helpers.

Depends on jax, optax, chex and numpy only. See ``docs/optimizers.md`` for usage.
"""

from warmup_jax.optim import recipes
from warmup_jax.optim import snr
from warmup_jax.optim.catapult import find_catapult_lr
from warmup_jax.optim.factors import ScaleByCountState
from warmup_jax.optim.factors import ScaleByStepFactorsState
from warmup_jax.optim.factors import StepFactor
from warmup_jax.optim.factors import inverse_bias_correction
from warmup_jax.optim.factors import inverse_bias_correction_factor
from warmup_jax.optim.factors import scale_by_inverse_bias_correction
from warmup_jax.optim.factors import scale_by_step_factors
from warmup_jax.optim.factors import snr_rrc_factor
from warmup_jax.optim.gi_adam import gi_adam_init
from warmup_jax.optim.groups import DECAY
from warmup_jax.optim.groups import GPT2_RULES
from warmup_jax.optim.groups import LABELS
from warmup_jax.optim.groups import NO_DECAY
from warmup_jax.optim.groups import ROTATIONAL
from warmup_jax.optim.groups import decay_mask
from warmup_jax.optim.groups import label_fn
from warmup_jax.optim.groups import param_labels
from warmup_jax.optim.groups import partition
from warmup_jax.optim.lion import adamw_matched_kappa
from warmup_jax.optim.lion import fast_sign
from warmup_jax.optim.lion import scale_by_fused_lion
from warmup_jax.optim.lion import scale_by_lion_nesterov
from warmup_jax.optim.lion import scale_to_fixed_norm
from warmup_jax.optim.neurons import NeuronDimensionNumbers
from warmup_jax.optim.neurons import center_rotational_params
from warmup_jax.optim.neurons import default_dimension_numbers
from warmup_jax.optim.neurons import neuron_axes
from warmup_jax.optim.recipes import RECIPES
from warmup_jax.optim.recipes import get_recipe
from warmup_jax.optim.rotational import ScaleByRotationalState
from warmup_jax.optim.rotational import adamw_equilibrium_angle
from warmup_jax.optim.rotational import lion_equilibrium_angle
from warmup_jax.optim.rotational import scale_by_rotational
from warmup_jax.optim.rotational import sgdm_equilibrium_angle
from warmup_jax.optim.schedules import count_params
from warmup_jax.optim.schedules import polynomial_warmup_schedule
from warmup_jax.optim.schedules import porian_warmup_steps
from warmup_jax.optim.schedules import trapezoid_schedule
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
