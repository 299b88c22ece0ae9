"""Follow-up to the leaderboard's Post-LN claim: Post-LN AdamW with 60- and 150-step warmups.

The leaderboard ran Post-LN without warmup and with a 15-step one; neither left the unigram plateau,
so it could not say whether Post-LN needs warmup *more* than Pre-LN. These seed-0 cells add the
longer warmups on the same LR grid. The rule (one seed: an indication, not a verdict) is in
experiments/PROTOCOL_LEADERBOARD.md, section "Follow-up: Post-LN with longer warmups".

Launch:   warmup-jax sweep experiments/postln.py && python experiments/results.py
Expected: 12 cells (a few more if a warmup's best LR is at an edge), ~1.5 min each on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from warmup_jax.sweep import Study
from warmup_jax.sweep.runner import read_records

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_experiments_leaderboard", os.path.join(HERE, "leaderboard.py"))
leaderboard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(leaderboard)
compare = leaderboard.compare

NAME = "postln"
RECORDS = os.path.join("experiments", "records", f"{NAME}.jsonl")
WARMUPS = (compare.warmup_steps(0.2), leaderboard.MAX_WARMUP)  # 60 and 150 steps
BASE_LRS = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3)  # Post-LN's grid in the leaderboard


def found_of(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(warmup steps, LR, seed) -> record."""
    return {
        (r["values"]["optim.warmup_steps"], r["values"]["optim.lr"], r["values"]["train.seed"]): r
        for r in records
        if r.get("study") == NAME
    }


def grid(warmup: int, found: dict[tuple, dict[str, Any]]) -> list[float]:
    """The LRs of one warmup: the base grid, extended past an edge holding its best."""
    return compare.extend_grid(list(BASE_LRS), (warmup,), lambda w, lr: compare._loss(found.get((w, lr, 0))))


def postln_cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = found_of(records)
    return [leaderboard._cell("Post-LN", lr, warmup, 0) for warmup in WARMUPS for lr in grid(warmup, found)]


STUDY = Study(
    name=NAME,
    config="cpu_small",
    base=compare.BASE,
    cells=postln_cells(read_records(RECORDS) if os.path.exists(RECORDS) else []),
    records=RECORDS,
    description=(
        "Follow-up to the leaderboard's Post-LN claim: Post-LN AdamW, seed 0, with 60- and 150-step warmups on "
        "Post-LN's LR grid (extended past an edge optimum)."
    ),
)
