"""Private pytree helpers: readable parameter paths and path-aligned lookups.

Optax wrappers such as ``optax.partition`` hand inner transforms parameter trees in which the
parameters of other groups are replaced by ``optax.MaskedNode``. Trees that arrive through other
channels (extra arguments, user-supplied dimension numbers, an initial gradient) still have every
leaf, and they may even be a different container type (a plain dict for an ``nnx.State``). The
helpers here line such trees up with a reference tree by parameter path.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax

_VARIABLE_VALUE_ATTRS = ("value", "raw_value")


def path_to_str(path: Sequence[Any]) -> str:
    """Joins a pytree key path into ``"blocks/0/attn/qkv/kernel"``.

    A trailing attribute access to ``value`` (how a Flax NNX ``Variable`` exposes its array) is
    dropped, so an ``nnx.State`` and its ``nnx.to_pure_dict`` give the same paths.
    """
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    if len(parts) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name in _VARIABLE_VALUE_ATTRS:
        parts.pop()
    return "/".join(parts)


def leaves_with_paths(
    tree: Any,
    is_leaf: Callable[[Any], bool] | None = None,
) -> tuple[list[str], list[Any], Any]:
    """Returns ``(paths, leaves, treedef)`` of ``tree``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    paths = [path_to_str(path) for path, _ in flat]
    leaves = [leaf for _, leaf in flat]
    return paths, leaves, treedef


def align_leaves(
    reference: Any,
    tree: Any,
    *,
    what: str,
    is_leaf: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """The leaves of ``tree`` in the order of the leaves of ``reference``, matched by path.

    Args:
        reference: the tree whose leaves define the order (may contain ``optax.MaskedNode``).
        tree: a tree holding (at least) one leaf for every leaf path of ``reference``.
        what: a name for ``tree`` used in error messages.
        is_leaf: passed to the flattening of ``tree`` (not of ``reference``).

    Returns:
        A list with one leaf of ``tree`` per leaf of ``reference``.
    """
    if is_leaf is None and jax.tree.structure(tree) == jax.tree.structure(reference):
        return jax.tree.leaves(tree)
    ref_paths, _, _ = leaves_with_paths(reference)
    paths, leaves, _ = leaves_with_paths(tree, is_leaf=is_leaf)
    by_path = dict(zip(paths, leaves))
    missing = [p for p in ref_paths if p not in by_path]
    if missing:
        raise ValueError(
            f"{what} has no entry for the parameter path(s) {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}; it holds {paths[:8]}"
            f"{' ...' if len(paths) > 8 else ''}"
        )
    return [by_path[p] for p in ref_paths]
