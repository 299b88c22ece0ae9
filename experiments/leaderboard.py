"""Leaderboard: the related papers' warmup claims and every warmup-removal method on one harness.

The protocol (experiments/PROTOCOL_LEADERBOARD.md) was fixed before any of these cells ran. The
model, data and budget are the comparison's (experiments/compare.py), whose cells are reused; the new
methods are each a one-change variant of its AdamW. Three stages, each a fixed rule on the records
of the one before:

1. seed 0: every method x its LR grid x its warmups, the grid extended past an edge optimum;
2. seed 1 for the deciding cells (per method and warmup, the best seed-0 LR), and seeds 1, 2 for
   AdamW's best (warmup, LR) of the comparison;
3. seed 2 for the deciding cells of a method whose claim's difference is within twice its spread.

Launch:   warmup-jax sweep experiments/leaderboard.py && python experiments/results.py
Expected: ~55 cells in stage 1 and ~25 more, ~2 min each on 2 CPU cores (~3 h in all).
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
from typing import Any

from warmup_jax.optim import porian_warmup_steps
from warmup_jax.sweep import Study
from warmup_jax.sweep.runner import read_records

HERE = os.path.dirname(os.path.abspath(__file__))


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(f"_experiments_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _sibling("compare")

NAME = "leaderboard"
RECORDS = os.path.join("experiments", "records", f"{NAME}.jsonl")
STEPS = compare.STEPS
SEEDS = compare.SEEDS
TOKENS_PER_STEP = 16 * 128
REFERENCE_WARMUP = compare.warmup_steps(compare.REFERENCE_WARMUP)  # 15 steps
MAX_WARMUP = STEPS // 2  # the trapezoid's cooldown takes the last 50 %
SLW_STEPS = round(0.2 * STEPS)

# N for Porian's rule: the comparison model's parameters without the position table (the tied
# embedding counted once, as the output head): 4 blocks of 12 d^2 + 2 LayerNorm gains, the final
# LayerNorm, and the 2048 x 64 embedding.
D, LAYERS, VOCAB = 64, 4, 2048
PORIAN_TOKENS = LAYERS * (12 * D * D + 2 * D) + D + VOCAB * D
PORIAN_REQUESTED_STEPS = porian_warmup_steps(PORIAN_TOKENS, TOKENS_PER_STEP)
PORIAN_STEPS = min(PORIAN_REQUESTED_STEPS, MAX_WARMUP)

ADAMW = {"optim.name": "adamw"}
# label -> (overrides, warmups in steps, reference: (label, warmup steps) of the claim's comparison)
METHODS: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "RAdam": ({"optim.name": "radam"}, (0, REFERENCE_WARMUP)),
    "GI-Adam": ({"optim.name": "gi_adam"}, (0, REFERENCE_WARMUP)),
    "AdamW²": ({"optim.name": "adamw_spectral_bound"}, (0, REFERENCE_WARMUP)),
    "Post-LN": ({**ADAMW, "model.norm_position": "post"}, (0, REFERENCE_WARMUP)),
    "Catapult": ({**ADAMW, "optim.catapult_init_lr": True}, (REFERENCE_WARMUP,)),
    "SLW": (
        {
            **ADAMW,
            "data.seq_len_warmup_steps": SLW_STEPS,
            "data.seq_len_min": 8,
            "data.seq_len_bucket": 8,
            "optim.schedule_unit": "tokens",
        },
        (0,),
    ),
    # Plain AdamW at the rule's warmup length: its cells are told apart by that length alone.
    "Porian": (ADAMW, (PORIAN_STEPS,)),
}
METHOD_KEYS = sorted({key for overrides, _ in METHODS.values() for key in overrides})


def method_of(values: dict[str, Any]) -> str | None:
    """The label of the method a cell's values make: "AdamW" for the plain baseline (its best-warmup
    seeds), "Porian" for the baseline at Porian's warmup length."""
    for label, (overrides, _) in METHODS.items():
        if overrides != ADAMW and all(values.get(key) == overrides.get(key) for key in METHOD_KEYS):
            return label
    if all(values.get(key) == ADAMW.get(key) for key in METHOD_KEYS):
        return "Porian" if values.get("optim.warmup_steps") == PORIAN_STEPS else "AdamW"
    return None


def _cell(label: str, lr: float, warmup: int, seed: int) -> dict[str, Any]:
    return {"train.seed": seed, **METHODS[label][0], "optim.lr": lr, "optim.warmup_steps": warmup}


def _key(values: dict[str, Any]) -> tuple:
    method = method_of(values)
    return (method, values.get("optim.warmup_steps"), values.get("optim.lr"), values.get("train.seed"))


def extended_lrs(label: str, found: dict[tuple, dict[str, Any]]) -> list[float]:
    """The method's LR grid: AdamW's, extended beyond an edge that holds a seed-0 optimum."""
    return compare.extend_grid(
        sorted(compare.ADAMW_LRS),
        METHODS[label][1],
        lambda warmup, lr: compare._loss(found.get((label, warmup, lr, 0))),
    )


