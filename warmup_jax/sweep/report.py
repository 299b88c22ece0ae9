"""The results of a study, regenerated from its records alone: a markdown file and PNG figures.

:func:`write_report` reads a study's records (given the study file or the records file) and
writes

* ``experiments/RESULTS_<study>.md``: the final validation loss (the last evaluation of each cell)
  per group of cells that differ only in the seed (``Study.seed_key``): mean ± standard deviation
  and min–max over the seeds, the number of seeds, and how many cells diverged or failed; then
  every cell with its status, losses, throughput, wall time and commit;
* ``experiments/figures/<study>/``: ``final_loss_vs_lr.png`` (final loss against the peak
  learning rate ``Study.lr_key``, one line per combination of the other fields, the mean over
  seeds with min–max error bars, each seed a faint dot, diverged or failed cells as crosses at the
  top), ``update_l2.png`` (the global ℓ2 update norm per step, one panel per learning rate, one
  line per combination of the other fields: mean over seeds, min–max band, on a logarithmic step
  axis that spreads out the early steps) and ``train_loss.png`` (the training loss, laid out
  alike).

Every number comes from the records; nothing is typed by hand. The figures use matplotlib's
``Figure`` directly (the Agg canvas, no display), in the style of :mod:`warmup_jax.metrics.plots`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from warmup_jax.errors import ConfigError
from warmup_jax.sweep.runner import duration, latest_records, read_records
from warmup_jax.sweep.study import format_value, load_study, plan_cells

__all__ = ["GroupSummary", "load_records", "mean_curve", "summarize", "write_report"]

DEFAULT_SEED_KEY = "train.seed"
DEFAULT_LR_KEY = "optim.lr"
LOSS_FORMAT = "{:.4f}"


@dataclasses.dataclass
class GroupSummary:
    """The cells of one group: equal values except the seed.

    Attributes:
      values: the group's values (every field but the seed; None where a cell does not set it).
      records: the group's records, ordered by seed.
    """

    values: dict[str, Any]
    records: list[dict[str, Any]]

    def _finished(self, field: str) -> list[float]:
        return [r[field] for r in self.records if r.get("status") == "ok" and r.get(field) is not None]

    @property
    def final_losses(self) -> list[float]:
        """Final validation losses of the cells that finished (diverged and failed ones left out)."""
        return self._finished("final_eval_loss")

    @property
    def best_losses(self) -> list[float]:
        return self._finished("best_eval_loss")

    def count(self, status: str) -> int:
        return sum(r.get("status") == status for r in self.records)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.final_losses)) if self.final_losses else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (None for fewer than two)."""
        losses = self.final_losses
        return float(np.std(losses, ddof=1)) if len(losses) >= 2 else None


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def load_records(source: str) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """``(study name, records, context)`` of a study file or a records file.

    A study file gives the records of its current cells (the last record of each) and a context
    with the keys in the study's order and the number of cells; a records file gives every cell
    recorded in it.
    """
    if source.endswith(".py"):
        study = load_study(source)
        cells = plan_cells(study)
        recorded = latest_records(read_records(study.records_path))
        records = [recorded[c.id] for c in cells if c.id in recorded]
        context = {
            "records_path": study.records_path,
            "keys": study.keys(),
            "cells": len(cells),
            "seed_key": study.seed_key,
            "lr_key": study.lr_key,
            "description": study.description,
        }
        return study.name, records, context
    if not os.path.isfile(source):
        raise ConfigError(f"{source!r} is neither a study file (.py) nor a records file")
    records = list(latest_records(read_records(source)).values())
    if not records:
        raise ConfigError(f"records file {source!r} holds no record")
    keys: list[str] = []
    for record in records:
        keys += [k for k in record.get("values", {}) if k not in keys]
    context = {
        "records_path": source,
        "keys": keys,
        "cells": None,
        "seed_key": records[0].get("seed_key", DEFAULT_SEED_KEY),
        "lr_key": records[0].get("lr_key", DEFAULT_LR_KEY),
        "description": "",
    }
    return records[0].get("study", os.path.splitext(os.path.basename(source))[0]), records, context


