"""The leaderboard and the related papers' claims (experiments/PROTOCOL_LEADERBOARD.md), and the
continued pre-training study, as report sections and figures; `experiments/results.py` calls these.

Every number comes from ``experiments/records/{compare,leaderboard,rewarm}.jsonl``: the rules are
those the protocol fixes. A row or verdict whose cells are missing says so ("pending", "–").
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from warmup_jax.sweep.report import mean_curve
from warmup_jax.sweep.runner import latest_records

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
rewarm = _load("rewarm")

BASIN = 0.01  # "within 1 % of its best"
WARMUP_FREE_PACKAGES = "LionAR + RRC"  # the method the `warmup_free` recipe packages


def _mean(xs: Sequence[float]) -> float:
    return statistics.mean(xs) if xs else math.nan


def _std(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) if len(xs) >= 2 else math.nan


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "diverged" if math.isinf(x) else f"{x:.{digits}f}"


def _lr(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


class Entry:
    """One method at one warmup: its LR grid, seed-0 loss per LR, and the seeds at its best LR."""

    def __init__(self, name: str, lrs: Sequence[float], loss: Any, note: str = ""):
        """``loss(lr, seed)`` is the final loss of a cell (NaN: missing, inf: diverged)."""
        self.name, self.lrs, self.note = name, list(lrs), note
        self.seed0 = {lr: loss(lr, 0) for lr in self.lrs}
        complete = self.seed0 and not any(math.isnan(x) for x in self.seed0.values())
        finite = {lr: x for lr, x in self.seed0.items() if math.isfinite(x)}
        self.lr = min(finite, key=finite.get) if complete and finite else None
        self.losses = [] if self.lr is None else [x for s in compare.SEEDS if math.isfinite(x := loss(self.lr, s))]

    @property
    def mean(self) -> float:
        return _mean(self.losses)

    @property
    def std(self) -> float:
        return _std(self.losses)

    def basin(self) -> tuple[float, float] | None:
        """The contiguous LR range around the best whose seed-0 losses are within 1 % of the best."""
        if self.lr is None:
            return None
        best, i = self.seed0[self.lr], self.lrs.index(self.lr)
        lo = hi = i
        while lo > 0 and self.seed0[self.lrs[lo - 1]] <= best * (1 + BASIN):
            lo -= 1
        while hi < len(self.lrs) - 1 and self.seed0[self.lrs[hi + 1]] <= best * (1 + BASIN):
            hi += 1
        return self.lrs[lo], self.lrs[hi]

    def describe(self) -> str:
        spread = f" ± {_fmt(self.std)}" if math.isfinite(self.std) else ""
        return f"{_fmt(self.mean)}{spread} (n={len(self.losses)}, LR {_lr(self.lr)})"


class Board:
    """The records of the comparison and the leaderboard, as entries."""

    def __init__(self, compare_records: Sequence[dict], board_records: Sequence[dict]):
        self.compare_found = {compare._key(r["values"]): r for r in compare_records if r.get("study") == compare.NAME}
        self.records = [r for r in board_records if r.get("study") == leaderboard.NAME]
        self.found = {leaderboard._key(r["values"]): r for r in self.records}
        self.expected = len(leaderboard.leaderboard_cells(self.records, list(compare_records)))

    def method(self, label: str, warmup: int, name: str | None = None) -> Entry:
        lrs = leaderboard.extended_lrs(label, self.found)
        return Entry(name or label, lrs, lambda lr, s: compare._loss(self.found.get((label, warmup, lr, s))))

    def compared(self, label: str, fraction: float, name: str | None = None) -> Entry:
        lrs = compare.extended_lrs(label, self.compare_found)
        steps = compare.warmup_steps(fraction)
        return Entry(name or label, lrs, lambda lr, s: compare._loss(self.compare_found.get((label, steps, lr, s))))

    def adamw_best_warmup(self) -> Entry | None:
        """AdamW at its best seed-0 (warmup, LR) of the comparison, with this study's seeds 1 and 2."""
        best = leaderboard.adamw_best_warmup(self.compare_found)
        if best is None:
            return None
        warmup, _ = best
        lrs = compare.extended_lrs("AdamW", self.compare_found)

        def loss(lr, seed):
            source = self.compare_found if seed == 0 else self.found
            return compare._loss(source.get(("AdamW", warmup, lr, seed)))

        return Entry(f"AdamW, best warmup ({warmup} steps)", lrs, loss)

    def rows(self) -> list[Entry]:
        entries = [
            self.adamw_best_warmup(),
            self.compared("AdamW", 0.0),
            self.method("RAdam", 0),
            self.method("GI-Adam", 0),
            self.method("AdamW²", 0, name="AdamW² (Qi et al.'s spectral bound)"),
            self.method("Catapult", leaderboard.REFERENCE_WARMUP, name="Catapult η_init (5 % warmup from η_c)"),
            self.method("SLW", 0),
            self.method("Porian", leaderboard.PORIAN_STEPS, name=f"Porian warmup ({leaderboard.PORIAN_STEPS} steps)"),
            self.method("Post-LN", 0),
            self.compared("LionA", 0.0),
            self.compared("LionAR", 0.0),
            self.compared("LionAR + RRC", 0.0),
            self.compared("LionAR fast momentum", 0.0),
        ]
        free = self.compared(WARMUP_FREE_PACKAGES, 0.0, name="`warmup_free` (= LionAR + RRC)")
        return [e for e in entries if e is not None] + [free]