def best_lr(label: str, warmup: int, lrs: list[float], found: dict[tuple, dict[str, Any]]) -> float | None:
    losses = [compare._loss(found.get((label, warmup, lr, 0))) for lr in lrs]
    if any(math.isnan(x) for x in losses) or all(math.isinf(x) for x in losses):
        return None
    return lrs[min(range(len(lrs)), key=lambda i: losses[i])]


def seed_losses(label: str, warmup: int, lr: float, found: dict[tuple, dict[str, Any]]) -> list[float]:
    losses = [compare._loss(found.get((label, warmup, lr, seed))) for seed in SEEDS]
    return [x for x in losses if math.isfinite(x)]


def adamw_best_warmup(compare_found: dict[tuple, dict[str, Any]]) -> tuple[int, float] | None:
    """AdamW's (warmup steps, LR) with the lowest seed-0 loss over the comparison's grid."""
    cells = [
        (compare._loss(r), key[1], key[2])
        for key, r in compare_found.items()
        if key[0] == "AdamW" and key[3] == 0 and math.isfinite(compare._loss(r))
    ]
    if not cells:
        return None
    _, warmup, lr = min(cells)
    return warmup, lr


def reference_losses(label: str, found: dict, compare_found: dict, deciding: dict) -> list[float] | None:
    """The seed losses of the cell a single-warmup method's claim is compared with."""
    if label == "Catapult":
        lrs = compare.extended_lrs("AdamW", compare_found)
        lr = compare.best_lr("AdamW", compare.REFERENCE_WARMUP, lrs, compare_found)
        return None if lr is None else compare.seed_spread("AdamW", compare.REFERENCE_WARMUP, lr, compare_found)
    if label == "SLW":
        lrs = compare.extended_lrs("AdamW", compare_found)
        lr = compare.best_lr("AdamW", 0.0, lrs, compare_found)
        return None if lr is None else compare.seed_spread("AdamW", 0.0, lr, compare_found)
    if label == "Porian":
        best = adamw_best_warmup(compare_found)
        if best is None:
            return None
        return seed_losses("AdamW", best[0], best[1], found) + [
            compare._loss(compare_found.get(("AdamW", best[0], best[1], 0)))
        ]
    return None


def within_twice_spread(a: list[float], b: list[float]) -> bool:
    if len(a) < 2 or len(b) < 2:
        return False
    spread = max(statistics.stdev(a), statistics.stdev(b))
    return abs(statistics.mean(a) - statistics.mean(b)) <= 2 * spread


def needs_third_seed(label: str, lrs: dict[int, float | None], found: dict, compare_found: dict) -> bool:
    if None in lrs.values():
        return False
    warmups = METHODS[label][1]
    if len(warmups) == 2:
        no, yes = (seed_losses(label, w, lrs[w], found) for w in warmups)
        return within_twice_spread(no, yes)
    (warmup,) = warmups
    reference = reference_losses(label, found, compare_found, lrs)
    return reference is not None and within_twice_spread(seed_losses(label, warmup, lrs[warmup], found), reference)


def leaderboard_cells(records: list[dict[str, Any]], compare_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every cell of the three stages that the records so far call for."""
    found = {_key(r["values"]): r for r in records if r.get("study") == NAME}
    compare_found = {compare._key(r["values"]): r for r in compare_records if r.get("study") == compare.NAME}
    cells: list[dict[str, Any]] = []
    deciding: dict[str, dict[int, float | None]] = {}
    for label, (_, warmups) in METHODS.items():
        lrs = extended_lrs(label, found)
        cells += [_cell(label, lr, w, 0) for lr in lrs for w in warmups]
        deciding[label] = {w: best_lr(label, w, lrs, found) for w in warmups}
    if not all(_key(c) in found for c in cells):
        return cells
    for label, lrs in deciding.items():
        cells += [_cell(label, lr, w, 1) for w, lr in lrs.items() if lr is not None]
    best = adamw_best_warmup(compare_found)
    if best is not None:
        warmup, lr = best
        cells += [{"train.seed": s, **ADAMW, "optim.lr": lr, "optim.warmup_steps": warmup} for s in (1, 2)]
    if not all(_key(c) in found for c in cells):
        return cells
    for label, lrs in deciding.items():
        if needs_third_seed(label, lrs, found, compare_found):
            cells += [_cell(label, lr, w, 2) for w, lr in lrs.items()]
    return cells


def _read(path: str) -> list[dict[str, Any]]:
    return read_records(path) if os.path.exists(path) else []


STUDY = Study(
    name=NAME,
    config="cpu_small",
    base=compare.BASE,
    cells=leaderboard_cells(_read(RECORDS), _read(compare.RECORDS)),
    records=RECORDS,
    description=(
        "The leaderboard of experiments/PROTOCOL_LEADERBOARD.md: RAdam, GI-Adam, AdamW², Post-LN, the catapult's "
        "eta_init, sequence-length warmup and Porian's warmup length, each a one-change variant of the comparison's "
        f"AdamW on its LR grid ({STEPS} steps of 16 x 128 tokens); seeds added to the deciding cells by fixed rules."
    ),
)
