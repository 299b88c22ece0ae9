"""Where metrics go: a JSONL file, TensorBoard, and the console."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from tqdm.auto import tqdm


class MetricLogger:
    """Writes ``{"step": s, **metrics}`` lines to ``<out_dir>/metrics.jsonl`` and TensorBoard.

    Only process 0 writes. Appends, so a resumed run continues the same file.
    """

    def __init__(self, out_dir: str, *, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self._writer = None
        self._file = None
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self._file = open(self.path, "a")  # noqa: SIM115 (open for the life of the run)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(os.path.join(out_dir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if not isinstance(v, str) else v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": int(step), **clean}, allow_nan=True) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in clean.items():
                if not isinstance(value, str) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
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
