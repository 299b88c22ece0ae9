r"""Lion-style sign directions: Nesterov momentum with one coefficient, and exact :math:`\ell_2` update
control (LionA). The plain Lion direction is ``optax.scale_by_lion``.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


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
    with :math:`\beta_1 = \beta^2` and :math:`\beta_2 = \beta`; the state is
    ``optax.ScaleByLionState``. The paper's "high momentum" setting is :math:`\beta = 0.98`.

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
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params):
        return optax.ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params, dtype=mu_dtype))

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, beta, 1)
        directions = jax.tree.map(lambda g, m: jnp.sign(beta * m.astype(g.dtype) + (1.0 - beta) * g), updates, mu)
        return directions, optax.ScaleByLionState(
            count=optax.safe_increment(state.count), mu=optax.tree.cast(mu, mu_dtype)
        )

    return optax.GradientTransformation(init_fn, update_fn)


def adamw_matched_kappa(b1: float = 0.9) -> float:
    r""":math:`\kappa = \sqrt{(1-\beta_1)/(1+\beta_1)}`: AdamW's steady-state update RMS.

    With this :math:`\kappa`, :func:`scale_to_fixed_norm` gives sign updates the RMS AdamW has for
    uncorrelated gradients, so AdamW learning rates can be reused (a reconstruction option; see
    docs/methods.md, "LionA").
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
