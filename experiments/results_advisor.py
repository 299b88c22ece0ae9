"""The warmup advisor's validation (experiments/PROTOCOL_ADVISOR.md) from the sweep records.

    python experiments/results_advisor.py          # prints the fitted levels and the three tables

`experiments/results.py` includes the section this module writes. Everything is computed from
``experiments/records/{compare,leaderboard,pilot}.jsonl``: the signals from each no-warmup cell's
logged curves over its first N steps, the labels from the losses, the levels fitted on the fit
cells only, then applied unchanged to the held-out and the fresh cells.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from warmup_jax import advisor
from warmup_jax.sweep.runner import latest_records, read_records

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name: str):
    """A sibling experiment module, loaded once (registered, so its dataclasses resolve)."""
    key = f"_experiments_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, os.path.join(HERE, f"{name}.py"))
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


compare = _load("compare")
leaderboard = _load("leaderboard")
beyond = _load("results_leaderboard")

STEPS = compare.STEPS
N = advisor.default_steps(STEPS)  # 15 of 300
MAX_WARMUP = STEPS // 2
PILOT_WARMUP = 30  # the pilot's 10 % warmup


@dataclasses.dataclass
class Case:
    """One (optimizer, LR) cell: its no-warmup record's signals and its measured outcome."""

    group: str  # fit, held-out, fresh
    label: str
    lr: float
    batch: int
    gap: float  # seed-0 loss without minus with the warmup
    spread: float  # the optimizer's seed spread
    scores: dict[str, float]  # signal -> mean over steps 1..N (NaN: not logged)
    metrics: dict[str, dict[int, float]]
    angle_scale: float | None
    best_length: int | None = None  # the best measured warmup length (AdamW fit cells)

    @property
    def needed(self) -> bool:
        return self.gap > self.spread


def _hparams(values: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("optim.hparams."): v for k, v in values.items() if k.startswith("optim.hparams.")}


def _metrics(record: dict[str, Any]) -> dict[str, dict[int, float]]:
    """The record's global curves under the names the trainer logs them with."""
    out = {}
    for name in ("angle", "rrc"):
        curve = record.get("metrics", {}).get(name)
        if curve:
            out[f"{name}/global"] = {s: v for s, v in zip(curve["step"], curve["value"]) if v is not None}
    return out


def _case(group, label, no, yes, spread, batch=16, best_length=None) -> Case | None:
    loss_no, loss_yes = compare._loss(no), compare._loss(yes)
    if not (math.isfinite(loss_no) and math.isfinite(loss_yes)) or not math.isfinite(spread):
        return None
    values = no["values"]
    scale = advisor.equilibrium_angle(values["optim.name"], values["optim.lr"], _hparams(values))
    metrics = _metrics(no)
    found = advisor.signals(metrics, scale)
    scores = {}
    for name in advisor.SIGNALS:
        points = [v for s, v in found[name].get("global", {}).items() if 1 <= s <= N]
        scores[name] = statistics.mean(points) if points else math.nan
    return Case(
        group, label, values["optim.lr"], batch, loss_no - loss_yes, spread, scores, metrics, scale, best_length
    )


def fit_cases(compare_records: Sequence[dict]) -> list[Case]:
    results = _load("results")
    cells = results.Cells(list(compare_records))
    out = []
    for label in compare.VARIANTS:
        spread = results.Gap(cells, label).spread
        for lr in cells.lrs[label]:
            no, yes = cells.record(label, 0.0, lr, 0), cells.record(label, compare.REFERENCE_WARMUP, lr, 0)
            if no is None or yes is None:
                continue
            best = None
            if label == "AdamW":
                losses = {
                    compare.warmup_steps(w): compare._loss(cells.record(label, w, lr, 0)) for w in compare.ADAMW_WARMUPS
                }
                if all(math.isfinite(x) for x in losses.values()):
                    best = min(losses, key=losses.get)
            case = _case("fit", label, no, yes, spread, best_length=best)
            if case:
                out.append(case)
    return out


def held_out_cases(compare_records: Sequence[dict], board_records: Sequence[dict]) -> list[Case]:
    board = beyond.Board(compare_records, board_records)
    out = []
    for label in ("RAdam", "GI-Adam", "AdamW²", "Post-LN"):
        no_entry, yes_entry = board.method(label, 0), board.method(label, leaderboard.REFERENCE_WARMUP)
        if len(no_entry.losses) < 2 or len(yes_entry.losses) < 2:
            continue  # its spread is not measured yet
        spread = max(no_entry.std, yes_entry.std)
        for lr in leaderboard.extended_lrs(label, board.found):
            no = board.found.get((label, 0, lr, 0))
            yes = board.found.get((label, leaderboard.REFERENCE_WARMUP, lr, 0))
            if not (no and yes):
                continue
            best = 0 if compare._loss(no) <= compare._loss(yes) else leaderboard.REFERENCE_WARMUP
            if case := _case("held-out", label, no, yes, spread, best_length=best):
                out.append(case)
    return out


