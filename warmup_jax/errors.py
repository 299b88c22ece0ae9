"""Errors for bad input, and small checks that phrase them the same way everywhere.

Every message names the field (or file), the bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the run's configuration."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint cannot be read or fails its integrity check (an older one may still be good)."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint cannot be written (no space, the folder vanished); older ones are kept."""


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter (``train.on_nonfinite``)."""


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not allowed; choose one of: {', '.join(repr(a) for a in allowed)}")


def check_range(
    field: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raises ConfigError unless ``value`` is a finite number with ``low <= value <= high`` (bounds
    optional, inclusivity per side). NaN and infinities are refused whatever the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{field}={value!r} is not a number")
    if not math.isfinite(value):
        raise ConfigError(f"{field}={value!r} is not a finite number")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        lo = "" if low is None else f"{low} {'<=' if low_inclusive else '<'} "
        hi = "" if high is None else f" {'<=' if high_inclusive else '<'} {high}"
        raise ConfigError(f"{field}={value!r} is out of range; allowed: {lo}{field.split('.')[-1]}{hi}")
