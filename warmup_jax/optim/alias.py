r"""The paper's optimizers as ready-made ``optax`` aliases: ``warmup_jax.optim.lion_ar(3e-3)``.

Each alias is a short ``optax.chain`` (or a :func:`warmup_jax.optim.partition` of chains) of public
transforms, so its body shows what it is. Every alias takes ``learning_rate`` (a float or an optax
schedule) and keyword-only hyperparameters whose defaults are the paper's setting; gradient
clipping is not part of any alias (chain ``optax.clip_by_global_norm`` in front, as the trainer
does).

========================== ================================================================
alias                      update
========================== ================================================================
``adamw``                  the paper's baseline: AdamW (PyTorch form), β=(0.9, 0.95), ε=1e-8,
                           λ=0.1 on ``decay``/``rotational`` tensors (``ndim >= 2``)
``lion``                   Lion, β=(0.9, 0.99), λ=1.0 on ``ndim >= 2``
``lion_a``                 LionA: Lion with the exact per-tensor update norm κ√n
``lion_a_fast_momentum``   LionA with β=0.98 + Nesterov + inverse bias correction
``lion_ar``                LionAR: rotational Lion (neurons turn by the equilibrium angle on a
                           fixed-norm sphere); other tensors plain Lion
``lion_ar_rrc``            LionAR with the SNR-based RRC factor (needs ``micro_batch_stats``)
``lion_ar_fast_momentum``  LionAR with β=0.98 + Nesterov + inverse bias correction
``adamw_rotational``       rotational AdamW (RV-AdamW of Kosson et al., 2024a)
``gi_adam``                AdamW whose second moment starts at g₀² (initialise with
                           :func:`warmup_jax.optim.gi_adam_init`)
``radam``                  optax's RAdam with the baseline's decoupled weight decay
``adamw_spectral_bound``   AdamW² (Qi et al., 2025): AdamW whose step per matrix is at most
                           τ = 0.1 of the matrix in spectral norm
``warmup_free``            the library's recipe for training without warmup (``lion_ar_rrc``,
                           with its measured numbers and shortfalls)
========================== ================================================================

Parameter groups come from ``rules`` (see :mod:`warmup_jax.optim.groups`; default: by rank and
name, so matrices and embeddings are ``rotational``/decayed and LayerNorm gains and biases are
``no_decay``). Rotational aliases share these keywords:

* ``angular_step``: ``"equilibrium"`` (default) maps the scheduled learning rate to the angular
  step through the optimizer's equilibrium angle (:math:`\eta_r \propto \sqrt{\eta\lambda}`);
  ``"direct"`` makes ``learning_rate`` the angular step itself, and the non-rotational tensors
  then use ``plain_learning_rate``.
* ``zero_mean``, ``normalization``, ``norm_ema_decay``, ``exact_angle``: see
  :func:`warmup_jax.optim.scale_by_rotational`.

The formulas that are reconstructions (the paper released no code) are listed in
``docs/methods.md``.
"""

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import optax

from warmup_jax.optim import groups
from warmup_jax.optim.factors import (
    StepFactor,
    inverse_bias_correction_factor,
    scale_by_inverse_bias_correction,
    snr_rrc_factor,
)
from warmup_jax.optim.rotational import adamw_equilibrium_angle, lion_equilibrium_angle, scale_by_rotational
from warmup_jax.optim.sign_directions import scale_by_lion_nesterov, scale_to_fixed_norm
from warmup_jax.optim.spectral import scale_by_spectral_bound

_ANGULAR_STEPS = ("equilibrium", "direct")
_IBC_MODES = ("linear", "sqrt", None)


def _check_range(name: str, value: Any, low: float, high: float, *, high_open: bool = True) -> None:
    # Only Python numbers are checked (and text refused): under optax.inject_hyperparams the values are traced.
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name}={value!r} is not a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:  # NaN fails both comparisons
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name}={value} must lie in {bound}")


def _check_betas(**betas: Any) -> None:
    for name, value in betas.items():
        _check_range(name, value, 0.0, 1.0)


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


