"""Throughput accounting: FLOPs per token, peak FLOP/s per device, tokens/s and model FLOPs utilisation.

The peak of an accelerator comes from the vendors' data sheets (:data:`PEAK_FLOPS`). A CPU has no
data sheet: its peak is a measured float32 matmul rate, measured once per machine and cached in
``peak_flops.json`` under the user cache folder (:func:`peak_cache_path`), so that the MFU of two
runs on one machine is computed against the same figure. The measurement is a best case over a few
seconds, so a machine busy with other work at that moment records too low a peak (and later MFUs
too high): delete the file (or its machine's entry) to measure again on an idle machine.
``train.peak_flops_per_device`` overrides both.

:class:`ThroughputMeter` measures tokens/s and MFU over training steps only: checkpoint saves,
evaluations and compilations are not counted.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp

from warmup_jax.model.config import ModelConfig

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets.
PEAK_FLOPS = {
    "h100": 989e12,
    "h200": 989e12,
    "a100": 312e12,
    "l4": 121e12,
    "a10": 125e12,
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v6": 918e12,
}

PEAK_CACHE_FILE = "peak_flops.json"
_MATMUL_SIZE, _MATMUL_REPEATS = 1024, 50  # ~1-3 s on a CPU, once per machine


def flops_per_token(cfg: ModelConfig, num_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 N for the matmuls with the weights (forward + backward) plus
    12 L D T for attention scores and values (PaLM appendix B; nanoGPT's estimate_mfu).

    ``num_params`` should exclude the position table (it costs a lookup, not a matmul); the tied
    output head is counted through the token embedding.
    """
    return 6.0 * num_params + 12.0 * cfg.n_layer * cfg.n_embd * seq_len


@functools.cache
def measured_matmul_flops(size: int = _MATMUL_SIZE, repeats: int = _MATMUL_REPEATS) -> float:
    """Best float32 matmul FLOP/s of the first device, measured (the CPU has no data sheet)."""
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def _cpuinfo(*keys: str) -> str | None:
    """The first non-empty value of one of ``keys`` in ``/proc/cpuinfo`` (Linux), whitespace-normalised."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() in keys and value.strip():
                return " ".join(value.split())
    return None


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` reports)."""
    return (
        _cpuinfo("model name", "Model", "cpu model", "Hardware")
        or platform.processor()
        or platform.machine()
        or "unknown cpu"
    )


def cpu_flags() -> list[str]:
    """The CPU's feature flags, sorted (``/proc/cpuinfo``; empty where it does not list them)."""
    return sorted((_cpuinfo("flags") or "").split())


def machine_key() -> str:
    """What the measured peak depends on: CPU model, usable cores, jax version and backend."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model_name()}; {cores} cores; jax {jax.__version__}; {jax.default_backend()}"


def peak_cache_path() -> Path:
    """``peak_flops.json`` in ``$WARMUP_JAX_CACHE``, else ``$XDG_CACHE_HOME/warmup_jax``, else
    ``~/.cache/warmup_jax`` (the data cache's folder, when that is the default)."""
    folder = os.environ.get("WARMUP_JAX_CACHE", "")
    if not folder:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        folder = os.path.join(xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache"), "warmup_jax")
    return Path(folder).expanduser() / PEAK_CACHE_FILE


def _read_peak_cache(path: Path) -> dict | None:
    """The file's machines table; None when it is missing, unreadable or not what this module writes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        return None
    return data["machines"]


def _valid_entry(entry) -> bool:
    flops = entry.get("peak_flops") if isinstance(entry, dict) else None
    return isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0


def cached_measured_peak(
    path: Path | None = None, *, measure: Callable[[], float] = measured_matmul_flops
) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from) for this machine: read from the cache file, or measured
    with ``measure`` and stored there. A missing or corrupt file (or entry) is measured again and
    rewritten; a file that cannot be written only costs the measurement, every run."""
    path = peak_cache_path() if path is None else Path(path)
    key = machine_key()
    machines = _read_peak_cache(path)
    entry = (machines or {}).get(key)
    if _valid_entry(entry):
        when = entry.get("measured", "unknown date")
        return float(entry["peak_flops"]), f"f32 matmul measured on {when}, read from {path}"
    flops = float(measure())
    entry = {
        "peak_flops": flops,
        "measured": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "method": f"best of {_MATMUL_REPEATS} jitted {_MATMUL_SIZE}x{_MATMUL_SIZE} float32 matmuls on device 0",
    }
    machines = {**(machines or {}), key: entry}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"machines": machines}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return flops, f"f32 matmul measured now; not cached ({path}: {e.strerror or e})"
    return flops, f"f32 matmul measured now, saved to {path}"


def peak_flops_per_device(override: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from): the override, a data sheet, or the cached CPU measurement."""
    if override > 0:
        return override, "train.peak_flops_per_device"
    kind = jax.devices()[0].device_kind.lower()
    for name, flops in PEAK_FLOPS.items():
        if name in kind:
            return flops, f"data sheet ({kind})"
    flops, source = cached_measured_peak()
    return flops, f"{source}; {machine_key()}"


class Throughput(NamedTuple):
    tokens_per_s: float
    mfu: float  # model FLOPs / time / total peak FLOP/s of all devices
    steps: int  # the steps measured
    seconds: float  # the time they took


class ThroughputMeter:
    """Tokens/s and MFU of training steps only, from the times at which steps are seen to finish.

    The loop calls :meth:`step_done` as soon as it knows a step has finished (its metrics reached
    the host). A step's time is the interval since the previous such call. Not counted:

    * the first step seen (its interval would include the start-up and compilation);
    * whatever runs inside ``with meter.paused():`` (checkpoint saves, evaluations): the clock
      restarts when the block ends, so drain the pipeline first (see the block's doc);
    * the next step after :meth:`skip_next` (its interval overlaps something else, e.g. the
      compilation of a new batch shape while that step was in flight).

    :meth:`window` returns the throughput since the last window and starts a new one; :meth:`total`
    covers every measured step. ``peak_flops`` is the peak of all devices together. ``clock`` is a
    seconds counter (``time.perf_counter``; tests pass a fake one).
    """

    def __init__(self, peak_flops: float, *, clock: Callable[[], float] = time.perf_counter):
        self.peak_flops = peak_flops
        self._clock = clock
        self._last: float | None = None  # when the previous step was seen to finish (None: clock stopped)
        self._window = [0, 0.0, 0.0, 0]  # tokens, flops, seconds, steps
        self._total = [0, 0.0, 0.0, 0]

    def step_done(self, tokens: int, flops: float) -> None:
        now = self._clock()
        if self._last is not None:
            for acc in (self._window, self._total):
                acc[0] += tokens
                acc[1] += flops
                acc[2] += now - self._last
                acc[3] += 1
        self._last = now

    def skip_next(self) -> None:
        """Don't count the next step; count from its end on."""
        self._last = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time in the block is not counted. No step may be in flight when it starts (a step that is
        still running would have part of its time dropped); the clock restarts when it ends."""
        try:
            yield
        finally:
            self._last = self._clock()

    def _result(self, acc: list) -> Throughput | None:
        tokens, flops, seconds, steps = acc
        if steps == 0 or seconds <= 0:
            return None
        return Throughput(tokens / seconds, flops / seconds / self.peak_flops, steps, seconds)

    def window(self) -> Throughput | None:
        """The throughput of the steps measured since the last call (None if there are none)."""
        result = self._result(self._window)
        self._window = [0, 0.0, 0.0, 0]
        return result

    def total(self) -> Throughput | None:
        return self._result(self._total)
