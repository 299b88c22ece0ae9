"""Where metrics go: a JSONL file, TensorBoard, and the console."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from tqdm.auto import tqdm


def _keep_until(path: str, step: int) -> None:
    """Rewrites ``path`` (atomically) without the lines of steps after ``step`` (and a torn last line)."""
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except ValueError:  # a line cut by a kill: dropped
                continue
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricLogger:
    """Writes ``{"step": s, **metrics}`` lines to ``<out_dir>/metrics.jsonl`` and TensorBoard.

    Only process 0 writes. Appends, so a resumed run continues the same file; ``resume_after``
    (the checkpoint's step) first drops the lines of later steps, which the resumed run writes
    again, so that every step has one line.
    """

    def __init__(
        self, out_dir: str, *, tensorboard: bool = True, enabled: bool = True, resume_after: int | None = None
    ):
        self.enabled = enabled
        self._writer = None
        self._file = None
        self._failed = False  # a write failed: closing fails the same way, and says nothing new
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, "metrics.jsonl")
        if resume_after is not None and os.path.exists(self.path):
            _keep_until(self.path, resume_after)
        self._file = open(self.path, "a")  # noqa: SIM115 (open for the life of the run)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(os.path.join(out_dir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if not isinstance(v, str) else v) for k, v in metrics.items()}
        try:
            self._file.write(json.dumps({"step": int(step), **clean}, allow_nan=True) + "\n")
            self._file.flush()
        except OSError as e:  # a full disk: name the file (the error of a write does not)
            self._failed = True
            raise OSError(e.errno, e.strerror, self.path) from None
        if self._writer is not None:
            for key, value in clean.items():
                if not isinstance(value, str) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                if not self._failed:
                    raise OSError(e.errno, e.strerror, self.path) from None
        if self._writer is not None:
            self._writer.close()


class Progress:
    """A console progress bar (a TTY) or periodic log lines (CI, files)."""

    def __init__(self, total: int, initial: int, *, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self.total = total

    def update(self, step: int, postfix: dict[str, str]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix(postfix, refresh=True)
        else:
            print(f"step {step}/{self.total} " + " ".join(f"{k}={v}" for k, v in postfix.items()), flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