def _decayed(weight_decay: Any, rules: Sequence[groups.Rule] | None) -> optax.GradientTransformation:
    _check_range("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.masked(optax.add_decayed_weights(weight_decay), groups.decay_mask(rules))


def _angular_step(
    angular_step: str,
    learning_rate: optax.ScalarOrSchedule,
    plain_learning_rate: optax.ScalarOrSchedule | None,
    equilibrium: Callable[..., Any],
) -> tuple[optax.ScalarOrSchedule, Callable[..., Any] | None]:
    """``(learning rate of the non-rotational tensors, equilibrium mapping or None)``."""
    _check_choice("angular_step", angular_step, _ANGULAR_STEPS)
    if angular_step == "equilibrium":
        return (learning_rate if plain_learning_rate is None else plain_learning_rate), equilibrium
    if plain_learning_rate is None:
        raise ValueError(
            "angular_step='direct' makes learning_rate the angular step of the rotational tensors; "
            "give plain_learning_rate for the other tensors"
        )
    return plain_learning_rate, None


def _high_momentum_lion(beta: Any, nesterov: bool, mu_dtype: Any) -> optax.GradientTransformation:
    """Nesterov's sign direction with one β, or Lion with β1 = β2 = β."""
    _check_betas(beta=beta)
    return scale_by_lion_nesterov(beta, mu_dtype) if nesterov else optax.scale_by_lion(beta, beta, mu_dtype)


def _maybe_inverse_bias_correction(beta: Any, mode: str | None) -> optax.GradientTransformation:
    _check_choice("inverse_bias_correction", mode, _IBC_MODES)
    return optax.identity() if mode is None else scale_by_inverse_bias_correction(beta, mode)


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

    Example:
        >>> import warmup_jax.optim as wo
        >>> tx = wo.adamw(6e-4)
    """
    _check_betas(b1=b1, b2=b2)
    _check_range("eps", eps, 0.0, float("inf"))
    _check_range("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.adamw(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        mu_dtype=mu_dtype,
        weight_decay=weight_decay,
        mask=groups.decay_mask(rules),
    )


def lion(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1.0,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Lion with decoupled weight decay on ``ndim >= 2`` tensors (optax's ``lion``).

    .. math::

        w \leftarrow w - \eta_t\big(\operatorname{sign}(\beta_1 m + (1-\beta_1) g) + \lambda w\big)

    β=(0.9, 0.99) and λ=1.0 are reconstructions of the paper's Lion runs.
    """
    _check_betas(b1=b1, b2=b2)
    _check_range("weight_decay", weight_decay, 0.0, float("inf"))
    return optax.lion(
        learning_rate, b1=b1, b2=b2, mu_dtype=mu_dtype, weight_decay=weight_decay, mask=groups.decay_mask(rules)
    )


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

    The per-tensor granularity is a reconstruction; ``kappa`` may be set to
    :func:`warmup_jax.optim.adamw_matched_kappa`.

    Example:
        >>> import warmup_jax.optim as wo
        >>> tx = wo.lion_a(3e-4)
    """
    _check_betas(b1=b1, b2=b2)
    return optax.chain(
        optax.scale_by_lion(b1, b2, mu_dtype),
        scale_to_fixed_norm(kappa),
        _decayed(weight_decay, rules),
        optax.scale_by_learning_rate(learning_rate),
    )


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
    r"""LionA with high momentum, Nesterov and inverse bias correction.

    .. math::

        m_t = \beta m_{t-1} + (1-\beta) g_t, \quad
        u_t = \operatorname{sign}(\beta m_t + (1-\beta) g_t), \quad
        w \leftarrow w(1-\eta_t\lambda) - \eta_t f_{IBC}(t)\,\kappa\sqrt{n}\,u_t/\|u_t\|

    with :math:`f_{IBC}(t) = 1-\beta^t` (``"sqrt"``: :math:`\sqrt{1-\beta^{2t}}`; ``None``: off).
    Without Nesterov the direction is Lion with :math:`\beta_1 = \beta_2 = \beta`. The Nesterov form
    and :math:`f_{IBC}` are reconstructions.
    """
    return optax.chain(
        _high_momentum_lion(beta, nesterov, mu_dtype),
        scale_to_fixed_norm(kappa),
        _maybe_inverse_bias_correction(beta, inverse_bias_correction),
        _decayed(weight_decay, rules),
        optax.scale_by_learning_rate(learning_rate),
    )


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
    step_factors: Sequence[StepFactor] = (),
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LionAR: Lion directions applied as per-neuron rotations of a controlled angle.

    Rotational tensors: :func:`warmup_jax.optim.scale_by_rotational` around the Lion direction,
    with angular step
    :math:`\eta_{r,t} = \sqrt{\pi/2}\sqrt{2\eta_t\lambda}\sqrt{(1-\beta_1)^2 +
    \beta_1^2(1-\beta_2)/(1+\beta_2)}` (the equilibrium angle of Lion with weight decay), times the
    product of ``step_factors``. Tensors labelled ``decay``: Lion with weight decay; ``no_decay``:
    Lion without. How the paper's LionAR departs from the earlier rotational Lion is not published;
    the defaults (per neuron, centred updates, exact normalisation) are reconstructions.

    Example:
        >>> import warmup_jax.optim as wo
        >>> tx = wo.lion_ar(3e-3)
        >>> tx_rrc = wo.lion_ar(3e-3, step_factors=[wo.snr_rrc_factor()])  # = wo.lion_ar_rrc(3e-3)
    """
    _check_betas(b1=b1, b2=b2)
    plain_lr, equilibrium = _angular_step(
        angular_step, learning_rate, plain_learning_rate, functools.partial(lion_equilibrium_angle, b1=b1, b2=b2)
    )
    rotating = scale_by_rotational(
        optax.scale_by_lion(b1, b2, mu_dtype),
        learning_rate,
        weight_decay=weight_decay,
        equilibrium=equilibrium,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=step_factors,
    )
    return groups.partition(
        {
            groups.ROTATIONAL: rotating,
            groups.DECAY: optax.lion(plain_lr, b1, b2, mu_dtype=mu_dtype, weight_decay=weight_decay),
            groups.NO_DECAY: optax.lion(plain_lr, b1, b2, mu_dtype=mu_dtype, weight_decay=0.0),
        },
        rules,
    )


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
    snr_ema_start: str = "zero",
    rrc_form: str = "sqrt",
    rrc_gain_ratio: float | None = None,
    rrc_clamp: tuple[float, float] | None = (1e-3, 1.0),
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r""":func:`lion_ar` whose angular step is scaled by the RRC factor :math:`f = 1/\sqrt{1 + B\varphi}`.

    :math:`\varphi` is the EMA-smoothed per-sequence gradient SNR of each rotational tensor
    (``snr_per_tensor=False``: of all rotational tensors together), estimated from the
    ``micro_batch_stats`` extra argument (see :func:`warmup_jax.optim.snr_rrc_factor`, which the
    ``snr_*``/``rrc_*`` keywords configure); the factor applies to the rotational tensors only. The
    form of the factor is a reconstruction; ``rrc_form="gain"`` with ``rrc_gain_ratio`` selects the
    alternative. ``update`` raises without ``micro_batch_stats``. Tune the base learning rate with
    the factor on: :math:`f < 1` for most of training.
    """
    rrc = snr_rrc_factor(
        per_tensor=snr_per_tensor,
        form=rrc_form,
        gain_ratio=rrc_gain_ratio,
        ema_decay=snr_ema_decay,
        ema_start=snr_ema_start,
        clamp=None if rrc_clamp is None else tuple(rrc_clamp),
    )
    return lion_ar(
        learning_rate,
        b1=b1,
        b2=b2,
        weight_decay=weight_decay,
        angular_step=angular_step,
        plain_learning_rate=plain_learning_rate,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=[rrc],
        rules=rules,
        mu_dtype=mu_dtype,
    )


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
    r"""LionAR with β = 0.98, Nesterov momentum and inverse bias correction.

    Direction :math:`u_t = \operatorname{sign}(\beta m_t + (1-\beta) g_t)` with
    :math:`m_t = \beta m_{t-1} + (1-\beta) g_t` (Lion with :math:`\beta_1=\beta^2,
    \beta_2=\beta`), angular step :math:`f_{IBC}(t)\,\eta_{r,t}` with
    :math:`f_{IBC}(t) = 1 - \beta^t` (``"sqrt"``: :math:`\sqrt{1-\beta^{2t}}`; ``None``: off);
    :math:`\eta_{r,t}` is the Lion equilibrium angle for the effective :math:`(\beta_1, \beta_2)`.
    The other tensors get the same direction and :math:`f_{IBC}`. The Nesterov form and
    :math:`f_{IBC}` are reconstructions.
    """
    _check_choice("inverse_bias_correction", inverse_bias_correction, _IBC_MODES)
    b1 = beta * beta if nesterov else beta
    plain_lr, equilibrium = _angular_step(
        angular_step, learning_rate, plain_learning_rate, functools.partial(lion_equilibrium_angle, b1=b1, b2=beta)
    )
    ibc = [] if inverse_bias_correction is None else [inverse_bias_correction_factor(beta, inverse_bias_correction)]
    rotating = scale_by_rotational(
        _high_momentum_lion(beta, nesterov, mu_dtype),
        learning_rate,
        weight_decay=weight_decay,
        equilibrium=equilibrium,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=ibc,
    )

    def plain(decay: optax.GradientTransformation) -> optax.GradientTransformation:
        return optax.chain(
            _high_momentum_lion(beta, nesterov, mu_dtype),
            _maybe_inverse_bias_correction(beta, inverse_bias_correction),
            decay,
            optax.scale_by_learning_rate(plain_lr),
        )

    return groups.partition(
        {
            groups.ROTATIONAL: rotating,
            groups.DECAY: plain(optax.add_decayed_weights(weight_decay)),
            groups.NO_DECAY: plain(optax.identity()),
        },
        rules,
    )


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
    step_factors: Sequence[StepFactor] = (),
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rotational AdamW (RV-AdamW): Adam directions applied as per-neuron rotations.

    Angular step :math:`\eta_{r,t} = \sqrt{2\eta_t\lambda(1-\beta_1)/(1+\beta_1)}` (AdamW's
    equilibrium angle); tensors labelled ``decay`` get AdamW, ``no_decay`` Adam. The earlier
    rotational-optimizer work used ``normalization="ema"`` (decay 0.9); the default here is exact
    normalisation (see :func:`warmup_jax.optim.scale_by_rotational`).
    """
    _check_betas(b1=b1, b2=b2)
    plain_lr, equilibrium = _angular_step(
        angular_step, learning_rate, plain_learning_rate, functools.partial(adamw_equilibrium_angle, b1=b1)
    )
    rotating = scale_by_rotational(
        optax.scale_by_adam(b1, b2, eps, mu_dtype=mu_dtype),
        learning_rate,
        weight_decay=weight_decay,
        equilibrium=equilibrium,
        zero_mean=zero_mean,
        normalization=normalization,
        norm_ema_decay=norm_ema_decay,
        exact_angle=exact_angle,
        step_factors=step_factors,
    )
    return groups.partition(
        {
            groups.ROTATIONAL: rotating,
            groups.DECAY: optax.adamw(plain_lr, b1, b2, eps, mu_dtype=mu_dtype, weight_decay=weight_decay),
            groups.NO_DECAY: optax.adam(plain_lr, b1, b2, eps, mu_dtype=mu_dtype),
        },
        rules,
    )


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
    r"""GI-Adam (Kalra & Barkeshli, 2024): the AdamW baseline with :math:`v_0 = g_0^2`.

    The transformation is :func:`adamw`; build its state with
    ``warmup_jax.optim.gi_adam_init(tx, params, g0)`` (plain ``init`` gives AdamW). The defaults
    are the baseline's so the two compare at equal settings; Kalra & Barkeshli used
    β₂ = 0.999, where the built-in warmup lasts ~1000 instead of ~20 steps.
    """
    return adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, rules=rules, mu_dtype=mu_dtype)


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
    _check_betas(b1=b1, b2=b2)
    return optax.chain(
        optax.scale_by_radam(b1, b2, eps, threshold=threshold),
        _decayed(weight_decay, rules),
        optax.scale_by_learning_rate(learning_rate),
    )


def adamw_spectral_bound(
    learning_rate: optax.ScalarOrSchedule,
    *,
    threshold: float = 0.1,
    power_iterations: int = 2,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    rules: Sequence[groups.Rule] | None = None,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW² (Qi et al., 2025): the baseline AdamW whose step per matrix is bounded spectrally.

    .. math::

        \Delta = -\eta_t\big(\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda w\big), \qquad
        \Delta \leftarrow \Delta\,\min\!\big(1,\ \tau\,\sigma_1(W)/\sigma_1(\Delta)\big)

    for every tensor with two or more axes (per matrix of a stacked tensor), with :math:`\sigma_1`
    estimated by persistent power iteration; see :func:`warmup_jax.optim.scale_by_spectral_bound`
    for the reconstruction choices. ``threshold`` is :math:`\tau`.

    Example:
        >>> import warmup_jax.optim as wo
        >>> tx = wo.adamw_spectral_bound(1e-3)
    """
    return optax.chain(
        adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, rules=rules, mu_dtype=mu_dtype),
        scale_by_spectral_bound(threshold, power_iterations=power_iterations),
    )