def summarize(records: Sequence[dict[str, Any]], keys: Sequence[str], seed_key: str) -> list[GroupSummary]:
    """Groups records by their values of ``keys`` except ``seed_key``; groups and seeds sorted."""
    group_keys = [k for k in keys if k != seed_key]
    groups: dict[tuple, GroupSummary] = {}
    for record in records:
        values = {k: record.get("values", {}).get(k) for k in group_keys}
        identity = tuple(format_value(values[k]) for k in group_keys)
        groups.setdefault(identity, GroupSummary(values, [])).records.append(record)
    for group in groups.values():
        group.records.sort(key=lambda r: _sort_key(r.get("values", {}).get(seed_key)))
    return sorted(groups.values(), key=lambda g: tuple(_sort_key(g.values[k]) for k in group_keys))


def _varying(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    return [k for k in keys if len({format_value(r.get("values", {}).get(k)) for r in records}) > 1]


def _loss(value: float | None) -> str:
    return "–" if value is None else LOSS_FORMAT.format(value)


def _cell(value: Any) -> str:
    return "–" if value is None else format_value(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _label(values: dict[str, Any], keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        short = key.rsplit(".", 1)[-1]
        parts.append(_cell(values.get(key)) if short == "name" else f"{short}={_cell(values.get(key))}")
    return ", ".join(parts) or "all cells"


# --- figures -------------------------------------------------------------------------------------


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _save(fig, folder: str, name: str) -> str:
    path = os.path.join(folder, f"{name}.png")
    fig.savefig(path, dpi=110)
    return path


def _series(records: Sequence[dict[str, Any]], line_keys: Sequence[str]) -> list[tuple[dict, list[dict]]]:
    """Records split into lines (equal values of ``line_keys``), in sorted order."""
    lines: dict[tuple, tuple[dict, list]] = {}
    for record in records:
        values = {k: record.get("values", {}).get(k) for k in line_keys}
        identity = tuple(format_value(values[k]) for k in line_keys)
        lines.setdefault(identity, (values, []))[1].append(record)
    return sorted(lines.values(), key=lambda item: tuple(_sort_key(item[0][k]) for k in line_keys))


def plot_final_loss_vs_lr(
    records: Sequence[dict[str, Any]], line_keys: Sequence[str], lr_key: str, seed_key: str, folder: str
) -> str:
    """Final validation loss against the learning rate, one line per combination of ``line_keys``."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    records = [r for r in records if r.get("values", {}).get(lr_key) is not None]
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    top = blended_transform_factory(ax.transData, ax.transAxes)
    lines = _series(records, line_keys)
    crosses = False
    for (values, members), color in zip(lines, _colors(len(lines))):
        by_lr: dict[float, list[dict]] = {}
        for record in members:
            by_lr.setdefault(float(record["values"][lr_key]), []).append(record)
        lrs, means, lows, highs = [], [], [], []
        for lr in sorted(by_lr):
            losses = [
                r["final_eval_loss"]
                for r in by_lr[lr]
                if r.get("status") == "ok" and r.get("final_eval_loss") is not None
            ]
            ax.plot([lr] * len(losses), losses, "o", color=color, alpha=0.3, ms=4)
            lost = len(by_lr[lr]) - len(losses)
            if lost:
                ax.plot([lr], [0.97], "x", color=color, ms=8, mew=2, transform=top, clip_on=False)
                crosses = True
            if losses:
                lrs.append(lr)
                means.append(float(np.mean(losses)))
                lows.append(means[-1] - min(losses))
                highs.append(max(losses) - means[-1])
        if lrs:
            ax.errorbar(lrs, means, yerr=[lows, highs], color=color, lw=2, marker="o", capsize=4)
        ax.plot([], [], color=color, lw=2, marker="o", label=_label(values, line_keys))
    if all(float(r["values"][lr_key]) > 0 for r in records):
        ax.set_xscale("log")
    title = f"Final validation loss vs {lr_key}: mean over {seed_key}, min–max bars, seeds as dots"
    if crosses:
        title += "\n(× at the top: a seed diverged or failed)"
    ax.set(xlabel=lr_key, ylabel="final validation loss", title=title)
    ax.legend(frameon=False, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, folder, "final_loss_vs_lr")


def mean_curve(curves: Sequence[dict[str, list]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean, min and max over the curves at every step any of them has a value."""
    points: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in zip(curve["step"], curve["value"]):
            if value is not None:
                points.setdefault(step, []).append(value)
    steps = np.array(sorted(points), dtype=np.int64)
    stacked = [points[s] for s in steps]
    return (
        steps,
        np.array([np.mean(v) for v in stacked]),
        np.array([min(v) for v in stacked]),
        np.array([max(v) for v in stacked]),
    )


def plot_curves(
    records: Sequence[dict[str, Any]],
    curve: str,
    *,
    panel_key: str | None,
    line_keys: Sequence[str],
    seed_key: str,
    folder: str,
    name: str,
    ylabel: str,
    log_y: bool,
) -> str | None:
    """A per-step curve of every record (``record[curve]`` or ``record["metrics"][curve]``): one panel
    per value of ``panel_key``, one line per combination of ``line_keys``, mean over seeds with a
    min–max band, on a log step axis. None when no record has the curve."""
    from matplotlib.figure import Figure

    def get(record):
        found = record.get(curve) or record.get("metrics", {}).get(curve)
        return found if found and any(v is not None for v in found["value"]) else None

    records = [r for r in records if get(r) is not None]
    if not records:
        return None
    panel_values = sorted({format_value(r["values"].get(panel_key)) for r in records}) if panel_key else [None]
    panel_values.sort(key=lambda text: _sort_key(_numeric(text)))
    columns = min(len(panel_values), 3)
    rows = math.ceil(len(panel_values) / columns)
    fig = Figure(figsize=(4.5 * columns + 1, 3.6 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    lines = _series(records, line_keys)
    colors = _colors(len(lines))
    for ax, panel in zip(axes, panel_values):
        for (_, members), color in zip(lines, colors):
            members = [r for r in members if panel is None or format_value(r["values"].get(panel_key)) == panel]
            if not members:
                continue
            steps, mean, low, high = mean_curve([get(r) for r in members])
            if log_y:  # a zero update (the first step of a warmup from 0) has no place on a log axis
                mean, low, high = (np.where(a > 0, a, np.nan) for a in (mean, low, high))
            ax.plot(steps, mean, color=color, lw=1.8)
            if len(members) > 1:
                ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set(xlabel="step", title=f"{panel_key}={panel}" if panel_key else "")
        ax.grid(alpha=0.3)
    for ax in axes[len(panel_values) :]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel(ylabel)
    handles = [axes[0].plot([], [], color=c, lw=2)[0] for c in colors]
    fig.legend(
        handles,
        [_label(v, line_keys) for v, _ in lines],
        loc="outside lower center",
        ncol=min(len(lines), 4),
        frameon=False,
    )
    fig.suptitle(f"{ylabel}: mean over {seed_key}, min–max band")
    return _save(fig, folder, name)


def _numeric(text: str | None) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


# --- the report ----------------------------------------------------------------------------------


def _default_out(name: str) -> str:
    return os.path.join("experiments", f"RESULTS_{name}.md")


def write_report(source: str, *, out: str | None = None, figures_dir: str | None = None) -> list[str]:
    """Writes the markdown file and the figures of a study; returns their paths (markdown first).

    Args:
      source: a study file (``experiments/<study>.py``) or its records file (``.jsonl``).
      out: the markdown file (default ``experiments/RESULTS_<study>.md``).
      figures_dir: the folder of the PNGs (default ``experiments/figures/<study>``).
    """
    name, records, context = load_records(source)
    out = out or _default_out(name)
    figures_dir = figures_dir or os.path.join("experiments", "figures", name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    os.makedirs(figures_dir, exist_ok=True)
    keys, seed_key, lr_key = context["keys"], context["seed_key"], context["lr_key"]
    varying = _varying(records, keys)
    shown = [k for k in varying if k != seed_key]
    fixed = [k for k in keys if k not in varying and records]

    lines = [f"# Results: {name}", ""]
    if context["description"]:
        lines += [context["description"].strip(), ""]
    origin = "" if context["records_path"] == source else f" in `{context['records_path']}`"
    lines += [
        f"Generated by `warmup-jax report {source}` from the {len(records)} records{origin}; regenerate it rather "
        "than edit it.",
        "",
    ]
    if context["cells"] is not None and len(records) < context["cells"]:
        lines += [f"{context['cells'] - len(records)} of the study's {context['cells']} cells have no record yet.", ""]
    if not records:
        lines += ["No cell has a record yet: run `warmup-jax sweep` first.", ""]
        with open(out, "w") as f:
            f.write("\n".join(lines))
        return [out]
    configs = sorted({r.get("config", "?") for r in records})
    bases = sorted({" ".join(f"`{o}`" for o in r.get("base", [])) for r in records})
    lines.append(f"Config {', '.join(f'`{c}`' for c in configs)}; base overrides: {' / '.join(bases) or 'none'}.")
    if fixed:
        lines.append(
            "Same in every cell: " + " ".join(f"`{k}={_cell(records[0]['values'].get(k))}`" for k in fixed) + "."
        )
    commits = sorted(
        {(r.get("git_commit") or "?")[:10] + (" (uncommitted changes)" if r.get("git_dirty") else "") for r in records}
    )
    lines += [f"Code: {', '.join(commits)}.", ""]

    groups = summarize(records, keys, seed_key)
    lines += [
        "## Final validation loss",
        "",
        f"The last evaluation of each cell, over the seeds (`{seed_key}`): mean ± sample standard deviation, "
        "min–max, and n, the cells that finished; diverged and failed cells are counted apart and left out of "
        "the statistics. Best eval: the mean over seeds of each cell's lowest evaluation.",
        "",
    ]
    rows = []
    for group in groups:
        losses = group.final_losses
        mean = _loss(group.mean) + ("" if group.std is None else f" ± {_loss(group.std)}")
        spread = f"{_loss(min(losses))}–{_loss(max(losses))}" if losses else "–"
        best = _loss(float(np.mean(group.best_losses))) if group.best_losses else "–"
        counts = [str(len(losses)), str(group.count("diverged")), str(group.count("failed"))]
        rows.append([_cell(group.values.get(k)) for k in shown] + [mean, spread, best, *counts])
    lines += _table([*[f"`{k}`" for k in shown], "final loss", "min–max", "best eval", "n", "diverged", "failed"], rows)
    lines.append("")

    figures = []
    line_keys = [k for k in shown if k != lr_key]
    if lr_key in varying or any(lr_key in r.get("values", {}) for r in records):
        figures.append(
            (
                "Final validation loss vs learning rate",
                plot_final_loss_vs_lr(records, line_keys, lr_key, seed_key, figures_dir),
            )
        )
    else:
        lines += [f"No loss-vs-learning-rate figure: no cell sets `{lr_key}`.", ""]
    panel_key = lr_key if lr_key in varying else None
    curve_lines = [k for k in shown if k != panel_key]
    for curve, name_, ylabel, log_y in (
        ("update_l2", "update_l2", "global ℓ2 update norm", True),
        ("train_loss", "train_loss", "training loss", False),
    ):
        path = plot_curves(
            records,
            curve,
            panel_key=panel_key,
            line_keys=curve_lines,
            seed_key=seed_key,
            folder=figures_dir,
            name=name_,
            ylabel=ylabel,
            log_y=log_y,
        )
        if path is not None:
            figures.append((ylabel[0].upper() + ylabel[1:], path))
        else:
            lines += [f"No {ylabel} figure: no record holds that curve (metrics.interval=0?).", ""]
    if figures:
        lines += ["## Figures", ""]
        base = os.path.dirname(os.path.abspath(out))
        for title, path in figures:
            lines += [f"![{title}]({os.path.relpath(os.path.abspath(path), base)})", ""]

    lines += ["## Cells", ""]
    cell_rows = []
    ordered = [r for g in groups for r in g.records]
    for record in ordered:
        tokens = record.get("tokens_per_second")
        cell_rows.append(
            [
                f"`{record['cell_id']}`",
                _cell(record.get("values", {}).get(seed_key)),
                record.get("status", "?"),
                _loss(record.get("final_eval_loss")),
                _loss(record.get("best_eval_loss")),
                _loss(record.get("final_train_loss")),
                str(record.get("final_step", "–")),
                "–" if tokens is None else f"{tokens:,.0f}",
                duration(record["wall_s"]) if record.get("wall_s") is not None else "–",
                (record.get("git_commit") or "–")[:10],
            ]
        )
    lines += _table(
        [
            "cell",
            f"`{seed_key}`",
            "status",
            "final eval",
            "best eval",
            "last train loss",
            "steps",
            "tokens/s",
            "wall",
            "commit",
        ],
        cell_rows,
    )
    problems = [r for r in ordered if r.get("status") in ("diverged", "failed")]
    if problems:
        lines += ["", "Diverged and failed cells:", ""]
        lines += [f"- `{r['cell_id']}` ({r['status']}): {r.get('error') or ''}".rstrip(": ") for r in problems]
    lines.append("")
    with open(out, "w") as f:
        f.write("\n".join(lines))
    return [out, *(path for _, path in figures)]
