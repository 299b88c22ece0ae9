r"""Catapult-based choice of the initial learning rate (Kalra & Barkeshli, 2024).

At initialisation the largest stable learning rate is about :math:`\eta_c = 2/\lambda^H_0` (the
initial, for Adam preconditioned, sharpness). Instead of computing the sharpness, take one trial
step from the *same* initial parameters on a fixed batch with a doubling learning rate until the
loss rises (a "catapult"); that learning rate is :math:`\eta_c`, and warmup can start there
(:func:`warmup_jax.optim.polynomial_warmup_schedule`). The trial steps are discarded. The search
procedure is reconstructed from the paper's description (docs/methods.md, "Catapult-chosen initial
learning rate"); the optional bisection refines the bracket the doubling finds.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax


def find_catapult_lr(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    optimizer: Callable[[jax.Array], optax.GradientTransformation],
    *,
    initial_lr: float = 1e-6,
    max_doublings: int = 40,
    num_bisection_steps: int = 0,
    rise_tolerance: float = 0.0,
) -> float:
    r"""Smallest learning rate (on a doubling grid) whose first step from ``params`` raises the
    loss.

    For gradient descent on a quadratic with top curvature :math:`\lambda_{max}` the loss rises
    exactly when :math:`\eta > 2/\lambda_{max}`; the doubling returns a value in
    :math:`(\eta_c, 2\eta_c]`, and ``num_bisection_steps`` halves that bracket each.

    Args:
        loss_fn: ``params -> scalar loss`` on a fixed batch.
        params: initial parameters (not modified).
        optimizer: ``lr -> GradientTransformation``, e.g. ``lambda lr: optax.sgd(lr)`` or
            ``lambda lr: warmup_jax.optim.adamw(lr)``; called with a traced ``lr`` so
            that the trial step compiles once.
        initial_lr: first trial learning rate; must not already raise the loss.
        max_doublings: give up after this many doublings.
        num_bisection_steps: bisection steps inside the final bracket (0: plain doubling).
        rise_tolerance: the loss "rises" if it grows by more than this fraction of ``|loss|``.

    Returns:
        :math:`\eta_c` as a Python float (the smallest tried learning rate whose step raised the
        loss; NaN or inf counts as a rise).

    Raises:
        ValueError: if ``initial_lr`` already raises the loss or no rise is found.

    Example::

        graphdef, params = nnx.split(model, nnx.Param)
        loss = lambda p: loss_fn(nnx.merge(graphdef, p), batch)
        eta_c = find_catapult_lr(loss, params, lambda lr: optax.adam(lr))
        schedule = polynomial_warmup_schedule(min(eta_c, peak), peak, warmup_steps)
    """
    if initial_lr <= 0:
        raise ValueError(f"initial_lr={initial_lr} must be positive")
    grad_fn = jax.grad(loss_fn)

    # The parameters are an argument, not a constant folded into the compiled trial step.
    @jax.jit
    def trial(params, lr):
        tx = optimizer(lr)
        updates, _ = tx.update(grad_fn(params), tx.init(params), params)
        return loss_fn(optax.apply_updates(params, updates))

    loss0 = float(jax.jit(loss_fn)(params))
    threshold = loss0 + rise_tolerance * abs(loss0)

    def rises(lr: float) -> bool:
        loss = float(trial(params, jnp.asarray(lr, jnp.float32)))
        return not math.isfinite(loss) or loss > threshold

    if rises(initial_lr):
        raise ValueError(f"the loss already rises at initial_lr={initial_lr}; start from a smaller value")
    low, high = initial_lr, None
    for _ in range(max_doublings):
        lr = 2.0 * low
        if rises(lr):
            high = lr
            break
        low = lr
    if high is None:
        raise ValueError(f"no loss increase up to lr={low} after {max_doublings} doublings from {initial_lr}")
    for _ in range(num_bisection_steps):
        mid = 0.5 * (low + high)
        if rises(mid):
            high = mid
        else:
            low = mid
    return high
