r"""Rotational (angular) update control: every neuron turns by a set angle on a fixed-norm sphere.

This is the mechanism of LionAR and of the rotational wrappers of Kosson et al. (2024a, "REQ"), written
as an optax wrapper around any inner direction (``optax.scale_by_lion``, ``optax.scale_by_adam``,
``optax.trace``, ...).
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from warmup_jax.optim import factors as factors_lib
from warmup_jax.optim import neurons

_NORMALIZATIONS = ("exact", "ema")
# Neurons whose update has |u_perp|^2 <= _DEGENERATE * |u|^2 are left unchanged.
_DEGENERATE = 1e-4


class ScaleByRotationalState(NamedTuple):
    r"""State of :func:`scale_by_rotational`.

    Attributes:
        count: number of updates so far (int32).
        inner_state: state of the inner direction transform.
        neuron_norms: per tensor, the target norm :math:`r_k` of every neuron (reduced axes kept
            with size 1; float32, or float64 for float64 parameters).
        update_sq_norm_ema: per tensor, the EMA of :math:`\|u_k\|^2` (``normalization="ema"``),
            else ``()``.
        factor_states: states of the step factors, in order.
    """

    count: jax.Array
    inner_state: Any
    neuron_norms: Any
    update_sq_norm_ema: Any
    factor_states: tuple


def lion_equilibrium_angle(
    learning_rate: jax.typing.ArrayLike,
    weight_decay: jax.typing.ArrayLike,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
) -> jax.Array:
    r"""Equilibrium angular update of Lion with decoupled weight decay (REQ's formula).

    .. math::

        \hat\eta_r = \sqrt{\pi/2}\,\sqrt{2\eta\lambda}\,
        \sqrt{(1-\beta_1)^2 + \beta_1^2 (1-\beta_2)/(1+\beta_2)}
    """
    lr = jnp.asarray(learning_rate, jnp.float32)
    wd = jnp.asarray(weight_decay, jnp.float32)
    b1 = jnp.asarray(b1, jnp.float32)
    b2 = jnp.asarray(b2, jnp.float32)
    spread = (1.0 - b1) ** 2 + b1**2 * (1.0 - b2) / (1.0 + b2)
    return math.sqrt(math.pi / 2.0) * jnp.sqrt(2.0 * lr * wd) * jnp.sqrt(spread)


def adamw_equilibrium_angle(
    learning_rate: jax.typing.ArrayLike,
    weight_decay: jax.typing.ArrayLike,
    b1: jax.typing.ArrayLike = 0.9,
) -> jax.Array:
    r"""Equilibrium angular update of AdamW: :math:`\sqrt{2\eta\lambda(1-\beta_1)/(1+\beta_1)}`."""
    lr = jnp.asarray(learning_rate, jnp.float32)
    wd = jnp.asarray(weight_decay, jnp.float32)
    b1 = jnp.asarray(b1, jnp.float32)
    return jnp.sqrt(2.0 * lr * wd * (1.0 - b1) / (1.0 + b1))


def sgdm_equilibrium_angle(
    learning_rate: jax.typing.ArrayLike,
    weight_decay: jax.typing.ArrayLike,
    momentum: jax.typing.ArrayLike = 0.0,
) -> jax.Array:
    r"""Equilibrium angular update of SGD with momentum :math:`\alpha` (``m = \alpha m + g``).

    .. math:: \hat\eta_r = \sqrt{2\eta\lambda/(1+\alpha)}
    """
    lr = jnp.asarray(learning_rate, jnp.float32)
    wd = jnp.asarray(weight_decay, jnp.float32)
    return jnp.sqrt(2.0 * lr * wd / (1.0 + jnp.asarray(momentum, jnp.float32)))


def _neuron_sums(terms: tuple[jax.Array, ...], axes: tuple[int, ...]) -> list[jax.Array]:
    """Per-neuron sums of several same-shaped arrays (reduced axes kept with size 1).

    Plain reductions: XLA fuses sibling reductions of the same inputs on accelerators, and on a CPU
    the whole train step measured the same with a single multi-output or a blocked reduction.
    """
    return [jnp.sum(t, axis=axes, keepdims=True) for t in terms]


def _rotate(
    w: jax.Array,
    u: jax.Array,
    r: jax.Array,
    q: jax.Array | None,
    axes: tuple[int, ...],
    step: jax.Array,
    count: jax.Array,
    *,
    zero_mean: bool,
    normalization: str,
    ema_decay: jax.typing.ArrayLike,
    eps: float,
) -> tuple[jax.Array, jax.Array | None]:
    """One rotational step for one tensor; returns ``(w_new - w, new EMA)``."""
    cdtype = jnp.promote_types(w.dtype, jnp.float32)
    w = w.astype(cdtype)
    u = u.astype(cdtype)
    if not axes:  # a scalar has no direction to turn
        return jnp.zeros_like(w), q
    n = math.prod(w.shape[ax] for ax in axes)

    # All per-neuron quantities come from five sums over (u, w); the updated neuron is then an affine
    # combination of w and u, so no other temporary the size of the parameters is needed.
    # With u~ = u - mean(u) (if zero_mean) and u_perp = u~ - rho w, rho = <u~, w>/|w|^2, we have
    # |u_perp|^2 = |u~|^2 - rho <u~, w> and, as u_perp is orthogonal to w,
    # |w - a u_perp|^2 = |w|^2 + a^2 |u_perp|^2.
    terms = (w * w, u * w, u * u) + ((u, w) if zero_mean else ())
    sums = _neuron_sums(terms, axes)
    w_sq, u_dot_w, u_sq = sums[:3]
    raw_sq = u_sq
    if zero_mean:
        u_sum, w_sum = sums[3:]
        u_mean = u_sum / n
        u_dot_w = u_dot_w - u_mean * w_sum
        u_sq = u_sq - n * u_mean * u_mean
    else:
        u_mean = jnp.zeros([], cdtype)
    rho = u_dot_w / jnp.where(w_sq > 0, w_sq, 1.0)
    perp_sq = u_sq - rho * u_dot_w
    # A tangential part below 1% of the update norm is lost in the rounding of the subtraction
    # above (and has no meaningful direction): such a neuron is not turned.
    perp_sq = jnp.where(perp_sq > _DEGENERATE * raw_sq, perp_sq, 0.0)

    if normalization == "exact":
        norm = jnp.sqrt(perp_sq)
        inv_norm = jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0)
        new_q = q
    else:
        decay = jnp.asarray(ema_decay, cdtype)
        new_q = (decay * q + (1.0 - decay) * perp_sq).astype(q.dtype)
        correction = factors_lib.one_minus_power(ema_decay, count)
        inv_norm = 1.0 / (jnp.sqrt(new_q / correction) + eps)

    # w' = w - a u_perp; a = 0 for degenerate neurons (their elementwise u_perp is rounding noise).
    a = jnp.where(perp_sq > 0, step.astype(cdtype) * r.astype(cdtype) * inv_norm, 0.0)
    new_sq = w_sq + a * a * perp_sq
    c = jnp.where(new_sq > 0, r * jax.lax.rsqrt(jnp.where(new_sq > 0, new_sq, 1.0)), 0.0)
    # w_new - w = c (w - a (u - u_mean - rho w)) - w
    update = (c - 1.0 + c * a * rho) * w - (c * a) * u + (c * a) * u_mean
    return update, new_q


def scale_by_rotational(
    inner: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    equilibrium: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    dimension_numbers: neurons.DimensionNumbersSpec = None,
    zero_mean: bool = True,
    normalization: str = "exact",
    norm_ema_decay: jax.typing.ArrayLike = 0.9,
    exact_angle: bool = False,
    step_factors: Sequence[factors_lib.StepFactor] = (),
    eps: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
    r"""Turns every neuron by a controlled angle and keeps its norm fixed (LionAR, RV-AdamW).

    For each neuron :math:`w_k` (see :mod:`warmup_jax.optim.neurons`) with target norm
    :math:`r_k` (its norm when ``init`` was called) and inner direction :math:`u_k`:

    .. math::

        \tilde u_k &= u_k - \operatorname{mean}(u_k) \quad (\texttt{zero\_mean}) \\
        u_k^\perp &= \tilde u_k - \frac{\langle \tilde u_k, w_k\rangle}{\|w_k\|^2} w_k \\
        s_k &= \|u_k^\perp\| \quad\text{or}\quad
            \sqrt{\mathrm{EMA}_\gamma(\|u_k^\perp\|^2) / (1 - \gamma^t)} \\
        w_k' &= w_k - \theta_t\, r_k\, u_k^\perp / s_k, \qquad
        w_k^{new} = r_k\, w_k' / \|w_k'\|

    with angular step :math:`\theta_t = \eta_{r,t} \prod_i f_{i,t}`. The update returned is
    :math:`w^{new} - w`, so ``optax.apply_updates`` lands on the sphere. With exact normalisation
    each neuron turns by exactly :math:`\arctan\theta_t` (by :math:`\theta_t` with
    ``exact_angle=True``, which steps :math:`\tan\theta_t`).

    :math:`\eta_{r,t}` is ``equilibrium(lr_t, weight_decay)`` when ``equilibrium`` is given
    (REQ's mapping from a scheduled learning rate, so :math:`\eta_{r,t} \propto \sqrt{\eta_t}`;
    see :func:`lion_equilibrium_angle`, :func:`adamw_equilibrium_angle`,
    :func:`sgdm_equilibrium_angle`), else ``learning_rate`` *is* :math:`\eta_{r,t}` (given
    directly and scheduled). Which mapping the paper used is unknown ([R]); the recipes default
    to the equilibrium mapping. Weight decay enters only through that mapping: projection
    replaces it.

    Choices and their provenance: per-neuron granularity, ``zero_mean=True``, and the EMA option
    (decay 0.9, bias corrected) follow REQ's code; exact per-step normalisation is the default (a
    reconstruction; docs/methods.md, "Exact or EMA normalisation") because the EMA lets the realised
    angle drift from the target. REQ's wrapper projects and then centres; here the update is centred
    and then projected, so it is exactly tangent even for weights that were not centred (for centred
    weights both orders agree exactly). REQ-compatible use: apply
    :func:`warmup_jax.optim.center_rotational_params` to the parameters once before ``init``.
    Neurons with zero norm, and neurons whose update has almost no tangential part
    (:math:`\|u_k^\perp\| \le 0.01 \|u_k\|`, e.g. a constant sign vector with ``zero_mean``), are
    left unchanged. The new neuron is an affine combination of :math:`w` and :math:`u` with
    coefficients from five per-neuron sums.

    Args:
        inner: direction transform without learning rate or weight decay (e.g.
            ``optax.scale_by_lion(0.9, 0.99)``); it receives the extra arguments.
        learning_rate: scheduled learning rate (equilibrium mapping) or angular step.
        weight_decay: :math:`\lambda` of the equilibrium mapping.
        equilibrium: ``(lr, weight_decay) -> eta_r`` or ``None`` (direct). Under
            ``optax.inject_hyperparams`` list it in ``static_args``.
        dimension_numbers: which axes form a neuron (:data:`neurons.DimensionNumbersSpec`).
        zero_mean: centre the update within each neuron.
        normalization: ``"exact"`` (default) or ``"ema"`` (REQ).
        norm_ema_decay: :math:`\gamma` of the ``"ema"`` normalisation.
        exact_angle: step :math:`\tan\theta` so that the angle is exactly :math:`\theta`.
        step_factors: :class:`warmup_jax.optim.StepFactor` objects (inverse bias correction,
            SNR/RRC), computed from the raw gradient this transform receives.
        eps: added to :math:`s_k` in the ``"ema"`` normalisation.

    Returns:
        An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

    Example (LionAR on the rotational tensors of a Flax NNX model, plain Lion elsewhere)::

        import functools, optax
        from flax import nnx
        import warmup_jax.optim as wo

        lr = 3e-4
        rotational = wo.scale_by_rotational(
            optax.scale_by_lion(0.9, 0.99), lr, weight_decay=1.0,
            equilibrium=functools.partial(wo.lion_equilibrium_angle, b1=0.9, b2=0.99))
        tx = wo.partition({'rotational': rotational,
                           'decay': optax.lion(lr, weight_decay=1.0),
                           'no_decay': optax.lion(lr, weight_decay=0.0)})
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def train_step(model, optimizer, batch):
            grads = nnx.grad(loss_fn)(model, batch)
            optimizer.update(model, grads)
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r} is not one of {_NORMALIZATIONS}")
    if equilibrium is not None and isinstance(weight_decay, (int, float)) and weight_decay <= 0:
        raise ValueError(
            f"weight_decay={weight_decay} must be > 0 with the equilibrium mapping (the "
            "equilibrium angle is sqrt(lr * weight_decay)); pass equilibrium=None to give the "
            "angular step directly"
        )
    if isinstance(norm_ema_decay, (int, float)) and not 0.0 <= norm_ema_decay < 1.0:
        raise ValueError(f"norm_ema_decay={norm_ema_decay} must lie in [0, 1)")
    inner = optax.with_extra_args_support(inner)
    step_factors = tuple(step_factors)
    use_ema = normalization == "ema"

    def init_fn(params):
        axes = neurons.resolve_reduction_axes(params, dimension_numbers)
        leaves, treedef = jax.tree.flatten(params)
        norms = [jnp.sqrt(neurons.neuron_sq_norms(x, ax)) for x, ax in zip(leaves, axes)]
        ema = treedef.unflatten([jnp.zeros_like(r) for r in norms]) if use_ema else ()
        return ScaleByRotationalState(
            count=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
            neuron_norms=treedef.unflatten(norms),
            update_sq_norm_ema=ema,
            factor_states=tuple(f.init(params) for f in step_factors),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("scale_by_rotational needs params: call update(grads, state, params)")
        count = optax.safe_increment(state.count)
        factor_values, factor_states = factors_lib.update_factors(
            step_factors, state.factor_states, updates, params, **extra_args
        )
        direction, inner_state = inner.update(updates, state.inner_state, params, **extra_args)

        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        angle = jnp.asarray(lr if equilibrium is None else equilibrium(lr, weight_decay), jnp.float32)
        leaves_u, treedef = jax.tree.flatten(direction)
        leaves_w = treedef.flatten_up_to(params)
        leaves_r = treedef.flatten_up_to(state.neuron_norms)
        leaves_q = treedef.flatten_up_to(state.update_sq_norm_ema) if use_ema else [None] * len(leaves_u)
        axes = neurons.resolve_reduction_axes(params, dimension_numbers)
        scales = factors_lib.combine_factors(factor_values, direction)

        new_updates, new_q = [], []
        for w, u, r, q, ax, f in zip(leaves_w, leaves_u, leaves_r, leaves_q, axes, scales):
            theta = angle * f
            step = jnp.tan(jnp.minimum(theta, 1.5)) if exact_angle else theta
            upd, q = _rotate(
                w, u, r, q, ax, step, count,
                zero_mean=zero_mean, normalization=normalization, ema_decay=norm_ema_decay, eps=eps,
            )  # fmt: skip
            new_updates.append(upd.astype(w.dtype))
            new_q.append(q)
        return treedef.unflatten(new_updates), ScaleByRotationalState(
            count=count,
            inner_state=inner_state,
            neuron_norms=state.neuron_norms,
            update_sq_norm_ema=treedef.unflatten(new_q) if use_ema else (),
            factor_states=tuple(factor_states),
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
