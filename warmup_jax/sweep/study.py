"""A study: a named config, base overrides, and a grid of cells over any config fields.

A study file (``experiments/<study>.py``) defines ``STUDY = Study(...)``::

    STUDY = Study(
        name="lr_warmup",
        config="cpu_small",
        base=["train.steps=300"],
        grid={"train.seed": [0, 1], "optim.name": ["adamw", "lion_ar"], "optim.lr": [1e-3, 3e-3]},
    )

Every combination of the grid's values is one cell (the first key varies slowest), followed by
the explicit ``cells``. :func:`plan_cells` builds and validates the config of every cell before any
work starts, and gives each cell a stable id: a readable slug of its values plus a hash of them,
so that a cell keeps its id (its records and its run folder) whatever the order of the grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from warmup_jax.config import Config, load_config
from warmup_jax.errors import ConfigError

__all__ = ["Cell", "Study", "format_value", "load_study", "plan_cells", "value_at"]

# Set by the sweep for every cell; a study cannot choose them.
MANAGED_FIELDS = ("train.out_dir", "train.resume")
_SLUG_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_SLUG = 60


@dataclasses.dataclass(frozen=True)
class Study:
    """What to run: a config, overrides shared by every cell, and the cells.

    Attributes:
      name: the study's name; names the default records file and the run folders.
      config: a named config (``warmup-jax configs``) or a ``.py`` file with ``get_config()``.
      base: overrides (``"section.field=value"``) applied to every cell before its own.
      grid: config field -> list of values; the cells are the product of the lists, the first key
        varying slowest.
      cells: extra cells after the grid's, each a dict of config field -> value.
      records: the JSON-lines file of results, one line per finished cell (default
        ``experiments/records/<name>.jsonl``). Relative paths are relative to the current
        folder, as ``train.out_dir`` is.
      runs_dir: each cell trains in ``<runs_dir>/<name>/<cell id>``.
      seed_key: the field whose values are repetitions; the report groups over everything else.
      lr_key: the field on the x axis of the report's loss-vs-learning-rate figure.
      keep_checkpoints: keep a finished cell's checkpoints (by default they are deleted once its
        record is written, except those of a cell another cell starts from with
        ``train.init_from``; ``metrics.jsonl`` always stays).
      description: one paragraph for the report.
    """

    name: str
    config: str
    base: Sequence[str] = ()
    grid: dict[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    cells: Sequence[dict[str, Any]] = ()
    records: str | None = None
    runs_dir: str = "runs/sweeps"
    seed_key: str = "train.seed"
    lr_key: str = "optim.lr"
    keep_checkpoints: bool = False
    description: str = ""

    @property
    def records_path(self) -> str:
        return self.records or os.path.join("experiments", "records", f"{self.name}.jsonl")

    def cell_dir(self, cell_id: str) -> str:
        return os.path.join(self.runs_dir, self.name, cell_id)

    def keys(self) -> list[str]:
        """Every field a cell sets, grid fields first, in the order the study gives them."""
        keys = list(self.grid)
        for cell in self.cells:
            keys += [k for k in cell if k not in keys]
        return keys


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a study.

    Attributes:
      id: stable id (``lr0.001_adamw_seed0-1a2b3c4d``); names the run folder and the record.
      values: field -> value as the config holds it (parsed and typed: ``"1e-3"`` becomes 0.001).
      overrides: the cell's own overrides, ``"field=value"``, in the study's key order.
      config: the cell's full config, validated (its ``train.out_dir`` is the cell's folder).
    """

    id: str
    values: dict[str, Any]
    overrides: tuple[str, ...]
    config: Config

    def describe(self) -> str:
        return " ".join(self.overrides)


