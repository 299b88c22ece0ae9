r"""GI-Adam (Kalra & Barkeshli, 2024): Adam whose second moment starts at one gradient squared.

.. math::

    v_0 = g_0 \odot g_0, \qquad m_0 = 0,

then standard Adam with *both* bias corrections. If the gradient stays near :math:`g_0`,
:math:`\hat v_t \approx g_0^2 / (1-\beta_2^t)`, so the step carries an extra factor of about
:math:`\sqrt{1-\beta_2^t}`: a built-in warmup with time constant :math:`1/(1-\beta_2)` steps.
The transformation is ``optax.scale_by_adam``; only the state initialisation differs, done by
:func:`gi_adam_init` with a gradient computed at initialisation on a separate batch.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from warmup_jax.optim import _tree


def gi_adam_init(
    optimizer: optax.GradientTransformation,
    params: Any,
    initial_gradient: Any,
) -> optax.OptState:
    """``optimizer.init(params)`` with the second moment of every Adam state set to ``g0**2``.

    Works for any optimizer containing ``optax.scale_by_adam`` (also inside ``optax.chain``,
    ``optax.partition``, ``optax.inject_hyperparams`` or ``optax.MultiSteps``), e.g. the
    ``gi_adam`` recipe.

    Args:
        optimizer: the optimizer.
        params: the initial parameters.
        initial_gradient: one gradient at ``params`` (a tree like ``params``, matched by path).

    Returns:
        The optimizer state, to use instead of ``optimizer.init(params)``.

    Example::

        tx = warmup_jax.optim.gi_adam(learning_rate=6e-4)
        g0 = jax.grad(loss_fn)(params, first_batch)
        opt_state = warmup_jax.optim.gi_adam_init(tx, params, g0)
    """
    state = optimizer.init(params)
    found = []

    def replace(node):
        if not isinstance(node, optax.ScaleByAdamState):
            return node
        found.append(True)
        grads = _tree.align_leaves(node.nu, initial_gradient, what="initial_gradient")
        nu_leaves, treedef = jax.tree.flatten(node.nu)
        nu = [jnp.square(jnp.asarray(g, jnp.float32)).astype(v.dtype) for g, v in zip(grads, nu_leaves)]
        return node._replace(nu=treedef.unflatten(nu))

    state = jax.tree.map(replace, state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
    if not found:
        raise ValueError("gi_adam_init: the optimizer state holds no optax.ScaleByAdamState")
    return state
