r"""A bound on each matrix's step relative to the matrix: Qi et al.'s spectral criterion (AdamW²).

Qi et al. (*Taming Transformer Without Using Learning Rate Warmup*, ICLR 2025) trace the crashes of
warmup-free Transformer training to the top singular value of :math:`W_q^\top W_k` growing in a few
steps, and bound the learning rate so that no step can move a weight matrix's top singular value by
more than a fixed fraction of it. By Weyl's inequality
:math:`|\sigma_1(W + \Delta) - \sigma_1(W)| \le \sigma_1(\Delta)`, so a step :math:`\Delta` with

.. math::

    \sigma_1(\Delta_t) \le \tau\, \sigma_1(W_{t-1})

changes :math:`\sigma_1(W)` by at most a factor :math:`1 \pm \tau`. :func:`scale_by_spectral_bound`
enforces this on the update it is given: a matrix whose step exceeds the bound is scaled down to it,
any other passes unchanged.

Reconstruction choices (the paper's own code was not available to us):

* **What is bounded.** The transform acts on the final step (place it after
  ``optax.scale_by_learning_rate``), so the bound covers the whole step including decoupled weight
  decay: :math:`\eta_t \le \tau\,\sigma_1(W)/\sigma_1(u + \lambda W)` where the paper writes
  :math:`\sigma_1(u)`. The two differ by the decay's share of the step (:math:`\lambda\sigma_1(W)`
  against :math:`\sigma_1(u)`, well under 1 % in GPT training).
* **Which tensors.** Every tensor with at least two axes; its last two axes are the matrix and any
  leading axes index separate matrices (stacked, scanned layers), each bounded on its own. Vectors
  (biases, LayerNorm gains) pass unchanged. Wrap the transform in ``optax.masked`` to bound fewer.
* **The threshold.** :math:`\tau = 0.1` by default: with AdamW at GPT learning rates the bound binds
  in the first steps, where the updates are nearly rank one and large against the initial weights,
  and rarely after; a hyperparameter, not a value taken from the paper.
* **Power iteration.** :math:`\sigma_1` of the weight and of the update are estimated with
  ``power_iterations`` steps of power iteration on :math:`A^\top A` per training step, each started
  from the vector the last step ended with (kept in the state). The weights change little per step,
  so their estimate converges over the first steps; the update's top direction persists because of
  the momentum. Power iteration never overestimates :math:`\sigma_1`, so an unconverged update
  estimate lets a step exceed the bound by the estimate's shortfall; the first step is started from
  ``init_iterations`` (default 20) of power iteration on the initial weights. A matrix whose weight is
  exactly zero (a zero-initialised projection) is not bounded, or it could never move.

Cost: per matrix of shape ``(m, n)`` and power iteration, two matrix-vector products, i.e.
:math:`O(mn)` against the training step's :math:`O(BTmn)`; the state is one vector of length
``n`` per matrix for the weight and one for the update, and the last scale applied.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from warmup_jax.optim import _tree


class ScaleBySpectralBoundState(NamedTuple):
    """Per tensor: the power-iteration vectors and the last scale applied (empty for vectors).

    ``weight_vectors``/``update_vectors`` hold, for each matrix, the current estimate of the top
    right singular vector of the weight and of the step (shape ``leading + (n,)``); ``scale`` the
    factor the last step was multiplied by (shape ``leading``; 1 where the bound did not bind).
    Tensors with fewer than two axes hold ``optax.MaskedNode()`` (no leaves).
    """

    weight_vectors: Any
    update_vectors: Any
    scale: Any


def _is_matrix(x: jax.Array) -> bool:
    return x.ndim >= 2


def _empty() -> optax.MaskedNode:
    # A node without leaves (not a zero-size array, which checkpoint libraries refuse to save).
    return optax.MaskedNode()


def _times(a: jax.Array, v: jax.Array) -> jax.Array:
    """``A v`` for stacked matrices, as a broadcast product and a sum: the result keeps the
    sharding of ``A``'s row axis (a contraction over a sharded axis would have to be told one)."""
    return jnp.sum(a * v[..., None, :], axis=-1)


def _transpose_times(a: jax.Array, u: jax.Array) -> jax.Array:
    """``A^T u``, likewise; the result is sharded like ``A``'s column axis."""
    return jnp.sum(a * u[..., :, None], axis=-2)


def top_singular_value(
    matrix: jax.Array, vector: jax.Array, iterations: int | jax.Array = 1, eps: float = 1e-30
) -> tuple[jax.Array, jax.Array]:
    r"""Power-iteration estimate of the top singular value of each matrix in ``matrix``.

    Args:
        matrix: ``(..., m, n)``; leading axes index separate matrices.
        vector: ``(..., n)``, the starting estimate of the top right singular vector (any
            non-zero vector; the last call's result to continue iterating).
        iterations: power-iteration steps, at least 1 (each one product with :math:`A` and one
            with :math:`A^\top`); may be traced.
        eps: a squared norm below this leaves the vector unchanged (a zero matrix).

    Returns:
        ``(sigma, vector)``: the estimate :math:`\|A v\|` (shape ``...``, float32, never above the
        true :math:`\sigma_1`) and the unit vector it was computed with, sharded like the
        matrix's last axis.
    """
    a = matrix.astype(jnp.promote_types(matrix.dtype, jnp.float32))

    def step(v: jax.Array) -> jax.Array:
        x = _transpose_times(a, _times(a, v))
        sq = jnp.sum(x * x, axis=-1, keepdims=True)
        return jnp.where(sq > eps, x * jax.lax.rsqrt(jnp.maximum(sq, eps)), v)

    # The first step is written out so that the loop's carry has the sharding of the result.
    v = step(vector.astype(a.dtype))
    if isinstance(iterations, int):
        for _ in range(iterations - 1):
            v = step(v)
    else:
        v = jax.lax.fori_loop(1, iterations, lambda _, v: step(v), v)
    sigma = jnp.linalg.norm(_times(a, v), axis=-1)
    return sigma.astype(jnp.float32), v.astype(jnp.float32)