def warmup_free(learning_rate: optax.ScalarOrSchedule, **hyperparameters: Any) -> optax.GradientTransformationExtraArgs:
    r"""The library's recipe for training without a learning-rate warmup: :func:`lion_ar_rrc`.

    Neurons turn by LionAR's equilibrium angle on a fixed-norm sphere (so no weight grows or shrinks
    early, when warmup usually protects it), and every rotational tensor's angle is scaled by
    :math:`1/\sqrt{1 + B\varphi}` from the measured gradient SNR :math:`\varphi` (so the
    relative change of the layer's outputs stays bounded when gradients agree across the batch).
    Use it with a constant-then-decay schedule and no warmup; it takes :func:`lion_ar_rrc`'s
    keywords.

    Requirements: ``update`` needs ``micro_batch_stats`` (the squared norms of K >= 2 micro-batch
    gradients, see :class:`warmup_jax.optim.snr.MicroBatchStats`); the trainer passes them when
    ``train.grad_accum_steps >= 2``. Tune the peak learning rate on a factor-2 grid: the scale is
    Lion's (the equilibrium angle is :math:`\propto\sqrt{\eta\lambda}`), not AdamW's.

    Measured in this project's warmup-removal leaderboard (0.34M-parameter GPT, 300 steps of
    16 x 128 tokens, K = 4 micro-batches): the lowest final loss of every method there without
    warmup, 4.814 +- 0.008 over 2 seeds at peak LR 0.128, against 5.248 +- 0.062 (3 seeds) for AdamW
    with its best measured warmup and LR (60 steps, 0.004); a 5 % warmup made it worse (5.176).
    Short of what a warmup-free recipe should be: its good-LR basin is narrow (half and twice the
    best LR end 2 % and 4 % higher), and it has not been run above that scale.

    Example:
        >>> import optax
        >>> import warmup_jax.optim as wo
        >>> tx = optax.chain(optax.clip_by_global_norm(1.0), wo.warmup_free(0.1))
    """
    return lion_ar_rrc(learning_rate, **hyperparameters)


# The keywords are lion_ar_rrc's: the registry and error messages read them from the signature.
warmup_free.__signature__ = inspect.signature(lion_ar_rrc)
