"""The Post-LN follow-up of the report (experiments/postln.py): best seed-0 loss per warmup for
Post-LN and Pre-LN AdamW, the warmup benefit of each, and the rule's indication."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

HERE = os.path.dirname(os.path.abspath(__file__))
_BEYOND = "_experiments_results_leaderboard"  # the key the report loads it under; its loader does the rest
if _BEYOND not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_BEYOND, os.path.join(HERE, "results_leaderboard.py"))
    sys.modules[_BEYOND] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_BEYOND])
beyond = sys.modules[_BEYOND]
compare, leaderboard, postln = beyond.compare, beyond.leaderboard, beyond._load("postln")


class Positions:
    """Seed-0 losses by (norm position, warmup steps) -> {LR: loss}."""

    def __init__(self, compare_records: Sequence[dict], board_records: Sequence[dict], postln_records: Sequence[dict]):
        board = beyond.Board(compare_records, board_records)
        follow = postln.found_of(list(postln_records))
        self.warmups = (0, leaderboard.REFERENCE_WARMUP, *postln.WARMUPS)
        self.grid: dict[tuple[str, int], dict[float, float]] = {}
        for w in self.warmups:
            if w in postln.WARMUPS:
                lrs = postln.grid(w, follow)
                self.grid[("post", w)] = {lr: compare._loss(follow.get((w, lr, 0))) for lr in lrs}
            else:
                lrs = leaderboard.extended_lrs("Post-LN", board.found)
                self.grid[("post", w)] = {lr: compare._loss(board.found.get(("Post-LN", w, lr, 0))) for lr in lrs}
            if w == leaderboard.MAX_WARMUP:  # Pre-LN at 150 steps: the leaderboard's Porian cells
                lrs = leaderboard.extended_lrs("Porian", board.found)
                self.grid[("pre", w)] = {lr: compare._loss(board.found.get(("Porian", w, lr, 0))) for lr in lrs}
            else:
                lrs = compare.extended_lrs("AdamW", board.compare_found)
                self.grid[("pre", w)] = {lr: compare._loss(board.compare_found.get(("AdamW", w, lr, 0))) for lr in lrs}
        spreads = [board.compared("AdamW", f).std for f in (0.0, compare.REFERENCE_WARMUP)]
        self.spread = max(spreads) if all(math.isfinite(s) for s in spreads) else math.nan

    def best(self, position: str, warmup: int) -> tuple[float, float | None]:
        """(best seed-0 loss, its LR); NaN while a cell of that grid is missing."""
        losses = self.grid[(position, warmup)]
        if not losses or any(math.isnan(x) for x in losses.values()):
            return math.nan, None
        lr = min(losses, key=losses.get)
        return losses[lr], lr

    def benefit(self, position: str) -> float:
        """Best loss without warmup minus the best over all warmups."""
        bests = [self.best(position, w)[0] for w in self.warmups]
        return math.nan if any(math.isnan(b) for b in bests) else bests[0] - min(bests)


def section(
    compare_records: Sequence[dict],
    board_records: Sequence[dict],
    postln_records: Sequence[dict],
    figures: str,
    out_dir: str,
) -> list[str]:
    pos = Positions(compare_records, board_records, postln_records)
    rows = []
    for w in pos.warmups:
        row = [f"{w} steps"]
        for position in ("post", "pre"):
            loss, lr = pos.best(position, w)
            row.append("pending" if lr is None else f"{beyond._fmt(loss)} (LR {beyond._lr(lr)})")
        rows.append(row)
    post, pre = pos.benefit("post"), pos.benefit("pre")
    threshold = 2 * pos.spread
    if math.isnan(post) or math.isnan(pre) or math.isnan(threshold):
        outcome = "*pending*"
    else:
        indicated = post - pre > threshold
        outcome = "*indicated*" if indicated else "*not indicated*"
    walls = sum(r.get("wall_s") or 0 for r in postln_records)
    lines = [
        "### Follow-up: Post-LN with longer warmups (seed 0)",
        "",
        f"{len(postln_records)} of {len(postln.postln_cells(list(postln_records)))} follow-up cells recorded "
        f"({walls / 3600:.2f} CPU-hours). Best seed-0 final validation loss over each LR grid; the rule is the "
        'protocol\'s "Follow-up" section (one seed: an indication, not a verdict).',
        "",
        *beyond._table(["warmup", "Post-LN", "Pre-LN (AdamW)"], rows),
        "",
        f"Post-LN needs warmup more than Pre-LN — {outcome}: warmup benefit (best without warmup − best over the "
        f"warmups) Post-LN {beyond._fmt(post, 3)}, Pre-LN {beyond._fmt(pre, 3)}; the rule asks for a difference above "
        f"{beyond._fmt(threshold, 3)} (2 × AdamW's largest deciding-cell seed spread).",
    ]
    path = figure(pos, figures)
    if path:
        lines += ["", f"![postln]({os.path.relpath(path, out_dir)})"]
    return lines + [""]


def figure(pos: Positions, folder: str) -> str | None:
    if not any(math.isfinite(x) for x in pos.grid[("post", postln.WARMUPS[0])].values()):
        return None
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, position, title in zip(axes, ("post", "pre"), ("Post-LN", "Pre-LN")):
        for i, w in enumerate(pos.warmups):
            points = sorted((lr, x) for lr, x in pos.grid[(position, w)].items() if math.isfinite(x))
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, color=f"C{i}", label=f"warmup {w} steps")
        ax.set(xscale="log", xlabel="peak LR", title=f"{title} AdamW, seed 0")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final validation loss")
    axes[1].legend(fontsize=8)
    fig.suptitle("Does a longer warmup rescue Post-LN? (0.34M-parameter GPT, 300 steps of 16 × 128 tokens)")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "postln.png")
    fig.savefig(path, dpi=110)
    return path
