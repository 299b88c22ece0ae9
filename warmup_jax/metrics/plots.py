"""PNG figures of one or several runs (``warmup-jax plot RUN_DIR [RUN_DIR ...]``).

Each run folder holds the ``metrics.jsonl`` the trainer writes. Runs are overlaid, one colour per
run, labelled by folder name, so that e.g. runs with and without warmup can be compared:

* ``loss.png``: training loss (raw, faint; EMA-smoothed, solid) and validation loss (markers);
* ``lr.png``: the learning-rate schedule;
* ``update_l2.png``, ``angular_update.png``, ``rrc.png``: the update metrics per layer group
  (a kind of layer, e.g. ``mlp.fc``, averaged over the blocks) on a logarithmic step axis, which
  spreads out the early steps where warmup acts;
* ``snr.png``: the gradient SNR over training (signal and noise smoothed before the ratio)
  against the 1/B line, and the critical batch size 1/phi against B;
* ``momentum.png``: cos(g_t, m_{t-1}) and the momentum cancellation ratio.

A figure whose metric no run logged is still written, with a note saying how to enable it; except
``snr.png`` when the runs logged update metrics but no SNR, i.e. trained with one micro-batch per
step: the SNR needs ``train.grad_accum_steps >= 2``, and one printed line says so instead.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from warmup_jax.metrics.update import GLOBAL

FIGURES = ("loss", "lr", "update_l2", "angular_update", "rrc", "snr", "momentum")
_ENABLE_HINT = "enable with --set metrics.interval=N (and metrics.dense_until_step)"
_SNR_EMA = 0.9  # per logged point, on signal and noise before the ratio (docs/methods.md, 'Update-size metrics')
_NO_SNR = "no SNR: train.grad_accum_steps < 2"
_GROUP_ORDER = ("wte", "wpe", "attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


def metric_kind(name: str) -> tuple[str, str]:
    """Splits ``"angle/blocks.3.mlp.fc.kernel"`` into ``("angle", "blocks.3.mlp.fc.kernel")``."""
    metric, _, target = name.partition("/")
    return metric, target


def layer_group(target: str) -> str | None:
    """The layer kind of a per-tensor or per-layer target, with the layer index removed.

    ``"blocks.3.mlp.fc.kernel"`` -> ``"mlp.fc"``, ``"blocks.3.attn.qkv"`` -> ``"attn.qkv"``,
    ``"wte.embedding"`` -> ``"wte"``; groups (``blocks.3``, ``global``) give None.
    """
    parts = target.split(".")
    if parts[-1] in ("kernel", "embedding", "bias", "scale"):
        parts = parts[:-1]
    elif target == GLOBAL or (len(parts) == 2 and parts[1].isdigit()):
        return None
    kept = [p for p in parts if not p.isdigit()]
    if kept and len(kept) < len(parts):
        kept = kept[1:]  # drop the container name ("blocks") with its index
    return ".".join(kept) if kept else None


class Run:
    """The logged series of one run: ``series[name] = (steps, values)``."""

    def __init__(self, path: str, label: str):
        self.path, self.label = path, label
        metrics_file = os.path.join(path, "metrics.jsonl")
        if not os.path.isfile(metrics_file):
            raise FileNotFoundError(f"{path!r} has no metrics.jsonl; pass run folders written by `warmup-jax train`")
        columns: dict[str, dict[int, float]] = defaultdict(dict)
        with open(metrics_file) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                step = int(record.pop("step"))
                for key, value in record.items():
                    if isinstance(value, (int, float)):
                        columns[key][step] = float(value)  # a resumed run overwrites repeated steps
        self.series = {}
        for key, points in columns.items():
            steps = np.array(sorted(points), dtype=np.int64)
            self.series[key] = (steps, np.array([points[s] for s in steps], dtype=np.float64))

    def get(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self.series.get(name)

    def group_size(self, metric: str, group: str) -> int:
        return sum(1 for k in self.series if metric_kind(k)[0] == metric and layer_group(metric_kind(k)[1]) == group)

    def group_mean(self, metric: str, group: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean over layers of ``metric`` for every tensor (or Dense layer) of the layer group."""
        members = [
            self.series[k]
            for k in self.series
            if metric_kind(k)[0] == metric and layer_group(metric_kind(k)[1]) == group
        ]
        if not members:
            return None
        steps = members[0][0]
        members = [m for m in members if np.array_equal(m[0], steps)]
        with np.errstate(all="ignore"):
            return steps, np.nanmean(np.stack([m[1] for m in members]), axis=0)

    def has_update_metrics(self) -> bool:
        """Whether the run logged the update metrics (``metrics.interval > 0``) at least once."""
        return self.get("update_l2/global") is not None

    def has_snr(self) -> bool:
        return self.get("snr_noise/global") is not None and self.get("snr_signal/global") is not None

    def groups(self, metric: str) -> list[str]:
        found = {layer_group(metric_kind(k)[1]) for k in self.series if metric_kind(k)[0] == metric}
        found.discard(None)
        return sorted(found)