def scale_by_spectral_bound(
    threshold: jax.typing.ArrayLike = 0.1,
    *,
    power_iterations: int = 2,
    init_iterations: int = 20,
    seed: int = 0,
) -> optax.GradientTransformation:
    r"""Scales each matrix's step down to :math:`\sigma_1(\Delta) \le \tau\,\sigma_1(W)` where it exceeds it.

    .. math::

        \Delta \leftarrow \Delta \cdot \min\!\Big(1,\ \frac{\tau\,\hat\sigma_1(W_{t-1})}{\hat\sigma_1(\Delta)}\Big)

    with :math:`\hat\sigma_1` the power-iteration estimates described in the module docstring.
    Place it last in the chain (after the learning rate), since it bounds the step itself.

    Args:
        threshold: :math:`\tau > 0`, the largest step as a fraction of the matrix's top singular
            value (a float or a traced scalar under ``optax.inject_hyperparams``).
        power_iterations: power-iteration steps per training step and matrix (≥ 1).
        init_iterations: power-iteration steps on the initial weights at ``init`` (≥ 1).
        seed: seed of the random starting vectors.

    Returns:
        An ``optax.GradientTransformation`` whose ``update`` needs ``params``; its state is a
        :class:`ScaleBySpectralBoundState`.

    Example (AdamW², the paper's optimizer; :func:`warmup_jax.optim.adamw_spectral_bound` is this chain)::

        tx = optax.chain(optax.adamw(1e-3, b2=0.95, weight_decay=0.1), wo.scale_by_spectral_bound(0.1))
    """
    if isinstance(threshold, (str, bytes)) or (
        isinstance(threshold, (int, float)) and not (threshold > 0 and threshold < float("inf"))
    ):
        raise ValueError(f"threshold={threshold!r} must be a finite number > 0")
    for name, value in (("power_iterations", power_iterations), ("init_iterations", init_iterations)):
        if isinstance(value, (bool, float, str, bytes)) or (isinstance(value, int) and value < 1):
            raise ValueError(f"{name}={value!r} must be an integer >= 1")

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        weight_vectors, update_vectors, scales = [], [], []
        for p in leaves:
            if not _is_matrix(p):
                weight_vectors.append(_empty())
                update_vectors.append(_empty())
                scales.append(_empty())
                continue
            # The same start for every matrix of a width, so that stacked and separate layers (and
            # any order of the parameters) give the same estimates.
            n, shape = p.shape[-1], p.shape[:-2] + p.shape[-1:]
            start_w = jnp.broadcast_to(jax.random.normal(jax.random.key(seed), (n,)), shape)
            start_u = jnp.broadcast_to(jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (n,)), shape)
            _, weight_vector = top_singular_value(p, start_w, init_iterations)
            # Any start will do for the step's vector; one power iteration on the weight gives it
            # the sharding the updates will keep.
            _, update_vector = top_singular_value(p, start_u, 1)
            weight_vectors.append(weight_vector)
            update_vectors.append(update_vector)
            scales.append(jnp.ones(p.shape[:-2], jnp.float32))
        return ScaleBySpectralBoundState(
            weight_vectors=treedef.unflatten(weight_vectors),
            update_vectors=treedef.unflatten(update_vectors),
            scale=treedef.unflatten(scales),
        )

    def bound(step, weight, weight_vector, update_vector):
        if not _is_matrix(step):
            return step, weight_vector, update_vector, _empty()
        sigma_w, weight_vector = top_singular_value(weight, weight_vector, power_iterations)
        sigma_d, update_vector = top_singular_value(step, update_vector, power_iterations)
        limit = threshold * sigma_w
        binds = (sigma_d > limit) & (sigma_w > 0)
        scale = jnp.where(binds, limit / jnp.where(binds, sigma_d, 1.0), 1.0)
        scaled = step * scale[..., None, None].astype(step.dtype)
        return scaled, weight_vector, update_vector, scale

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_spectral_bound needs the parameters: call update(updates, state, params)")
        leaves, treedef = jax.tree.flatten(updates)
        if not leaves:
            return updates, state
        columns = zip(
            *map(
                bound,
                leaves,
                treedef.flatten_up_to(params),
                treedef.flatten_up_to(state.weight_vectors),
                treedef.flatten_up_to(state.update_vectors),
            )
        )
        steps, weight_vectors, update_vectors, scales = (treedef.unflatten(list(c)) for c in columns)
        return steps, ScaleBySpectralBoundState(weight_vectors, update_vectors, scales)

    return optax.GradientTransformation(init_fn, update_fn)


def spectral_bound_scales(state: Any) -> dict[str, jax.Array]:
    """The last scale of every bounded matrix in an optimizer state, by parameter path.

    Finds each :class:`ScaleBySpectralBoundState` in ``state`` (anywhere in a chain) and returns its
    ``scale`` entries (1.0 where the bound did not bind; one value per stacked matrix).
    """
    found: dict[str, jax.Array] = {}
    is_state = lambda x: isinstance(x, ScaleBySpectralBoundState)  # noqa: E731
    for node in jax.tree.leaves(state, is_leaf=is_state):
        if is_state(node):
            paths, leaves, _ = _tree.leaves_with_paths(node.scale)
            found.update(zip(paths, leaves))
    return found
