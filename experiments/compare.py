"""Compare: every optimizer of the paper, with and without warmup, on the CPU-scale protocol.

The protocol (experiments/PROTOCOL.md) was fixed from the pilot before any of these cells ran.
Three stages, each a fixed rule applied to the records of the one before:

1. seed 0: every optimizer x its LR grid x warmup (AdamW: 0, 2, 5, 10, 20 %; the others 0, 5 %);
   an optimizer whose best LR (either warmup) is at an edge of its grid gets the next LR beyond it;
2. seed 1 for the deciding cells: for each optimizer and warmup in (0, 5 %), the best LR of seed 0;
3. seed 2 for the deciding cells of an optimizer whose gap (no warmup minus 5 % warmup) is within
   twice the seed spread after stage 2.

The cells of a stage appear once the stage before it is complete, so the same command runs the
whole comparison, interrupted and resumed any number of times:

Launch:   warmup-jax sweep experiments/compare.py && python experiments/results.py
Expected: 85 cells in stage 1 and up to 28 more, ~95 s each on 2 CPU cores (~3 h in all).
          As run: 148 cells in stage 1 (the edge rule extended most grids upward), 14 in stage 2 and
          10 in stage 3; RESULTS.md states the CPU-hours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from warmup_jax.sweep import Study
from warmup_jax.sweep.runner import read_records

NAME = "compare"
RECORDS = os.path.join("experiments", "records", f"{NAME}.jsonl")
STEPS = 300
SEEDS = (0, 1, 2)

# The protocol's model, data and budget (PROTOCOL.md, "Setup").
BASE = [
    "data.bpe_vocab_size=2048",
    "model.n_layer=4",
    "model.n_head=4",
    "model.n_embd=64",
    "model.block_size=128",
    "train.seq_len=128",
    "train.batch_size=16",
    f"train.steps={STEPS}",
    "train.eval_interval=0",
    "train.eval_batches=40",
    "train.log_interval=5",
    "train.checkpoint_interval=100",
    "train.tensorboard=false",
    "metrics.interval=10",
    "metrics.dense_interval=1",
    "metrics.dense_until_step=40",
]

# Warmup lengths as fractions of training, and the one every optimizer is compared at.
ADAMW_WARMUPS = (0.0, 0.02, 0.05, 0.1, 0.2)
LION_WARMUPS = (0.0, 0.05)
REFERENCE_WARMUP = 0.05

# Factor-2 grids (PROTOCOL.md, "Grid"); an edge optimum extends its grid (stage 1).
ADAMW_LRS = (5e-4, 1e-3, 2e-3, 4e-3, 8e-3)
LION_LRS = (1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3)
LR_STEP = 2.0


def warmup_steps(fraction: float) -> int:
    return round(fraction * STEPS)


# label -> (the overrides that make the optimizer, its warmups, its starting LR grid)
VARIANTS: dict[str, tuple[dict[str, Any], tuple[float, ...], tuple[float, ...]]] = {
    "AdamW": ({"optim.name": "adamw"}, ADAMW_WARMUPS, ADAMW_LRS),
    "LionA": ({"optim.name": "lion_a"}, LION_WARMUPS, LION_LRS),
    "LionAR": ({"optim.name": "lion_ar"}, LION_WARMUPS, LION_LRS),
    # The SNR is estimated from the micro-batches: 4 of 4 sequences. Evaluation runs in micro-batches,
    # so 4x the batches keeps the same 640 validation windows as every other cell.
    "LionAR + RRC": (
        {"optim.name": "lion_ar_rrc", "train.grad_accum_steps": 4, "train.eval_batches": 160},
        LION_WARMUPS,
        LION_LRS,
    ),
    "LionAR fast momentum": ({"optim.name": "lion_ar_fast_momentum"}, LION_WARMUPS, LION_LRS),
    "LionA fast momentum": ({"optim.name": "lion_a_fast_momentum"}, LION_WARMUPS, LION_LRS),
    "LionAR no momentum": (
        {"optim.name": "lion_ar", "optim.hparams.b1": 0.0, "optim.hparams.b2": 0.0},
        LION_WARMUPS,
        LION_LRS,
    ),
}
VARIANT_KEYS = sorted({key for overrides, _, _ in VARIANTS.values() for key in overrides})


def variant_of(values: dict[str, Any]) -> str | None:
    """The label of the optimizer a cell's values make (every variant key must match)."""
    for label, (overrides, _, _) in VARIANTS.items():
        if all(values.get(key) == overrides.get(key) for key in VARIANT_KEYS):
            return label
    return None


def _cell(label: str, lr: float, warmup: float, seed: int) -> dict[str, Any]:
    overrides = VARIANTS[label][0]
    return {"train.seed": seed, **overrides, "optim.lr": lr, "optim.warmup_steps": warmup_steps(warmup)}


def _key(values: dict[str, Any]) -> tuple:
    return (variant_of(values), values.get("optim.warmup_steps"), values.get("optim.lr"), values.get("train.seed"))


