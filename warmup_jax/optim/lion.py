r"""Lion-style sign directions: Nesterov momentum and exact :math:`\ell_2` update control (LionA).

Both reuse ``optax.scale_by_lion`` for the direction itself.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def fast_sign(x: jax.Array) -> jax.Array:
    """``sign(x)`` as ``x / max(|x|, tiny)``: exactly -1, 0 or +1 for finite normal inputs.

    Differs from ``jnp.sign`` only for subnormal inputs (a fraction instead of +-1) and
    infinities (NaN). Kept for compatibility; the Lion directions here use ``jnp.sign``, which
    XLA:CPU (jax 0.10) fuses into single reductions as well as into the multi-output reduction of
    :func:`warmup_jax.optim.scale_by_rotational`, where this division form is written to a
    full-size temporary first.
    """
    tiny = jnp.finfo(x.dtype).tiny
    return x / jnp.maximum(jnp.abs(x), tiny)


def scale_by_fused_lion(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    r"""``optax.scale_by_lion`` with the momentum updated first (same maths, faster on CPU).

    .. math::

        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t, \qquad
        u_t = \operatorname{sign}\Big(\frac{\beta_1}{\beta_2} m_t
            + \big(1 - \beta_1 - \tfrac{\beta_1}{\beta_2}(1-\beta_2)\big) g_t\Big),

    which equals Lion's :math:`\operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t)`. Reading
    only the *new* momentum lets XLA update it in place; optax's form reads the old one after the
    new one is written, and XLA:CPU then copies every momentum buffer each step. Rounding differs
    from ``optax.scale_by_lion`` (a sign can differ where :math:`c_t` is within rounding of 0).
    With ``b1 = beta**2, b2 = beta`` the argument is exactly the Nesterov form
    :math:`\beta m_t + (1-\beta) g_t`. Requires ``b2 > 0``. The state is
    ``optax.ScaleByLionState``, interchangeable with optax's.

    Args:
        b1: interpolation between momentum and gradient.
        b2: momentum decay (> 0).
        mu_dtype: optional dtype of the momentum.

    Returns:
        An ``optax.GradientTransformation`` producing the sign direction (no learning rate).

    Example:
        >>> import optax, warmup_jax.optim as wo
        >>> lion = optax.chain(wo.scale_by_fused_lion(0.9, 0.99), optax.add_decayed_weights(1.0),
        ...                    optax.scale_by_learning_rate(3e-4))
    """
    if isinstance(b2, (int, float)) and not 0.0 < b2 < 1.0:
        raise ValueError(f"b2={b2} must lie in (0, 1) (use optax.scale_by_lion for b2 = 0)")
    alpha = b1 / b2
    return _momentum_first_sign(b2, alpha, 1.0 - b1 - alpha * (1.0 - b2), mu_dtype)


def _momentum_first_sign(
    b2: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike,
    mu_dtype: Any | None,
) -> optax.GradientTransformation:
    """``m = b2 m + (1 - b2) g`` in place, then ``u = sign(alpha m + gamma g)``."""
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params):
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        return optax.ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=mu)

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b2, 1)

        def direction(g, m):
            # jnp.sign, not fast_sign: XLA fuses a sign into a multi-output (variadic) reduction
            # such as scale_by_rotational's, but not the division of fast_sign, which it then
            # writes to a full-size temporary first.
            return jnp.sign(alpha * m.astype(g.dtype) + gamma * g).astype(g.dtype)

        directions = jax.tree.map(direction, updates, mu)
        mu = optax.tree.cast(mu, mu_dtype)
        return directions, optax.ScaleByLionState(count=optax.safe_increment(state.count), mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_lion_nesterov(
    beta: jax.typing.ArrayLike = 0.98,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    r"""Sign of a Nesterov momentum with a single coefficient :math:`\beta`.

    The EMA form of Nesterov momentum (a reconstruction of the paper's variant, [R]),

    .. math::

        m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad
        u_t = \operatorname{sign}\big(\beta m_t + (1-\beta) g_t\big),

    expands to :math:`u_t = \operatorname{sign}(\beta^2 m_{t-1} + (1-\beta^2) g_t)`, which is Lion
    with :math:`\beta_1 = \beta^2` and :math:`\beta_2 = \beta`. It is implemented like
    :func:`scale_by_fused_lion` ``(b1=beta**2, b2=beta)`` but evaluates the first form with its
    exact coefficients; the state is ``optax.ScaleByLionState``. The paper's "high momentum"
    setting is :math:`\beta = 0.98`.

    Args:
        beta: momentum coefficient.
        mu_dtype: optional dtype of the momentum buffer.

    Returns:
        An ``optax.GradientTransformation`` producing :math:`u_t` (no learning rate).

    Example (the direction of LionAR with high momentum; see :func:`scale_by_rotational`)::

        tx = wo.scale_by_rotational(
            wo.scale_by_lion_nesterov(0.98), 3e-4, weight_decay=1.0,
            equilibrium=functools.partial(wo.lion_equilibrium_angle, b1=0.98**2, b2=0.98),
            step_factors=[wo.inverse_bias_correction_factor(0.98)])
    """
    if isinstance(beta, (int, float)) and not 0.0 < beta < 1.0:
        raise ValueError(f"beta={beta} must lie in (0, 1)")
    return _momentum_first_sign(beta, beta, 1.0 - beta, mu_dtype)


def adamw_matched_kappa(b1: float = 0.9) -> float:
    r""":math:`\kappa = \sqrt{(1-\beta_1)/(1+\beta_1)}`: AdamW's steady-state update RMS.

    With this :math:`\kappa`, :func:`scale_to_fixed_norm` gives sign updates the RMS AdamW has for
    uncorrelated gradients, so AdamW learning rates can be reused ([R] option of METHODS.md §2.6).
    """
    return math.sqrt((1.0 - b1) / (1.0 + b1))


class ScaleToFixedNormState(NamedTuple):
    """Stateless; kept as a named type so the transform shows in state trees."""


def scale_to_fixed_norm(kappa: jax.typing.ArrayLike = 1.0) -> optax.GradientTransformation:
    r"""Rescales each tensor's update to the exact norm :math:`\kappa\sqrt{n}` (LionA).

    .. math::

        u \leftarrow \kappa \sqrt{n}\, \frac{u}{\|u\|_2}, \qquad n = \text{numel}(u)

    (and :math:`u = 0` stays 0). A sign update already has norm :math:`\sqrt n` except where the
    momentum is exactly zero (embedding rows of unseen tokens, say); this makes the :math:`\ell_2`
    update size independent of the gradient entirely. The per-tensor granularity and
    :math:`\kappa = 1` are reconstructions of the paper's one-line definition of LionA ([R]);
    :func:`adamw_matched_kappa` gives the alternative :math:`\kappa`.

    Args:
        kappa: the update RMS; the norm is :math:`\kappa\sqrt{n}`.

    Returns:
        An ``optax.GradientTransformation`` (stateless).

    Example:
        >>> import optax, warmup_jax.optim as wo
        >>> lion_a = optax.chain(optax.scale_by_lion(0.9, 0.99), wo.scale_to_fixed_norm(),
        ...                      optax.add_decayed_weights(1.0), optax.scale_by_learning_rate(3e-4))
    """

    def init_fn(params):
        del params
        return ScaleToFixedNormState()

    def update_fn(updates, state, params=None):
        del params

        def rescale(u):
            u32 = u.astype(jnp.promote_types(u.dtype, jnp.float32))
            norm = jnp.sqrt(jnp.sum(u32 * u32))
            # sqrt(n) in the same precision as the norm, so a full sign vector keeps its exact
            # entries (scale 1) when kappa = 1.
            target = jnp.asarray(kappa, u32.dtype) * jnp.sqrt(jnp.asarray(u.size, u32.dtype))
            scale = jnp.where(norm > 0, target / jnp.where(norm > 0, norm, 1.0), 0.0)
            return (u32 * scale).astype(u.dtype)

        return jax.tree.map(rescale, updates), state

    return optax.GradientTransformation(init_fn, update_fn)
