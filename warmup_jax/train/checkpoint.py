"""Checkpoints with orbax: the train state, the data-iterator state and the config, per step.

Orbax writes each step to a temporary folder and renames it when complete, so an interrupted
save never leaves a checkpoint that looks finished. Restores check the saved config against the
current one first, so an incompatible checkpoint fails with a message, not a shape error deep in
orbax.

Integrity: every save also records a fingerprint of each array (two wrapping uint32 sums of its
bits, weighted by odd functions of the element's position, computed by XLA over the global array,
so the value does not depend on the sharding or the number of processes) and SHA-256 digests of
the data-iterator state and the config. A restore recomputes them and names the first tensor (or
item) that differs: a flipped byte, a truncated file or an edited iterator step is refused instead
of restored silently.

Storage: before a run and before each save, the folder must have room for one more checkpoint
(the state's bytes); a save that fails anyway (the disk filled meanwhile, the folder vanished) is
one CheckpointSaveError naming the checkpoint, the reason and the newest complete checkpoint, which
is kept, and the half-written folder is removed.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from warmup_jax.errors import CheckpointError, CheckpointSaveError, CorruptCheckpointError

# Config fields that must agree between a checkpoint and the run that resumes it.
_MUST_MATCH = (
    "model",
    "optim.name",
    "optim.hparams",
    "train.batch_size",
    "train.grad_accum_steps",
    "train.seq_len",
    "data.source",
    "data.path",
    "data.tokenizer",
    "data.bpe_vocab_size",
    "train.seed",
    "data.seed",
)

# Fields a resumed run may change freely: where and how it reports and saves, not what it trains.
# Any other change (the LR, the schedule's length, the warmup, ...) alters the trajectory and is
# refused unless train.allow_config_change is set.
FREE_TO_CHANGE = (
    "train.out_dir",
    "train.resume",
    "train.allow_config_change",
    "train.progress",
    "train.tensorboard",
    "train.log_interval",
    "train.eval_interval",
    "train.eval_batches",
    "train.checkpoint_interval",
    "train.keep_checkpoints",
    "train.peak_flops_per_device",
    "train.mesh_fsdp",
    "train.on_nonfinite",
    "train.max_skipped_steps",
    "data.cache_dir",
    "metrics",
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or (prefix.endswith("hparams") and prefix):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out


def config_changes(saved: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """``(field, saved value, new value)`` for every field that differs, except FREE_TO_CHANGE ones
    and fields the saved config does not have (a checkpoint of an older version)."""
    before, after = _flatten(saved), _flatten(now)
    free = lambda field: any(field == f or field.startswith(f + ".") for f in FREE_TO_CHANGE)
    return [(f, before[f], after.get(f)) for f in sorted(before) if not free(f) and before[f] != after.get(f)]


def _discard_failed_io() -> None:
    """Frees the reads or writes of a failed restore or save now, without asyncio's report of each.

    Orbax reads and writes the arrays of a checkpoint as concurrent asyncio tasks; when one fails,
    the others' errors are never retrieved, and asyncio logs a full traceback for every such task
    whenever the garbage collector happens to free it (thousands of lines, at an unrelated later
    moment); tasks still pending report their closing as an unraisable exception. The error that
    matters has already been turned into a CheckpointError.
    """
    with _QuietOrbax():
        gc.collect()


class _QuietOrbax:
    """Silences orbax's own report of a failing read or write while it runs (a traceback per
    array from its worker threads and asyncio): the failure is reported once, by us."""

    def __enter__(self):
        self._loggers = [logging.getLogger(name) for name in ("asyncio", "absl")]
        self._disabled = [logger.disabled for logger in self._loggers]
        for logger in self._loggers:
            logger.disabled = True
        self._hooks = sys.unraisablehook, sys.excepthook
        sys.unraisablehook = lambda unraisable: None
        sys.excepthook = lambda *exc_info: None
        return self

    def __exit__(self, *exc_info):
        sys.unraisablehook, sys.excepthook = self._hooks
        for logger, disabled in zip(self._loggers, self._disabled):
            logger.disabled = disabled
        return False


def _io_reason(error: BaseException) -> str:
    """The operating system's words for a failed write (orbax wraps them in long messages)."""
    code = re.search(r"os_error_code='?(\d+)", str(error))
    if code:
        return os.strerror(int(code.group(1)))
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def state_bytes(tree: Any) -> int:
    """Bytes of every array in ``tree`` (global sizes; arrays or their shapes): what a checkpoint
    of it writes."""
    return sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def _megabytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _lookup(d: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        d = d.get(key, {}) if isinstance(d, dict) else None
    return d


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
    """Two uint32 sums of ``x``'s bits (each element weighted by an odd function of its position).

    Elementwise work and full reductions only (no reshape): it runs on a sharded array as it is laid
    out, and wrapping integer sums do not depend on the order XLA reduces in.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(x.dtype.itemsize)
    # 64-bit values become two 32-bit halves along a new last axis
    bits = jax.lax.bitcast_convert_type(x, width or jnp.uint32).astype(jnp.uint32)
    index = jnp.zeros(bits.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(bits.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= bits.shape[axis]
    w1 = index * jnp.uint32(2654435761) | jnp.uint32(1)
    w2 = (index ^ jnp.uint32(0x9E3779B9)) * jnp.uint32(40503) | jnp.uint32(1)
    mixed = bits ^ (bits >> 15) ^ (bits << 7)
    return jnp.stack([jnp.sum(bits * w1, dtype=jnp.uint32), jnp.sum(mixed * w2, dtype=jnp.uint32)])


@jax.jit
def _fingerprints(tree: Any) -> Any:
    return jax.tree_util.tree_map(_leaf_fingerprint, tree)


def array_fingerprints(tree: Any) -> dict[str, str]:
    """``{tensor path: 16 hex digits}`` of every array of ``tree`` (layout-independent)."""
    values = jax.device_get(_fingerprints(tree))
    flat = jax.tree_util.tree_flatten_with_path(values)[0]
    return {jax.tree_util.keystr(path): f"{int(v[0]):08x}{int(v[1]):08x}" for path, v in flat}


def _digest(item: Any) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()


class Checkpointer:
    """Saves and restores ``(TrainState, loader state, config dict)`` under ``directory``."""

    def __init__(self, directory: str, *, keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
            item_names=("state", "data", "config", "integrity"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def check_space(self, state: Any) -> None:
        """CheckpointSaveError unless the folder has room for one more checkpoint of ``state``."""
        needed = state_bytes(state) * 101 // 100 + (256 << 10)  # the arrays, plus metadata
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            raise CheckpointSaveError(
                f"{self.directory} has {_megabytes(free)} free, and a checkpoint of this run needs about "
                f"{_megabytes(needed)}; {self._kept()}. Free space there or choose another train.out_dir"
            )

    def save(self, step: int, state: Any, loader_state: dict, config: dict) -> None:
        """Saves ``step``, or raises CheckpointSaveError with the older checkpoints intact."""
        if step in self._manager.all_steps():
            return
        self.check_space(state)
        integrity = {"arrays": array_fingerprints(state), "data": _digest(loader_state), "config": _digest(config)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(loader_state),
            config=ocp.args.JsonSave(config),
            integrity=ocp.args.JsonSave(integrity),
        )
        try:
            with _QuietOrbax():
                self._manager.save(step, args=args, force=True)
                self._manager.wait_until_finished()
        except Exception as e:  # orbax raises many types for a failed write
            reason = _io_reason(e)
        else:
            return
        # Outside the except block, so that nothing references the failed writes any more.
        _discard_failed_io()
        self._remove_partial(step)
        raise CheckpointSaveError(f"cannot save checkpoint {self._step_dir(step)}: {reason}; {self._kept()}")

    def _kept(self) -> str:
        steps = [s for s in self.all_steps() if os.path.isdir(self._step_dir(s))]
        if not steps:
            return "no checkpoint of this run is complete yet"
        return f"the newest complete checkpoint, {self._step_dir(steps[-1])}, is kept (resume from it with --resume)"

    def _remove_partial(self, step: int) -> None:
        """Removes what a failed save of ``step`` left (orbax's temporary folder)."""
        if jax.process_index() != 0:
            return
        for name in os.listdir(self.directory):
            if name.startswith(f"{step}.orbax-checkpoint-tmp"):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def check_compatible(self, step: int, config: dict, *, allow_changes: bool = False) -> list[tuple[str, Any, Any]]:
        """Raises CheckpointError if ``config`` cannot continue the run saved at ``step``.

        A field the saved state depends on (the model, the optimizer, the batch shape, the data,
        the seeds) must match; any other change that alters the trajectory (``config_changes``) is
        refused, listing every change, unless ``allow_changes``. Returns the changes allowed.
        """
        saved = self._restore_item(step, "config", ocp.args.JsonRestore())
        for field in _MUST_MATCH:
            before, now = _lookup(saved, field), _lookup(config, field)
            if before != now:
                raise CheckpointError(
                    f"checkpoint {self._step_dir(step)} was written with {field}={before!r} but this run has "
                    f"{field}={now!r}; resume with the same {field} or choose another train.out_dir"
                )
        changes = config_changes(saved, config)
        if changes and not allow_changes:
            listed = "; ".join(f"{field}: {before!r} -> {now!r}" for field, before, now in changes)
            raise CheckpointError(
                f"checkpoint {self._step_dir(step)} was written with another config, and resuming with it would "
                f"change the run's trajectory: {listed}. Resume with the same settings (the --set of the first "
                "run), or pass train.allow_config_change=true to continue with the changes (they are logged)"
            )
        return changes

    def saved_config(self, step: int) -> dict:
        """The config dict saved with ``step``."""
        return self._restore_item(step, "config", ocp.args.JsonRestore())

    def restore(self, step: int, abstract_state: Any, config: dict) -> tuple[Any, dict]:
        """Returns (train state laid out like ``abstract_state``, loader state); the config was
        checked by :meth:`check_compatible` before."""
        state = self._restore_item(step, "state", ocp.args.StandardRestore(abstract_state))
        loader_state = self._restore_item(step, "data", ocp.args.JsonRestore())
        self._verify(step, state, loader_state)
        return state, loader_state

    def _verify(self, step: int, state: Any, loader_state: dict) -> None:
        """CheckpointError naming the first array or item that differs from what was saved."""
        if not os.path.isdir(os.path.join(self._step_dir(step), "integrity")):
            return  # written before fingerprints were recorded: nothing to compare
        saved = self._restore_item(step, "integrity", ocp.args.JsonRestore())
        config = self._restore_item(step, "config", ocp.args.JsonRestore())
        found = array_fingerprints(state)
        for path, digest in saved.get("arrays", {}).items():
            if found.get(path) != digest:
                raise CorruptCheckpointError(
                    f"checkpoint {self._step_dir(step)} fails its integrity check: tensor {path} differs from "
                    "the one saved (its files are corrupt)"
                )
        for item, value in (("data", loader_state), ("config", config)):
            if saved.get(item) != _digest(value):
                raise CorruptCheckpointError(
                    f"checkpoint {self._step_dir(step)} fails its integrity check: its {item} item was changed "
                    "after it was saved"
                )

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _restore_item(self, step: int, item: str, args: Any) -> Any:
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except Exception as e:  # orbax raises many types for unreadable files
            reason = f"{type(e).__name__}: {e}"
        # Outside the except block, so that nothing references the failed read any more.
        _discard_failed_io()
        raise CorruptCheckpointError(
            f"checkpoint {self._step_dir(step)} ({item}) cannot be read: {reason}. "
            "It is corrupt or was written by an incompatible run; delete it to fall back to an older "
            "step, or choose another train.out_dir"
        )

    def close(self) -> None:
        self._manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings, for orbax restores."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def config_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
