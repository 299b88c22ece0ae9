"""The one registry of optimizers selectable by name (``optim.name`` in a training config).

It holds the aliases of :mod:`warmup_jax.optim.alias` under their own names, and whatever a user
adds with :func:`register`. Every entry is ``factory(learning_rate, **hyperparameters)`` returning
an ``optax.GradientTransformation``; :func:`check_hyperparameters` names an unknown keyword and
the allowed ones. The registry also records what an optimizer needs from the training loop:
``micro_batch_stats`` in every ``update`` (:data:`NEEDS_MICRO_BATCH_STATS`), or a state built from
one gradient by :func:`warmup_jax.optim.gi_adam_init` (:data:`NEEDS_INITIAL_GRADIENT`).
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import optax

from warmup_jax.optim import alias

Recipe = Callable[..., optax.GradientTransformation]

RECIPES: dict[str, Recipe] = {
    fn.__name__: fn
    for fn in (
        alias.adamw,
        alias.lion,
        alias.lion_a,
        alias.lion_a_fast_momentum,
        alias.lion_ar,
        alias.lion_ar_rrc,
        alias.lion_ar_fast_momentum,
        alias.adamw_rotational,
        alias.gi_adam,
        alias.radam,
        alias.adamw_spectral_bound,
        alias.warmup_free,
    )
}

#: Names whose ``update`` needs ``micro_batch_stats=MicroBatchStats(...)``.
NEEDS_MICRO_BATCH_STATS: set[str] = {"lion_ar_rrc", "warmup_free"}
#: Names whose state should be built by :func:`warmup_jax.optim.gi_adam_init`.
NEEDS_INITIAL_GRADIENT: set[str] = {"gi_adam"}


class UnknownHyperparameterError(TypeError, ValueError):
    """A recipe was given a keyword it does not have."""


def register(
    name: str,
    factory: Recipe,
    *,
    needs_micro_batch_stats: bool = False,
    needs_initial_gradient: bool = False,
) -> Recipe:
    """Makes ``factory(learning_rate, **hyperparameters)`` selectable as ``optim.name=name``.

    Replaces an entry of the same name. Returns ``factory``, so it can be used as a decorator via
    ``functools.partial(register, "my_opt")``.

    Example:
        >>> import optax
        >>> from warmup_jax.optim import recipes
        >>> _ = recipes.register("sgd", lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum))
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"optimizer name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"optimizer factory for {name!r} must be callable, got {type(factory).__name__}")
    RECIPES[name] = factory
    for flag, names in (
        (needs_micro_batch_stats, NEEDS_MICRO_BATCH_STATS),
        (needs_initial_gradient, NEEDS_INITIAL_GRADIENT),
    ):
        (names.add if flag else names.discard)(name)
    return factory


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a ``ValueError`` lists the allowed names otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer recipe {name!r}; allowed: {sorted(RECIPES)}") from None


def hyperparameter_names(name: str) -> list[str] | None:
    """The keywords of recipe ``name`` besides ``learning_rate``; ``None`` if it takes ``**kwargs``."""
    parameters = inspect.signature(get_recipe(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.name != "learning_rate" and p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_hyperparameters(name: str, hyperparameters: Mapping[str, Any]) -> None:
    """Raises :class:`UnknownHyperparameterError` for a keyword recipe ``name`` does not take."""
    allowed = hyperparameter_names(name)
    if allowed is None:
        return  # the factory validates its own keywords
    unknown = [key for key in hyperparameters if key not in allowed]
    if unknown:
        raise UnknownHyperparameterError(
            f"optimizer {name!r} got unknown hyperparameter(s) {unknown}; allowed: {allowed}"
        )


def build(name: str, learning_rate: optax.ScalarOrSchedule, **hyperparameters: Any) -> optax.GradientTransformation:
    """``RECIPES[name](learning_rate, **hyperparameters)`` after :func:`check_hyperparameters`."""
    check_hyperparameters(name, hyperparameters)
    return get_recipe(name)(learning_rate, **hyperparameters)


def momentum_coefficient(name: str, hyperparameters: Mapping[str, Any]) -> float | None:
    r"""The weight :math:`\beta` of the old momentum in recipe ``name``'s update direction.

    The direction is :math:`\beta m_{t-1} + (1-\beta) g_t` (before normalisation): :math:`\beta_1`
    for Adam and Lion (keyword ``b1``); for the high-momentum recipes (keyword ``beta``) it is
    :math:`\beta^2` with Nesterov momentum, since :math:`\beta m_t + (1-\beta) g_t =
    \beta^2 m_{t-1} + (1-\beta^2) g_t`, and :math:`\beta` without. ``None`` for a recipe with
    neither keyword. The momentum metrics use it.
    """
    parameters = inspect.signature(get_recipe(name)).parameters
    values = {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}
    values.update(hyperparameters)
    if "beta" in values:
        beta = float(values["beta"])
        return beta * beta if values.get("nesterov", False) else beta
    if "b1" in values:
        return float(values["b1"])
    return None
