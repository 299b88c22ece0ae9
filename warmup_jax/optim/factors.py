r"""Step-size factors: inverse bias correction and the SNR-based RRC scaling.

Both act on the *size* of a step, not on its direction. For an additive optimizer (AdamW, LionA)
a factor can multiply the update; for a rotational optimizer it must multiply the angular step
:math:`\eta_r` inside :func:`warmup_jax.optim.scale_by_rotational`, because the per-neuron
normalisation there would undo any earlier rescaling. A :class:`StepFactor` is therefore a small
object with ``init``/``update`` like a ``GradientTransformation``, but its ``update`` returns a
factor (a scalar, or a tree of per-tensor scalars like the gradient) instead of updates. It sees the
*raw* gradient the enclosing transform receives, and the optax extra arguments.

* :func:`inverse_bias_correction_factor` and :func:`scale_by_inverse_bias_correction`:
  :math:`f_{IBC}(t) = 1 - \beta^t` (or :math:`\sqrt{1 - \beta^{2t}}`).
* :func:`snr_rrc_factor`: :math:`f_{RRC} = 1/\sqrt{1 + B\varphi}` from the micro-batch SNR.
* :func:`scale_by_step_factors`: multiplies the output of an inner (additive) transform.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from warmup_jax.optim import snr as snr_lib

_IBC_MODES = ("linear", "sqrt")


class StepFactor(NamedTuple):
    """A stateful step-size factor.

    Attributes:
        init: ``params -> state``.
        update: ``(grads, state, params=None, **extra_args) -> (factor, new_state)``; ``factor``
            is a scalar array or a tree like ``grads`` with scalar leaves.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


class ScaleByCountState(NamedTuple):
    """State holding only the step count (int32)."""

    count: jax.Array


def _check_unit_interval(name: str, value: Any, *, closed_high: bool = False) -> None:
    # Only Python numbers are checked: under optax.inject_hyperparams values are traced.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = 0.0 <= value <= 1.0 if closed_high else 0.0 <= value < 1.0
        if not ok:
            bound = "[0, 1]" if closed_high else "[0, 1)"
            raise ValueError(f"{name}={value} must lie in {bound}")


