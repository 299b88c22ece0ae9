r"""Named optimizer recipes of the paper and its seed papers, selectable by name from a config.

Every recipe is ``recipe(learning_rate, **hyperparameters)``, returning an
``optax.GradientTransformationExtraArgs``, with keyword-only hyperparameters whose defaults come
from METHODS.md; an unknown keyword raises :class:`UnknownHyperparameterError` naming it and the
allowed ones. Gradient clipping is not part of any recipe (the trainer adds it).

========================== ================================================================
name                       update
========================== ================================================================
``adamw``                  the paper's baseline: AdamW (PyTorch form), β=(0.9, 0.95), ε=1e-8,
                           λ=0.1 on ``decay``/``rotational`` tensors (``ndim >= 2``)
``lion``                   Lion, β=(0.9, 0.99), λ=1.0 on ``ndim >= 2``
``lion_a``                 LionA: Lion with the exact per-tensor update norm κ√n
``lion_a_fast_momentum``   LionA with β=0.98 + Nesterov + inverse bias correction
``lion_ar``                LionAR: rotational Lion (neurons turn by the equilibrium angle on a
                           fixed-norm sphere); 1-D tensors plain Lion without decay
``lion_ar_rrc``            LionAR with the SNR-based RRC factor (needs ``micro_batch_stats``)
``lion_ar_fast_momentum``  LionAR with β=0.98 + Nesterov + inverse bias correction
``adamw_rotational``       rotational AdamW (REQ's RV-AdamW)
``gi_adam``                AdamW whose second moment starts at g₀² (initialise with
                           :func:`warmup_jax.optim.gi_adam_init`)
``radam``                  optax's RAdam (+ the baseline's decoupled weight decay)
========================== ================================================================

Parameter groups come from ``rules`` (see :mod:`warmup_jax.optim.groups`; default: by rank).
The trainer passes ``micro_batch_stats`` to ``tx.update`` for the names in
:data:`NEEDS_MICRO_BATCH_STATS` (others ignore it) and initialises the names in
:data:`NEEDS_INITIAL_GRADIENT` with :func:`warmup_jax.optim.gi_adam_init`.
"""

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import optax

from warmup_jax.optim import factors as factors_lib
from warmup_jax.optim import groups, rotational
from warmup_jax.optim import lion as lion_lib

Recipe = Callable[..., optax.GradientTransformationExtraArgs]

RECIPES: dict[str, Recipe] = {}

#: Recipes whose ``update`` needs ``micro_batch_stats=MicroBatchStats(...)``.
NEEDS_MICRO_BATCH_STATS = frozenset({"lion_ar_rrc"})
#: Recipes whose state should be built by :func:`warmup_jax.optim.gi_adam_init`.
NEEDS_INITIAL_GRADIENT = frozenset({"gi_adam"})

_ANGULAR_STEPS = ("equilibrium", "direct")
_IBC_MODES = ("linear", "sqrt", None)


class UnknownHyperparameterError(TypeError, ValueError):
    """A recipe was given a keyword it does not have."""


def _register(fn: Recipe) -> Recipe:
    signature = inspect.signature(fn)
    allowed = [name for name in signature.parameters]

    @functools.wraps(fn)
    def recipe(*args, **kwargs):
        unknown = [key for key in kwargs if key not in signature.parameters]
        if unknown:
            raise UnknownHyperparameterError(
                f"recipe {fn.__name__!r} got unknown hyperparameter(s) {unknown}; allowed: {allowed}"
            )
        return fn(*args, **kwargs)

    RECIPES[fn.__name__] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a ``ValueError`` lists the allowed names otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer recipe {name!r}; allowed: {sorted(RECIPES)}") from None


def _check(name: str, value: Any, low: float, high: float, *, high_open: bool = True) -> None:
    # Only Python numbers are checked: under optax.inject_hyperparams the values are traced.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name}={value} must lie in {bound}")


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


def _decayed_plain(
    direction: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Any,
    extra: Sequence[optax.GradientTransformation] = (),
) -> optax.GradientTransformationExtraArgs:
    return optax.chain(
        direction, *extra, optax.add_decayed_weights(weight_decay), optax.scale_by_learning_rate(learning_rate)
    )