# --- verdicts --------------------------------------------------------------------------------------


def _difference(a: Entry, b: Entry) -> tuple[float, float, bool]:
    """(mean a − mean b, the larger of the two seed stds, whether both have >= 2 seeds)."""
    ready = len(a.losses) >= 2 and len(b.losses) >= 2
    return a.mean - b.mean, max(a.std, b.std) if ready else math.nan, ready


def _verdict(ready: bool, reproduced: bool, refuted: bool) -> str:
    if not ready:
        return "pending"
    return "reproduced" if reproduced else "not reproduced" if refuted else "inconclusive"


def claims(board: Board) -> list[dict[str, str]]:
    out = []
    gap = {}
    for label in ("RAdam", "GI-Adam", "AdamW²", "Post-LN"):
        gap[label] = (board.method(label, 0), board.method(label, leaderboard.REFERENCE_WARMUP))
    gap["AdamW"] = (board.compared("AdamW", 0.0), board.compared("AdamW", compare.REFERENCE_WARMUP))

    def gap_text(label):
        no, yes = gap[label]
        value, spread, _ = _difference(no, yes)
        gap_value = f"gap {_fmt(value, 3)} (spread {_fmt(spread, 3)})"
        return f"{label}: no warmup {no.describe()}, 5 % warmup {yes.describe()}, {gap_value}"

    def helps(label):
        value, spread, ready = _difference(*gap[label])
        return ready, ready and value > 2 * spread

    for label, text in (("RAdam", "RAdam needs no warmup"), ("AdamW²", "AdamW² (Qi et al.) needs no warmup")):
        ready, warmup_helps = helps(label)
        out.append(dict(claim=text, verdict=_verdict(ready, not warmup_helps, warmup_helps), evidence=gap_text(label)))

    for label, text in (
        ("GI-Adam", "GI-Adam needs less warmup than Adam (Kalra & Barkeshli)"),
        ("Post-LN", "Post-LN needs warmup more than Pre-LN (Xiong et al.)"),
    ):
        (g_no, g_yes), (a_no, a_yes) = gap[label], gap["AdamW"]
        g, g_spread, g_ready = _difference(g_no, g_yes)
        a, a_spread, a_ready = _difference(a_no, a_yes)
        ready = g_ready and a_ready
        combined = 2 * math.sqrt(sum(x.std**2 for x in (g_no, g_yes, a_no, a_yes))) if ready else math.nan
        if label == "GI-Adam":
            reproduced = ready and (a - g > combined or (helps("AdamW")[1] and not helps("GI-Adam")[1]))
            refuted = ready and g >= a
        else:
            reproduced = ready and g - a > combined
            refuted = ready and g <= a
        out.append(
            dict(
                claim=text,
                verdict=_verdict(ready, reproduced, refuted),
                evidence=f"{gap_text(label)}; {gap_text('AdamW')}; 2x the four spreads combined {_fmt(combined, 3)}",
            )
        )

    def versus(entry: Entry, reference: Entry, text: str, *, better: bool) -> None:
        """``better``: the claim is that ``entry`` beats ``reference``; else that it is not worse."""
        value, spread, ready = _difference(entry, reference)
        if better:
            reproduced, refuted = value < -2 * spread, value >= -2 * spread
        else:
            reproduced, refuted = value <= 2 * spread, value > 2 * spread
        out.append(
            dict(
                claim=text,
                verdict=_verdict(ready, ready and reproduced, ready and refuted),
                evidence=f"{entry.name} {entry.describe()} vs {reference.name} {reference.describe()}: "
                f"difference {_fmt(value, 3)} (spread {_fmt(spread, 3)})",
            )
        )

    versus(
        board.method("SLW", 0),
        board.compared("AdamW", 0.0, name="AdamW without warmup"),
        "Sequence-length warmup allows training without an LR warmup (Li et al.)",
        better=True,
    )
    catapult = board.method("Catapult", leaderboard.REFERENCE_WARMUP)
    catapult.name = "5 % warmup from η_c"
    versus(
        catapult,
        board.compared("AdamW", compare.REFERENCE_WARMUP, name="5 % warmup from 0"),
        "A warmup from the catapult's η_init is as good as one from 0 (Kalra & Barkeshli)",
        better=False,
    )
    eta_c = catapult_lrs(board)
    if eta_c:
        out[-1]["evidence"] += f"; η_c measured {', '.join(_lr(x) for x in sorted(set(eta_c)))}"
    best = board.adamw_best_warmup()
    porian = board.method("Porian", leaderboard.PORIAN_STEPS)
    porian.name = f"Porian's {leaderboard.PORIAN_STEPS} steps"
    if best is not None:
        versus(
            porian,
            best,
            f"Porian's warmup length (N = {leaderboard.PORIAN_TOKENS:,} tokens = {leaderboard.PORIAN_REQUESTED_STEPS} "
            f"steps, capped at {leaderboard.PORIAN_STEPS}) is as good as the best measured one",
            better=False,
        )
    return out