def format_value(value: Any) -> str:
    """A value as an override's right-hand side: ``True`` -> ``"true"``, ``0.001`` -> ``"0.001"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value) if not isinstance(value, float) else repr(value)
    return repr(value)


def value_at(config: Config, key: str) -> Any:
    """The value of ``key`` (``"optim.hparams.b2"``) in ``config``."""
    node: Any = config
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def cell_id(values: dict[str, Any]) -> str:
    """A readable slug of the values (sorted by field) and an 8-hex hash of them: ``lr0.001_adamw_seed0-1a2b3c4d``."""
    canonical = json.dumps({k: format_value(v) for k, v in values.items()}, sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    parts = []
    for key, value in sorted(values.items()):
        short = key.rsplit(".", 1)[-1]
        parts.append(format_value(value) if short == "name" else f"{short}{format_value(value)}")
    slug = _SLUG_CHARS.sub("-", "_".join(parts)).strip("-_")[:_MAX_SLUG]
    return f"{slug}-{digest}" if slug else digest


def load_study(path: str) -> Study:
    """Loads ``STUDY`` from a study file (``experiments/<study>.py``)."""
    if not os.path.isfile(path):
        raise ConfigError(f"study file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("_warmup_jax_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ConfigError(f"study file {path!r} defines no STUDY = Study(...)")
    return study


def _raw_cells(study: Study) -> list[dict[str, Any]]:
    for key, values in study.grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"study {study.name!r}: grid[{key!r}] must be a non-empty list of values, got {values!r}")
    keys = list(study.grid)
    cells = [dict(zip(keys, combination)) for combination in itertools.product(*study.grid.values())] if keys else []
    for cell in study.cells:
        if not isinstance(cell, dict) or not cell:
            raise ConfigError(f"study {study.name!r}: every entry of cells must be a non-empty dict, got {cell!r}")
        cells.append(dict(cell))
    return cells


def _validate(config: Config) -> None:
    """The checks the trainer makes before any work, without touching data or devices' memory."""
    import jax

    from warmup_jax.train.optimizer import check_optimizer_config, check_optimizer_fits_training

    config.validate(num_devices=jax.device_count(), process_count=jax.process_count())
    check_optimizer_config(config.optim)
    check_optimizer_fits_training(config.optim, config.train)


def plan_cells(study: Study) -> list[Cell]:
    """Every cell of ``study`` with its validated config.

    Raises ConfigError, before any work, naming the study, the cell and the bad field (an unknown
    key, a value out of range, an optimizer that does not fit the run, a field the sweep sets
    itself, two cells with the same values).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", study.name or ""):
        raise ConfigError(f"study name {study.name!r} must be a folder name (letters, digits, '.', '_', '-')")
    for item in study.base:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"study {study.name!r}: base override {item!r} must look like section.field=value")
    set_by_study = [item.split("=", 1)[0].strip() for item in study.base] + study.keys()
    for key in set_by_study:
        if key in MANAGED_FIELDS:
            raise ConfigError(f"study {study.name!r} sets {key}, which the sweep sets for every cell; remove it")
    try:  # the base alone first: a bad base override is named once, not once per cell
        load_config(study.config, list(study.base))
    except ConfigError as e:
        raise ConfigError(f"study {study.name!r}, config {study.config!r} with base overrides: {e}") from None
    raw = _raw_cells(study)
    cells, seen = [], {}
    for index, values in enumerate(raw, 1):
        overrides = [f"{key}={format_value(value)}" for key, value in values.items()]
        where = f"study {study.name!r}, cell {index}/{len(raw)} ({' '.join(overrides)})"
        try:
            config = load_config(study.config, [*study.base, *overrides])
            typed = {key: value_at(config, key) for key in values}
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        identifier = cell_id(typed)
        if identifier in seen:
            raise ConfigError(f"{where} has the same values as cell {seen[identifier]}; remove one of them")
        seen[identifier] = index
        config = load_config(study.config, [*study.base, *overrides, f"train.out_dir={study.cell_dir(identifier)}"])
        try:
            _validate(config)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        overrides = tuple(f"{key}={format_value(value)}" for key, value in typed.items())
        cells.append(Cell(identifier, typed, overrides, config))
    if not cells:
        raise ConfigError(f"study {study.name!r} has no cells; give a grid or cells")
    return cells
