"""Typed run configuration: ``Config = model + data + optim + train + metrics``, all frozen dataclasses.

Named configurations live in the top-level ``configs/`` folder (installed as
``warmup_jax.configs``; ``warmup-jax configs`` lists them); each module there defines
``get_config() -> Config``. Any field can be overridden from the command line with
``--set section.field=value`` (``optim.hparams`` is an open dict passed to the optimizer recipe:
``--set optim.hparams.b2=0.99``).

``Config.validate(num_devices)`` checks every field and the cross-field rules before any work
starts; errors name the field, the bad value and what is allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import os
import types
import typing
from typing import Any

from warmup_jax.data.config import DataConfig
from warmup_jax.errors import ConfigError, check_choice, check_range
from warmup_jax.model.config import ModelConfig

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "MetricsConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "list_configs",
]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    name: str = "adamw"  # an optimizer name: `warmup-jax configs` lists them (section "optimizers")
    lr: float = 6e-4  # peak learning rate
    warmup_steps: int = 0
    warmup_init_lr: float = 0.0  # learning rate at step 0 of the warmup (Kalra & Barkeshli's eta_init)
    # Measure eta_init at start-up: the smallest doubling LR whose first step raises the loss (the catapult)
    catapult_init_lr: bool = False
    cooldown_fraction: float = 0.5  # final fraction of training with a linear decay to end_lr
    end_lr: float = 0.0
    schedule_unit: str = "steps"  # "tokens": decay follows tokens seen (for sequence-length warmup)
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    hparams: dict = dataclasses.field(default_factory=dict)  # recipe keyword arguments

    def validate(self, total_steps: int) -> None:
        check_range("optim.lr", self.lr, low=0.0, low_inclusive=False)
        check_range("optim.end_lr", self.end_lr, low=0.0)
        check_range("optim.cooldown_fraction", self.cooldown_fraction, low=0.0, high=1.0)
        check_range("optim.grad_clip", self.grad_clip, low=0.0)
        check_choice("optim.schedule_unit", self.schedule_unit, ("steps", "tokens"))
        max_warmup = total_steps - int(round(self.cooldown_fraction * total_steps))
        check_range("optim.warmup_steps", self.warmup_steps, low=0, high=max_warmup)
        check_range("optim.warmup_init_lr", self.warmup_init_lr, low=0.0, high=self.lr)
        if self.catapult_init_lr and self.warmup_steps == 0:
            raise ConfigError(
                "optim.catapult_init_lr=true chooses where the warmup starts, but optim.warmup_steps=0; "
                "allowed: warmup_steps >= 1 with catapult_init_lr"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop, its mesh, logging and checkpointing."""

    steps: int = 200
    batch_size: int = 16  # global batch in sequences (B)
    grad_accum_steps: int = 1  # micro-batches per step (K); micro-batch size b = B / K
    seq_len: int = 128  # training context length (<= model.block_size)
    seed: int = 0
    eval_interval: int = 100  # 0: only at the end
    eval_batches: int = 10
    log_interval: int = 10
    checkpoint_interval: int = 0  # 0: only at the end and on SIGTERM
    keep_checkpoints: int = 2
    out_dir: str = "runs/default"
    resume: bool = False
    allow_config_change: bool = False  # resume with settings that alter the trajectory (logged)
    # A run folder (its train.out_dir): a new run starts from the parameters of its newest
    # checkpoint that verifies, with a fresh optimizer state and schedule (continued pre-training).
    init_from: str = ""
    # After this many steps print the warmup advisor's verdict from the run's own update metrics
    # (0: never); with stop_after_advice the run then saves a checkpoint and stops.
    advise_after_steps: int = 0
    stop_after_advice: bool = False
    mesh_fsdp: int = 1  # devices along the FSDP axis; the data axis takes the rest
    peak_flops_per_device: float = 0.0  # 0: looked up (accelerators) or measured (CPU)
    tensorboard: bool = True
    progress: bool = True  # console progress bar
    # A step whose loss, gradient or new parameters are not finite: "stop" (nothing of it is saved;
    # exit with an error naming the step and the last good checkpoint) or "skip" (its update is not
    # applied, the skip is logged; stop after max_skipped_steps skips in a row).
    on_nonfinite: str = "stop"
    max_skipped_steps: int = 10

    def validate(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "grad_accum_steps",
            "seq_len",
            "eval_batches",
            "log_interval",
            "keep_checkpoints",
            "mesh_fsdp",
            "max_skipped_steps",
        ):
            check_range(f"train.{name}", getattr(self, name), low=1)
        check_choice("train.on_nonfinite", self.on_nonfinite, ("stop", "skip"))
        for name in ("eval_interval", "checkpoint_interval", "peak_flops_per_device", "advise_after_steps"):
            check_range(f"train.{name}", getattr(self, name), low=0)
        check_range("train.seed", self.seed, low=0, high=2**32 - 1)  # a 32-bit PRNG seed
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not divisible by train.grad_accum_steps="
                f"{self.grad_accum_steps}; allowed: batch_size a multiple of grad_accum_steps"
            )
        check_range("train.advise_after_steps", self.advise_after_steps, high=self.steps)
        if self.stop_after_advice and not self.advise_after_steps:
            raise ConfigError(
                "train.stop_after_advice=true needs train.advise_after_steps >= 1 (the step at which the advice is "
                "given); allowed: both, or stop_after_advice=false"
            )
        if not self.out_dir:
            raise ConfigError("train.out_dir='' is not allowed; give a folder for logs and checkpoints")

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum_steps


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Per-layer update metrics computed inside the train step (see ``warmup_jax.metrics``).

    Metrics are computed for the update that completes step ``s`` (1-based) when ``s`` is a
    multiple of ``interval``, or, while ``s <= dense_until_step``, a multiple of ``dense_interval``
    (warmup acts in the first few hundred steps). ``metrics.interval=0`` turns them off.
    """

    interval: int = 10  # 0: no update metrics at all (the step is compiled without them)
    dense_interval: int = 1  # interval early in training, up to dense_until_step
    dense_until_step: int = 100  # 0: no dense phase
    rrc_tokens: int = 256  # token subsample of the batch for the RRC of Dense layers; 0: no RRC
    # beta of the cancellation ratio; None: the optimizer's own (b1, or beta**2 with Nesterov momentum)
    momentum_beta: float | None = None

    def validate(self) -> None:
        for name in ("interval", "dense_interval", "dense_until_step", "rrc_tokens"):
            check_range(f"metrics.{name}", getattr(self, name), low=0)
        if self.dense_until_step and not self.dense_interval:
            raise ConfigError(
                f"metrics.dense_until_step={self.dense_until_step} needs metrics.dense_interval >= 1; "
                "allowed: dense_interval >= 1, or dense_until_step=0 (no dense phase)"
            )
        if self.momentum_beta is not None:
            check_range("metrics.momentum_beta", self.momentum_beta, low=0.0, high=1.0, high_inclusive=False)

    @property
    def enabled(self) -> bool:
        return self.interval > 0


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "default"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)

    def validate(self, num_devices: int | None = None, process_count: int = 1) -> None:
        """Checks every field and the cross-field rules; raises ConfigError naming the field."""
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.optim.validate(self.train.steps)
        self.metrics.validate()
        if self.train.seq_len > self.model.block_size:
            raise ConfigError(
                f"train.seq_len={self.train.seq_len} is longer than the position table "
                f"(model.block_size={self.model.block_size}); allowed: seq_len <= {self.model.block_size}"
            )
        if self.data.seq_len_warmup_steps and self.data.seq_len_min > self.train.seq_len:
            raise ConfigError(
                f"data.seq_len_min={self.data.seq_len_min} is longer than train.seq_len={self.train.seq_len}; "
                f"allowed: seq_len_min <= {self.train.seq_len}"
            )
        if self.train.init_from and self.optim.catapult_init_lr:
            raise ConfigError(
                f"optim.catapult_init_lr=true with train.init_from={self.train.init_from!r} is not supported: the "
                "catapult search probes freshly initialised parameters; allowed: one of the two"
            )
        if num_devices is not None:
            if num_devices % self.train.mesh_fsdp:
                raise ConfigError(f"train.mesh_fsdp={self.train.mesh_fsdp} does not divide the {num_devices} devices")
            micro = self.train.micro_batch_size
            if micro % num_devices or micro % process_count:
                raise ConfigError(
                    f"train.batch_size={self.train.batch_size} gives micro-batches of {micro} sequences "
                    f"(batch_size / grad_accum_steps), not divisible by the {num_devices} devices; "
                    f"allowed: batch_size / grad_accum_steps a multiple of {num_devices}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in d.items():
            if key not in sections:
                raise ConfigError(f"unknown config section {key!r}")
            kwargs[key] = hints[key](**value) if dataclasses.is_dataclass(hints[key]) else value
        return cls(**kwargs)


def _parse_value(text: str, target_type: Any, field: str) -> Any:
    """Parses a command-line string into ``target_type`` (bool, int, float, str, dict values)."""
    if target_type is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{field}={text!r} is not a boolean; allowed: true/false")
    if target_type is int:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{field}={text!r} is not an integer") from None
        if not value.is_integer():
            raise ConfigError(f"{field}={text!r} is not an integer")
        return int(value)
    if target_type is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{field}={text!r} is not a number") from None
    if target_type is str:
        return text
    try:  # open dicts: numbers, booleans, lists as Python literals; anything else stays a string
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.strip().lower()
        if lowered in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
            return float(lowered)  # parsed as what it says, so that the range check can name it
        return {"true": True, "false": False}.get(lowered, text)


def _unknown_key(prefix: str, key: str, allowed: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}; allowed: {', '.join(sorted(allowed))}")


def _override(obj: Any, path: list[str], text: str, prefix: str) -> Any:
    key, rest = path[0], path[1:]
    if isinstance(obj, dict):
        if rest:
            raise ConfigError(f"{prefix}{key} is a leaf of an open dict and cannot have sub-keys")
        new = dict(obj)
        new[key] = _parse_value(text, None, prefix + key)
        return new
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        raise _unknown_key(prefix, key, list(fields))
    hints = typing.get_type_hints(type(obj))
    current = getattr(obj, key)
    if dataclasses.is_dataclass(current) or isinstance(current, dict):
        if not rest:
            raise ConfigError(f"{prefix}{key} is a section; set one of its fields, e.g. {prefix}{key}.<field>=...")
        return dataclasses.replace(obj, **{key: _override(current, rest, text, f"{prefix}{key}.")})
    if rest:
        raise ConfigError(f"{prefix}{key} is a value, not a section; '{'.'.join(rest)}' cannot follow it")
    return dataclasses.replace(obj, **{key: _parse_value(text, hints[key], prefix + key)})


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Applies ``["optim.lr=3e-3", "train.steps=100", ...]`` to a config."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, text = item.split("=", 1)
        config = _override(config, key.strip().split("."), text.strip(), "")
    return config


def list_configs() -> list[str]:
    import warmup_jax.configs as package

    folder = os.path.dirname(package.__file__)
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def load_config(name_or_path: str, overrides: list[str] = ()) -> Config:
    """Loads a named config (``configs/<name>.py``) or a Python file defining ``get_config()``."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise ConfigError(f"config file {name_or_path!r} does not exist")
        spec = importlib.util.spec_from_file_location("_warmup_jax_user_config", name_or_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        names = list_configs()
        if name_or_path not in names:
            raise _unknown_key("", name_or_path, names)
        module = importlib.import_module(f"warmup_jax.configs.{name_or_path}")
    if not isinstance(getattr(module, "get_config", None), types.FunctionType):
        raise ConfigError(f"config {name_or_path!r} defines no get_config() function")
    config = module.get_config()
    if not isinstance(config, Config):
        raise ConfigError(f"get_config() of {name_or_path!r} returned {type(config).__name__}, not Config")
    return apply_overrides(config, list(overrides))