def _loss(record: dict[str, Any] | None) -> float:
    """A cell's final validation loss; a diverged cell is worst (inf), a failed one unknown (NaN)."""
    if record is None:
        return math.nan
    if record.get("status") == "diverged":
        return math.inf
    loss = record.get("final_eval_loss")
    return math.nan if record.get("status") != "ok" or loss is None else float(loss)


def extend_grid(lrs: list[float], warmups: Sequence[Any], loss: Callable[[Any, float], float]) -> list[float]:
    """``lrs`` (sorted) extended beyond an edge that holds the best seed-0 ``loss(warmup, lr)`` of any
    of ``warmups``, one LR at a time (as the records of the last one arrive); unchanged while a cell
    is missing (NaN). At most 6 passes; a pass extends the grid once per warmup whose best is at an
    edge: a method that never turns is reported so."""
    lrs = list(lrs)
    for _ in range(6):
        grown = False
        for warmup in warmups:
            losses = [loss(warmup, lr) for lr in lrs]
            if any(math.isnan(x) for x in losses):
                return lrs  # the grid is not complete yet
            best = min(range(len(lrs)), key=lambda i: losses[i])
            if math.isinf(losses[best]):
                continue
            if best == 0:
                lrs.insert(0, lrs[0] / LR_STEP)
                grown = True
            elif best == len(lrs) - 1:
                lrs.append(lrs[-1] * LR_STEP)
                grown = True
        if not grown:
            return lrs
    return lrs


def extended_lrs(label: str, found: dict[tuple, dict[str, Any]]) -> list[float]:
    """The LR grid of an optimizer: its starting grid, extended beyond an edge that holds the best
    seed-0 loss of either warmup (:func:`extend_grid`)."""
    return extend_grid(
        sorted(VARIANTS[label][2]),
        (0.0, REFERENCE_WARMUP),
        lambda warmup, lr: _loss(found.get((label, warmup_steps(warmup), lr, 0))),
    )


def best_lr(label: str, warmup: float, lrs: list[float], found: dict[tuple, dict[str, Any]]) -> float | None:
    """The LR with the lowest seed-0 loss (None while a cell is missing or when all diverged)."""
    losses = [_loss(found.get((label, warmup_steps(warmup), lr, 0))) for lr in lrs]
    if any(math.isnan(x) for x in losses) or all(math.isinf(x) for x in losses):
        return None
    return lrs[min(range(len(lrs)), key=lambda i: losses[i])]


def seed_spread(label: str, warmup: float, lr: float, found: dict[tuple, dict[str, Any]]) -> list[float]:
    """The finite final losses of a cell over the seeds recorded."""
    losses = [_loss(found.get((label, warmup_steps(warmup), lr, seed))) for seed in SEEDS]
    return [x for x in losses if math.isfinite(x)]


def needs_third_seed(label: str, lrs: dict[float, float | None], found: dict[tuple, dict[str, Any]]) -> bool:
    """Stage 3's rule: the gap is within twice the larger seed standard deviation of the two cells."""
    import statistics

    if None in lrs.values():
        return False
    no, yes = (seed_spread(label, w, lrs[w], found) for w in (0.0, REFERENCE_WARMUP))
    if len(no) < 2 or len(yes) < 2:
        return False
    spread = max(statistics.stdev(no), statistics.stdev(yes))
    return abs(statistics.mean(no) - statistics.mean(yes)) <= 2 * spread


def comparison_cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every cell of the three stages that the records so far call for."""
    found = {_key(r["values"]): r for r in records if r.get("study") == NAME}
    cells: list[dict[str, Any]] = []
    deciding: dict[str, dict[float, float | None]] = {}
    for label, (_, warmups, _) in VARIANTS.items():
        lrs = extended_lrs(label, found)
        cells += [_cell(label, lr, w, 0) for lr in lrs for w in warmups]
        deciding[label] = {w: best_lr(label, w, lrs, found) for w in (0.0, REFERENCE_WARMUP)}
    stage_1_done = all(_key(c) in found for c in cells)
    if not stage_1_done:
        return cells
    for label, lrs in deciding.items():
        cells += [_cell(label, lr, w, 1) for w, lr in lrs.items() if lr is not None]
    if not all(_key(c) in found for c in cells):
        return cells
    for label, lrs in deciding.items():
        if needs_third_seed(label, lrs, found):
            cells += [_cell(label, lr, w, 2) for w, lr in lrs.items()]
    return cells


STUDY = Study(
    name=NAME,
    config="cpu_small",
    base=BASE,
    cells=comparison_cells(read_records(RECORDS) if os.path.exists(RECORDS) else []),
    records=RECORDS,
    description=(
        "The comparison of experiments/PROTOCOL.md: seven optimizers x their LR grids x warmup, "
        f"0.34M-parameter GPT (BPE-2048), {STEPS} steps of 16 x 128 tokens; seeds added to the deciding cells "
        "by fixed rules."
    ),
)
