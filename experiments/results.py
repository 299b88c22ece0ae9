"""Regenerates experiments/RESULTS.md and experiments/figures/ from the recorded cells alone.

    python experiments/results.py

RESULTS.md is PROTOCOL.md (written before the comparison ran, copied verbatim), then the pilot that
chose the protocol, the seven claims with their verdicts, the tables behind them and the figures;
then PROTOCOL_LEADERBOARD.md with the related papers' claims, the leaderboard and the continued
pre-training study (experiments/results_leaderboard.py).
Every number is computed here from ``experiments/records/*.jsonl``; the verdict rules
are those the protocols fix ("What decides a verdict"). Cells still missing are reported as
missing, and a claim whose deciding cells are incomplete is "pending".
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from warmup_jax.sweep.report import mean_curve
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
beyond = _load("results_leaderboard")  # the leaderboard study and continued pre-training
advice = _load("results_advisor")  # the warmup advisor's validation
postln_followup = _load("results_postln")  # the Post-LN follow-up of the leaderboard
LIONS = [label for label in compare.VARIANTS if label != "AdamW"]
NO, YES = 0.0, compare.REFERENCE_WARMUP
MECHANISM = ("AdamW", "LionA", "LionAR", "LionAR + RRC")  # the columns of the mechanism figure
DRASTIC = 0.1  # nats: "drastically worse" (claim 7), fixed in PROTOCOL.md


# --- the records as a table ----------------------------------------------------------------------


class Cells:
    """The comparison's records, looked up by (optimizer, warmup fraction, LR, seed)."""

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.records = [r for r in records if r.get("study") == compare.NAME]
        self.found = {compare._key(r["values"]): r for r in self.records}
        self.lrs = {label: compare.extended_lrs(label, self.found) for label in compare.VARIANTS}

    def record(self, label: str, warmup: float, lr: float, seed: int) -> dict[str, Any] | None:
        return self.found.get((label, compare.warmup_steps(warmup), lr, seed))

    def losses(self, label: str, warmup: float, lr: float) -> list[float]:
        """Final losses over the recorded seeds (inf: diverged)."""
        out = []
        for seed in compare.SEEDS:
            record = self.record(label, warmup, lr, seed)
            if record is not None and record.get("status") in ("ok", "diverged"):
                out.append(compare._loss(record))
        return out

    def best_lr(self, label: str, warmup: float) -> float | None:
        return compare.best_lr(label, warmup, self.lrs[label], self.found)

    def curve(self, label: str, warmup: float, lr: float, name: str) -> list[dict[str, list]]:
        curves = []
        for seed in compare.SEEDS:
            record = self.record(label, warmup, lr, seed)
            if record is None or record.get("status") != "ok":
                continue
            found = record.get(name) or record.get("metrics", {}).get(name)
            if found:
                curves.append(found)
        return curves


def _mean(xs: Sequence[float]) -> float:
    return statistics.mean(xs) if xs else math.nan


def _std(xs: Sequence[float]) -> float:
    finite = [x for x in xs if math.isfinite(x)]
    return statistics.stdev(finite) if len(finite) >= 2 else math.nan


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "diverged"
    return f"{x:.{digits}f}"