def fresh_cases(pilot_records: Sequence[dict], compare_records: Sequence[dict]) -> list[Case]:
    results = _load("results")
    spread = results.Gap(results.Cells(list(compare_records)), "AdamW").spread
    by = {
        (r["values"]["train.batch_size"], r["values"]["optim.lr"], r["values"]["optim.warmup_steps"]): r
        for r in pilot_records
    }
    out = []
    for (batch, lr, warmup), no in sorted(by.items()):
        if warmup != 0 or (batch, lr, PILOT_WARMUP) not in by:
            continue
        yes = by[(batch, lr, PILOT_WARMUP)]
        best = 0 if compare._loss(no) <= compare._loss(yes) else PILOT_WARMUP
        if case := _case("fresh", "AdamW", no, yes, spread, batch=batch, best_length=best):
            out.append(case)
    return out


# --- fitting and scoring ---------------------------------------------------------------------------


def balanced_accuracy(cases: Sequence[Case], signal: str, level: float) -> float:
    usable = [c for c in cases if math.isfinite(c.scores[signal])]
    positives = [c for c in usable if c.needed]
    negatives = [c for c in usable if not c.needed]
    rates = []
    if positives:
        rates.append(sum(c.scores[signal] > level for c in positives) / len(positives))
    if negatives:
        rates.append(sum(c.scores[signal] <= level for c in negatives) / len(negatives))
    return statistics.mean(rates) if rates else math.nan


def fit_level(cases: Sequence[Case], signal: str) -> tuple[float, float]:
    """(level, fit balanced accuracy): the midpoint of consecutive sorted scores that maximises it;
    ties go to the higher level."""
    scores = sorted({c.scores[signal] for c in cases if math.isfinite(c.scores[signal])})
    if len(scores) < 2:
        return math.nan, math.nan
    candidates = [(a + b) / 2 for a, b in zip(scores, scores[1:])]
    best = max(candidates, key=lambda level: (balanced_accuracy(cases, signal, level), level))
    return best, balanced_accuracy(cases, signal, best)


def fitted_levels(cases: Sequence[Case]) -> tuple[advisor.Levels | None, dict[str, tuple[float, float]]]:
    fits = {name: fit_level(cases, name) for name in advisor.SIGNALS}
    if any(math.isnan(level) for level, _ in fits.values()):
        return None, fits
    signal = max(advisor.SIGNALS, key=lambda name: (fits[name][1], name == "angle_ratio"))
    levels = advisor.Levels(angle_ratio=fits["angle_ratio"][0], rrc=fits["rrc"][0], signal=signal)
    return levels, fits


def confusion(cases: Sequence[Case], signal: str, level: float) -> dict[str, int]:
    table = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for c in cases:
        if not math.isfinite(c.scores[signal]):
            continue
        said = c.scores[signal] > level
        table[("t" if said == c.needed else "f") + ("p" if said else "n")] += 1
    return table


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def summary(cases: Sequence[Case], signal: str, level: float, majority: bool) -> list[str]:
    table = confusion(cases, signal, level)
    total = sum(table.values())
    accuracy = (table["tp"] + table["tn"]) / total if total else math.nan
    base = sum(c.needed == majority for c in cases if math.isfinite(c.scores[signal])) / total if total else math.nan
    return [
        str(total),
        str(table["tp"] + table["fn"]),
        f"{table['tp']} / {table['fn']}",
        f"{table['fp']} / {table['tn']}",
        _fmt(accuracy),
        _fmt(balanced_accuracy(cases, signal, level)),
        _fmt(base),
    ]


def length_error(cases: Sequence[Case], levels: advisor.Levels) -> tuple[float, int]:
    """Mean absolute error (steps) of the advised length against the best measured one."""
    errors = []
    for c in cases:
        if c.best_length is None:
            continue
        advice = advisor.advise(
            c.metrics, angle_scale=c.angle_scale, planned_steps=STEPS, max_warmup=MAX_WARMUP, steps=N, levels=levels
        )
        errors.append(abs(advice.warmup_steps - c.best_length))
    return (statistics.mean(errors) if errors else math.nan), len(errors)