def _undecayed_plain(
    direction: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    extra: Sequence[optax.GradientTransformation] = (),
) -> optax.GradientTransformationExtraArgs:
    return optax.chain(direction, *extra, optax.scale_by_learning_rate(learning_rate))


def _angular_learning_rates(
    learning_rate: optax.ScalarOrSchedule,
    angular_step: str,
    plain_learning_rate: optax.ScalarOrSchedule | None,
) -> tuple[optax.ScalarOrSchedule, bool]:
    """(learning rate of the plain groups, whether the equilibrium mapping is used)."""
    _check_choice("angular_step", angular_step, _ANGULAR_STEPS)
    if angular_step == "direct":
        if plain_learning_rate is None:
            raise ValueError(
                "angular_step='direct' makes learning_rate the angular step of the rotational "
                "tensors; give plain_learning_rate for the other tensors"
            )
        return plain_learning_rate, False
    return learning_rate if plain_learning_rate is None else plain_learning_rate, True


def _rotational_partition(
    *,
    direction: Callable[[], optax.GradientTransformation],
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Any,
    equilibrium: Callable[..., Any],
    angular_step: str,
    plain_learning_rate: optax.ScalarOrSchedule | None,
    plain_decayed: Callable[[optax.ScalarOrSchedule], optax.GradientTransformation],
    plain_undecayed: Callable[[optax.ScalarOrSchedule], optax.GradientTransformation],
    zero_mean: bool,
    normalization: str,
    norm_ema_decay: Any,
    exact_angle: bool,
    step_factors: Sequence[factors_lib.StepFactor],
    rules: Sequence[groups.Rule] | None,
) -> optax.GradientTransformationExtraArgs:
    plain_lr, use_equilibrium = _angular_learning_rates(learning_rate, angular_step, plain_learning_rate)
    rotating = rotational.scale_by_rotational(
        direction(),
        learning_rate,
        weight_decay=weight_decay,
        equilibrium=equilibrium if use_equilibrium else None,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=step_factors,
    )
    return groups.partition(
        {
            groups.ROTATIONAL: rotating,
            groups.DECAY: plain_decayed(plain_lr),
            groups.NO_DECAY: plain_undecayed(plain_lr),
        },
        rules,
    )