def one_minus_power(beta: jax.typing.ArrayLike, count: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`1 - \beta^t` in float32, accurate to a few float32 roundings for :math:`\beta \to 1`.

    Computed as :math:`-\operatorname{expm1}(t \log\beta)`, which has no cancellation. For a Python
    ``beta`` the constant :math:`\log\beta` is taken in float64 (float32 cannot even represent
    :math:`\beta = 0.9999` to better than :math:`6\cdot 10^{-8}`, a relative error of
    :math:`6\cdot 10^{-4}` in :math:`1 - \beta`); a traced ``beta`` (under
    ``optax.inject_hyperparams``) is already rounded to float32, so its :math:`\log` is float32.
    Relative error :math:`\le 10^{-6}` for :math:`\beta \le 0.9999`, :math:`t \le 10^5`.
    """
    t = jnp.asarray(count, jnp.float32)
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        log_beta = jnp.float32(math.log(beta)) if beta > 0 else jnp.float32(-jnp.inf)
    else:
        beta = jnp.asarray(beta, jnp.float32)
        log_beta = jnp.log1p(-(1.0 - beta))
    return -jnp.expm1(t * log_beta)


def inverse_bias_correction(
    count: jax.typing.ArrayLike,
    beta: jax.typing.ArrayLike,
    mode: str = "linear",
) -> jax.Array:
    r"""The inverse bias correction :math:`f_{IBC}(t)` at step ``count`` (:math:`t \ge 1`).

    ``"linear"`` (default): :math:`1 - \beta^t`; ``"sqrt"``: :math:`\sqrt{1 - \beta^{2t}}`, the norm
    growth of an uncorrected EMA of uncorrelated gradients. Both are reconstructions (the paper
    names the method, not its formula; see docs/methods.md, "Inverse bias correction"). A
    sign-normalised direction does not see the size of the momentum, so the correction can only act
    on the step size: multiplying by :math:`1-\beta^t` is the inverse of Adam's division by it, a
    ramp tied to how long the momentum takes to fill (about 100-200 steps for :math:`\beta = 0.98`).
    See :func:`one_minus_power` for the precision.
    """
    if mode == "linear":
        return one_minus_power(beta, count)
    if mode == "sqrt":
        return jnp.sqrt(one_minus_power(beta, 2 * jnp.asarray(count, jnp.int32)))
    raise ValueError(f"inverse bias correction mode={mode!r} is not one of {_IBC_MODES}")


def inverse_bias_correction_factor(beta: jax.typing.ArrayLike = 0.98, mode: str = "linear") -> StepFactor:
    """:func:`inverse_bias_correction` as a :class:`StepFactor` (scalar factor)."""
    _check_unit_interval("beta", beta)
    if mode not in _IBC_MODES:
        raise ValueError(f"mode={mode!r} is not one of {_IBC_MODES}")

    def init_fn(params):
        del params
        return ScaleByCountState(count=jnp.zeros([], jnp.int32))

    def update_fn(grads, state, params=None, **extra_args):
        del grads, params, extra_args
        count = optax.safe_increment(state.count)
        return inverse_bias_correction(count, beta, mode), ScaleByCountState(count=count)

    return StepFactor(init_fn, update_fn)


def scale_by_inverse_bias_correction(
    beta: jax.typing.ArrayLike = 0.98,
    mode: str = "linear",
) -> optax.GradientTransformation:
    r"""Multiplies updates by the inverse bias correction :math:`f_{IBC}(t)`.

    .. math::

        u_t \leftarrow f_{IBC}(t)\, u_t, \qquad f_{IBC}(t) = 1 - \beta^t
        \;\;(\text{or } \sqrt{1 - \beta^{2t}} \text{ with } \texttt{mode="sqrt"})

    The formula is a reconstruction ([R]); see :func:`inverse_bias_correction`. For additive
    optimizers (LionA); rotational ones take :func:`inverse_bias_correction_factor` instead.

    Args:
        beta: the momentum coefficient whose fill-up the correction follows.
        mode: ``"linear"`` or ``"sqrt"``.

    Returns:
        An ``optax.GradientTransformation``.

    Example:
        >>> import optax, warmup_jax.optim as wo
        >>> tx = optax.chain(wo.scale_by_lion_nesterov(0.98), wo.scale_to_fixed_norm(),
        ...                  wo.scale_by_inverse_bias_correction(0.98),
        ...                  optax.scale_by_learning_rate(1e-3))
    """
    factor = inverse_bias_correction_factor(beta, mode)

    def update_fn(updates, state, params=None):
        f, state = factor.update(updates, state, params)
        updates = jax.tree.map(lambda u: (u * f).astype(u.dtype), updates)
        return updates, state

    return optax.GradientTransformation(factor.init, update_fn)


def snr_rrc_factor(
    *,
    per_tensor: bool = True,
    form: str = "sqrt",
    gain_ratio: float | None = None,
    ema_decay: jax.typing.ArrayLike = 0.9,
    ema_start: str = "zero",
    clamp: tuple[float, float] | None = (1e-3, 1.0),
) -> StepFactor:
    r"""The RRC correction :math:`f(\varphi, B)` from the micro-batch SNR, as a :class:`StepFactor`.

    Each update reads ``micro_batch_stats`` (a :class:`warmup_jax.optim.snr.MicroBatchStats`) from
    the optax extra arguments, estimates noise :math:`\hat S` and signal
    :math:`\widehat{\|G\|^2}` per tensor (or summed over all tensors the transform sees, when
    ``per_tensor=False``) from those statistics and the mean gradient it receives, smooths both
    with an EMA, and returns :math:`f = 1/\sqrt{1 + B\varphi}` with :math:`\varphi` the smoothed
    ratio and :math:`B = K b` (see :func:`warmup_jax.optim.snr.rrc_factor` for the alternative
    ``form="gain"``). The form of the paper's Eq. (9) and the estimator are reconstructions ([R]).

    With :math:`K = 1` micro-batch the estimator is undefined: the EMA state is left unchanged
    (``count`` does not grow) and, while no estimate exists, :math:`f = 1`.

    The gradient received must be the plain mean of the :math:`K` micro-batch gradients. If the
    trainer clips it by a global factor :math:`c` before this transform, it must also pass
    ``rescale_micro_batch_stats(stats, c)``, or :math:`\varphi` is biased low.

    Args:
        per_tensor: one :math:`\varphi` per tensor (default) or one for all tensors.
        form: ``"sqrt"`` (default) or ``"gain"``.
        gain_ratio: :math:`\rho` for ``form="gain"``.
        ema_decay: EMA decay of the noise and signal estimates.
        ema_start: ``"zero"`` (default; zero-initialised EMAs, whose ratio is that of the
            bias-corrected EMAs) or ``"first"`` (the first estimate replaces the zero start); see
            :func:`warmup_jax.optim.snr.update_snr_state`.
        clamp: ``(low, high)`` bounds of :math:`f`, or ``None``.

    Returns:
        A :class:`StepFactor` whose state is a :class:`warmup_jax.optim.snr.SNRState`.

    Example (in a Flax NNX step; the trainer accumulated ``K`` micro-batch gradients)::

        tx = wo.scale_by_rotational(optax.scale_by_lion(), 3e-4, weight_decay=1.0,
                                    equilibrium=wo.lion_equilibrium_angle,
                                    step_factors=[wo.snr_rrc_factor()])
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        ...
        stats = wo.MicroBatchStats(sum_sq_norms, num_micro_batches=K, micro_batch_size=b)
        optimizer.update(model, mean_grads, micro_batch_stats=stats)
    """
    _check_unit_interval("ema_decay", ema_decay)
    if ema_start not in snr_lib.EMA_STARTS:
        raise ValueError(f"ema_start={ema_start!r} is not one of {snr_lib.EMA_STARTS}")
    if form not in ("sqrt", "gain"):
        raise ValueError(f"form={form!r} is not one of 'sqrt', 'gain'")
    if form == "gain" and gain_ratio is None:
        raise ValueError("form='gain' needs gain_ratio (rho > 1)")
    if clamp is not None:
        low, high = clamp
        if not 0.0 <= low <= high:
            raise ValueError(f"clamp={clamp} must satisfy 0 <= low <= high")

    def init_fn(params):
        return snr_lib.init_snr_state(params, per_tensor=per_tensor)

    def update_fn(grads, state, params=None, **extra_args):
        del params
        stats = extra_args.get("micro_batch_stats")
        if stats is None:
            raise ValueError(
                "The SNR/RRC step factor needs the micro-batch gradient statistics: call "
                "tx.update(grads, state, params, micro_batch_stats=MicroBatchStats(...)) with "
                "warmup_jax.optim.snr.MicroBatchStats (extra arguments received: "
                f"{sorted(extra_args)})."
            )
        if per_tensor:
            noise, signal = snr_lib.per_tensor_noise_and_signal(grads, stats)
        else:
            noise, signal = snr_lib.global_noise_and_signal(grads, stats)
        valid = snr_lib.is_valid(stats)
        state = snr_lib.update_snr_state(state, noise, signal, decay=ema_decay, valid=valid, start=ema_start)
        batch = jnp.asarray(stats.num_micro_batches, jnp.float32) * jnp.asarray(stats.micro_batch_size, jnp.float32)

        def factor(s, n):
            f = snr_lib.rrc_factor(snr_lib.phi(s, n), batch, form=form, gain_ratio=gain_ratio, clamp=clamp)
            return jnp.where(state.count > 0, f, 1.0)

        return jax.tree.map(factor, state.signal, state.noise), state

    return StepFactor(init_fn, update_fn)


class ScaleByStepFactorsState(NamedTuple):
    """State of :func:`scale_by_step_factors`."""

    inner_state: Any
    factor_states: tuple


def _is_scalar(x: Any) -> bool:
    if isinstance(x, (int, float)):
        return True
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and x.ndim == 0


def update_factors(
    factors: Sequence[StepFactor], states: Sequence[Any], grads: Any, params: Any, **extra_args: Any
) -> tuple[list[Any], tuple]:
    """Every factor's ``update``: ``(values, new states)``, in order."""
    values, new_states = [], []
    for f, s in zip(factors, states):
        value, s = f.update(grads, s, params, **extra_args)
        values.append(value)
        new_states.append(s)
    return values, tuple(new_states)


def combine_factors(factors: Sequence[Any], updates: Any) -> list[Any]:
    """Multiplies scalar / per-tensor factors into one factor per leaf of ``updates``."""
    leaves, treedef = jax.tree.flatten(updates)
    total = [jnp.ones([], jnp.float32)] * len(leaves)
    for f in factors:
        if _is_scalar(f):
            total = [t * f for t in total]
        else:
            f_leaves = treedef.flatten_up_to(f)
            total = [t * fl for t, fl in zip(total, f_leaves)]
    return total


def scale_by_step_factors(
    inner: optax.GradientTransformation,
    factors: Sequence[StepFactor],
) -> optax.GradientTransformationExtraArgs:
    r"""Runs ``inner`` and multiplies its output by the product of step factors.

    .. math::

        u_t = \Big(\prod_i f_{i,t}\Big)\,\mathrm{inner}(g_t)

    The factors are computed from the same raw gradient :math:`g_t` that ``inner`` receives, so the
    SNR estimate of :func:`snr_rrc_factor` sees the mean gradient even when ``inner`` transforms
    it. Use it for additive optimizers; for rotational ones pass the factors to
    :func:`warmup_jax.optim.scale_by_rotational`.

    Args:
        inner: the wrapped transformation (its output should be additive updates).
        factors: :class:`StepFactor` objects.

    Returns:
        An ``optax.GradientTransformationExtraArgs`` (forwarding extra arguments to ``inner``).

    Example:
        >>> import optax, warmup_jax.optim as wo
        >>> tx = wo.scale_by_step_factors(optax.adamw(1e-3), [wo.snr_rrc_factor()])
    """
    inner = optax.with_extra_args_support(inner)
    factors = tuple(factors)

    def init_fn(params):
        return ScaleByStepFactorsState(
            inner_state=inner.init(params), factor_states=tuple(f.init(params) for f in factors)
        )

    def update_fn(updates, state, params=None, **extra_args):
        values, factor_states = update_factors(factors, state.factor_states, updates, params, **extra_args)
        new_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        leaves, treedef = jax.tree.flatten(new_updates)
        scales = combine_factors(values, new_updates)
        scaled = [(u * s).astype(u.dtype) for u, s in zip(leaves, scales)]
        return treedef.unflatten(scaled), ScaleByStepFactorsState(inner_state, tuple(factor_states))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