def _lr(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def _warmup(fraction: float) -> str:
    return f"{fraction:.0%} ({compare.warmup_steps(fraction)} steps)"


# --- gaps and verdicts ---------------------------------------------------------------------------


class Side:
    """The deciding cell of one optimizer and warmup: its best seed-0 LR and the losses there."""

    def __init__(self, cells: Cells, label: str, warmup: float):
        self.label, self.warmup = label, warmup
        self.lr = cells.best_lr(label, warmup)
        self.losses = cells.losses(label, warmup, self.lr) if self.lr is not None else []
        lrs = cells.lrs[label]
        self.at_edge = self.lr is not None and self.lr in (lrs[0], lrs[-1])

    @property
    def mean(self) -> float:
        return _mean(self.losses)

    @property
    def std(self) -> float:
        return _std(self.losses)

    def describe(self) -> str:
        spread = f" ± {_fmt(self.std)}" if math.isfinite(self.std) else ""
        return f"{_fmt(self.mean)}{spread} (n={len(self.losses)}, LR {_lr(self.lr)})"


class Gap:
    """No warmup minus 5 % warmup, each at its own best LR: the paper's comparison."""

    def __init__(self, cells: Cells, label: str):
        self.label = label
        self.no, self.yes = Side(cells, label, NO), Side(cells, label, YES)
        self.value = self.no.mean - self.yes.mean
        # the larger seed standard deviation of the two cells: what "within 2x the seed spread" means
        self.spread = max(self.no.std, self.yes.std) if self.seeds >= 2 else math.nan
        self.paired = [a - b for a, b in zip(self.no.losses, self.yes.losses)]

    @property
    def seeds(self) -> int:
        return min(len(self.no.losses), len(self.yes.losses))

    @property
    def ready(self) -> bool:
        """Enough seeds for a verdict: 2, or 3 where the gap is within twice the spread."""
        if self.seeds < 2 or not math.isfinite(self.spread):
            return self.seeds >= 2 and not math.isfinite(self.value)  # a diverged side decides alone
        return self.seeds >= 3 or abs(self.value) > 2 * self.spread

    def sign(self) -> str:
        """'+' (warmup helps: gap above 2x the spread), '-' (warmup hurts), '0' (within)."""
        if not math.isfinite(self.value):
            return "+" if self.value > 0 else "-"
        if self.value > 2 * self.spread:
            return "+"
        if self.value < -2 * self.spread:
            return "-"
        return "0"

    def describe(self) -> str:
        paired = ", ".join(_fmt(x, 3) for x in self.paired)
        spread = f"; seed spread {_fmt(self.spread, 3)}" if math.isfinite(self.spread) else ""
        return f"gap {_fmt(self.value, 3)} (per seed: {paired}{spread})"


def _verdict(ready: bool, reproduced: bool, refuted: bool) -> str:
    if not ready:
        return "pending"
    if reproduced:
        return "reproduced"
    return "not reproduced" if refuted else "inconclusive"


def claims(cells: Cells) -> list[dict[str, str]]:
    """The seven claims: text, verdict, and the numbers behind the verdict."""
    gaps = {label: Gap(cells, label) for label in compare.VARIANTS}
    out = []

    def gap_claim(label: str, text: str, *, warmup_helps: bool) -> None:
        """A claim about one optimizer's gap: that warmup helps (``warmup_helps``) or does not."""
        gap = gaps[label]
        sign = gap.sign() if gap.ready else "?"
        helps, not_helps = sign == "+", sign in ("0", "-")
        out.append(
            dict(
                claim=text,
                verdict=_verdict(gap.ready, helps if warmup_helps else not_helps, not_helps if warmup_helps else helps),
                evidence=f"no warmup {gap.no.describe()}; 5 % warmup {gap.yes.describe()}; {gap.describe()}",
            )
        )

    needs_warmup = functools.partial(gap_claim, warmup_helps=True)
    no_benefit = functools.partial(gap_claim, warmup_helps=False)

    needs_warmup("AdamW", "AdamW without warmup is clearly worse than with warmup (Fig. 1)")
    needs_warmup("LionA", "LionA (ℓ2 update control) still benefits from warmup (Fig. 2)")
    a, ar = gaps["LionA"], gaps["LionAR"]
    ready = a.ready and ar.ready
    diff_spread = math.hypot(a.spread, ar.spread) if ready else math.nan
    reduced = ready and a.value - ar.value > 2 * diff_spread
    out.append(
        dict(
            claim="LionAR (angular control) reduces the gap of LionA but does not close it (Fig. 3)",
            verdict=_verdict(ready, reduced and ar.sign() == "+", ready and (ar.sign() != "+" or ar.value >= a.value)),
            evidence=f"LionAR {ar.describe()}; LionA {a.describe()}; difference {_fmt(a.value - ar.value, 3)} "
            f"(2x combined spread {_fmt(2 * diff_spread, 3)})",
        )
    )
    no_benefit("LionAR + RRC", "LionAR with the SNR-based RRC correction does not benefit from warmup (Fig. 5.1)")
    no_benefit(
        "LionAR fast momentum",
        "LionAR with β = 0.98, Nesterov and inverse bias correction is best without warmup (Fig. 5.3)",
    )
    needs_warmup(
        "LionA fast momentum", "The same changes on LionA are not enough: it still benefits from warmup (Fig. 5.4)"
    )
    nm, base = gaps["LionAR no momentum"], gaps["LionAR"]
    nm_best = min((nm.no, nm.yes), key=lambda s: s.mean if math.isfinite(s.mean) else math.inf)
    base_best = min((base.no, base.yes), key=lambda s: s.mean if math.isfinite(s.mean) else math.inf)
    ready = nm.seeds >= 2 and base.seeds >= 2
    worse = nm_best.mean - base_best.mean
    spread = max(nm_best.std, base_best.std)
    out.append(
        dict(
            claim="LionAR without momentum is drastically worse (Fig. 5.2)",
            verdict=_verdict(ready, worse > max(2 * spread, DRASTIC), worse <= max(2 * spread, DRASTIC)),
            evidence=f"best without momentum {nm_best.describe()} vs best LionAR {base_best.describe()}: "
            f"{_fmt(worse, 3)} worse (threshold: {DRASTIC} nats and 2x spread {_fmt(2 * spread, 3)})",
        )
    )
    return out


# --- figures -------------------------------------------------------------------------------------

COLORS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _save(fig: Figure, folder: str, name: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=110)
    return path


def _legend(ax, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:  # nothing drawn yet: no empty legend
        ax.legend(**kwargs)


def _log_lr_axis(ax, lrs: Sequence[float]) -> None:
    """A log LR axis labelled at the grid's values (the minor labels of factor-2 grids collide)."""
    ax.set_xscale("log")
    ax.set_xticks(list(lrs), [_lr(x) for x in lrs], rotation=30)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _loss_vs_lr(ax, cells: Cells, label: str, warmups: Sequence[float]) -> None:
    """Mean over seeds with min–max bars, each seed a faint dot; a diverged cell a cross at the top."""
    means, crosses = [], []
    for warmup, color in zip(warmups, COLORS):
        xs, ys, lo, hi = [], [], [], []
        for lr in cells.lrs[label]:
            losses = cells.losses(label, warmup, lr)
            finite = [x for x in losses if math.isfinite(x)]
            if finite:
                mean = float(np.mean(finite))
                xs.append(lr)
                ys.append(mean)
                lo.append(mean - min(finite))
                hi.append(max(finite) - mean)
                ax.scatter([lr] * len(finite), finite, color=color, s=8, alpha=0.35)
            if any(math.isinf(x) for x in losses):
                crosses.append((lr, color))
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], color=color, marker="o", ms=4, lw=1.6, capsize=2, label=_warmup(warmup))
            means += ys
    for lr, color in crosses:
        ax.scatter([lr], [max(means, default=0.0)], marker="x", color=color, s=40, zorder=3)
    lrs = cells.lrs[label]
    _log_lr_axis(ax, lrs)
    ax.set_xlim(min(lrs) / 1.4, max(lrs) * 1.4)  # the whole grid, also before its cells are run
    if not means and not crosses:
        ax.text(0.5, 0.5, "no cells recorded yet", transform=ax.transAxes, ha="center", color="gray")
    ax.set(xlabel="peak learning rate", ylabel="final validation loss", title=label)
    ax.grid(alpha=0.3)


