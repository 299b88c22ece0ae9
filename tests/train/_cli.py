"""Helpers the trainer tests share: the CLI on the tiny config, and a run's metrics log."""

import json

from warmup_jax.cli import main


def train_tiny(overrides, *extra) -> int:
    """Exit status of ``warmup-jax train --config tiny --set ...`` for ``overrides`` then ``extra``."""
    args = ["train", "--config", "tiny"]
    for item in [*overrides, *extra]:
        args += ["--set", item]
    return main(args)


def metrics_lines(run_dir) -> list[dict]:
    """The records of ``<run_dir>/metrics.jsonl``, in order."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