def _labels(run_dirs: Sequence[str]) -> list[str]:
    """Folder names; parent folders are prepended while labels collide."""
    parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in run_dirs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


def _ema(values: np.ndarray, decay: float) -> np.ndarray:
    """Bias-corrected EMA that skips non-finite values."""
    out = np.empty_like(values)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            avg = decay * avg + (1 - decay) * v
            weight = decay * weight + (1 - decay)
        out[i] = avg / weight if weight > 0 else np.nan
    return out


def _smoothing_decay(n: int) -> float:
    """An EMA over ~2% of the points (at least 1, at most 50)."""
    return 1.0 - 1.0 / min(max(n / 50.0, 1.0), 50.0)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.35", wrap=True)


def _save(fig: Figure, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, dpi=110)
    return path


def _legend(fig: Figure, handles: list, labels: list[str]) -> None:
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, bbox_to_anchor=(0.5, 0.0)
        )


def _run_handles(ax, runs: list[Run], colors: list) -> tuple[list, list[str]]:
    handles = [ax.plot([], [], color=c, lw=2)[0] for c in colors]
    return handles, [r.label for r in runs]


def plot_loss(runs: list[Run], colors: list, out_dir: str) -> str:
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    anything = False
    upper = []
    for run, color in zip(runs, colors):
        train = run.get("loss")
        if train is not None:
            steps, loss = train
            ax.plot(steps, loss, color=color, alpha=0.25, lw=0.8)
            smooth = _ema(loss, _smoothing_decay(len(loss)))
            ax.plot(steps, smooth, color=color, lw=2, label=f"{run.label} train")
            upper.append(np.nanpercentile(smooth[len(smooth) // 20 :], 100))
            anything = True
        val = run.get("eval_loss")
        if val is not None:
            ax.plot(val[0], val[1], color=color, lw=1.2, ls="--", marker="o", ms=4, label=f"{run.label} validation")
            anything = True
    if anything:
        ax.legend(frameon=False, fontsize=9)
        if upper:
            low, high = ax.get_ylim()
            ax.set_ylim(low, min(high, max(upper) * 1.15))
    else:
        _note(ax, "no loss logged")
    ax.set(xlabel="step", ylabel="cross-entropy loss", title="Loss (train: faint raw, solid EMA; validation: dashed)")
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, "loss")


def plot_lr(runs: list[Run], colors: list, out_dir: str) -> str:
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    anything = False
    for run, color in zip(runs, colors):
        lr = run.get("lr")
        if lr is not None:
            ax.plot(lr[0], lr[1], color=color, lw=2, label=run.label)
            anything = True
    if anything:
        ax.legend(frameon=False, fontsize=9)
    else:
        _note(ax, "no learning rate logged")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.set(xlabel="step", ylabel="learning rate", title="Learning-rate schedule")
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, "lr")


def _ordered_groups(runs: list[Run], metric: str) -> list[str]:
    found = sorted({g for run in runs for g in run.groups(metric)})
    if metric == "update_l2":  # the matrices only, as for the angles (LayerNorm gains are 1-D)
        matrices = {g for run in runs for g in run.groups("angle")}
        found = [g for g in found if g in matrices] or found
    known = [g for g in _GROUP_ORDER if g in found]
    return known + [g for g in found if g not in known]


def plot_per_group(
    runs: list[Run],
    colors: list,
    out_dir: str,
    *,
    name: str,
    title: str,
    ylabel: str,
    metric: str,
    dashed_metric: str | None = None,
    dashed_label: str = "",
    logy: bool = True,
) -> str:
    """One panel per layer group plus the global aggregate; log step axis."""
    groups = _ordered_groups(runs, metric)
    panels = groups + ["global"]
    cols = min(len(panels), 4 if len(panels) > 6 else 3)
    rows = math.ceil(len(panels) / cols)
    height = 3.0 * rows + 0.9
    fig = Figure(figsize=(4.2 * cols, height), layout="constrained")
    legend_space = 0.5 / height  # (left, bottom, width, height) of the area the panels may use
    fig.get_layout_engine().set(rect=(0, legend_space, 1, 1 - legend_space))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    anything = False
    for ax, panel in zip(axes, panels):
        for run, color in zip(runs, colors):
            for m, style in ((metric, "-"), (dashed_metric, "--")):
                if m is None:
                    continue
                series = run.get(f"{m}/global") if panel == "global" else run.group_mean(m, panel)
                if series is None:
                    continue
                steps, values = series
                ok = np.isfinite(values) & (values > 0 if logy else True)
                if ok.any():
                    ax.plot(steps[ok], values[ok], color=color, ls=style, lw=1.6 if style == "-" else 1.1)
                    anything = True
        several = max(run.group_size(metric, panel) for run in runs) > 1
        label = "wte (tied output head)" if metric == "rrc" and panel == "wte" else panel
        ax.set_title(f"{label} (mean over layers)" if several else label, fontsize=10)
        ax.set_xscale("log")
        if logy and ax.lines:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("step (log)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if not anything:
        _note(axes[0], f"no {metric} logged;\n{_ENABLE_HINT}")
    handles, labels = _run_handles(axes[0], runs, colors)
    if dashed_metric is not None:
        handles += [axes[0].plot([], [], color="0.3", ls="-")[0], axes[0].plot([], [], color="0.3", ls="--")[0]]
        labels += [metric.replace("_", " "), dashed_label]
    _legend(fig, handles, labels)
    fig.suptitle(title, fontsize=12)
    return _save(fig, out_dir, name)


def _two_panels() -> tuple[Figure, Any, Any]:
    """A wide figure with two panels side by side and room for the run legend below."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
    left, right = fig.subplots(1, 2)
    return fig, left, right


def _step_axes(axes, *, logy: bool = False, zero_line: bool = False) -> None:
    """Log-scaled training-step x axes (and log y where something was drawn, if ``logy``)."""
    for ax in axes:
        ax.set_xscale("log")
        if logy and ax.lines:
            ax.set_yscale("log")
        if zero_line:
            ax.axhline(0.0, color="0.5", lw=0.8)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("step (log)")


def plot_snr(runs: list[Run], colors: list, out_dir: str) -> str | None:
    """Writes ``snr.png``; None (and one printed line) when the runs logged update metrics but no SNR."""
    if not any(run.has_snr() for run in runs) and any(run.has_update_metrics() for run in runs):
        print(
            "snr.png skipped: the gradient SNR needs train.grad_accum_steps >= 2 (micro-batches per step); "
            "these runs were trained with one",
            file=sys.stderr,
        )
        return None
    fig, ax_phi, ax_crit = _two_panels()
    anything = False
    for run, color in zip(runs, colors):
        if not run.has_snr():
            continue
        noise, signal = run.get("snr_noise/global"), run.get("snr_signal/global")
        steps = noise[0]
        noise_s, signal_s = _ema(noise[1], _SNR_EMA), _ema(signal[1], _SNR_EMA)
        with np.errstate(all="ignore"):
            phi = np.maximum(signal_s, 0.0) / np.maximum(noise_s, 1e-30)
            raw = run.get("snr/global")
        if raw is not None:
            ok = raw[1] > 0
            ax_phi.plot(raw[0][ok], raw[1][ok], color=color, alpha=0.25, lw=0.8)
        ok = phi > 0
        ax_phi.plot(steps[ok], phi[ok], color=color, lw=2)
        with np.errstate(all="ignore"):
            ax_crit.plot(steps[ok], 1.0 / phi[ok], color=color, lw=2)
        batch = run.get("batch_size")
        if batch is not None and len(batch[1]):
            b = batch[1][-1]
            ax_phi.axhline(1.0 / b, color=color, ls=":", lw=1.5)
            ax_crit.axhline(b, color=color, ls=":", lw=1.5)
        anything = True
    _step_axes((ax_phi, ax_crit), logy=True)
    ax_phi.set_ylabel(r"gradient SNR $\varphi$ (per sequence)")
    ax_phi.set_title(r"SNR $\varphi$ (solid: EMA(signal) / EMA(noise); faint: per step); dotted: 1/B", fontsize=10)
    ax_crit.set_ylabel(r"critical batch $1/\varphi$ (sequences)")
    ax_crit.set_title(r"Critical batch size $1/\varphi$ (smoothed); dotted: batch size B", fontsize=10)
    if not anything:
        _note(ax_phi, f"no SNR logged: needs train.grad_accum_steps >= 2;\n{_ENABLE_HINT}")
    handles, labels = _run_handles(ax_phi, runs, colors)
    labels = [
        f"{label} ({_NO_SNR})" if run.has_update_metrics() and not run.has_snr() else label
        for run, label in zip(runs, labels)
    ]
    _legend(fig, handles, labels)
    return _save(fig, out_dir, "snr")


def plot_momentum(runs: list[Run], colors: list, out_dir: str) -> str:
    fig, ax_cos, ax_rho = _two_panels()
    anything = False
    for run, color in zip(runs, colors):
        for ax, name in ((ax_cos, "grad_momentum_cos/global"), (ax_rho, "momentum_cancellation/global")):
            series = run.get(name)
            if series is None:
                continue
            steps, values = series
            ok = np.isfinite(values)
            ax.plot(steps[ok], values[ok], color=color, alpha=0.3, lw=0.8)
            ax.plot(steps[ok], _ema(values[ok], _smoothing_decay(ok.sum())), color=color, lw=2)
            anything = True
    _step_axes((ax_cos, ax_rho), zero_line=True)
    ax_rho.axhline(-0.5, color="0.5", lw=0.8, ls=":")
    ax_cos.set(ylabel=r"$\cos(g_t, m_{t-1})$", title="Gradient-momentum alignment (all tensors)")
    ax_rho.set(
        ylabel=r"$\rho = \langle \beta m_{t-1}, (1-\beta)\, g_t \rangle \;/\; \|(1-\beta)\, g_t\|^2$",
        title="Momentum cancellation ratio (dotted: -0.5)",
    )
    if not anything:
        _note(ax_cos, f"no momentum metrics logged (optimizer without a first moment?);\n{_ENABLE_HINT}")
    handles, labels = _run_handles(ax_cos, runs, colors)
    _legend(fig, handles, labels)
    return _save(fig, out_dir, "momentum")


def plot_runs(run_dirs: Sequence[str], out_dir: str | None = None) -> list[str]:
    """Writes the figures of :data:`FIGURES` for the runs in ``run_dirs``; returns the PNG paths.

    ``snr.png`` is left out (with a printed line saying why) for runs trained with one micro-batch
    per step, whose update metrics have no SNR (:func:`plot_snr`).

    Args:
        run_dirs: run folders (each with a ``metrics.jsonl``), overlaid in this order.
        out_dir: where to write; default: the first run's folder.
    """
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run folder")
    runs = [Run(path, label) for path, label in zip(run_dirs, _labels(run_dirs))]
    out_dir = out_dir or run_dirs[0]
    os.makedirs(out_dir, exist_ok=True)
    colors = _colors(len(runs))
    paths = [
        plot_loss(runs, colors, out_dir),
        plot_lr(runs, colors, out_dir),
        plot_per_group(
            runs,
            colors,
            out_dir,
            name="update_l2",
            metric="update_l2",
            ylabel="‖Δw‖",
            title="ℓ2 update norm per layer group",
        ),
        plot_per_group(
            runs,
            colors,
            out_dir,
            name="angular_update",
            metric="angle",
            dashed_metric="angle_neuron_rms",
            dashed_label="per-neuron RMS",
            ylabel="angle (rad)",
            title="Angular update per layer group (solid: whole tensor, dashed: RMS over neurons)",
        ),
        plot_per_group(
            runs,
            colors,
            out_dir,
            name="rrc",
            metric="rrc",
            ylabel="‖XΔW‖ / ‖XW‖",
            title="Relative representation change of the Dense layers",
        ),
        plot_snr(runs, colors, out_dir),
        plot_momentum(runs, colors, out_dir),
    ]
    return [path for path in paths if path is not None]