def figure(cases: Sequence[Case], levels: advisor.Levels | None, path: str) -> str:
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    axes = fig.subplots(1, len(advisor.SIGNALS))
    markers = {"fit": "o", "held-out": "s", "fresh": "^"}
    for ax, signal in zip(axes, advisor.SIGNALS):
        for group, marker in markers.items():
            for needed, color in ((True, "tab:red"), (False, "tab:blue")):
                pts = [(c.scores[signal], c.gap) for c in cases if c.group == group and c.needed == needed]
                pts = [p for p in pts if math.isfinite(p[0])]
                if pts:
                    ax.scatter(
                        *zip(*pts),
                        marker=marker,
                        color=color,
                        s=22,
                        alpha=0.7,
                        label=f"{group}, {'needed' if needed else 'not needed'}",
                    )
        if levels is not None:
            ax.axvline(getattr(levels, signal), color="black", ls="--", lw=1.2, label="fitted level")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(
            xscale="log",
            xlabel=f"{signal} score (mean over steps 1–{N}, no warmup)",
            ylabel="loss gap: no warmup − warmup (seed 0)",
        )
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Advisor signals against the measured warmup gap (needed: gap above the seed spread)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def section(compare_records, board_records, pilot_records, figures: str, out_dir: str) -> list[str]:
    fit = fit_cases(compare_records)
    held = held_out_cases(compare_records, board_records)
    fresh = fresh_cases(pilot_records, compare_records)
    levels, fits = fitted_levels(fit)
    lines = [
        "# Advisor: warmup advice from the first steps",
        "",
        f"The protocol is `experiments/PROTOCOL_ADVISOR.md`. N = {N} steps of each no-warmup cell; a cell's warmup is "
        "*needed* when its seed-0 gap (no warmup − warmup) exceeds its optimizer's seed spread. Levels fitted on the "
        "fit cells only: "
        + "; ".join(
            f"{name} {_fmt(level, 4)} (fit balanced accuracy {_fmt(acc)})" for name, (level, acc) in fits.items()
        )
        + (f"; the rule uses **{levels.signal}**." if levels else "; not enough fit cells yet."),
        "",
    ]
    if levels is None:
        return lines
    majority = sum(c.needed for c in fit) > len(fit) / 2
    level = getattr(levels, levels.signal)
    header = [
        "cells",
        "n",
        "needed",
        "said needed / not (of needed)",
        "said needed / not (of not needed)",
        "accuracy",
        "balanced accuracy",
        f"always '{'needed' if majority else 'not needed'}'",
    ]
    rows = []
    for name, cases in (("fit", fit), ("held-out", held), ("fresh (B = 8, 16, 32)", fresh)):
        rows.append([name, *summary(cases, levels.signal, level, majority)])
        other = "rrc" if levels.signal == "angle_ratio" else "angle_ratio"
        rows.append([f"{name}, with {other} instead", *summary(cases, other, getattr(levels, other), majority)])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    path = figure(fit + held + fresh, levels, os.path.join(figures, "advisor.png"))
    lengths = []
    for name, cases, choices in (
        ("AdamW fit cells", fit, "0, 6, 15, 30, 60 steps"),
        ("held-out cells", held, f"0 or {leaderboard.REFERENCE_WARMUP} steps"),
        ("fresh cells", fresh, f"0 or {PILOT_WARMUP} steps"),
    ):
        error, count = length_error(cases, levels)
        lengths.append(f"{name} ({count}, measured {choices}) {_fmt(error, 1)}")
    lines += [
        "",
        "With one outcome only among a group's cells, its balanced accuracy is the rate of that outcome's cells "
        "called right. Recommended length against the best measured one, mean absolute error in steps: "
        + "; ".join(lengths)
        + ".",
        "",
        *verdict(held, levels, majority),
        "",
        f"![advisor]({os.path.relpath(path, out_dir)})",
        "",
    ]
    return lines


def verdict(held: Sequence[Case], levels: advisor.Levels, majority: bool) -> list[str]:
    """Whether a signal beats the base rate on the held-out cells; if none does, the closest one."""
    if not held:
        return ["Held-out verdict: pending (no held-out cell has its spread measured yet)."]
    tables = {name: confusion(held, name, getattr(levels, name)) for name in advisor.SIGNALS}
    scored = {
        name: (t["tp"] + t["tn"]) / total if (total := sum(t.values())) else math.nan for name, t in tables.items()
    }
    base = sum(c.needed == majority for c in held) / len(held)
    best = max(scored, key=scored.get)
    said = tables[levels.signal]["tp"] + tables[levels.signal]["fp"]
    accuracy = scored[best]
    if accuracy > base:
        return [
            f"Held-out verdict: the {best} rule beats the base rate ({_fmt(accuracy)} against {_fmt(base)} for always "
            f"answering '{'needed' if majority else 'not needed'}')."
        ]
    return [
        f"Held-out verdict: **the data do not support a predictor at this scale.** No signal beats always answering "
        f"'{'needed' if majority else 'not needed'}' on the held-out cells ({_fmt(base)}); the closest is the {best} "
        f"({_fmt(accuracy)}). Without warmup, {said} of {len(held)} held-out cells score above the {levels.signal} "
        "level fitted on the comparison, whether or not their final loss gained from a warmup."
    ]


def _records(name: str) -> list[dict[str, Any]]:
    path = os.path.join(HERE, "records", f"{name}.jsonl")
    return list(latest_records(read_records(path)).values()) if os.path.exists(path) else []


def main() -> int:
    lines = section(_records("compare"), _records("leaderboard"), _records("pilot"), "/tmp/advisor_figures", "/tmp")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
