"""Re-warming for continued pre-training (Gupta et al., 2023) at the comparison's scale.

A base run trains on the first half of the corpus (`data.part=0` of 2); continuations start from its
final parameters (`train.init_from`) with a fresh AdamW state and train on the second half, with and
without a new warmup, at two peak LRs, against continuing at a small constant LR (no re-warming)
and against training on the second half from scratch. Every cell reports its validation loss on
both halves (`final_eval_loss_by_part`). The rules are in experiments/PROTOCOL_LEADERBOARD.md,
section "Continued pre-training".

Launch:   warmup-jax sweep experiments/rewarm.py && python experiments/results.py
Expected: 2 base cells, then 16 continuations, ~1.5 min each on 2 CPU cores (~30 min in all).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from warmup_jax.sweep import Study
from warmup_jax.sweep.runner import read_records
from warmup_jax.sweep.study import cell_id

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_experiments_compare", os.path.join(HERE, "compare.py"))
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

NAME = "rewarm"
RECORDS = os.path.join("experiments", "records", f"{NAME}.jsonl")
RUNS_DIR = "runs/sweeps"
SEEDS = (0, 1)
STEPS = compare.STEPS

# The comparison's setup; each half's validation stream holds ~610 distinct windows, so 512 of them
# (32 batches of 16) are evaluated, every 50 steps, on both halves.
BASE = [
    *(o for o in compare.BASE if not o.startswith(("train.eval_batches", "train.eval_interval"))),
    "train.eval_batches=32",
    "train.eval_interval=50",
    "data.num_parts=2",
]
PEAK_LR = 8e-3  # the comparison's best AdamW LR with the 5 % warmup
BASE_WARMUP = compare.warmup_steps(0.05)
CONTINUE_LRS = (2e-3, 8e-3)
CONTINUE_WARMUPS = (0, compare.warmup_steps(0.05), compare.warmup_steps(0.2))
CONSTANT_LR = PEAK_LR / 10  # no re-warming: go on at a tenth of the base run's peak, no decay


def base_cell(seed: int) -> dict[str, Any]:
    return {
        "train.seed": seed,
        "optim.name": "adamw",
        "data.part": 0,
        "optim.lr": PEAK_LR,
        "optim.warmup_steps": BASE_WARMUP,
    }


def base_dir(seed: int) -> str:
    return os.path.join(RUNS_DIR, NAME, cell_id(base_cell(seed)))


def continuation_cells(seed: int) -> list[dict[str, Any]]:
    start = {"train.seed": seed, "optim.name": "adamw", "data.part": 1, "train.init_from": base_dir(seed)}
    cells = [
        {**start, "optim.lr": lr, "optim.warmup_steps": warmup} for lr in CONTINUE_LRS for warmup in CONTINUE_WARMUPS
    ]
    cells.append({**start, "optim.lr": CONSTANT_LR, "optim.warmup_steps": 0, "optim.cooldown_fraction": 0.0})
    cells.append({**base_cell(seed), "data.part": 1})  # from scratch on part 1
    return cells


def condition_of(values: dict[str, Any]) -> str:
    """A readable label of a cell: base, scratch, constant, or re-warm <LR> <warmup steps>."""
    if values.get("data.part") == 0:
        return "base"
    if not values.get("train.init_from"):
        return "scratch"
    if values.get("optim.cooldown_fraction") == 0.0:
        return "constant"
    return f"re-warm {values['optim.lr']:g} {values['optim.warmup_steps']}"


def rewarm_cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The base cells, and the continuations of every base cell that finished."""
    ok = {r["cell_id"] for r in records if r.get("study") == NAME and r.get("status") == "ok"}
    cells = [base_cell(seed) for seed in SEEDS]
    for seed in SEEDS:
        if cell_id(base_cell(seed)) in ok:
            cells += continuation_cells(seed)
    return cells


STUDY = Study(
    name=NAME,
    config="cpu_small",
    base=BASE,
    cells=rewarm_cells(read_records(RECORDS) if os.path.exists(RECORDS) else []),
    records=RECORDS,
    runs_dir=RUNS_DIR,
    description=(
        "Re-warming for continued pre-training: AdamW base runs on the corpus's first half, continued on its "
        "second half with 0 / 5 / 20 % warmup at two peak LRs, at a constant small LR, or trained from scratch; "
        "validation loss on both halves."
    ),
)