def catapult_lrs(board: Board) -> list[float]:
    """η_c of every catapult cell that wrote one (its run folder keeps catapult_lr.json)."""
    import json

    found = []
    for r in board.records:
        if not r.get("values", {}).get("optim.catapult_init_lr"):
            continue
        path = os.path.join(r.get("out_dir", ""), "catapult_lr.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                found.append(float(json.load(f)["eta_c"]))
    return found


# --- figures ---------------------------------------------------------------------------------------


def figure_leaderboard(rows: Sequence[Entry], folder: str) -> str:
    """Left: each method's loss at its best LR (mean, seeds as dots). Right: seed-0 loss vs LR
    relative to the method's best, the best LR's two neighbours (½×, 2×) shaded."""
    fig = Figure(figsize=(15, 6.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.2))
    ranked = sorted(rows, key=lambda e: e.mean if math.isfinite(e.mean) else math.inf, reverse=True)
    for y, entry in enumerate(ranked):
        if entry.losses:
            left.scatter(entry.losses, [y] * len(entry.losses), color="tab:blue", s=14, alpha=0.5)
            left.errorbar(
                [entry.mean],
                [y],
                xerr=[[entry.mean - min(entry.losses)], [max(entry.losses) - entry.mean]],
                color="black",
                marker="o",
                capsize=3,
            )
    left.set_yticks(range(len(ranked)), [f"{e.name} (LR {_lr(e.lr)})" for e in ranked], fontsize=8)
    left.set(xlabel="final validation loss at the best LR (mean, min–max; dots: seeds)")
    left.grid(alpha=0.3)
    cmap = [f"C{i}" for i in range(10)]
    for i, entry in enumerate(rows):
        if entry.lr is None:
            continue
        points = [(lr / entry.lr, x) for lr, x in entry.seed0.items() if math.isfinite(x)]
        xs, ys = zip(*sorted(points))
        right.plot(xs, ys, marker="o", ms=3, lw=1.2, color=cmap[i % 10], ls="-" if i < 10 else "--", label=entry.name)
    right.axvspan(1 / 2.05, 2.05, color="gray", alpha=0.08, lw=0, label="½× to 2× the best LR")
    right.set(xscale="log", xlabel="peak LR / the method's best LR (seed 0)", ylabel="final validation loss (seed 0)")
    right.set_xlim(1 / 20, 20)
    right.set_ylim(top=min(6.3, right.get_ylim()[1]))
    right.grid(alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    fig.suptitle(
        "Warmup removal on one harness: 0.34M-parameter GPT, 300 steps of 16 × 128 tokens, each method at its best LR"
    )
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "leaderboard.png")
    fig.savefig(path, dpi=110)
    return path


# --- continued pre-training ------------------------------------------------------------------------


class Rewarm:
    """The rewarm records by (condition, seed)."""

    def __init__(self, records: Sequence[dict]):
        self.attempts = [r for r in records if r.get("study") == rewarm.NAME]  # a cell trained again: both
        self.records = list(latest_records(self.attempts).values())
        self.by = {(rewarm.condition_of(r["values"]), r["values"]["train.seed"]): r for r in self.records}
        self.conditions = [rewarm.condition_of(c) for c in rewarm.continuation_cells(0)]

    def losses(self, condition: str, part: int) -> list[float]:
        out = []
        for seed in rewarm.SEEDS:
            r = self.by.get((condition, seed))
            if r and r.get("status") == "ok" and r.get("final_eval_loss_by_part"):
                value = r["final_eval_loss_by_part"][part]
                if value is not None and math.isfinite(value):
                    out.append(value)
        return out

    def curves(self, condition: str, part: int) -> list[dict]:
        return [
            r["eval_loss_by_part"][part]
            for seed in rewarm.SEEDS
            if (r := self.by.get((condition, seed))) and r.get("status") == "ok" and r.get("eval_loss_by_part")
        ]


def _cmp(rw: Rewarm, a: str, b: str, part: int) -> tuple[float, float, bool]:
    x, y = rw.losses(a, part), rw.losses(b, part)
    ready = len(x) >= 2 and len(y) >= 2
    return _mean(x) - _mean(y), max(_std(x), _std(y)) if ready else math.nan, ready


def paired_lines(rw: Rewarm) -> list[str]:
    """Re-warm (5 %) minus constant, seed by seed: both continue the same base run, so the base's
    seed-to-seed difference cancels. Reported beside the verdicts, which use the unpaired rule."""
    five = rewarm.CONTINUE_WARMUPS[1]
    parts = []
    for lr in rewarm.CONTINUE_LRS:
        for part, name in ((1, "new"), (0, "old")):
            diffs = []
            for seed in rewarm.SEEDS:
                a, b = rw.by.get((f"re-warm {lr:g} {five}", seed)), rw.by.get(("constant", seed))
                if a and b and a.get("status") == b.get("status") == "ok":
                    diffs.append(a["final_eval_loss_by_part"][part] - b["final_eval_loss_by_part"][part])
            if diffs:
                parts.append(f"peak {lr:g}, {name} half: " + ", ".join(f"{d:+.3f}" for d in diffs))
    if not parts:
        return []
    return [
        "Per seed (re-warm 5 % − constant; each pair continues the same base run, so the base's own seed "
        "difference cancels; not the verdict rule, which was fixed unpaired): " + "; ".join(parts) + "."
    ]


def rewarm_claims(rw: Rewarm) -> list[dict[str, str]]:
    out = []
    five = rewarm.CONTINUE_WARMUPS[1]
    adapts, forgets, lengths = [], [], []
    for lr in rewarm.CONTINUE_LRS:
        label = f"re-warm {lr:g} {five}"
        adapts.append((lr, *_cmp(rw, label, "constant", 1)))
        forgets.append((lr, *_cmp(rw, label, "constant", 0)))
        losses = {w: rw.losses(f"re-warm {lr:g} {w}", 1) for w in rewarm.CONTINUE_WARMUPS}
        ready = all(len(x) >= 2 for x in losses.values())
        spread = max(_std(x) for x in losses.values()) if ready else math.nan
        means = [_mean(x) for x in losses.values()]
        lengths.append((lr, max(means) - min(means) if ready else math.nan, spread, ready))

    def text(rows):
        return "; ".join(f"peak {lr:g}: {_fmt(d, 3)} (spread {_fmt(s, 3)})" for lr, d, s, _ in rows)

    ready = all(r[3] for r in adapts)
    better = [r[1] < -2 * r[2] for r in adapts]
    out.append(
        dict(
            claim="Re-warming adapts to the new data: the 5 % re-warm's loss on the new half is lower than at a "
            "constant small LR (Gupta et al.)",
            verdict=_verdict(ready, any(better), not any(better)),
            evidence="new-half loss, re-warm − constant: " + text(adapts),
        )
    )
    ready = all(r[3] for r in forgets)
    worse = [r[1] > 2 * r[2] for r in forgets]
    out.append(
        dict(
            claim="Re-warming costs loss on the old data (forgetting)",
            verdict=_verdict(ready, all(worse), not any(worse)),
            evidence="old-half loss, re-warm − constant: " + text(forgets),
        )
    )
    ready = all(r[3] for r in lengths)
    alike = [r[1] <= 2 * r[2] for r in lengths]
    out.append(
        dict(
            claim="The length of the new warmup (0, 5, 20 %) matters little",
            verdict=_verdict(ready, all(alike), not all(alike)),
            evidence="new-half loss, max − min over the three warmups: " + text(lengths),
        )
    )
    return out


def figure_rewarm(rw: Rewarm, folder: str) -> str | None:
    if not rw.records:
        return None
    fig = Figure(figsize=(14, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for part, ax in enumerate(axes):
        for i, condition in enumerate(rw.conditions):
            curves = rw.curves(condition, part)
            if not curves:
                continue
            steps, mean, low, high = mean_curve(curves)
            style = "--" if condition in ("constant", "scratch") else "-"
            ax.plot(steps, mean, ls=style, marker="o", ms=3, lw=1.4, color=f"C{i}", label=condition)
            if len(curves) > 1:
                ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.15, lw=0)
        start = rw.losses("base", part)
        if start:
            ax.axhline(_mean(start), color="black", ls=":", lw=1, label="start: the base run's final loss")
        ax.set(
            xlabel="step of the continuation",
            title=f"validation loss on half {part}" + (" (old)" if part == 0 else " (new)"),
        )
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss (mean over seeds, min–max band)")
    axes[1].legend(fontsize=8, title="condition (peak LR, warmup steps)")
    fig.suptitle("Continued pre-training on the corpus's second half, from a run on its first half")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "rewarm.png")
    fig.savefig(path, dpi=110)
    return path


# --- the sections ----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _claim_lines(items: Sequence[dict[str, str]], start: int) -> list[str]:
    lines = []
    for i, claim in enumerate(items, start):
        lines += [f"{i}. **{claim['claim']}** — *{claim['verdict']}*.  ", f"   {claim['evidence']}"]
    return lines


def sections(
    compare_records: Sequence[dict],
    board_records: Sequence[dict],
    rewarm_records: Sequence[dict],
    figures: str,
    out_dir: str,
) -> list[str]:
    board = Board(compare_records, board_records)
    with open(os.path.join(HERE, "PROTOCOL_LEADERBOARD.md"), encoding="utf-8") as f:
        protocol = f.read().rstrip().replace("\n# ", "\n## ").replace("\n## ", "\n### ")
    protocol = "## " + protocol.removeprefix("# ")
    walls = sum(r.get("wall_s") or 0 for r in board.records)
    lines = [
        "# Beyond the paper: the related papers' claims and a warmup-removal leaderboard",
        "",
        protocol,
        "",
        f"Leaderboard study: {len(board.records)} of {board.expected} cells recorded so far "
        f"({walls / 3600:.2f} CPU-hours); commits "
        + ", ".join(sorted({(r.get("git_commit") or "?")[:8] for r in board.records})),
        "",
        "### The related papers' claims",
        "",
    ]
    board_claims, rw = claims(board), Rewarm(rewarm_records)
    lines += _claim_lines(board_claims, 1) + _claim_lines(rewarm_claims(rw), len(board_claims) + 1)
    discussion = os.path.join(HERE, "DISCUSSION_LEADERBOARD.md")  # by hand, from the tables of this section
    if os.path.exists(discussion):
        with open(discussion, encoding="utf-8") as f:
            lines += ["", f.read().rstrip()]
    rows = board.rows()
    table = []
    for e in sorted(rows, key=lambda e: e.mean if math.isfinite(e.mean) else math.inf):
        basin = e.basin()
        width = "–" if basin is None else f"{basin[1] / basin[0]:.0f}× ({_lr(basin[0])}–{_lr(basin[1])})"
        spread = "–" if not e.losses else f"{_fmt(min(e.losses))}–{_fmt(max(e.losses))}"
        std = f" ± {_fmt(e.std, 3)}" if math.isfinite(e.std) else ""
        table.append([e.name, _lr(e.lr), f"{_fmt(e.mean)}{std}", str(len(e.losses)), spread, width])
    path = figure_leaderboard(rows, figures)
    lines += [
        "",
        "### The leaderboard",
        "",
        "Without an LR warmup unless the name says otherwise; each at its own best seed-0 LR; ranked by the mean "
        "over the seeds recorded at that LR. Basin: the contiguous LRs of the grid whose seed-0 loss is within 1 % "
        "of the best seed-0 loss (1× = the best LR alone; grids are factor 2). Pending rows show '–'.",
        "",
        *_table(["method", "best LR", "final loss (mean ± std)", "seeds", "min–max", "basin within 1 %"], table),
        "",
        f"![leaderboard]({os.path.relpath(path, out_dir)})",
        "",
    ]
    lines += ["### Every cell of the leaderboard study", "", "Final validation loss, mean ± std over seeds (n)."]
    for label, (_, warmups) in leaderboard.METHODS.items():
        lrs = leaderboard.extended_lrs(label, board.found)
        rows_ = []
        for w in warmups:
            row = [f"{w} steps"]
            for lr in lrs:
                xs = [compare._loss(board.found.get((label, w, lr, s))) for s in compare.SEEDS]
                xs = [x for x in xs if not math.isnan(x)]
                std = f" ± {_fmt(_std(xs), 3)}" if len(xs) >= 2 and all(map(math.isfinite, xs)) else ""
                row.append(f"{_fmt(_mean(xs))}{std} ({len(xs)})" if xs else "missing")
            rows_.append(row)
        lines += ["", f"#### {label}", "", *_table(["warmup"] + [f"LR {_lr(lr)}" for lr in lrs], rows_)]
    lines += ["", *rewarm_section(rw, figures, out_dir)]
    return lines


def rewarm_section(rw: Rewarm, figures: str, out_dir: str) -> list[str]:
    walls = sum(r.get("wall_s") or 0 for r in rw.attempts)
    expected = len(rewarm.rewarm_cells(rw.records))
    ok = sum(r.get("status") == "ok" for r in rw.records)
    failed = sum(r.get("status") == "failed" for r in rw.records)
    lines = [
        "### Continued pre-training: re-warming",
        "",
        f"{ok} of {expected} cells done" + (f", {failed} failed" if failed else "") + f" ({walls / 3600:.2f} "
        "CPU-hours, every attempt). Final validation "
        "loss on each half, mean ± std over seeds (n); the verdicts are in the claims list above.",
        "",
    ]
    rows = []
    base = ["base"] + rw.conditions
    for condition in base:
        row = [condition]
        for part in (0, 1):
            xs = rw.losses(condition, part)
            std = f" ± {_fmt(_std(xs), 3)}" if len(xs) >= 2 else ""
            row.append(f"{_fmt(_mean(xs))}{std} ({len(xs)})" if xs else "–")
        rows.append(row)
    lines += _table(["condition (peak LR, warmup steps)", "half 0 (old)", "half 1 (new)"], rows)
    lines += ["", *paired_lines(rw)]
    path = figure_rewarm(rw, figures)
    if path:
        lines += ["", f"![rewarm]({os.path.relpath(path, out_dir)})"]
    return lines + [""]