@_register
def adamw(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The paper's AdamW baseline (PyTorch form: the decay is multiplied by the learning rate).

    .. math::

        w \leftarrow w - \eta_t\big(\hat m_t/(\sqrt{\hat v_t} + \epsilon) + \lambda w\big)

    with decay only on tensors labelled ``rotational``/``decay`` (``ndim >= 2`` by default).
    """
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    _check("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.adamw(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        mu_dtype=mu_dtype,
        weight_decay=weight_decay,
        mask=groups.decay_mask(rules),
    )


@_register
def lion(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1.0,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Lion, the paper's Lion baseline (optax's ``lion``).

    .. math::

        w \leftarrow w - \eta_t\big(\operatorname{sign}(\beta_1 m + (1-\beta_1) g) + \lambda w\big)

    β=(0.9, 0.99) and λ=1.0 (REQ's Lion default) are reconstructions for the paper's runs ([R]).
    """
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    _check("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.lion(
        learning_rate, b1=b1, b2=b2, mu_dtype=mu_dtype, weight_decay=weight_decay, mask=groups.decay_mask(rules)
    )


def _lion_a(learning_rate, direction, weight_decay, kappa, extra, rules):
    _check("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.chain(
        direction,
        lion_lib.scale_to_fixed_norm(kappa),
        *extra,
        optax.masked(optax.add_decayed_weights(weight_decay), groups.decay_mask(rules)),
        optax.scale_by_learning_rate(learning_rate),
    )


@_register
def lion_a(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1.0,
    kappa: float = 1.0,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LionA: Lion whose per-tensor update norm is exactly :math:`\kappa\sqrt{n}`.

    .. math::

        u = \operatorname{sign}(\beta_1 m + (1-\beta_1) g), \quad
        w \leftarrow w(1 - \eta_t\lambda) - \eta_t \kappa\sqrt{n}\, u/\|u\|

    The exact definition is a reconstruction ([R]); ``kappa`` may be set to
    :func:`warmup_jax.optim.adamw_matched_kappa`.
    """
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    return _lion_a(learning_rate, optax.scale_by_lion(b1, b2, mu_dtype), weight_decay, kappa, (), rules)


def _fast_direction(beta, nesterov, mu_dtype, fused=False):
    _check("beta", beta, 0.0, 1.0)
    if nesterov:
        return lion_lib.scale_by_lion_nesterov(beta, mu_dtype)
    if fused:
        return lion_lib.scale_by_fused_lion(beta, beta, mu_dtype)
    return optax.scale_by_lion(beta, beta, mu_dtype)


@_register
def lion_a_fast_momentum(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: float = 0.98,
    nesterov: bool = True,
    inverse_bias_correction: str | None = "linear",
    weight_decay: float = 1.0,
    kappa: float = 1.0,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LionA with high momentum, Nesterov and inverse bias correction (paper's Fig. 5, panel 4).

    .. math::

        m_t = \beta m_{t-1} + (1-\beta) g_t, \quad
        u_t = \operatorname{sign}(\beta m_t + (1-\beta) g_t), \quad
        w \leftarrow w(1-\eta_t\lambda) - \eta_t f_{IBC}(t)\,\kappa\sqrt{n}\,u_t/\|u_t\|

    with :math:`f_{IBC}(t) = 1-\beta^t` (``"sqrt"``: :math:`\sqrt{1-\beta^{2t}}`; ``None``: off);
    Nesterov form and :math:`f_{IBC}` are reconstructions ([R]). Without Nesterov the direction
    is Lion with :math:`\beta_1 = \beta_2 = \beta`.
    """
    _check_choice("inverse_bias_correction", inverse_bias_correction, _IBC_MODES)
    extra = ()
    if inverse_bias_correction is not None:
        extra = (factors_lib.scale_by_inverse_bias_correction(beta, inverse_bias_correction),)
    return _lion_a(learning_rate, _fast_direction(beta, nesterov, mu_dtype), weight_decay, kappa, extra, rules)


def _lion_ar(
    learning_rate,
    *,
    b1,
    b2,
    direction,
    plain_direction,
    weight_decay,
    angular_step,
    plain_learning_rate,
    zero_mean,
    normalization,
    norm_ema_decay,
    exact_angle,
    step_factors,
    plain_extra,
    rules,
):
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    _check("weight_decay", weight_decay, 0.0, float("inf"))
    return _rotational_partition(
        direction=direction,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        equilibrium=functools.partial(rotational.lion_equilibrium_angle, b1=b1, b2=b2),
        angular_step=angular_step,
        plain_learning_rate=plain_learning_rate,
        plain_decayed=lambda lr: _decayed_plain(plain_direction(), lr, weight_decay, plain_extra()),
        plain_undecayed=lambda lr: _undecayed_plain(plain_direction(), lr, plain_extra()),
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=step_factors,
        rules=rules,
    )


@_register
def lion_ar(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1.0,
    angular_step: str = "equilibrium",
    plain_learning_rate: optax.ScalarOrSchedule | None = None,
    zero_mean: bool = True,
    normalization: str = "exact",
    norm_ema_decay: float = 0.9,
    exact_angle: bool = False,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LionAR: Lion directions applied as per-neuron rotations of a fixed angle.

    Rotational tensors: :func:`warmup_jax.optim.scale_by_rotational` around the Lion direction
    (:func:`warmup_jax.optim.scale_by_fused_lion`, optax's Lion with the momentum updated first)
    with angular step
    :math:`\eta_{r,t} = \sqrt{\pi/2}\sqrt{2\eta_t\lambda}\sqrt{(1-\beta_1)^2 +
    \beta_1^2(1-\beta_2)/(1+\beta_2)}` (``angular_step="equilibrium"``, REQ's mapping) or
    :math:`\eta_{r,t} = ` ``learning_rate`` (``"direct"``; the other tensors then use
    ``plain_learning_rate``). Tensors labelled ``decay``: Lion with weight decay; ``no_decay``:
    Lion without. How the paper's LionAR departs from REQ's rotational Lion is unknown ([R]);
    the defaults are METHODS.md §8's (per neuron, centred updates, exact normalisation).
    """
    return _lion_ar(
        learning_rate,
        b1=b1,
        b2=b2,
        direction=lambda: lion_lib.scale_by_fused_lion(b1, b2, mu_dtype),
        plain_direction=lambda: optax.scale_by_lion(b1, b2, mu_dtype),
        weight_decay=weight_decay,
        angular_step=angular_step,
        plain_learning_rate=plain_learning_rate,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=(),
        plain_extra=lambda: (),
        rules=rules,
    )


@_register
def lion_ar_rrc(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1.0,
    angular_step: str = "equilibrium",
    plain_learning_rate: optax.ScalarOrSchedule | None = None,
    zero_mean: bool = True,
    normalization: str = "exact",
    norm_ema_decay: float = 0.9,
    exact_angle: bool = False,
    snr_per_tensor: bool = True,
    snr_ema_decay: float = 0.9,
    rrc_form: str = "sqrt",
    rrc_gain_ratio: float | None = None,
    rrc_clamp: tuple[float, float] | None = (1e-3, 1.0),
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LionAR whose angular step is scaled by the RRC factor :math:`f = 1/\sqrt{1 + B\varphi}`.

    :math:`\varphi` is the EMA-smoothed per-sequence gradient SNR of each rotational tensor
    (``snr_per_tensor=False``: of all rotational tensors together), estimated from
    ``micro_batch_stats`` (see :func:`warmup_jax.optim.snr_rrc_factor`); the factor applies to
    the rotational tensors only. The form of the factor is a reconstruction of the paper's
    Eq. (9) ([R]); ``rrc_form="gain"`` with ``rrc_gain_ratio`` selects the alternative.
    ``update`` raises without ``micro_batch_stats``. Tune the base learning rate with the factor
    on: :math:`f < 1` for most of training.
    """
    rrc = factors_lib.snr_rrc_factor(
        per_tensor=snr_per_tensor,
        form=rrc_form,
        gain_ratio=rrc_gain_ratio,
        ema_decay=snr_ema_decay,
        clamp=None if rrc_clamp is None else tuple(rrc_clamp),
    )
    return _lion_ar(
        learning_rate,
        b1=b1,
        b2=b2,
        direction=lambda: lion_lib.scale_by_fused_lion(b1, b2, mu_dtype),
        plain_direction=lambda: optax.scale_by_lion(b1, b2, mu_dtype),
        weight_decay=weight_decay,
        angular_step=angular_step,
        plain_learning_rate=plain_learning_rate,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=(rrc,),
        plain_extra=lambda: (),
        rules=rules,
    )


@_register
def lion_ar_fast_momentum(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: float = 0.98,
    nesterov: bool = True,
    inverse_bias_correction: str | None = "linear",
    weight_decay: float = 1.0,
    angular_step: str = "equilibrium",
    plain_learning_rate: optax.ScalarOrSchedule | None = None,
    zero_mean: bool = True,
    normalization: str = "exact",
    norm_ema_decay: float = 0.9,
    exact_angle: bool = False,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LionAR with β = 0.98, Nesterov momentum and inverse bias correction (no warmup needed).

    Direction :math:`u_t = \operatorname{sign}(\beta m_t + (1-\beta) g_t)` with
    :math:`m_t = \beta m_{t-1} + (1-\beta) g_t` (Lion with :math:`\beta_1=\beta^2,
    \beta_2=\beta`), angular step :math:`f_{IBC}(t)\,\eta_{r,t}` with
    :math:`f_{IBC}(t) = 1 - \beta^t` (``"sqrt"``: :math:`\sqrt{1-\beta^{2t}}`; ``None``: off);
    :math:`\eta_{r,t}` is the Lion equilibrium angle for the effective :math:`(\beta_1, \beta_2)`.
    The 1-D tensors get the same direction and :math:`f_{IBC}` without decay. Nesterov form and
    :math:`f_{IBC}` are reconstructions ([R]).
    """
    _check_choice("inverse_bias_correction", inverse_bias_correction, _IBC_MODES)
    _check("beta", beta, 0.0, 1.0)
    b1 = beta * beta if nesterov else beta
    step_factors, plain_extra = (), lambda: ()
    if inverse_bias_correction is not None:
        step_factors = (factors_lib.inverse_bias_correction_factor(beta, inverse_bias_correction),)
        plain_extra = lambda: (  # noqa: E731
            factors_lib.scale_by_inverse_bias_correction(beta, inverse_bias_correction),
        )
    return _lion_ar(
        learning_rate,
        b1=b1,
        b2=beta,
        direction=lambda: _fast_direction(beta, nesterov, mu_dtype, fused=True),
        plain_direction=lambda: _fast_direction(beta, nesterov, mu_dtype),
        weight_decay=weight_decay,
        angular_step=angular_step,
        plain_learning_rate=plain_learning_rate,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=step_factors,
        plain_extra=plain_extra,
        rules=rules,
    )


@_register
def adamw_rotational(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    angular_step: str = "equilibrium",
    plain_learning_rate: optax.ScalarOrSchedule | None = None,
    zero_mean: bool = True,
    normalization: str = "exact",
    norm_ema_decay: float = 0.9,
    exact_angle: bool = False,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rotational AdamW (REQ's RV-AdamW): Adam directions applied as fixed-angle rotations.

    Angular step :math:`\eta_{r,t} = \sqrt{2\eta_t\lambda(1-\beta_1)/(1+\beta_1)}`; tensors
    labelled ``decay`` get AdamW, ``no_decay`` Adam. REQ used ``normalization="ema"`` (decay
    0.9); the default here is exact normalisation (see
    :func:`warmup_jax.optim.scale_by_rotational`).
    """
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    _check("weight_decay", weight_decay, 0.0, float("inf"))
    return _rotational_partition(
        direction=lambda: optax.scale_by_adam(b1, b2, eps, mu_dtype=mu_dtype),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        equilibrium=functools.partial(rotational.adamw_equilibrium_angle, b1=b1),
        angular_step=angular_step,
        plain_learning_rate=plain_learning_rate,
        plain_decayed=lambda lr: optax.adamw(lr, b1, b2, eps, mu_dtype=mu_dtype, weight_decay=weight_decay),
        plain_undecayed=lambda lr: optax.adam(lr, b1, b2, eps, mu_dtype=mu_dtype),
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=(),
        rules=rules,
    )


@_register
def gi_adam(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""GI-Adam (Kalra & Barkeshli): the AdamW baseline with :math:`v_0 = g_0^2`.

    The transformation is the ``adamw`` recipe; build its state with
    ``warmup_jax.optim.gi_adam_init(tx, params, g0)`` (plain ``init`` gives AdamW). The defaults
    are the baseline's so the two compare at equal settings; Kalra & Barkeshli used
    β₂ = 0.999, where the built-in warmup lasts ~1000 instead of ~20 steps.
    """
    return adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, rules=rules, mu_dtype=mu_dtype)


@_register
def radam(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    threshold: float = 5.0,
    weight_decay: float = 0.1,
    rules: Sequence[groups.Rule] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""optax's RAdam (rectified Adam, threshold 5) with the baseline's decoupled weight decay.

    With ``weight_decay=0`` this is exactly ``optax.radam(learning_rate, b1, b2, eps,
    threshold=threshold)``. β₂ defaults to the baseline's 0.95 (optax: 0.999).
    """
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    _check("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.chain(
        optax.scale_by_radam(b1, b2, eps, threshold=threshold),
        optax.masked(optax.add_decayed_weights(weight_decay), groups.decay_mask(rules)),
        optax.scale_by_learning_rate(learning_rate),
    )
