r"""Per-tensor and per-layer update metrics, computed inside the compiled train step.

The quantities of the warmup paper (see docs/methods.md, 'Update-size metrics') for the update
:math:`\Delta w = w_{t+1} - w_t` of one step, by family; :func:`update_metrics` computes them all:

* :func:`norm_and_angle_metrics`: ``update_l2`` :math:`\|\Delta w\|`; ``weight_norm``
  :math:`\|w_{t+1}\|`; ``relative_update`` :math:`\|\Delta w\| / \|w_t\|`; ``angle``, the angle
  between :math:`w_t` and :math:`w_{t+1}`, computed stably as
  :math:`\theta = 2\,\mathrm{atan2}(\|\hat a - \hat b\|, \|\hat a + \hat b\|)` with
  :math:`\hat a = a/\|a\|` (``arccos`` cannot resolve angles below ~3e-4 rad in float32); and
  ``angle_neuron_rms``, the same angle per neuron, reduced as the RMS over neurons. Neurons follow
  the optimizers' convention (:func:`warmup_jax.optim.neuron_axes`): a Dense kernel ``(in, out)``
  has one neuron per column, an embedding ``(vocab, d)`` one per row, and leading (stacked-layer)
  axes are batch axes. Angles are reported for tensors with ``ndim >= 2`` only.
* :func:`rrc_metrics`: ``rrc``, the relative representation change
  :math:`\|X \Delta K\|_F / \|X K_t\|_F` of every Dense layer, with :math:`X` the layer's inputs on
  a token subsample of the current batch (Flax ``(in, out)`` kernels; the denominator is the
  captured layer output minus its bias), and of the tied output head (``rrc/wte``:
  :math:`K = E^\top`, the logits' change relative to the logits, from the final LayerNorm's outputs).
* :func:`snr_metrics`: ``snr``, the gradient SNR :math:`\varphi` of this step from the micro-batch
  estimator (:mod:`warmup_jax.optim.snr`, the implementation the optimizers use), without the EMA:
  the plots smooth signal and noise over logged steps before taking the ratio. ``critical_batch``:
  :math:`1/\varphi`. Needs ``K >= 2`` micro-batches; omitted otherwise.
* :func:`momentum_metrics`: ``grad_momentum_cos`` :math:`\cos(g_t, m_{t-1})` with :math:`m` the
  optimizer's first moment (``mu`` of ``ScaleByAdamState``/``ScaleByLionState``, found by
  :func:`find_first_moment`); and the cancellation ratio ``momentum_cancellation``
  :math:`\rho = \langle \beta m_{t-1}, (1-\beta) \tilde g_t\rangle / \|(1-\beta)\tilde g_t\|^2`
  with :math:`\tilde g` the gradient after global-norm clipping (for Lion :math:`\beta = \beta_1`,
  the interpolation coefficient).

Names are ``<metric>/<tensor>`` with dotted paths (``update_l2/blocks.0.attn.qkv.kernel``;
``rrc/blocks.0.attn.qkv`` for a layer), ``<metric>/blocks.<i>`` for each layer (all tensors under
``blocks/<i>``) and ``<metric>/global``. Group angles are the angle of the concatenation of the
group's matrices; group RRC is the mean over the group's Dense layers; group SNR sums signal and
noise over the group's tensors (the estimator is linear in them). Layers stored stacked (a leading
layer axis, as ``nnx.scan`` over blocks makes them; ``stacked=`` of every function) get the same
per-layer names, but each statistic is computed for all layers in one reduction that keeps the
layer axis: the compiled metrics then cost a few operations per stacked tensor instead of a few per
tensor and layer, and their compile time does not grow with depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from warmup_jax.optim import snr as snr_lib
from warmup_jax.optim._tree import path_to_str
from warmup_jax.optim.neurons import neuron_axes

Params = Any
GLOBAL = "global"


def metrics_due(step: Any, *, interval: int, dense_interval: int = 0, dense_until_step: int = 0) -> Any:
    """Whether metrics are computed for the update that completes ``step`` (1-based).

    ``step`` may be a Python int (host) or a traced integer (inside the step); the intervals are
    static. True when ``step % interval == 0``, or ``step <= dense_until_step`` and
    ``step % dense_interval == 0``; ``interval == 0`` switches metrics off altogether.
    """
    if interval <= 0:
        return jnp.asarray(False) if isinstance(step, jax.Array) else False
    due = step % interval == 0
    if dense_until_step > 0 and dense_interval > 0:
        due = due | ((step <= dense_until_step) & (step % dense_interval == 0))
    if isinstance(step, jax.Array):
        return jnp.asarray(due, bool)
    return bool(due)


def stable_angle(a: jax.Array, b: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    r"""Angle between ``a`` and ``b`` (vectors along ``axis``), stable for tiny angles.

    :math:`\theta = 2\,\mathrm{atan2}(\|\hat a-\hat b\|,\|\hat a+\hat b\|)` (see docs/methods.md,
    'Update-size metrics').
    ``axis=None`` treats each whole tensor as one vector. NaN where either vector is zero.
    """
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    b = b.astype(jnp.promote_types(b.dtype, jnp.float32))
    na = jnp.sqrt(jnp.sum(a * a, axis=axis, keepdims=True))
    nb = jnp.sqrt(jnp.sum(b * b, axis=axis, keepdims=True))
    ah = a / jnp.where(na > 0, na, 1.0)
    bh = b / jnp.where(nb > 0, nb, 1.0)
    diff = jnp.sqrt(jnp.sum(jnp.square(ah - bh), axis=axis))
    total = jnp.sqrt(jnp.sum(jnp.square(ah + bh), axis=axis))
    defined = jnp.squeeze((na > 0) & (nb > 0), axis=axis)
    return jnp.where(defined, 2.0 * jnp.arctan2(diff, total), jnp.nan)


def relative_representation_change(
    x_NxC: jax.Array, delta_CxO: jax.Array, y_NxO: jax.Array | None = None, kernel_CxO: jax.Array | None = None
) -> jax.Array:
    r""":math:`\|X \Delta K\|_F / \|X K\|_F` for a Flax Dense kernel ``(in, out)``.

    Pass either the layer's (bias-free) outputs ``y_NxO = X K`` or the kernel ``K``. Leading axes
    (stacked layers: ``(L, N, C)`` and ``(L, C, O)``) give one value per index.
    """
    x = x_NxC.astype(jnp.float32)
    change = _frobenius(x @ delta_CxO.astype(jnp.float32))
    if y_NxO is None:
        y_NxO = x @ kernel_CxO.astype(jnp.float32)
    return _ratio(change, _frobenius(y_NxO.astype(jnp.float32)))


def _frobenius(x_NxO: jax.Array) -> jax.Array:
    """Frobenius norm over the last two axes (leading axes, e.g. stacked layers, are kept)."""
    return jnp.sqrt(jnp.sum(jnp.square(x_NxO), axis=(-2, -1)))


def find_first_moment(opt_state: Any, params: Params) -> dict[str, jax.Array] | None:
    """The optimizer's first moment ``m`` per parameter path (``"blocks/0/attn/qkv/kernel"``), or None.

    Looks for every ``mu`` field in the optax state (``ScaleByAdamState``, ``ScaleByLionState``, also
    inside ``optax.partition``/``masked`` wrappers) and keeps the parameter-shaped leaves that are
    not ``optax.MaskedNode``. Parameters without a first moment are absent from the result.
    """
    shapes = {path: leaf.shape for path, leaf in _flatten(params)}
    found: dict[str, jax.Array] = {}
    for _, tree in optax.tree.get_all_with_path(opt_state, "mu"):
        for path, leaf in _flatten(tree):
            if path in shapes and hasattr(leaf, "shape") and leaf.shape == shapes[path]:
                found.setdefault(path, leaf)
    return found or None


def update_metrics(
    params_old: Params,
    params_new: Params,
    *,
    grads: Params | None = None,
    micro_batch_stats: snr_lib.MicroBatchStats | None = None,
    first_moment: dict[str, jax.Array] | None = None,
    momentum_beta: float = 0.9,
    grad_clip: float = 0.0,
    captured: dict[str, tuple[jax.Array, jax.Array | None]] | None = None,
    stacked: Sequence[str] = (),
    split_layers: bool = True,
) -> dict[str, jax.Array]:
    r"""All update metrics of one step as a flat ``{name: float32 scalar}`` dict.

    The union of :func:`norm_and_angle_metrics`, :func:`rrc_metrics` (with ``captured``),
    :func:`snr_metrics` (with ``grads`` and ``micro_batch_stats`` of ``K >= 2`` micro-batches) and
    :func:`momentum_metrics` (with ``grads`` and ``first_moment``).

    Args:
        params_old: :math:`w_t`, the parameters before the update.
        params_new: :math:`w_{t+1}`.
        grads: the mean gradient the optimizer received (the trainer passes it clipped, with the
            micro-batch statistics rescaled alike); needed for SNR and momentum metrics.
        micro_batch_stats: per-tensor sums of squared micro-batch gradient norms; SNR metrics are
            added when given with ``num_micro_batches >= 2``.
        first_moment: :math:`m_{t-1}` by parameter path (:func:`find_first_moment`), or None.
        momentum_beta: :math:`\beta` of the cancellation ratio.
        grad_clip: for an unclipped ``grads``, the global-norm clip the optimizer applied to it, so
            that the cancellation ratio uses the gradient the momentum actually received (0: none;
            the trainer passes clipped gradients and 0).
        captured: ``{layer path: (x_NxC, y_NxO)}`` from :func:`warmup_jax.model.gpt.forward_capturing_dense`
            (``y`` is None for a tied head, whose kernel is the transposed ``<layer>/embedding``).
        stacked: path prefixes under which tensors are stored stacked, with a leading layer axis
            (layers made with ``nnx.vmap``/``nnx.scan``), e.g. ``("blocks",)``. Their statistics are
            computed for all layers at once (reductions keep the layer axis) and reported under
            per-layer names: ``blocks/attn/qkv/kernel`` of shape ``(L, in, out)`` gives
            ``blocks.0.attn.qkv.kernel`` ... and the groups ``blocks.<i>``, exactly as the same
            layers stored one by one. Captured inputs and outputs of stacked layers carry the layer
            axis first (``(L, N, C)``); their per-tensor ``micro_batch_stats`` sums must be per
            layer (shape ``(L,)``, see :func:`sq_norms`).
        split_layers: False keeps the entries of stacked tensors and of their layer groups as
            ``(L,)`` vectors, named with :data:`LAYER` in place of the index
            (``update_l2/blocks.<layer>.attn.qkv.kernel``); :func:`per_layer_names` splits them. A
            compiled step returns far fewer values that way (the trainer's step does).

    Returns:
        The metrics, named as described in the module docstring.
    """
    out = norm_and_angle_metrics(params_old, params_new, stacked=stacked, split_layers=False)
    if captured:
        out.update(rrc_metrics(params_old, params_new, captured, stacked=stacked, split_layers=False))
    if grads is not None:
        if micro_batch_stats is not None:
            out.update(snr_metrics(grads, micro_batch_stats, stacked=stacked, split_layers=False))
        if first_moment:
            out.update(
                momentum_metrics(
                    grads,
                    first_moment,
                    momentum_beta=momentum_beta,
                    grad_clip=grad_clip,
                    stacked=stacked,
                    split_layers=False,
                )
            )
    return _split(out, split_layers)


def norm_and_angle_metrics(
    params_old: Params, params_new: Params, *, stacked: Sequence[str] = (), split_layers: bool = True
) -> dict[str, jax.Array]:
    r"""Update size and direction of every tensor, of every layer and of all tensors together.

    For :math:`a = w_t` and :math:`b = w_{t+1}` (one tensor, or the concatenation of a group's
    tensors):

    * ``update_l2``: :math:`\|b - a\|`; ``weight_norm``: :math:`\|b\|`;
      ``relative_update``: :math:`\|b - a\| / \|a\|` (NaN where :math:`a = 0`);
    * ``angle``: :math:`\theta = 2\,\mathrm{atan2}(\|\hat a - \hat b\|, \|\hat a + \hat b\|)` with
      :math:`\hat a = a / \|a\|`, as :func:`stable_angle`;
    * ``angle_neuron_rms``: :math:`\sqrt{\tfrac{1}{n}\sum_k \theta_k^2}` over the neurons :math:`k`
      (:func:`warmup_jax.optim.neuron_axes`) whose old and new weights are both nonzero.

    Angles are reported for tensors with ``ndim >= 2`` only, and a group's angles cover its
    matrices only. The group angle is assembled from per-neuron statistics without forming the
    concatenation: with :math:`A, B` the group norms, :math:`\alpha_k = \|a_k\|/A`,
    :math:`\beta_k = \|b_k\|/B` and :math:`D_k = \|\hat a_k - \hat b_k\|^2`,

    .. math::

        \|a/A - b/B\|^2 = \sum_k (\alpha_k - \beta_k)^2 + \alpha_k \beta_k D_k,
        \qquad
        \|a/A + b/B\|^2 = \sum_k (\alpha_k + \beta_k)^2 - \alpha_k \beta_k D_k,

    which has no cancellation for small angles.

    Args:
        params_old: :math:`w_t`, a parameter tree or a flat ``{path: array}`` dict.
        params_new: :math:`w_{t+1}`, with the same paths.
        stacked: path prefixes of tensors stored with a leading layer axis (see
            :func:`update_metrics`); their statistics are computed for all layers at once.
        split_layers: False keeps stacked tensors' entries as ``(L,)`` vectors (:func:`update_metrics`).

    Returns:
        ``{name: float32 scalar}``, named ``<metric>/<tensor>``, ``<metric>/blocks.<i>`` and
        ``<metric>/global``.
    """
    layout = _Layout(stacked)
    old, new = _flat(params_old), _flat(params_new)
    out: dict[str, jax.Array] = {}
    sums: dict[str, dict[str, jax.Array]] = {}  # group -> additive per-tensor statistics
    neuron_stats = {}
    for path, a in old.items():
        b = new[path]
        a32, b32 = _f32(a), _f32(b)
        name, groups, total = layout.name(path), layout.groups(path), layout.total(path)
        # Per-neuron squared norms first (1-D tensors: one neuron); tensor norms are their sums.
        axes = layout.neuron_axes(path, a.shape)
        na2 = jnp.sum(a32 * a32, axis=axes, keepdims=True)
        nb2 = jnp.sum(b32 * b32, axis=axes, keepdims=True)
        sq_old, sq_new = total(na2), total(nb2)
        sq_delta = total(jnp.square(b32 - a32))
        out[f"update_l2/{name}"] = jnp.sqrt(sq_delta)
        out[f"weight_norm/{name}"] = jnp.sqrt(sq_new)
        out[f"relative_update/{name}"] = _ratio(jnp.sqrt(sq_delta), jnp.sqrt(sq_old))
        _accumulate(sums, groups, sq_old=sq_old, sq_new=sq_new, sq_delta=sq_delta)
        if layout.layer_ndim(path, a.shape) < 2:
            continue
        d2, theta_sq, count = _neuron_angles(a32, b32, na2, nb2, axes, total)
        out[f"angle_neuron_rms/{name}"] = jnp.sqrt(_ratio(theta_sq, count, nan_if_zero=True))
        neuron_stats[path] = (na2, nb2, d2)
        out[f"angle/{name}"] = _combined_angle([(na2, nb2, d2)], sq_old, sq_new)
        _accumulate(
            sums, groups, neuron_theta_sq=theta_sq, neuron_count=count, matrix_sq_old=sq_old, matrix_sq_new=sq_new
        )
    for group, s in sums.items():
        out[f"update_l2/{group}"] = jnp.sqrt(s["sq_delta"])
        out[f"weight_norm/{group}"] = jnp.sqrt(s["sq_new"])
        out[f"relative_update/{group}"] = _ratio(jnp.sqrt(s["sq_delta"]), jnp.sqrt(s["sq_old"]))
        if "neuron_count" in s:
            members = [v for p, v in neuron_stats.items() if group in layout.groups(p)]
            out[f"angle/{group}"] = _combined_angle(members, s["matrix_sq_old"], s["matrix_sq_new"])
            out[f"angle_neuron_rms/{group}"] = jnp.sqrt(
                _ratio(s["neuron_theta_sq"], s["neuron_count"], nan_if_zero=True)
            )
    return _split(_float32(out), split_layers)


def rrc_metrics(
    params_old: Params,
    params_new: Params,
    captured: dict[str, tuple[jax.Array, jax.Array | None]],
    *,
    stacked: Sequence[str] = (),
    split_layers: bool = True,
) -> dict[str, jax.Array]:
    r"""Relative representation change of the captured Dense layers and of a tied output head.

    For a Dense layer with Flax kernel :math:`K` of shape ``(in, out)`` and inputs :math:`X`
    (a token subsample of the batch, ``(N, in)``):

    .. math::

        \mathrm{rrc} = \frac{\|X\,(K_{t+1} - K_t)\|_F}{\|X K_t\|_F},

    the denominator from the captured outputs minus the layer's bias (when it has one). A layer
    without ``<layer>/kernel`` is a tied output head: :math:`K = E^\top` with
    :math:`E` = ``<layer>/embedding``, so ``rrc/wte`` is the logits' change relative to the logits.
    A group's value (``rrc/blocks.<i>``, ``rrc/global``) is the mean over its layers.

    Args:
        params_old: :math:`w_t`, a parameter tree or a flat ``{path: array}`` dict.
        params_new: :math:`w_{t+1}`, with the same paths.
        captured: ``{layer path: (x_NxC, y_NxO)}`` (:func:`warmup_jax.model.gpt.forward_capturing_dense`),
            ``y`` the layer's outputs :math:`X K_t + b_t`, None for a tied head; a stacked layer's
            arrays carry the layer axis first (``(L, N, C)``).
        stacked: path prefixes of layers stored with a leading layer axis (:func:`update_metrics`).
        split_layers: False keeps stacked tensors' entries as ``(L,)`` vectors (:func:`update_metrics`).

    Returns:
        ``{name: float32 scalar}``: ``rrc/<layer>`` (dotted, without ``kernel``) and the groups'.
    """
    layout = _Layout(stacked)
    old, new = _flat(params_old), _flat(params_new)
    out: dict[str, jax.Array] = {}
    by_group: dict[str, list[jax.Array]] = {}
    for layer, (x_NxC, y_NxO) in sorted(captured.items()):
        kernel = f"{layer}/kernel"
        if kernel in old:
            delta = _f32(new[kernel]) - _f32(old[kernel])
            y = _f32(y_NxO)
            if f"{layer}/bias" in old:
                y = y - jnp.expand_dims(_f32(old[f"{layer}/bias"]), -2)  # (..., O) -> (..., 1, O)
            rrc = relative_representation_change(x_NxC, delta, y)
        else:  # a tied output head: logits = x @ E.T with E = <layer>/embedding
            kernel = f"{layer}/embedding"
            delta = _f32(new[kernel]) - _f32(old[kernel])
            rrc = relative_representation_change(x_NxC, delta.T, kernel_CxO=_f32(old[kernel]).T)
        out[f"rrc/{layout.name(layer)}"] = rrc
        for g in layout.groups(kernel):
            by_group.setdefault(g, []).append(rrc)
    for group, values in by_group.items():
        if LAYER in group:  # one value per layer from each stacked layer: the mean per layer
            out[f"rrc/{group}"] = jnp.mean(jnp.stack(values), axis=0)
        else:
            out[f"rrc/{group}"] = jnp.mean(jnp.concatenate([jnp.ravel(v) for v in values]))
    return _split(_float32(out), split_layers)


def snr_metrics(
    grads: Params, micro_batch_stats: snr_lib.MicroBatchStats, *, stacked: Sequence[str] = (), split_layers: bool = True
) -> dict[str, jax.Array]:
    r"""Gradient SNR of this step from :math:`K` micro-batch gradients of :math:`b` sequences each.

    With :math:`g_k` the micro-batch mean gradients and :math:`\hat g` their mean (batch
    :math:`B = Kb`), the two-batch-size estimator of :mod:`warmup_jax.optim.snr` (the
    implementation the optimizers use) gives the per-sequence noise :math:`S` (the trace of the
    gradient covariance) and the signal :math:`\|G\|^2`:

    .. math::

        S = \frac{\tfrac{1}{K}\sum_k \|g_k\|^2 - \|\hat g\|^2}{1/b - 1/B}, \qquad
        \|G\|^2 = \|\hat g\|^2 - S/B, \qquad
        \varphi = \frac{\max(\|G\|^2, 0)}{\max(S, \epsilon)}.

    ``snr`` is :math:`\varphi` per tensor, per layer and globally (a group sums signal and noise over
    its tensors, the estimator being linear in them), without an EMA: the plots smooth signal and
    noise over logged steps before taking the ratio. Also ``snr_noise/global`` (:math:`S`),
    ``snr_signal/global`` (:math:`\|G\|^2`) and ``critical_batch/global``
    :math:`= \max(S, 0) / \max(\|G\|^2, 0)`, about :math:`1/\varphi` (+inf where the signal is not
    positive and the noise is).

    Args:
        grads: the mean gradient :math:`\hat g`, a tree or a flat ``{path: array}`` dict.
        micro_batch_stats: ``sum_sq_norms`` :math:`\sum_k \|\hat g_k\|^2` by parameter path, with
            ``num_micro_batches`` :math:`K` and ``micro_batch_size`` :math:`b`; one sum per layer
            (shape ``(L,)``, :func:`sq_norms`) for a stacked tensor.
        stacked: path prefixes of tensors stored with a leading layer axis (:func:`update_metrics`).
        split_layers: False keeps stacked tensors' entries as ``(L,)`` vectors (:func:`update_metrics`).

    Returns:
        ``{name: float32 scalar}``; empty when ``K < 2`` (no estimate from one micro-batch).
    """
    if micro_batch_stats.num_micro_batches < 2:
        return {}
    layout = _Layout(stacked)
    grads = _flat(grads)
    sum_sq = _checked_sum_sq(micro_batch_stats, grads, layout)
    num = jnp.float32(micro_batch_stats.num_micro_batches)
    b = jnp.float32(micro_batch_stats.micro_batch_size)
    out: dict[str, jax.Array] = {}
    sums: dict[str, dict[str, jax.Array]] = {}
    for path, g in grads.items():
        big = layout.total(path)(jnp.square(_f32(g)))
        noise, signal = snr_lib.noise_and_signal(_f32(sum_sq[path]) / num, big, b, num * b)
        out[f"snr/{layout.name(path)}"] = snr_lib.phi(signal, noise)
        _accumulate(sums, layout.groups(path), noise=noise, signal=signal)
    for g, total in sums.items():
        out[f"snr/{g}"] = snr_lib.phi(total["signal"], total["noise"])
    noise, signal = sums[GLOBAL]["noise"], sums[GLOBAL]["signal"]
    out["snr_noise/global"] = noise
    out["snr_signal/global"] = signal
    out["critical_batch/global"] = _ratio(jnp.maximum(noise, 0.0), jnp.maximum(signal, 0.0), nan_if_zero=False)
    return _split(_float32(out), split_layers)


def momentum_metrics(
    grads: Params,
    first_moment: dict[str, jax.Array],
    *,
    momentum_beta: float = 0.9,
    grad_clip: float = 0.0,
    stacked: Sequence[str] = (),
    split_layers: bool = True,
) -> dict[str, jax.Array]:
    r"""Alignment of the gradient with the optimizer's first moment, and the cancellation ratio.

    For every tensor with a first moment :math:`m_{t-1}`, its group and all of them together:

    .. math::

        \texttt{grad\_momentum\_cos} = \cos(g_t, m_{t-1}), \qquad
        \texttt{momentum\_cancellation} = \rho =
        \frac{\langle \beta\, m_{t-1}, (1-\beta)\, \tilde g_t\rangle}{\|(1-\beta)\, \tilde g_t\|^2}
        = \frac{\beta}{(1-\beta)\,c}\,\frac{\langle m_{t-1}, g_t\rangle}{\|g_t\|^2},

    with :math:`\tilde g_t = c\, g_t` the gradient after global-norm clipping (:math:`c \le 1`), the
    gradient the moment actually receives, and for Lion :math:`\beta = \beta_1`, the interpolation
    coefficient. :math:`\rho < -1/2` means the new gradient cancels more than half of the moment's
    component along it. The cosine is NaN while :math:`m = 0` (step 1), where :math:`\rho = 0`.

    Args:
        grads: the mean gradient :math:`g_t` (see ``grad_clip``), a tree or a flat ``{path: array}``
            dict.
        first_moment: :math:`m_{t-1}` by parameter path (:func:`find_first_moment`); tensors
            without one are left out.
        momentum_beta: :math:`\beta`.
        grad_clip: the clip threshold on :math:`\|g_t\|` if ``grads`` is unclipped (0: ``grads`` is
            what the momentum received, :math:`c = 1`).
        stacked: path prefixes of tensors stored with a leading layer axis (:func:`update_metrics`).
        split_layers: False keeps stacked tensors' entries as ``(L,)`` vectors (:func:`update_metrics`).

    Returns:
        ``{name: float32 scalar}``, named ``<metric>/<tensor>``, ``<metric>/blocks.<i>`` and
        ``<metric>/global``.
    """
    grads = _flat(grads)
    clip = 1.0
    if grad_clip > 0:
        clip = snr_lib.global_norm_clip_factor(grads, grad_clip)
    scale = momentum_beta / ((1.0 - momentum_beta) * clip)
    layout = _Layout(stacked)
    out: dict[str, jax.Array] = {}
    sums: dict[str, dict[str, jax.Array]] = {}
    for path, m in first_moment.items():
        g, m = _f32(grads[path]), _f32(m)
        total = layout.total(path)
        gm, gg, mm = total(g * m), total(g * g), total(m * m)
        name = layout.name(path)
        out[f"grad_momentum_cos/{name}"] = _ratio(gm, jnp.sqrt(gg * mm), nan_if_zero=True)
        out[f"momentum_cancellation/{name}"] = scale * _ratio(gm, gg, nan_if_zero=True)
        _accumulate(sums, layout.groups(path), gm=gm, gg=gg, mm=mm)
    for grp, t in sums.items():
        out[f"grad_momentum_cos/{grp}"] = _ratio(t["gm"], jnp.sqrt(t["gg"] * t["mm"]), nan_if_zero=True)
        out[f"momentum_cancellation/{grp}"] = scale * _ratio(t["gm"], t["gg"], nan_if_zero=True)
    return _split(_float32(out), split_layers)


def stack_prefix(path: str, stacked: Sequence[str]) -> str | None:
    """The prefix of ``stacked`` that holds ``path`` (a tensor or captured layer) as a stacked, not
    yet split, entry; None otherwise."""
    for prefix in stacked:
        if path.startswith(prefix + "/") and not path[len(prefix) + 1 :].split("/", 1)[0].isdigit():
            return prefix
    return None


def split_stacked(flat: dict[str, Any], stacked: Sequence[str]) -> dict[str, Any]:
    """Splits tensors stored with a leading layer axis into per-layer entries.

    ``{"blocks/attn/qkv/kernel": w_LxIxO}`` with ``stacked=("blocks",)`` becomes
    ``{"blocks/0/attn/qkv/kernel": w_LxIxO[0], ..., "blocks/<L-1>/attn/qkv/kernel": ...}``; a leaf may
    also be a tuple of arrays with the same leading axis (captured inputs and outputs). Paths not
    under a prefix, or already indexed (``blocks/0/...``), are kept as they are.
    """
    if not stacked:
        return flat
    out: dict[str, Any] = {}
    for path, leaf in flat.items():
        prefix = stack_prefix(path, stacked)
        if prefix is None:
            out[path] = leaf
            continue
        arrays = leaf if isinstance(leaf, tuple) else (leaf,)
        rest = path[len(prefix) + 1 :]
        for i in range(arrays[0].shape[0]):
            layer = tuple(None if a is None else a[i] for a in arrays)
            out[f"{prefix}/{i}/{rest}"] = layer if isinstance(leaf, tuple) else layer[0]
    return out


def sq_norms(tree: Any, stacked: Sequence[str] = ()) -> dict[str, jax.Array]:
    """Squared norm of every tensor, by path; per layer (shape ``(L,)``) for stacked tensors.

    The per-micro-batch statistics :func:`update_metrics` needs, in its ``stacked`` convention.
    """
    out = {}
    for path, leaf in _flatten(tree):
        sq = jnp.square(_f32(leaf))
        if stack_prefix(path, stacked) is not None:
            out[path] = jnp.sum(sq, axis=tuple(range(1, leaf.ndim)))
        else:
            out[path] = jnp.sum(sq)
    return out


#: Stands for the layer index in the names of stacked tensors and their groups until
#: :func:`per_layer_names` writes one entry per layer.
LAYER = "<layer>"


class _Layout:
    """How a flat path's tensor is laid out: one layer's (``blocks/0/...``: scalar statistics) or a
    stack of layers (under a ``stacked`` prefix, leading layer axis: statistics of shape ``(L,)``)."""

    def __init__(self, stacked: Sequence[str] = ()):
        self.stacked = tuple(stacked)

    def is_stacked(self, path: str) -> bool:
        return stack_prefix(path, self.stacked) is not None

    def layer_ndim(self, path: str, shape: Sequence[int]) -> int:
        """The number of axes of one layer's tensor."""
        return len(shape) - self.is_stacked(path)

    def neuron_axes(self, path: str, shape: Sequence[int]) -> tuple[int, ...]:
        """The axes one neuron spans (a 1-D tensor of a layer is one neuron)."""
        lead = int(self.is_stacked(path))
        layer_shape = tuple(shape[lead:])
        axes = neuron_axes(path, layer_shape) if len(layer_shape) >= 2 else tuple(range(len(layer_shape)))
        return tuple(a + lead for a in axes)

    def total(self, path: str):
        """Sum over each layer's elements: to a scalar, or to ``(L,)`` for a stacked tensor."""
        if not self.is_stacked(path):
            return jnp.sum
        return lambda x: jnp.sum(x, axis=tuple(range(1, jnp.ndim(x))))

    def name(self, path: str) -> str:
        prefix = stack_prefix(path, self.stacked)
        if prefix is None:
            return _name(path)
        return _name(f"{prefix}/{LAYER}/{path[len(prefix) + 1 :]}")

    def groups(self, path: str) -> list[str]:
        prefix = stack_prefix(path, self.stacked)
        if prefix is None:
            return _groups(path)
        return [f"{_name(prefix)}.{LAYER}", GLOBAL]


def per_layer_names(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Metrics with ``(L,)`` values of stacked tensors and their layer groups (``update_metrics(...,
    split_layers=False)``, names holding :data:`LAYER`) as one scalar per layer, named with its index."""
    out = {}
    for key, value in metrics.items():
        if LAYER in key:
            out.update(zip(layer_names(key, value.shape), value))
        else:
            out[key] = value
    return out


def _split(metrics: dict[str, jax.Array], split_layers: bool) -> dict[str, jax.Array]:
    return per_layer_names(metrics) if split_layers else metrics


def layer_names(key: str, shape: Sequence[int]) -> list[str]:
    """The names of the entries of a metric ``key`` with values of ``shape``: one per layer for a
    key holding :data:`LAYER` (``(L,)`` values), else the key itself."""
    if LAYER not in key:
        return [key]
    return [key.replace(LAYER, str(i)) for i in range(shape[0])]


def _checked_sum_sq(stats: snr_lib.MicroBatchStats, grads: dict[str, Any], layout: _Layout) -> dict[str, Any]:
    """``stats.sum_sq_norms`` by path; a stacked tensor needs one sum per layer."""
    sum_sq = _flat(stats.sum_sq_norms)
    for path in grads:
        if path not in sum_sq:
            raise ValueError(f"micro_batch_stats.sum_sq_norms has no entry for {path!r}")
        value = sum_sq[path]
        if layout.is_stacked(path) and jnp.ndim(value) != 1:
            raise ValueError(
                f"micro_batch_stats.sum_sq_norms[{path!r}] has shape {jnp.shape(value)}; a stacked tensor "
                "needs one sum per layer, shape (num_layers,) (see warmup_jax.metrics.update.sq_norms)"
            )
    return sum_sq


def _neuron_angles(
    a32: jax.Array, b32: jax.Array, na2: jax.Array, nb2: jax.Array, axes: tuple[int, ...], total=jnp.sum
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-neuron ``|a_k/|a_k| - b_k/|b_k||^2`` (dims kept; 0 where undefined), the sum (``total``)
    of the squared neuron angles, and the number of neurons whose old and new norms are both nonzero."""
    defined = (na2 > 0) & (nb2 > 0)
    inv_a = jnp.where(defined, jax.lax.rsqrt(jnp.where(defined, na2, 1.0)), 0.0)
    inv_b = jnp.where(defined, jax.lax.rsqrt(jnp.where(defined, nb2, 1.0)), 0.0)
    # |a^ - b^|^2 in one fused pass; |a^ + b^|^2 = 4 - |a^ - b^|^2 for unit vectors (a separate
    # second reduction over the normalised tensors costs ~10x more on XLA:CPU).
    d2 = jnp.sum(jnp.square(a32 * inv_a - b32 * inv_b), axis=axes, keepdims=True)
    theta = jnp.where(defined, 2.0 * jnp.arctan2(jnp.sqrt(d2), jnp.sqrt(jnp.maximum(4.0 - d2, 0.0))), 0.0)
    return d2, total(jnp.square(theta)), total(defined.astype(jnp.float32))


def _accumulate(sums: dict[str, dict[str, jax.Array]], groups: list[str], **values: jax.Array) -> None:
    """Adds per-tensor statistics to the running sums of each of ``groups``; a stacked tensor's
    ``(L,)`` values go to its per-layer group as they are and to the others summed over layers."""
    for g in groups:
        bucket = sums.setdefault(g, {})
        for key, value in values.items():
            if LAYER not in g and jnp.ndim(value):  # a stacked tensor's share of a whole-model group
                value = jnp.sum(value)
            bucket[key] = bucket[key] + value if key in bucket else value


def _combined_angle(
    members: list[tuple[jax.Array, jax.Array, jax.Array]], sq_old: jax.Array, sq_new: jax.Array
) -> jax.Array:
    """Angle of the concatenation of several neurons' old and new weights (see norm_and_angle_metrics).

    With per-layer group norms (``sq_old`` of shape ``(L,)``) every member is a stacked tensor and
    the result is one angle per layer."""
    big_a, big_b = jnp.sqrt(sq_old), jnp.sqrt(sq_new)
    safe_a, safe_b = jnp.where(big_a > 0, big_a, 1.0), jnp.where(big_b > 0, big_b, 1.0)
    per_layer = jnp.ndim(sq_old) == 1
    diff_sq, sum_sq = 0.0, 0.0
    for na2, nb2, d2 in members:
        lead = (-1,) + (1,) * (na2.ndim - 1)  # a layer's norm against each of its neurons
        a_norm, b_norm = (safe_a.reshape(lead), safe_b.reshape(lead)) if per_layer else (safe_a, safe_b)
        alpha, beta = jnp.sqrt(na2) / a_norm, jnp.sqrt(nb2) / b_norm
        cross = alpha * beta * d2
        axes = tuple(range(1, na2.ndim)) if per_layer else None
        diff_sq = diff_sq + jnp.sum(jnp.square(alpha - beta) + cross, axis=axes)
        sum_sq = sum_sq + jnp.sum(jnp.square(alpha + beta) - cross, axis=axes)
    theta = 2.0 * jnp.arctan2(jnp.sqrt(diff_sq), jnp.sqrt(jnp.maximum(sum_sq, 0.0)))
    return jnp.where((big_a > 0) & (big_b > 0), theta, jnp.nan)


def _ratio(num: jax.Array, den: jax.Array, *, nan_if_zero: bool = True) -> jax.Array:
    """``num / den``; where ``den == 0``: NaN (or +inf for a positive ``num`` if not nan_if_zero)."""
    num, den = jnp.asarray(num, jnp.float32), jnp.asarray(den, jnp.float32)
    safe = jnp.where(den != 0, den, 1.0)
    fallback = jnp.nan if nan_if_zero else jnp.where(num > 0, jnp.inf, jnp.nan)
    return jnp.where(den != 0, num / safe, fallback)


def _f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _float32(metrics: dict[str, Any]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def _flat(tree: Any) -> dict[str, Any]:
    """A parameter tree as ``{path: leaf}``; a dict that already is one (no dict values) is kept,
    in its order."""
    if isinstance(tree, dict) and not any(isinstance(v, dict) for v in tree.values()):
        return dict(tree)
    return dict(_flatten(tree))


def _flatten(tree: Any) -> list[tuple[str, Any]]:
    """``[("blocks/0/attn/qkv/kernel", leaf), ...]``; ``optax.MaskedNode`` leaves are dropped."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
    return [(path_to_str(path), leaf) for path, leaf in flat if not isinstance(leaf, optax.MaskedNode)]


def _name(path: str) -> str:
    """``"blocks/0/attn/qkv/kernel"`` -> ``"blocks.0.attn.qkv.kernel"``."""
    return path.replace("/", ".")


def _groups(path: str) -> list[str]:
    """The aggregate groups of a tensor: its layer (``blocks.<i>``, from the first numeric path
    component) and ``global``."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return [".".join(parts[: i + 1]), GLOBAL]
    return [GLOBAL]


__all__ = [
    "LAYER",
    "find_first_moment",
    "metrics_due",
    "momentum_metrics",
    "norm_and_angle_metrics",
    "layer_names",
    "per_layer_names",
    "relative_representation_change",
    "rrc_metrics",
    "snr_metrics",
    "split_stacked",
    "stack_prefix",
    "sq_norms",
    "stable_angle",
    "update_metrics",
]
