r"""Gradient signal-to-noise ratio from micro-batch gradients (the one shared implementation).

Gradient accumulation already produces :math:`K` micro-batch mean gradients :math:`g_k`, each over
:math:`b` sequences, and their mean :math:`\hat g = \frac1K \sum_k g_k` over :math:`B = K b`
sequences. For a per-sequence gradient with mean :math:`G` and covariance trace :math:`S`,

.. math::

    \mathbb E \|g_b\|^2 = \|G\|^2 + S / b, \qquad \mathbb E \|g_B\|^2 = \|G\|^2 + S / B,

so the two measured norms give unbiased estimates (McCandlish et al., 2018)

.. math::

    \hat S = \frac{\overline{\|g_k\|^2} - \|\hat g\|^2}{1/b - 1/B}, \qquad
    \widehat{\|G\|^2} = \|\hat g\|^2 - \hat S / B, \qquad
    \varphi = \frac{\widehat{\|G\|^2}}{\hat S}.

:math:`\varphi` is the per-sequence SNR and :math:`1/\varphi` the gradient noise scale ("critical
batch size"). Both estimates are noisy, so each is smoothed with a zero-initialised EMA *before*
the ratio is taken,

.. math::

    \bar S_t = d\,\bar S_{t-1} + (1-d)\,\hat S_t, \qquad
    \bar G_t = d\,\bar G_{t-1} + (1-d)\,\widehat{\|G\|^2}_t, \qquad
    \bar S_0 = \bar G_0 = 0, \qquad \varphi_t = \max(\bar G_t, 0) / \bar S_t .

Both EMAs carry the same bias factor :math:`1 - d^t`, so :math:`\varphi_t` equals the ratio of
the bias-corrected EMAs; at :math:`t = 2` the two estimates are weighted
:math:`d(1-d)/(1-d^2) : (1-d)/(1-d^2)` (0.47 : 0.53 for :math:`d = 0.9`). The clamps
:math:`\bar S > 0`, :math:`\bar G \ge 0` are applied to the smoothed values, which keeps the
EMA unbiased. The estimator itself is a reconstruction: the paper does not say how it measured
:math:`\varphi` (see docs/methods.md, "Gradient SNR"). ``start="first"`` selects the alternative
in which the first estimate replaces the zero start (weights 0.9 : 0.1 at :math:`t = 2`), which
trusts a single noisy estimate far longer.

With :math:`K = 1` (no accumulation) :math:`b = B` and the estimator is undefined:
:func:`is_valid` is False, :func:`update_snr_state` (given ``valid``) leaves the EMA unchanged,
and :func:`warmup_jax.optim.snr_rrc_factor` uses the factor 1 while no estimate exists.

The trainer fills :class:`MicroBatchStats` inside its accumulation scan and passes it to
``tx.update(grads, state, params, micro_batch_stats=stats)``.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from warmup_jax.optim import _tree

# Smallest noise estimate used as a denominator; phi = signal / max(noise, _TINY).
_TINY = 1e-30


class MicroBatchStats(NamedTuple):
    """Per-step statistics of the micro-batch gradients, filled by the trainer.

    Attributes:
        sum_sq_norms: a pytree like the parameters; per tensor
            :math:`\\sum_k \\|g_k\\|^2` over the ``num_micro_batches`` micro-batch mean gradients.
        num_micro_batches: :math:`K`.
        micro_batch_size: :math:`b`, sequences per micro-batch (so :math:`B = K b`).
    """

    sum_sq_norms: Any
    num_micro_batches: int
    micro_batch_size: int


class SNRState(NamedTuple):
    """EMA of the noise and signal estimates (per tensor trees, or scalars when global).

    Attributes:
        noise: zero-initialised EMA of :math:`\\hat S` (not bias corrected: the ratio does not need
            it; divide by :math:`1 - d^{count}` for the noise itself, with ``start="zero"``).
        signal: EMA of :math:`\\widehat{\\|G\\|^2}`.
        count: number of valid estimates folded in (int32); 0 means "no estimate yet".
    """

    noise: Any
    signal: Any
    count: jax.Array


def noise_and_signal(
    sum_sq_norm_small_mean: jax.typing.ArrayLike,
    sq_norm_big: jax.typing.ArrayLike,
    b: jax.typing.ArrayLike,
    B: jax.typing.ArrayLike,  # noqa: N803 (the paper's symbol)
) -> tuple[jax.Array, jax.Array]:
    r"""Unbiased noise and signal estimates from a small and a big batch size.

    .. math::

        \hat S = \frac{m_b - m_B}{1/b - 1/B}, \qquad \widehat{\|G\|^2} = m_B - \hat S / B

    Args:
        sum_sq_norm_small_mean: :math:`m_b`, the mean over micro-batches of :math:`\|g_k\|^2`.
        sq_norm_big: :math:`m_B = \|\hat g\|^2`, the squared norm of the mean gradient.
        b: small batch size (sequences per micro-batch).
        B: big batch size (sequences in the whole batch), ``B > b``.

    Returns:
        ``(S_hat, G2_hat)``, unclamped (either may be negative by noise). Undefined (inf/nan)
        for ``b == B``.
    """
    small = jnp.asarray(sum_sq_norm_small_mean, jnp.float32)
    big = jnp.asarray(sq_norm_big, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    B = jnp.asarray(B, jnp.float32)  # noqa: N806
    noise = (small - big) / (1.0 / b - 1.0 / B)
    signal = big - noise / B
    return noise, signal


def phi(signal: jax.typing.ArrayLike, noise: jax.typing.ArrayLike) -> jax.Array:
    r"""The SNR :math:`\varphi = \max(\|G\|^2, 0) / \max(S, \epsilon)`, element-wise."""
    signal = jnp.asarray(signal, jnp.float32)
    noise = jnp.asarray(noise, jnp.float32)
    return jnp.maximum(signal, 0.0) / jnp.maximum(noise, _TINY)


def _check_stats(stats: Any) -> MicroBatchStats:
    if not isinstance(stats, MicroBatchStats):
        raise TypeError(f"micro_batch_stats must be a warmup_jax.optim.snr.MicroBatchStats, got {type(stats).__name__}")
    return stats


def is_valid(stats: MicroBatchStats) -> jax.Array:
    """Whether the estimator is defined for these statistics (``K >= 2``), as a bool array."""
    return jnp.asarray(stats.num_micro_batches) >= 2


def per_tensor_noise_and_signal(grads: Any, stats: MicroBatchStats) -> tuple[Any, Any]:
    """:func:`noise_and_signal` for every tensor.

    Args:
        grads: the mean gradient :math:`\\hat g` (leaves may be ``optax.MaskedNode``).
        stats: the micro-batch statistics; ``stats.sum_sq_norms`` is matched to ``grads`` by
            parameter path, so it may hold more tensors than ``grads``.

    Returns:
        ``(noise, signal)``: trees like ``grads`` with float32 scalar leaves. Undefined when
        ``K < 2`` (check :func:`is_valid`).
    """
    stats = _check_stats(stats)
    sum_sq = _tree.align_leaves(grads, stats.sum_sq_norms, what="micro_batch_stats.sum_sq_norms")
    leaves, treedef = jax.tree.flatten(grads)
    num = jnp.asarray(stats.num_micro_batches, jnp.float32)
    b = jnp.asarray(stats.micro_batch_size, jnp.float32)
    noise, signal = [], []
    for g, s in zip(leaves, sum_sq):
        big = jnp.sum(jnp.square(g.astype(jnp.float32)))
        n_k, s_k = noise_and_signal(jnp.asarray(s, jnp.float32) / num, big, b, num * b)
        noise.append(n_k)
        signal.append(s_k)
    return treedef.unflatten(noise), treedef.unflatten(signal)


def global_noise_and_signal(grads: Any, stats: MicroBatchStats) -> tuple[jax.Array, jax.Array]:
    """:func:`noise_and_signal` for all tensors of ``grads`` taken together (scalars).

    The estimator is linear in the squared norms, so this is the sum of the per-tensor values.
    """
    noise, signal = per_tensor_noise_and_signal(grads, stats)
    total = lambda tree: sum(jax.tree.leaves(tree), jnp.zeros([], jnp.float32))  # noqa: E731
    return total(noise), total(signal)


def init_snr_state(params: Any = None, *, per_tensor: bool = True) -> SNRState:
    """Zero EMA state: float32 scalars per tensor of ``params``, or one pair of scalars."""
    # Separate buffers for noise and signal: a state that holds one array twice cannot be donated.
    if per_tensor:
        if params is None:
            raise ValueError("init_snr_state(per_tensor=True) needs params")
        zeros = lambda: jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params)  # noqa: E731
        return SNRState(noise=zeros(), signal=zeros(), count=jnp.zeros([], jnp.int32))
    return SNRState(noise=jnp.zeros([], jnp.float32), signal=jnp.zeros([], jnp.float32), count=jnp.zeros([], jnp.int32))


EMA_STARTS = ("zero", "first")


def update_snr_state(
    state: SNRState,
    noise: Any,
    signal: Any,
    *,
    decay: jax.typing.ArrayLike = 0.9,
    valid: jax.typing.ArrayLike = True,
    start: str = "zero",
) -> SNRState:
    r"""Folds one estimate into the EMA: :math:`x \leftarrow d\,x + (1-d)\,\hat x` if ``valid``.

    Args:
        state: the EMA state (from :func:`init_snr_state`).
        noise: the new noise estimate(s) :math:`\hat S` (tree like ``state.noise``).
        signal: the new signal estimate(s) :math:`\widehat{\|G\|^2}`.
        decay: :math:`d`.
        valid: whether to fold this estimate in (False for ``K < 2``: the state is unchanged).
        start: ``"zero"`` (default): the EMA starts from 0, so the ratio of the two EMAs is the
            ratio of their bias-corrected values. ``"first"``: the first valid estimate replaces
            the zero start (a different, more slowly forgetting weighting of the first steps).

    Returns:
        The new :class:`SNRState`.
    """
    if start not in EMA_STARTS:
        raise ValueError(f"start={start!r} is not one of {EMA_STARTS}")
    valid = jnp.asarray(valid, bool)
    replace_first = (state.count == 0) if start == "first" else jnp.asarray(False)
    decay = jnp.asarray(decay, jnp.float32)

    def fold(old, new):
        new = jnp.asarray(new, jnp.float32)
        ema = jnp.where(replace_first, new, decay * old + (1.0 - decay) * new)
        return jnp.where(valid, ema, old).astype(old.dtype)

    return SNRState(
        noise=jax.tree.map(fold, state.noise, noise),
        signal=jax.tree.map(fold, state.signal, signal),
        count=jnp.where(valid, optax.safe_increment(state.count), state.count),
    )


def snr_from_state(state: SNRState) -> Any:
    """:func:`phi` of the smoothed estimates (tree or scalar); 0 while ``state.count == 0``."""
    return jax.tree.map(lambda s, n: jnp.where(state.count > 0, phi(s, n), 0.0), state.signal, state.noise)


def rrc_factor(
    snr: jax.typing.ArrayLike,
    batch_size: jax.typing.ArrayLike,
    *,
    form: str = "sqrt",
    gain_ratio: jax.typing.ArrayLike | None = None,
    clamp: tuple[float, float] | None = None,
) -> jax.Array:
    r"""Learning-rate factor that keeps the relative representation change constant.

    The paper's Eq. (9) is not available; both forms are reconstructions (see docs/methods.md, "RRC factor"):

    * ``"sqrt"`` (default): :math:`f = 1/\sqrt{1 + B\varphi}`, no scaling while
      :math:`\varphi \ll 1/B` and a downscaling that keeps growing with :math:`B\varphi`.
    * ``"gain"``: :math:`f = \sqrt{(1 + B\varphi)/(1 + \rho^2 B\varphi)}` with gain ratio
      :math:`\rho` (floor :math:`1/\rho`).

    Args:
        snr: :math:`\varphi` (array of any shape).
        batch_size: :math:`B` in sequences.
        form: ``"sqrt"`` or ``"gain"``.
        gain_ratio: :math:`\rho`, required for ``form="gain"``.
        clamp: optional ``(low, high)`` bounds for :math:`f`.

    Returns:
        :math:`f` with the shape of ``snr`` (float32).
    """
    x = jnp.asarray(batch_size, jnp.float32) * jnp.asarray(snr, jnp.float32)
    if form == "sqrt":
        f = jax.lax.rsqrt(1.0 + x)
    elif form == "gain":
        if gain_ratio is None:
            raise ValueError("rrc_factor(form='gain') needs gain_ratio (rho > 1)")
        rho = jnp.asarray(gain_ratio, jnp.float32)
        f = jnp.sqrt((1.0 + x) / (1.0 + rho * rho * x))
    else:
        raise ValueError(f"form={form!r} is not one of 'sqrt', 'gain'")
    if clamp is not None:
        low, high = clamp
        f = jnp.clip(f, low, high)
    return f


def rescale_micro_batch_stats(stats: MicroBatchStats, factor: jax.typing.ArrayLike) -> MicroBatchStats:
    """Scales the micro-batch gradients by ``factor`` (their squared norms by ``factor**2``).

    Use it when the mean gradient handed to the optimizer was multiplied by a global factor, e.g.
    by ``optax.clip_by_global_norm``: then pass
    ``rescale_micro_batch_stats(stats, global_norm_clip_factor(grads, max_norm))`` so that both
    norms of the estimator describe the same (scaled) gradients and :math:`\\varphi` is unbiased.
    """
    factor = jnp.asarray(factor, jnp.float32)
    return stats._replace(sum_sq_norms=jax.tree.map(lambda s: s * factor * factor, stats.sum_sq_norms))


def global_norm_clip_factor(grads: Any, max_norm: jax.typing.ArrayLike) -> jax.Array:
    """The factor ``optax.clip_by_global_norm(max_norm)`` applies: ``min(1, max_norm / ||g||)``."""
    norm = optax.tree.norm(grads)
    return jnp.where(norm > max_norm, max_norm / norm, 1.0).astype(jnp.float32)
