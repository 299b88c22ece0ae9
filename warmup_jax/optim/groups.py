"""Parameter groups: labels from regex rules on parameter paths, routed with ``optax.partition``.

Every parameter gets exactly one of three labels:

* ``"rotational"``: scale-invariant weight matrices (Dense kernels, embeddings). Rotational
  optimizers keep their neurons on a fixed-norm sphere; the other optimizers treat the label like
  ``"decay"``.
* ``"decay"``: a plain update with decoupled weight decay.
* ``"no_decay"``: a plain update without weight decay (LayerNorm gains, biases).

Rules are ``(regex, label)`` pairs tried in order with ``re.search`` on paths such as
``"blocks/0/attn/qkv/kernel"``; the first match wins. A parameter that no rule matches is an error
(as in big_vision), so a renamed layer cannot silently drop out of weight decay. Without rules the
label follows the tensor rank: ``ndim >= 2`` is rotational, everything else ``no_decay`` (nanoGPT's
weight-decay groups and REQ's default choice of rotational tensors), except that tensors named
``scale`` or ``bias`` (the last path component) are always ``no_decay``: stacked (scanned) layers
store LayerNorm gains and biases with a leading layer axis, ``(L, d)``, which must not turn them
into rotational matrices.

Paths are built the same way for nested dicts and Flax NNX ``nnx.State`` trees (the ``.value`` of an
``nnx.Variable`` is not part of the path), so one rule set serves both.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax

from warmup_jax.optim import _tree

ROTATIONAL = "rotational"
DECAY = "decay"
NO_DECAY = "no_decay"
LABELS = (ROTATIONAL, DECAY, NO_DECAY)

Rule = tuple[str, str]

#: Rules for the GPT-2 model of warmup_jax (paths like ``blocks/0/mlp/fc/kernel``,
#: ``wte/embedding``, ``blocks/0/ln1/scale``).
GPT2_RULES: tuple[Rule, ...] = (
    (r"(^|/)(kernel|embedding)$", ROTATIONAL),
    (r"(^|/)(scale|bias)$", NO_DECAY),
)


def _check_rules(rules: Sequence[Rule]) -> list[tuple[re.Pattern, str]]:
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise ValueError(f"rule {i} ({rule!r}) must be a (regex, label) pair")
        pattern, label = rule
        if label not in LABELS:
            raise ValueError(f"rule {i} ({rule!r}) has label {label!r}; allowed labels: {LABELS}")
        try:
            compiled.append((re.compile(pattern), label))
        except re.error as err:
            raise ValueError(f"rule {i} ({rule!r}) is not a valid regex: {err}") from err
    return compiled


def param_labels(params: Any, rules: Sequence[Rule] | None = None) -> Any:
    """A tree like ``params`` whose leaves are the group labels.

    Args:
        params: nested dict, ``nnx.State`` or any pytree of arrays (``optax.MaskedNode`` leaves are
            kept as they are).
        rules: ``(regex, label)`` pairs, first match wins; ``None`` labels by rank (``ndim >= 2``
            rotational, else ``no_decay``; ``scale``/``bias`` tensors always ``no_decay``).

    Returns:
        The label tree (same structure as ``params``).

    Raises:
        ValueError: naming every parameter path that no rule covers.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    if rules is None:
        labels = [_label_by_rank(_tree.path_to_str(path), leaf) for path, leaf in flat]
        return treedef.unflatten(labels)
    compiled = _check_rules(rules)
    labels, uncovered = [], []
    for path, _ in flat:
        name = _tree.path_to_str(path)
        label = next((lab for pattern, lab in compiled if pattern.search(name)), None)
        if label is None:
            uncovered.append(name)
        labels.append(label)
    if uncovered:
        raise ValueError(
            f"no parameter-group rule covers {uncovered}; rules: {list(rules)}. Add a rule "
            f"(regex, label) with label in {LABELS}."
        )
    return treedef.unflatten(labels)


def _label_by_rank(path: str, leaf: Any) -> str:
    if getattr(leaf, "ndim", 0) < 2 or path.rsplit("/", 1)[-1] in ("scale", "bias"):
        return NO_DECAY
    return ROTATIONAL


def label_fn(rules: Sequence[Rule] | None = None) -> Callable[[Any], Any]:
    """``params -> labels``, for ``optax.partition``; the rules are checked at once."""
    if rules is not None:
        _check_rules(rules)
    return lambda params: param_labels(params, rules)


def decay_mask(rules: Sequence[Rule] | None = None) -> Callable[[Any], Any]:
    """``params -> bool tree``: True where weight decay applies (labels rotational or decay).

    Suitable as the ``mask`` of ``optax.adamw``/``optax.lion``/``optax.add_decayed_weights``.
    """
    labels = label_fn(rules)
    return lambda params: jax.tree.map(lambda label: label != NO_DECAY, labels(params))


def partition(
    transforms: Mapping[str, optax.GradientTransformation],
    rules: Sequence[Rule] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """``optax.partition`` over the three groups; every label must have a transform."""
    missing = [label for label in LABELS if label not in transforms]
    extra = [label for label in transforms if label not in LABELS]
    if missing or extra:
        raise ValueError(f"partition needs exactly the labels {LABELS}; missing {missing}, unknown {extra}")
    return optax.partition(dict(transforms), label_fn(rules))
