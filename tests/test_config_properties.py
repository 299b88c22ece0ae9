"""Property-based: any ``--set field=text`` either builds a valid config or raises ConfigError naming
the field; never another exception, never an accepted value that validation cannot explain."""

import dataclasses
import math

import jax
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from warmup_jax.config import Config, ConfigError, apply_overrides, load_config
from warmup_jax.optim import recipes
from warmup_jax.train.optimizer import check_optimizer_config, check_optimizer_fits_training


def _fields(obj, prefix=""):
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            yield from _fields(value, f"{name}.")
        elif not isinstance(value, dict):
            yield name


BASE = load_config("tiny")
FIELDS = sorted(_fields(BASE)) + [f"optim.hparams.{k}" for k in recipes.hyperparameter_names("adamw")]

numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "1", "-1", "1e9", "1e30", "nan", "inf", "-inf", "0.5", "2", "64", "3e-4"]),
)
texts = st.one_of(
    st.sampled_from(["", "true", "false", "none", "abc", "[1, 2]", "{'a': 1}", "adamw", "pre", "bfloat16", "gpt2"]),
    st.text(max_size=12),
)


def _check(config: Config) -> None:
    config.validate(num_devices=jax.device_count(), process_count=1)
    check_optimizer_config(config.optim)
    check_optimizer_fits_training(config.optim, config.train)


# No 'explain' phase: it writes patch files into the working tree.
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    database=None,
)
@given(field=st.sampled_from(FIELDS), text=st.one_of(numbers, texts))
def test_every_override_builds_a_valid_config_or_names_the_field(field, text):
    try:
        config = apply_overrides(BASE, [f"{field}={text}"])
        _check(config)
    except ConfigError as e:
        message = str(e)
        # the field, or (cross-field rules) the field it conflicts with, is named
        assert field in message or field.rsplit(".", 1)[-1] in message, (field, text, message)
        return
    value = config
    for part in field.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    if isinstance(value, float):
        assert math.isfinite(value), (field, text, value)  # accepted numbers are finite
