"""Runs the cells of a study one after another and appends one record per finished cell.

:func:`run_sweep` trains every cell that has no record yet through the library API
(:class:`warmup_jax.train.trainer.Trainer`), each in its own ``train.out_dir``
(``<runs_dir>/<study>/<cell id>``), and after each cell appends one JSON line to the study's
records file (:func:`append_record`: one ``write`` of the whole line, flushed and fsync'ed, under
a file lock). The record is built from the cell's ``metrics.jsonl``, so a cell trained in several
sessions gets its whole curve.

* A recorded cell is skipped (``status`` ``ok`` or ``diverged``; ``failed`` too, unless
  ``retry_failed``). The records file is read again before each cell, and each cell is locked
  while it trains, so two sweeps of one study on one machine share the work.
* SIGINT or SIGTERM while a cell trains: the trainer saves a checkpoint at the next step boundary
  and the sweep stops (exit status 130 or 143); outside the training loop (data preparation,
  compilation) the cell is abandoned at once. A second SIGINT stops at once. The next sweep
  resumes that cell from its checkpoint (``train.resume=true``), as it does a cell whose process
  was killed; a cell folder with a ``metrics.jsonl`` but no checkpoint starts again.
* A cell whose loss becomes NaN or infinite is a result: ``status="diverged"``, with the step and
  the last finite loss. A cell that raises is recorded with ``status="failed"`` and the error on one
  line (the traceback goes to ``<out_dir>/error.txt``), and the sweep goes on.
* A finished cell's checkpoints are deleted (``Study.keep_checkpoints``), except those of a
  *source*: a cell whose folder another cell of the study starts from (``train.init_from``). A
  recorded source whose checkpoints are gone (another machine, a deleted ``runs/``) while one of
  its dependents is still to run is trained again first; the new record replaces the old.

Exit statuses (:attr:`SweepResult.exit_status`): 0 every selected cell has a record; 3 cells are
left (``max_cells``, or cells another sweep holds); 130/143 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from warmup_jax.errors import ConfigError
from warmup_jax.sweep.study import Cell, Study, format_value, plan_cells

__all__ = [
    "CURVE_METRICS",
    "SweepResult",
    "append_record",
    "latest_records",
    "read_records",
    "run_sweep",
    "select_cells",
    "subsample",
]

MAX_CURVE_POINTS = 200
# record key -> metrics.jsonl key of the series kept in a record (the global update metrics).
CURVE_METRICS = {
    "update_l2": "update_l2/global",
    "angle": "angle/global",
    "rrc": "rrc/global",
    "snr": "snr/global",
    "grad_norm": "grad_norm",
}
FINISHED = ("ok", "diverged")
EXIT_CELLS_LEFT = 3
_EXIT_BY_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
_CELL_STATE = "sweep_cell.json"  # in a cell's folder: its settings, wall time and resumes so far


class SweepInterrupted(BaseException):  # noqa: N818 (like KeyboardInterrupt: not an error, not an Exception)
    """SIGINT or SIGTERM stopped the sweep; ``signal_name`` says which."""

    def __init__(self, signal_name: str, detail: str = ""):
        super().__init__(signal_name, detail)
        self.signal_name, self.detail = signal_name, detail


@dataclasses.dataclass
class SweepResult:
    """What one call of :func:`run_sweep` did."""

    cells: int  # selected
    recorded_before: int
    ran: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    left: int = 0  # selected cells without a record at the end
    interrupted_by: str | None = None  # "SIGINT" or "SIGTERM"

    @property
    def exit_status(self) -> int:
        if self.interrupted_by:
            return _EXIT_BY_SIGNAL.get(self.interrupted_by, 130)
        return EXIT_CELLS_LEFT if self.left else 0


# --- records -------------------------------------------------------------------------------------


def read_records(path: str) -> list[dict[str, Any]]:
    """Every record in a records file, in file order ([] if there is none).

    A line that is not JSON (a write cut short by a crash) is skipped with a warning.
    """
    if not os.path.isfile(path):
        return []
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                print(f"warning: {path}:{number} is not a JSON line; ignored", file=sys.stderr)
                continue
            if isinstance(record, dict) and "cell_id" in record:
                records.append(record)
    return records


def latest_records(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """cell id -> its last record (a retried cell's new record replaces the old one)."""
    return {record["cell_id"]: record for record in records}


@contextlib.contextmanager
def _locked(path: str, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock on ``path`` for the with-block; yields False if ``blocking=False``
    and another process holds it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_record(path: str, record: dict[str, Any]) -> None:
    """Appends ``record`` as one JSON line: one write, flushed and fsync'ed, under ``<path>.lock``."""
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    with _locked(path + ".lock"), open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():  # a line cut short by a crash must not swallow this one
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


# --- selection -----------------------------------------------------------------------------------


def _matches(value: Any, text: str) -> bool:
    if format_value(value) == text:
        return True
    if isinstance(value, bool):
        return text.strip().lower() in (("true", "1", "yes", "on") if value else ("false", "0", "no", "off"))
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return False


def select_cells(cells: Sequence[Cell], only: Sequence[str]) -> list[Cell]:
    """The cells whose values match every ``key=value`` of ``only`` (a key given twice: either value).

    Numbers match numerically (``optim.lr=1e-3`` selects 0.001). Raises ConfigError for a key no
    cell sets, or when nothing is selected.
    """
    wanted: dict[str, list[str]] = {}
    for item in only:
        if "=" not in item:
            raise ConfigError(f"--only {item!r} must look like section.field=value")
        key, text = (part.strip() for part in item.split("=", 1))
        wanted.setdefault(key, []).append(text)
    keys = sorted({key for cell in cells for key in cell.values})
    for key in wanted:
        if key not in keys:
            raise ConfigError(f"--only {key}: no cell of the study sets {key}; fields the cells set: {', '.join(keys)}")
    selected = [
        cell
        for cell in cells
        if all(
            key in cell.values and any(_matches(cell.values[key], t) for t in texts) for key, texts in wanted.items()
        )
    ]
    if not selected:
        present = "; ".join(
            f"{key}: {', '.join(sorted({format_value(c.values[key]) for c in cells if key in c.values}))}"
            for key in wanted
        )
        raise ConfigError(f"--only {' '.join(only)} selects no cell of the study; values in the cells: {present}")
    return selected


# --- one cell ------------------------------------------------------------------------------------


def subsample(steps: Sequence[int], values: Sequence[float], max_points: int = MAX_CURVE_POINTS) -> dict[str, list]:
    """A curve as ``{"step": [...], "value": [...]}`` with at most ``max_points`` points.

    Half of the points are evenly spaced in the index, half geometrically (dense early in
    training, where warmup acts); the first and last points are kept. Values are rounded to 6
    significant digits; NaN and infinities become None.
    """
    n = len(steps)
    if n <= max_points:
        indices = list(range(n))
    else:
        half = max_points // 2
        even = np.linspace(0, n - 1, half).round().astype(int)
        geometric = (np.geomspace(1, n, half).round() - 1).astype(int)
        indices = sorted(set(even.tolist()) | set(geometric.tolist()))
    return {
        "step": [int(steps[i]) for i in indices],
        "value": [float(f"{values[i]:.6g}") if math.isfinite(values[i]) else None for i in indices],
    }


def _read_metrics(out_dir: str, keys: Sequence[str]) -> dict[str, dict[int, float]]:
    """``key -> {step: value}`` from a run's metrics.jsonl; a repeated step (a resumed run) keeps the
    last value."""
    series: dict[str, dict[int, float]] = {key: {} for key in keys}
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return series
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            step = entry.get("step")
            for key in keys:
                value = entry.get(key)
                if isinstance(value, (int, float)) and step is not None:
                    series[key][int(step)] = float(value)
    return series


def _last(points: dict[int, float]) -> float | None:
    return points[max(points)] if points else None


def _curve(points: dict[int, float]) -> dict[str, list]:
    steps = sorted(points)
    return subsample(steps, [points[s] for s in steps])


def _checkpoint_steps(out_dir: str) -> list[int]:
    folder = os.path.join(out_dir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def _results(out_dir: str, num_parts: int = 1) -> dict[str, Any]:
    """The record's result fields, from the cell's metrics.jsonl (with ``data.num_parts`` > 1, also
    the final validation loss of every part)."""
    part_keys = [f"eval_loss_part{k}" for k in range(num_parts)] if num_parts > 1 else []
    series = _read_metrics(out_dir, ["loss", "eval_loss", "tokens_per_s", *CURVE_METRICS.values(), *part_keys])
    train, evals = series["loss"], series["eval_loss"]
    finite_train = [(s, v) for s, v in sorted(train.items()) if math.isfinite(v)]
    finite_evals = [(s, v) for s, v in sorted(evals.items()) if math.isfinite(v)]
    final_eval = max(evals.items()) if evals else (None, None)
    best_eval = min(finite_evals, key=lambda sv: sv[1]) if finite_evals else (None, None)
    windows = [v for v in series["tokens_per_s"].values() if math.isfinite(v)]
    return {
        "final_step": max(train) if train else 0,
        "final_train_loss": finite_train[-1][1] if finite_train else None,
        "final_eval_step": final_eval[0],
        "final_eval_loss": final_eval[1] if final_eval[1] is not None and math.isfinite(final_eval[1]) else None,
        "best_eval_step": best_eval[0],
        "best_eval_loss": best_eval[1],
        "logged_tokens_per_second": float(np.mean(windows)) if windows else None,
        **(
            {
                "final_eval_loss_by_part": [_last(series[k]) for k in part_keys],
                "eval_loss_by_part": [_curve(series[k]) for k in part_keys],
            }
            if part_keys
            else {}
        ),
        "train_loss": _curve(train),
        "eval_loss": _curve(evals),
        "metrics": {
            name: _curve(series[key])
            for name, key in CURVE_METRICS.items()
            if any(math.isfinite(v) for v in series[key].values())
        },
    }


def _read_cell_state(out_dir: str) -> dict[str, Any]:
    path = os.path.join(out_dir, _CELL_STATE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def _write_cell_state(out_dir: str, state: dict[str, Any]) -> None:
    path = os.path.join(out_dir, _CELL_STATE)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def _train_cell(study: Study, cell: Cell, *, quiet: bool) -> dict[str, Any]:
    """Trains (or resumes) one cell; the result fields of its record.

    Raises SweepInterrupted when a signal stopped the training (a checkpoint was saved), and any
    error of the training other than divergence.
    """
    from warmup_jax.train.trainer import Trainer

    config = cell.config
    out_dir = config.train.out_dir
    os.makedirs(out_dir, exist_ok=True)
    settings = {"config": study.config, "overrides": [*study.base, *cell.overrides]}
    checkpoints = _checkpoint_steps(out_dir)
    state = _read_cell_state(out_dir) if checkpoints else {}  # without a checkpoint the cell starts afresh
    if state and state.get("settings") != settings:
        raise ConfigError(
            f"{out_dir} holds checkpoints of a run with other settings "
            f"({' '.join(state.get('settings', {}).get('overrides', []))}); the study changed since: delete that "
            "folder to run the cell again"
        )
    resumed_from = list(state.get("resumed_from", []))
    if checkpoints:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, resume=True))
        resumed_from.append(checkpoints[-1])
    else:  # nothing to resume: whatever an earlier attempt logged is stale
        for stale in ("metrics.jsonl", "tensorboard"):
            path = os.path.join(out_dir, stale)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    wall_before = float(state.get("wall_s", 0.0))
    # (steps trained, tokens/s) of every session that measured its throughput
    throughput = [tuple(item) for item in state.get("throughput", [])]

    def save_state(wall: float) -> None:
        _write_cell_state(
            out_dir, {"settings": settings, "wall_s": wall, "resumed_from": resumed_from, "throughput": throughput}
        )

    save_state(wall_before)
    start = time.perf_counter()
    status, message = "ok", None
    try:
        trainer = Trainer(config, quiet=quiet)
        try:
            result = trainer.run()
        except BaseException:
            with contextlib.suppress(Exception):
                trainer.close()  # run() closes only when it returns
            raise
        if math.isfinite(result.tokens_per_second):
            throughput.append((result.final_step - (checkpoints[-1] if checkpoints else 0), result.tokens_per_second))
        if result.interrupted:
            raise SweepInterrupted("", f"stopped at step {result.final_step}, checkpoint saved")
    except FloatingPointError as e:
        status, message = "diverged", _one_line(e)
    finally:
        wall = wall_before + time.perf_counter() - start
        save_state(wall)
    fields = _results(out_dir, config.data.num_parts)
    logged = fields.pop("logged_tokens_per_second")
    steps = sum(n for n, _ in throughput)
    measured = sum(n * tps for n, tps in throughput) / steps if steps else None
    return {
        "status": status,
        "error": message,
        **fields,
        "tokens_per_second": measured if measured is not None else logged,
        "wall_s": wall,
        "resumed_from_steps": resumed_from,
    }


def _one_line(error: BaseException, limit: int = 400) -> str:
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def host_description() -> dict[str, str]:
    """Where a cell ran: what its floating-point results can depend on.

    The same cell gives bit-identical results on one machine; on another CPU (another VM of the same
    family may have other vector extensions, and XLA compiles for the host) the results agree to
    float32 rounding at first and then drift apart like those of another seed.
    """
    import hashlib

    import jax

    from warmup_jax.model.flops import cpu_flags, cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "cpu_flags_sha": hashlib.sha256(" ".join(cpu_flags()).encode()).hexdigest()[:12],
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": str(jax.device_count()),
    }


def git_revision() -> tuple[str | None, bool | None]:
    """(commit, whether tracked files other than the records differ from it) of the source tree of
    warmup_jax; None outside git."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!experiments/records"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(changes)


# --- signals -------------------------------------------------------------------------------------


class _Signals:
    """SIGINT and SIGTERM for the duration of a sweep.

    While the trainer's loop runs it handles SIGTERM itself (checkpoint, then stop at the step
    boundary); a SIGINT is passed to that handler. Outside the loop either signal raises
    SweepInterrupted at once. A second SIGINT raises KeyboardInterrupt.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: the default behaviour stays
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        self.received = name
        trainer_handler = signal.getsignal(signal.SIGTERM)
        if callable(trainer_handler) and trainer_handler != self._handle:
            trainer_handler(signal.SIGTERM, frame)  # in the training loop: it checkpoints and stops
            return
        raise SweepInterrupted(name, "before the training loop started")


