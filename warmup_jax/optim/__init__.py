"""Optax transformations of the warmup paper: LionA, LionAR, SNR/RRC scaling, inverse bias
correction; Qi et al.'s spectral step bound; parameter groups, the paper's optimizers as aliases
(``warmup_jax.optim.lion_ar(3e-3)`` the way one writes ``optax.adamw(3e-4)``), the registry the
trainer selects them from, and the seed papers' warmup helpers.

Depends on jax, optax, chex and numpy only. See ``docs/optimizers.md`` for usage.
"""

from warmup_jax.optim import recipes, snr
from warmup_jax.optim.alias import (
    adamw,
    adamw_rotational,
    adamw_spectral_bound,
    gi_adam,
    lion,
    lion_a,
    lion_a_fast_momentum,
    lion_ar,
    lion_ar_fast_momentum,
    lion_ar_rrc,
    radam,
    warmup_free,
)
from warmup_jax.optim.catapult import find_catapult_lr
from warmup_jax.optim.factors import (
    ScaleByCountState,
    ScaleByStepFactorsState,
    StepFactor,
    inverse_bias_correction,
    inverse_bias_correction_factor,
    one_minus_power,
    scale_by_inverse_bias_correction,
    scale_by_step_factors,
    snr_rrc_factor,
)
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
from warmup_jax.optim.initial_state import gi_adam_init
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
from warmup_jax.optim.sign_directions import (
    adamw_matched_kappa,
    scale_by_lion_nesterov,
    scale_to_fixed_norm,
)
from warmup_jax.optim.snr import MicroBatchStats
from warmup_jax.optim.spectral import (
    ScaleBySpectralBoundState,
    scale_by_spectral_bound,
    spectral_bound_scales,
    top_singular_value,
)

__all__ = [
    "DECAY",
    "GPT2_RULES",
    "LABELS",
    "MicroBatchStats",
    "NO_DECAY",
    "NeuronDimensionNumbers",
    "RECIPES",
    "ROTATIONAL",
    "ScaleByCountState",
    "ScaleByRotationalState",
    "ScaleBySpectralBoundState",
    "ScaleByStepFactorsState",
    "StepFactor",
    "adamw",
    "adamw_equilibrium_angle",
    "adamw_matched_kappa",
    "adamw_rotational",
    "adamw_spectral_bound",
    "center_rotational_params",
    "count_params",
    "decay_mask",
    "default_dimension_numbers",
    "find_catapult_lr",
    "get_recipe",
    "gi_adam",
    "gi_adam_init",
    "inverse_bias_correction",
    "inverse_bias_correction_factor",
    "label_fn",
    "lion",
    "lion_a",
    "lion_a_fast_momentum",
    "lion_ar",
    "lion_ar_fast_momentum",
    "lion_ar_rrc",
    "lion_equilibrium_angle",
    "neuron_axes",
    "one_minus_power",
    "param_labels",
    "partition",
    "polynomial_warmup_schedule",
    "porian_warmup_steps",
    "radam",
    "warmup_free",
    "recipes",
    "scale_by_inverse_bias_correction",
    "scale_by_lion_nesterov",
    "scale_by_rotational",
    "scale_by_spectral_bound",
    "scale_by_step_factors",
    "scale_to_fixed_norm",
    "sgdm_equilibrium_angle",
    "snr",
    "snr_rrc_factor",
    "spectral_bound_scales",
    "top_singular_value",
    "trapezoid_schedule",
]