def _curves(ax, cells: Cells, label: str, lr: float | None, name: str, warmups: Sequence[float], log_y: bool) -> None:
    if lr is None:
        ax.set_visible(False)
        return
    for warmup, color in zip(warmups, COLORS):
        curves = cells.curve(label, warmup, lr, name)
        if not curves:
            continue
        steps, mean, low, high = mean_curve(curves)
        if log_y:
            mean, low, high = (np.where(a > 0, a, np.nan) for a in (mean, low, high))
        ax.plot(steps, mean, color=color, lw=1.6, label=_warmup(warmup))
        if len(curves) > 1:
            ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def figure_adamw(cells: Cells, folder: str) -> str:
    """Fig. 1 style: final loss vs LR per warmup; loss and ℓ2 update curves at the best no-warmup LR."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    _loss_vs_lr(axes[0], cells, "AdamW", compare.ADAMW_WARMUPS)
    _legend(axes[0], title="warmup", fontsize=8)
    lr = cells.best_lr("AdamW", NO)
    _curves(axes[1], cells, "AdamW", lr, "train_loss", (NO, YES), log_y=False)
    axes[1].set(xlabel="step", ylabel="training loss", title=f"AdamW at LR {_lr(lr)} (best without warmup)")
    _legend(axes[1], fontsize=8)
    _curves(axes[2], cells, "AdamW", lr, "update_l2", (NO, YES), log_y=True)
    axes[2].set(xlabel="step", ylabel="global ℓ2 norm of the update", title=f"AdamW update size at LR {_lr(lr)}")
    _legend(axes[2], fontsize=8)
    fig.suptitle("AdamW: warmup length x peak LR (mean over seeds, min–max bars; x: diverged)")
    return _save(fig, folder, "adamw_warmup.png")


def figure_lr_sweeps(cells: Cells, folder: str) -> str:
    """One panel per optimizer: final loss vs LR without and with 5 % warmup."""
    labels = list(compare.VARIANTS)
    fig = Figure(figsize=(17, 8), layout="constrained")
    axes = fig.subplots(2, 4, sharey=True).ravel()
    for ax, label in zip(axes, labels):
        _loss_vs_lr(ax, cells, label, (NO, YES))
    _legend(axes[0], title="warmup", fontsize=8)
    for ax in axes[len(labels) :]:
        ax.set_visible(False)
    fig.suptitle("Final validation loss vs peak LR, without and with 5 % warmup (mean over seeds, min–max bars)")
    return _save(fig, folder, "lr_sweeps.png")


def figure_mechanism(cells: Cells, folder: str) -> str:
    """Figs. 3/4 style: early ℓ2 update, angular update and RRC with and without warmup."""
    rows = (("update_l2", "ℓ2 update norm"), ("angle", "angular update (rad)"), ("rrc", "relative repr. change"))
    fig = Figure(figsize=(16, 10), layout="constrained")
    axes = fig.subplots(len(rows), len(MECHANISM), squeeze=False)
    for column, label in enumerate(MECHANISM):
        lr = cells.best_lr(label, NO)
        for row, (name, ylabel) in enumerate(rows):
            ax = axes[row][column]
            _curves(ax, cells, label, lr, name, (NO, YES), log_y=True)
            ax.set(xlabel="step", ylabel=ylabel if column == 0 else None)
            if row == 0:
                ax.set_title(f"{label}, LR {_lr(lr)}")
    _legend(axes[0][0], fontsize=8)
    fig.suptitle("Update metrics (global) at each optimizer's best no-warmup LR, without and with 5 % warmup")
    return _save(fig, folder, "update_metrics.png")


def figure_snr(cells: Cells, folder: str) -> str | None:
    """Fig. 4 style: the measured gradient SNR over training against 1/B."""
    label = "LionAR + RRC"
    batch = _base_value("train.batch_size")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for lr, color in zip(cells.lrs[label], COLORS[1:] + COLORS[1:]):
        curves = cells.curve(label, NO, lr, "snr")
        if curves:
            steps, mean, _, _ = mean_curve(curves)
            ax.plot(steps, mean, color=color, lw=1.4, label=f"LR {_lr(lr)}")
            drawn = True
    if not drawn:
        return None
    ax.axhline(1 / batch, color="black", ls="--", lw=1, label=f"1/B = 1/{batch}")
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="gradient SNR φ (per sequence)")
    ax.set_title(f"Measured SNR of {label} without warmup, B = {batch}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, folder, "snr.png")


def _base_value(key: str) -> int:
    for item in compare.BASE:
        name, _, value = item.partition("=")
        if name == key:
            return int(value)
    raise KeyError(key)


def figure_pilot(pilot: Sequence[dict[str, Any]], folder: str, name: str) -> str | None:
    """Final loss vs LR per warmup, one panel per batch size (seed 0)."""
    if not pilot:
        return None
    batches = sorted({r["values"]["train.batch_size"] for r in pilot})
    fig = Figure(figsize=(5 * len(batches), 4), layout="constrained")
    axes = fig.subplots(1, len(batches), squeeze=False, sharey=True)[0]
    for ax, batch in zip(axes, batches):
        for warmup, color in zip(sorted({r["values"]["optim.warmup_steps"] for r in pilot}), COLORS):
            points = sorted(
                (r["values"]["optim.lr"], compare._loss(r))
                for r in pilot
                if r["values"]["train.batch_size"] == batch and r["values"]["optim.warmup_steps"] == warmup
            )
            ax.plot(
                *zip(*[(x, y) for x, y in points if math.isfinite(y)]), marker="o", color=color, label=f"{warmup} steps"
            )
        _log_lr_axis(ax, sorted({r["values"]["optim.lr"] for r in pilot}))
        ax.set(xlabel="peak learning rate", ylabel="final validation loss", title=f"AdamW, B = {batch}")
        ax.grid(alpha=0.3)
        ax.legend(title="warmup", fontsize=8)
    fig.suptitle(f"{name} (seed 0): where does AdamW without warmup lose?")
    return _save(fig, folder, f"{name}.png")


# --- the report ----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def pilot_section(name: str, pilot: Sequence[dict[str, Any]], description: str) -> list[str]:
    lines = [f"### `{name}`: {description}", ""]
    if not pilot:
        return lines + ["No records yet.", ""]
    batches = sorted({r["values"]["train.batch_size"] for r in pilot})
    lrs = sorted({r["values"]["optim.lr"] for r in pilot})
    warmups = sorted({r["values"]["optim.warmup_steps"] for r in pilot})
    by = {
        (r["values"]["train.batch_size"], r["values"]["optim.lr"], r["values"]["optim.warmup_steps"]): r for r in pilot
    }
    header = ["B", "warmup (steps)"] + [f"LR {_lr(lr)}" for lr in lrs] + ["best", "gap at best LR"]
    rows = []
    for batch in batches:
        best = {}
        for w in warmups:
            losses = [compare._loss(by.get((batch, lr, w))) for lr in lrs]
            best[w] = min((x for x in losses if math.isfinite(x)), default=math.nan)
            rows.append([str(batch), str(w)] + [_fmt(x) for x in losses] + [_fmt(best[w]), ""])
        if len(warmups) == 2:
            rows[-1][-1] = _fmt(best[warmups[0]] - best[warmups[1]], 3)
    lines += _table(header, rows)
    tokens = {r["values"]["train.batch_size"]: r.get("tokens_per_second") for r in pilot}
    walls = [r["wall_s"] for r in pilot if r.get("wall_s")]
    lines += [
        "",
        f"{len(pilot)} cells, {sum(walls) / 3600:.2f} CPU-hours on 2 cores; tokens/s by batch: "
        + ", ".join(f"B={b}: {t:,.0f}" for b, t in sorted(tokens.items()) if t),
        "",
        f"![{name}](figures/{name}.png)",
        "",
    ]
    return lines


EARLY_STEPS = 15  # the 5 % warmup: the steps where warmup acts


def _early_mean(curves: Sequence[dict[str, list]], last: int) -> float:
    """Mean over seeds and over steps 1..last of a curve (NaN without points there)."""
    values = [v for c in curves for s, v in zip(c["step"], c["value"]) if s <= last and v is not None]
    return float(np.mean(values)) if values else math.nan


PROGRESS_LOSS = 6.0  # a training loss between the unigram plateau (~6.5) and the final losses (~5.1-6.2)


def _steps_to(curves: Sequence[dict[str, list]], level: float) -> str:
    """Per seed, the first logged step whose training loss is below ``level`` ('–' if never)."""
    firsts = []
    for c in curves:
        steps = [s for s, v in zip(c["step"], c["value"]) if v is not None and v < level]
        firsts.append(str(steps[0]) if steps else "–")
    return ", ".join(firsts) if firsts else "–"


def mechanism_section(cells: Cells) -> list[str]:
    """The early update sizes behind the verdicts: steps 1-15 at each optimizer's best no-warmup LR,
    and when each run got below a training loss of PROGRESS_LOSS."""
    names = (("update_l2", "ℓ2 update"), ("angle", "angle (rad)"), ("rrc", "RRC"))
    header = (
        ["optimizer", "LR"]
        + [f"{label}: none / 5 % (ratio)" for _, label in names]
        + [f"first step below loss {PROGRESS_LOSS}: none / 5 % (per seed)"]
    )
    rows = []
    for label in compare.VARIANTS:
        lr = cells.best_lr(label, NO)
        if lr is None:
            continue
        row = [label, _lr(lr)]
        for name, _ in names:
            no, yes = (_early_mean(cells.curve(label, w, lr, name), EARLY_STEPS) for w in (NO, YES))
            ratio = no / yes if yes and math.isfinite(yes) and yes > 0 else math.nan
            row.append(f"{_fmt(no, 4)} / {_fmt(yes, 4)} ({_fmt(ratio, 2)}x)")
        row.append(" / ".join(_steps_to(cells.curve(label, w, lr, "train_loss"), PROGRESS_LOSS) for w in (NO, YES)))
        rows.append(row)
    lines = [
        "## Early updates: what warmup changes",
        "",
        f"Mean over steps 1–{EARLY_STEPS} (the 5 % warmup) and over seeds of the global update metrics, "
        "at each optimizer's best LR without warmup, without / with the 5 % warmup. The ratio is how much "
        "larger the early updates are without warmup. The last column is the step (logged every 5) at which "
        f"the training loss first fell below {PROGRESS_LOSS}, i.e. left the unigram plateau, per seed.",
        "",
    ]
    return lines + (_table(header, rows) if rows else ["No records yet."]) + [""]


def tables_section(cells: Cells) -> list[str]:
    lines = ["## Every cell of the comparison", "", "Final validation loss, mean ± std over the recorded seeds (n)."]
    for label, (_, warmups, _) in compare.VARIANTS.items():
        lines += ["", f"### {label}", ""]
        header = ["warmup"] + [f"LR {_lr(lr)}" for lr in cells.lrs[label]]
        rows = []
        for w in warmups:
            row = [_warmup(w)]
            for lr in cells.lrs[label]:
                losses = cells.losses(label, w, lr)
                if not losses:
                    row.append("missing")
                    continue
                std = _std(losses)
                spread = f" ± {_fmt(std, 3)}" if math.isfinite(std) else ""
                row.append(f"{_fmt(_mean(losses))}{spread} ({len(losses)})")
            rows.append(row)
        lines += _table(header, rows)
    return lines + [""]


PILOTS = {
    "pilot": "the 0.34M-parameter BPE-2k model of the protocol, 300 steps, warmup 0 or 30 steps (10 %)",
    "pilot_8k": "the first pilot, 1.2M parameters, BPE-8k, 200 steps, warmup 0 or 20 steps (stopped)",
}


def _records(path: str) -> list[dict[str, Any]]:
    return list(latest_records(read_records(path)).values()) if os.path.exists(path) else []


def write(out: str, figures: str) -> list[str]:
    records = _records(compare.RECORDS)
    pilots = {name: _records(os.path.join("experiments", "records", f"{name}.jsonl")) for name in PILOTS}
    cells = Cells(list(records))
    with open(os.path.join(HERE, "PROTOCOL.md"), encoding="utf-8") as f:
        protocol = f.read().rstrip()
    expected = len(compare.comparison_cells(cells.records))
    walls = [r.get("wall_s") or 0 for r in cells.records]
    lines = [
        "<!-- Generated by `python experiments/results.py` from experiments/records/; do not edit. -->",
        "",
        protocol,
        "",
        "# Results",
        "",
        f"Comparison: {len(cells.records)} of {expected} cells recorded so far "
        f"({sum(walls) / 3600:.2f} CPU-hours on 2 cores); commits "
        + ", ".join(sorted({(r.get("git_commit") or "?")[:8] for r in cells.records})),
        "",
        "## The seven claims",
        "",
    ]
    for i, claim in enumerate(claims(cells), 1):
        lines += [f"{i}. **{claim['claim']}** — *{claim['verdict']}*.  ", f"   {claim['evidence']}"]
    discussion = os.path.join(HERE, "DISCUSSION.md")  # written by hand, citing the tables, no numbers of its own
    if os.path.exists(discussion):
        with open(discussion, encoding="utf-8") as f:
            lines += ["", f.read().rstrip()]
    paths = [
        figure_adamw(cells, figures),
        figure_lr_sweeps(cells, figures),
        figure_mechanism(cells, figures),
        figure_snr(cells, figures),
    ] + [figure_pilot(records, figures, name) for name, records in pilots.items()]
    lines += [""] + [
        f"![{os.path.splitext(os.path.basename(p))[0]}]({os.path.relpath(p, os.path.dirname(out))})"
        for p in paths[:4]
        if p
    ]
    lines += [""] + mechanism_section(cells) + tables_section(cells)
    lines += ["## The pilots (seed 0, AdamW): the evidence behind the protocol", ""]
    for name, records in pilots.items():
        lines += pilot_section(name, records, PILOTS[name])
    board = _records(beyond.leaderboard.RECORDS)
    # The sections beyond the paper, each from the comparison's and the leaderboard's records and its own.
    for section, own in (
        (beyond.sections, _records(beyond.rewarm.RECORDS)),
        (postln_followup.section, _records(postln_followup.postln.RECORDS)),
        (advice.section, pilots["pilot"]),
    ):
        lines += section(cells.records, board, own, figures, os.path.dirname(out))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return [out] + [p for p in paths if p]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("experiments", "RESULTS.md"))
    parser.add_argument("--figures", default=os.path.join("experiments", "figures"))
    args = parser.parse_args(argv)
    for path in write(args.out, args.figures):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
