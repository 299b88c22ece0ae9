"""Which axes of a tensor form one neuron, and per-neuron helpers.

A rotational optimizer keeps every *neuron* (the weight vector that produces one output unit) on a
sphere of fixed radius. Which axes make up that vector is declared with
:class:`NeuronDimensionNumbers`, in the spirit of ``optax.contrib.MuonDimensionNumbers``: the
reduction (fan-in) axes are summed over to get a neuron's norm, the output axes index the neurons,
and all remaining axes are batch axes (each index its own set of neurons, e.g. a leading axis of
stacked layers).

Defaults follow Flax layouts (docs/methods.md, "Neurons and parameter groups"):

* Dense kernels are ``(in, out)``: a neuron is a column, ``reduction_axis=-2, output_axis=-1``;
  leading axes (stacked layers) are batch axes.
* Embeddings (path ending in ``embedding``) are ``(vocab, d)``: a neuron is a row,
  ``reduction_axis=-1, output_axis=-2``.
* 1-D tensors are one neuron (whole-tensor normalisation).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from warmup_jax.optim import _tree, groups


class NeuronDimensionNumbers(NamedTuple):
    """Axes of a weight tensor: fan-in axes (reduced per neuron) and neuron (output) axes.

    Axes in neither are batch axes. Negative axes count from the end.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


#: Dimension-number spec accepted by the rotational transforms: ``None`` (Flax defaults from the
#: path), ``"tensor"`` (the whole tensor is one neuron), one :class:`NeuronDimensionNumbers` for all
#: tensors, a tree of them, or a callable ``params -> tree``.
DimensionNumbersSpec = None | str | NeuronDimensionNumbers | Any | Callable[[Any], Any]

_is_dim_nums = lambda x: isinstance(x, NeuronDimensionNumbers)  # noqa: E731


def _as_tuple(axes: Sequence[int] | int) -> tuple[int, ...]:
    return (axes,) if isinstance(axes, int) else tuple(axes)


def reduction_axes(shape: Sequence[int], dim_nums: NeuronDimensionNumbers) -> tuple[int, ...]:
    """The non-negative, sorted reduction axes of ``dim_nums`` for a tensor of ``shape``."""
    ndim = len(shape)
    red = _as_tuple(dim_nums.reduction_axis)
    out = _as_tuple(dim_nums.output_axis)
    for ax in red + out:
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis {ax} of {dim_nums} is out of range for shape {tuple(shape)}")
    red = tuple(sorted({ax % ndim for ax in red}))
    out = {ax % ndim for ax in out}
    if set(red) & out:
        raise ValueError(f"reduction and output axes of {dim_nums} overlap for shape {shape}")
    if not red:
        raise ValueError(f"{dim_nums} has no reduction axis")
    return red


def default_dimension_numbers(path: str, shape: Sequence[int]) -> NeuronDimensionNumbers:
    """Flax-layout defaults: columns of kernels, rows of embeddings, 1-D tensors whole."""
    ndim = len(shape)
    if ndim <= 1:
        return NeuronDimensionNumbers(reduction_axis=tuple(range(ndim)), output_axis=())
    if path.rsplit("/", 1)[-1].endswith("embedding"):
        return NeuronDimensionNumbers(reduction_axis=-1, output_axis=-2)
    return NeuronDimensionNumbers(reduction_axis=-2, output_axis=-1)


def neuron_axes(path: str, shape: Sequence[int]) -> tuple[int, ...]:
    """Reduction axes of the default dimension numbers for the parameter at ``path``."""
    if len(shape) == 0:
        return ()
    return reduction_axes(shape, default_dimension_numbers(path, shape))


def resolve_reduction_axes(params: Any, spec: DimensionNumbersSpec = None) -> list[tuple[int, ...]]:
    """Reduction axes for every leaf of ``params`` (in ``jax.tree.leaves`` order).

    Args:
        params: the parameter tree (``optax.MaskedNode`` leaves allowed).
        spec: see :data:`DimensionNumbersSpec`; a tree is matched to ``params`` by path.

    Returns:
        One tuple of axes per leaf.
    """
    paths, leaves, _ = _tree.leaves_with_paths(params)
    if callable(spec) and not _is_dim_nums(spec):
        spec = spec(params)
    if spec is None:
        dims = [default_dimension_numbers(p, x.shape) for p, x in zip(paths, leaves)]
    elif isinstance(spec, str):
        if spec != "tensor":
            raise ValueError(f"dimension_numbers={spec!r}: the only string allowed is 'tensor'")
        return [tuple(range(x.ndim)) for x in leaves]
    elif _is_dim_nums(spec):
        dims = [spec] * len(leaves)
    else:
        dims = _tree.align_leaves(params, spec, what="dimension_numbers", is_leaf=_is_dim_nums)
    result = []
    for x, d in zip(leaves, dims):
        if x.ndim == 0:
            result.append(())
        else:
            result.append(reduction_axes(x.shape, d))
    return result


def neuron_sq_norms(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Per-neuron squared norms in float32 (or wider), keeping reduced axes as size 1."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return jnp.sum(x * x, axis=axes, keepdims=True)


def center_rotational_params(
    params: Any,
    *,
    rules: Sequence[groups.Rule] | None = None,
    dimension_numbers: DimensionNumbersSpec = None,
) -> Any:
    r"""Centres every neuron of the rotational tensors, keeping its norm (REQ's initialisation).

    For each neuron :math:`w_k` of a tensor labelled ``"rotational"``:
    :math:`w_k \leftarrow (w_k - \bar w_k)\,\|w_k\| / \|w_k - \bar w_k\|`. An optax ``init`` cannot
    change parameters, so the REQ-compatible mode of :func:`warmup_jax.optim.scale_by_rotational`
    (``zero_mean=True``) expects this to be applied once, before the optimizer state is
    initialised; the target norms the optimizer then stores are the original neuron norms.

    Args:
        params: parameter tree (dict or ``nnx.State``).
        rules: parameter-group rules (see :mod:`warmup_jax.optim.groups`); ``None``: by rank.
        dimension_numbers: which axes form a neuron (see :data:`DimensionNumbersSpec`).

    Returns:
        A tree like ``params`` with centred rotational tensors, same dtypes.
    """
    labels = jax.tree.leaves(groups.param_labels(params, rules))
    leaves, treedef = jax.tree.flatten(params)
    axes = resolve_reduction_axes(params, dimension_numbers)
    out = []
    for x, label, ax in zip(leaves, labels, axes):
        if label != groups.ROTATIONAL or not ax:
            out.append(x)
            continue
        x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        centred = x32 - jnp.mean(x32, axis=ax, keepdims=True)
        old = jnp.sqrt(neuron_sq_norms(x32, ax))
        new = jnp.sqrt(neuron_sq_norms(centred, ax))
        scale = jnp.where(new > 0, old / jnp.where(new > 0, new, 1.0), 0.0)
        out.append((centred * scale).astype(x.dtype))
    return treedef.unflatten(out)