# --- the sweep -----------------------------------------------------------------------------------


def _dependents(study: Study, cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """Cell id -> the cells of ``cells`` that start from its folder (``train.init_from``)."""
    starts = [(c, os.path.abspath(c.config.train.init_from)) for c in cells if c.config.train.init_from]
    dependents: dict[str, list[Cell]] = {}
    for source in cells:
        users = [c for c, start in starts if start == os.path.abspath(study.cell_dir(source.id))]
        if users:
            dependents[source.id] = users
    return dependents


def _source_lost(
    study: Study,
    cell: Cell,
    dependents: dict[str, list[Cell]],
    recorded: dict[str, dict[str, Any]],
    retry_failed: bool,
) -> bool:
    """Whether ``cell`` is a recorded source whose checkpoints are gone while a dependent is left."""
    users = dependents.get(cell.id)
    if not users or (recorded.get(cell.id) or {}).get("status") != "ok":
        return False
    if _checkpoint_steps(study.cell_dir(cell.id)):
        return False
    return any(not _is_done(recorded.get(u.id), retry_failed) for u in users)


def _record_cell(
    study: Study,
    cell: Cell,
    *,
    git: tuple[str | None, bool | None],
    host: dict[str, str],
    quiet: bool,
    keep_checkpoints: bool = False,
) -> dict[str, Any]:
    """Trains one cell and appends its record (``ok``, ``diverged`` or ``failed``); returns the record."""
    start = time.perf_counter()
    try:
        fields = _train_cell(study, cell, quiet=quiet)
    except Exception as error:
        fields = {"status": "failed", "error": _one_line(error), "wall_s": time.perf_counter() - start}
        with contextlib.suppress(OSError), open(os.path.join(cell.config.train.out_dir, "error.txt"), "w") as f:
            f.write("".join(traceback.format_exception(error)))
    record = {
        "study": study.name,
        "cell_id": cell.id,
        "config": study.config,
        "base": list(study.base),
        "overrides": list(cell.overrides),
        "values": cell.values,
        "seed_key": study.seed_key,
        "lr_key": study.lr_key,
        **fields,
        "out_dir": cell.config.train.out_dir,
        "git_commit": git[0],
        "git_dirty": git[1],
        "host": host,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    append_record(study.records_path, record)
    if not (study.keep_checkpoints or keep_checkpoints) and record["status"] in FINISHED:
        shutil.rmtree(os.path.join(cell.config.train.out_dir, "checkpoints"), ignore_errors=True)
    return record


def duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``7300`` -> ``"2h01m"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _check_records_match(study: Study, cells: Sequence[Cell], recorded: dict[str, dict[str, Any]]) -> None:
    for cell in cells:
        record = recorded.get(cell.id)
        if record is None:
            continue
        if record.get("config") != study.config or list(record.get("base", [])) != list(study.base):
            raise ConfigError(
                f"{study.records_path} holds cell {cell.id} run with config {record.get('config')!r} and base "
                f"{record.get('base')}, but the study now has config {study.config!r} and base {list(study.base)}; "
                "give the changed study another name (or records file), or delete those records"
            )


def _is_done(record: dict[str, Any] | None, retry_failed: bool) -> bool:
    if record is None:
        return False
    return record.get("status") in FINISHED or (record.get("status") == "failed" and not retry_failed)


def _cell_status(study: Study, cell: Cell, record: dict[str, Any] | None, source_lost: bool = False) -> str:
    if source_lost:
        return f"to run again ({_outcome(record)}, but a cell to run starts from its checkpoints, which are gone)"
    if record is not None:
        return _outcome(record)
    steps = _checkpoint_steps(study.cell_dir(cell.id))
    return f"to resume from step {steps[-1]}" if steps else "to run"


def run_sweep(
    study: Study,
    *,
    max_cells: int | None = None,
    only: Sequence[str] = (),
    retry_failed: bool = False,
    quiet: bool = True,
    list_only: bool = False,
    echo: Callable[..., None] = print,
) -> SweepResult:
    """Runs the study's cells that have no record yet (see the module docstring).

    Args:
      study: what to run.
      max_cells: run at most this many cells in this call (None: all).
      only: ``"key=value"`` filters (:func:`select_cells`).
      retry_failed: run again the cells recorded as failed (their new record replaces the old).
      quiet: no progress bar or messages from the trainer, only the sweep's lines.
      list_only: print every selected cell and its status, run nothing.
      echo: where progress lines go (``print``).

    Returns:
      A :class:`SweepResult`; its ``exit_status`` is the CLI's.

    Raises:
      ConfigError: before any work, for a bad cell (naming it and the field), a bad ``only``, or
        records of this study written with another config or base overrides.
    """
    if max_cells is not None and max_cells < 1:
        raise ConfigError(f"--max-cells {max_cells}: allowed: >= 1")
    records_path = study.records_path
    planned = plan_cells(study)
    cells = select_cells(planned, only) if only else planned
    recorded = latest_records(read_records(records_path))
    _check_records_match(study, cells, recorded)
    total = len(cells)
    dependents = _dependents(study, planned)  # a source keeps its checkpoints for cells --only leaves out too

    def done(cell: Cell) -> bool:
        return _is_done(recorded.get(cell.id), retry_failed) and not _source_lost(
            study, cell, dependents, recorded, retry_failed
        )

    done_before = sum(done(c) for c in cells)
    summary = SweepResult(cells=total, recorded_before=done_before)
    if list_only:
        for index, cell in enumerate(cells, 1):
            lost = _source_lost(study, cell, dependents, recorded, retry_failed)
            status = _cell_status(study, cell, recorded.get(cell.id), lost)
            echo(f"cell {index}/{total} {cell.id} {cell.describe()}: {status}")
        summary.left = total - done_before
        return summary
    echo(
        f"study {study.name}: {total} cells, {done_before} recorded, {total - done_before} to run; "
        f"records in {records_path}, runs in {os.path.join(study.runs_dir, study.name)}"
    )
    git, host = git_revision(), host_description()
    cell_seconds: list[float] = []
    with _Signals() as signals:
        try:
            for index, cell in enumerate(cells, 1):
                recorded = latest_records(read_records(records_path))  # another sweep may have finished some
                if done(cell):
                    continue
                if max_cells is not None and summary.ran >= max_cells:
                    break
                with _locked(os.path.join(study.cell_dir(cell.id), "sweep.lock"), blocking=False) as mine:
                    if not mine:
                        echo(f"cell {index}/{total} {cell.id}: another sweep is training it; skipped")
                        continue
                    echo(f"cell {index}/{total} {cell.id} {cell.describe()} ...", end="" if quiet else "\n", flush=True)
                    start = time.perf_counter()
                    try:
                        record = _record_cell(
                            study, cell, git=git, host=host, quiet=quiet, keep_checkpoints=cell.id in dependents
                        )
                    except SweepInterrupted as stop:
                        summary.interrupted_by = stop.signal_name or signals.received or "SIGTERM"
                        echo(f" {summary.interrupted_by}: {stop.detail}; run the same command to resume")
                        break
                _cleanup_after_cell()
                seconds = time.perf_counter() - start
                cell_seconds.append(seconds)
                summary.ran += 1
                setattr(summary, record["status"], getattr(summary, record["status"]) + 1)
                recorded[cell.id] = record
                left = sum(not done(c) for c in cells)
                eta = f", ETA {duration(left * float(np.mean(cell_seconds)))}" if left else ""
                echo(f" {_outcome(record)} in {duration(seconds)}; {left} left{eta}", flush=True)
        except SweepInterrupted as stop:  # between cells
            summary.interrupted_by = stop.signal_name
            echo(f"{stop.signal_name}: stopped between cells; run the same command to continue")
    recorded = latest_records(read_records(records_path))
    summary.left = sum(not done(c) for c in cells)
    echo(
        f"study {study.name}: {summary.ran} run ({summary.ok} ok, {summary.diverged} diverged, {summary.failed} "
        f"failed), {total - summary.left}/{total} recorded"
        + (f"; {summary.left} left, run the same command to continue" if summary.left else "")
    )
    return summary


def _outcome(record: dict[str, Any]) -> str:
    if record["status"] == "ok":
        loss = record.get("final_eval_loss")
        return "done" + (f", loss {loss:.4f}" if loss is not None else "")
    if record["status"] == "diverged":
        return f"diverged at step {record['final_step']}"
    return f"failed ({record['error']})"


def _cleanup_after_cell() -> None:
    """Frees the compiled functions and arrays of the cell just trained."""
    import jax

    jax.clear_caches()
    gc.collect()
