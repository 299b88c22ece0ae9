r"""Warmup advice from the first steps of a run without warmup.

The paper's mechanism gives early, measurable signals: without warmup the first angular updates
of the weights are far above the optimizer's equilibrium angle, and the layers' outputs change by a
large fraction (relative representation change, RRC). This module turns the update metrics a run
logs (``metrics.jsonl``, written by the trainer) into a verdict: whether this optimizer, learning
rate and batch need a warmup, and for how many steps.

- :func:`signals` computes, per layer group and globally, the **angle ratio** (angular update /
  equilibrium angle at the peak LR) and the **RRC** at every logged step.
- :func:`advise` scores one signal by its mean over the first ``N`` steps, compares the global
  score with a level, and recommends the step at which a power law fitted to the signal reaches the
  level (a linear warmup of ``T`` steps scales early steps by ``t/T``, so ``T`` is where the
  no-warmup signal itself falls to the level).
- :func:`advise_run` does both for a run folder; ``warmup-jax advise RUN_DIR`` prints the result
  and draws the signals with their levels (:func:`plot_advice`).

The default levels were fitted on the comparison cells of this project's experiments and checked
on held-out cells (the experiment report's "Advisor" section). At that scale no signal predicted
the measured need for warmup better than the base rate: the seed-to-seed spread of the final loss
was larger than most warmup effects, so few cells needed warmup at all. Read the verdict as "the
early updates are (or are not) far above equilibrium, the paper's mechanism", check it with one
short warmup run where it matters, and pass :class:`Levels` to use levels of your own.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SIGNALS = ("angle_ratio", "rrc")
_GROUP = re.compile(r"^(global|blocks\.\d+|wte(\.embedding)?)$")


@dataclasses.dataclass(frozen=True)
class Levels:
    """Above these early scores a warmup is advised; ``signal`` is the one the verdict uses."""

    # Fitted on the comparison cells (0.34M-parameter GPT, 300 steps of 16 x 128 tokens, N = 15) by
    # maximising the balanced accuracy of "needed when the score exceeds the level"; both signals
    # reached 0.62 there, and neither beat always answering "not needed" (91 % of those cells).
    angle_ratio: float = 1.21
    rrc: float = 0.026
    signal: str = "angle_ratio"
    validation: str = ""  # how the levels were checked, printed with every verdict

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"Levels.signal={self.signal!r} is not a signal; allowed: {', '.join(SIGNALS)}")
        for name in SIGNALS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Levels.{name}={value!r} is not allowed; it must be a positive number")


DEFAULT_LEVELS = Levels(
    validation=(
        "the default levels, fitted on a 0.34M-parameter GPT (300 steps of 16 x 128 tokens); on held-out optimizers "
        "(RAdam, GI-Adam, AdamW², Post-LN) they called 22 of 22 cells that did not need a warmup 'needed': "
        "early updates are large without warmup, whether that costs final loss is not settled by them. "
        "Check with one short warmup run."
    )
)


def equilibrium_angle(optimizer: str, lr: float, hparams: Mapping[str, Any] | None = None) -> float | None:
    """The equilibrium angular update (rad/step) of a registered optimizer at peak LR ``lr``, from
    its weight decay and momenta (the recipe's defaults unless ``hparams`` sets them); ``None`` for
    an optimizer of neither the AdamW nor the Lion family, or without weight decay."""
    from warmup_jax.optim import recipes

    try:
        recipe = recipes.get_recipe(optimizer)
    except ValueError:
        return None
    defaults = {name: p.default for name, p in inspect.signature(recipe).parameters.items() if p.default is not p.empty}
    values = {**defaults, **(hparams or {})}
    wd = values.get("weight_decay")
    if not wd or wd <= 0:
        return None
    if "lion" in optimizer or optimizer == "warmup_free":
        if "beta" in values:  # the high-momentum variants: Lion with (beta^2, beta)
            b1, b2 = values["beta"] ** 2, values["beta"]
        else:
            b1, b2 = values.get("b1", 0.9), values.get("b2", 0.99)
        inner = (1 - b1) ** 2 + b1**2 * (1 - b2) / (1 + b2)
        return math.sqrt(math.pi / 2) * math.sqrt(2 * lr * wd) * math.sqrt(inner)
    if "adam" in optimizer:
        b1 = values.get("b1", 0.9)
        return math.sqrt(2 * lr * wd * (1 - b1) / (1 + b1))
    return None


Series = Mapping[int, float]


def signals(metrics: Mapping[str, Series], angle_scale: float | None) -> dict[str, dict[str, Series]]:
    """``signal -> group -> {step: value}`` from logged metrics named ``angle/<group>`` and
    ``rrc/<group>`` (groups: ``global``, ``blocks.<i>``, ``wte``); the angle divided by
    ``angle_scale`` (the equilibrium angle; no angle ratio without it)."""
    out: dict[str, dict[str, Series]] = {name: {} for name in SIGNALS}
    for key, series in metrics.items():
        kind, _, group = key.partition("/")
        if not _GROUP.match(group):
            continue
        group = group.removesuffix(".embedding")
        finite = {int(s): float(v) for s, v in series.items() if v is not None and math.isfinite(v)}
        if kind == "angle" and angle_scale:
            out["angle_ratio"][group] = {s: v / angle_scale for s, v in finite.items()}
        elif kind == "rrc":
            out["rrc"][group] = finite
    return out


@dataclasses.dataclass(frozen=True)
class Crossing:
    """One signal of one layer group over the first steps: its early score against the level."""

    signal: str
    group: str
    score: float  # mean over steps 1..N
    level: float
    first_step_above: int | None  # the first logged step above the level (None: never within N)

    @property
    def crossed(self) -> bool:
        return self.score > self.level


@dataclasses.dataclass(frozen=True)
class Advice:
    """The verdict on one run and its evidence."""

    needed: bool | None  # None: the deciding signal is not logged
    warmup_steps: int  # recommended length; 0 when not needed
    steps_used: int  # N
    signal: str
    level: float
    score: float
    evidence: tuple[Crossing, ...]
    fit: tuple[float, float] | None  # (a, b) of log signal = a + b log step, or None
    max_warmup: int
    validation: str = ""  # how far to trust the levels (Levels.validation)

    def lines(self) -> list[str]:
        """The verdict and its evidence, for a terminal."""
        name = {"angle_ratio": "angle ratio (angular update / equilibrium angle)", "rrc": "RRC"}[self.signal]
        if self.needed is None:
            head = f"no verdict: the run logs no {name} in its first {self.steps_used} steps"
        elif self.needed:
            head = (
                f"warmup needed: about {self.warmup_steps} steps (the {name}, mean {self.score:.3g} over steps "
                f"1-{self.steps_used}, is above its level {self.level:.3g})"
            )
        else:
            head = (
                f"no warmup needed: the {name}, mean {self.score:.3g} over steps 1-{self.steps_used}, is below its "
                f"level {self.level:.3g}"
            )
        lines = [head, f"evidence (first {self.steps_used} steps; mean, level, first step above):"]
        for c in self.evidence:
            above = f"step {c.first_step_above}" if c.first_step_above is not None else "never"
            mark = "above" if c.crossed else "below"
            lines.append(f"  {c.signal:<11} {c.group:<9} {c.score:9.4g} {mark} {c.level:.3g}; first above: {above}")
        if self.validation:
            lines.append(f"how far to trust it: {self.validation}")
        return lines


def default_steps(planned_steps: int) -> int:
    """N: 5 % of the planned steps, at least 10 (and at most the run)."""
    return max(1, min(planned_steps, max(10, round(0.05 * planned_steps))))


def _early(series: Series, steps: int) -> list[tuple[int, float]]:
    return sorted((s, v) for s, v in series.items() if 1 <= s <= steps)


def advise(
    metrics: Mapping[str, Series],
    *,
    angle_scale: float | None,
    planned_steps: int,
    max_warmup: int | None = None,
    steps: int | None = None,
    levels: Levels = DEFAULT_LEVELS,
) -> Advice:
    """The advice from a no-warmup run's logged metrics (``name -> {step: value}``).

    Args:
        metrics: the run's metrics by name, e.g. ``{"angle/global": {1: 0.08, ...}, ...}``.
        angle_scale: the optimizer's equilibrium angle (:func:`equilibrium_angle`); ``None``
            leaves the angle ratio out.
        planned_steps: the run's total steps (sets the default ``steps`` and ``max_warmup``).
        max_warmup: the longest warmup to recommend (default: half the planned steps).
        steps: N, the first steps read (default :func:`default_steps`).
        levels: the levels and the deciding signal.
    """
    if planned_steps < 1:
        raise ValueError(f"planned_steps={planned_steps} must be >= 1")
    n = default_steps(planned_steps) if steps is None else steps
    if n < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    cap = planned_steps // 2 if max_warmup is None else max_warmup
    by_signal = signals(metrics, angle_scale)
    evidence = []
    for name in SIGNALS:
        level = getattr(levels, name)
        for group in sorted(by_signal[name], key=lambda g: (g != "global", g)):
            points = _early(by_signal[name][group], n)
            if not points:
                continue
            score = float(np.mean([v for _, v in points]))
            above = next((s for s, v in points if v > level), None)
            evidence.append(Crossing(name, group, score, level, above))
    deciding = next((c for c in evidence if c.signal == levels.signal and c.group == "global"), None)
    level = getattr(levels, levels.signal)
    if deciding is None:
        return Advice(None, 0, n, levels.signal, level, math.nan, tuple(evidence), None, cap, levels.validation)
    points = _early(by_signal[levels.signal]["global"], n)
    fit = _power_law(points)
    needed = deciding.crossed
    length = _length(fit, level, cap) if needed else 0
    return Advice(needed, length, n, levels.signal, level, deciding.score, tuple(evidence), fit, cap, levels.validation)


def _power_law(points: Sequence[tuple[int, float]]) -> tuple[float, float] | None:
    """(a, b) of the least-squares fit log v = a + b log s over the positive points."""
    usable = [(s, v) for s, v in points if v > 0]
    if len(usable) < 2:
        return None
    x = np.log([s for s, _ in usable])
    y = np.log([v for _, v in usable])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def _length(fit: tuple[float, float] | None, level: float, cap: int) -> int:
    """The step at which the fitted signal reaches ``level`` (at most ``cap``; ``cap`` when the
    signal does not fall)."""
    if fit is None:
        return cap
    a, b = fit
    if b >= 0:
        return cap
    step = math.exp((math.log(level) - a) / b)
    return int(min(cap, max(1, math.ceil(step))))


# --- run folders -----------------------------------------------------------------------------------


def read_metrics(path: str) -> dict[str, dict[int, float]]:
    """``name -> {step: value}`` from a metrics.jsonl (a repeated step keeps its last value)."""
    out: dict[str, dict[int, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            step = entry.get("step")
            if not isinstance(step, int):
                continue
            for key, value in entry.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                    out.setdefault(key, {})[step] = float(value)
    return out


def advise_run(run_dir: str, *, steps: int | None = None, levels: Levels = DEFAULT_LEVELS):
    """(advice, metrics, config) for a run folder of ``warmup-jax train``: its ``config.json`` and
    ``metrics.jsonl``. Raises FileNotFoundError naming a missing file."""
    from warmup_jax.config import Config

    config_path = os.path.join(run_dir, "config.json")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    for path in (config_path, metrics_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist: give the train.out_dir of a warmup-jax train run")
    with open(config_path, encoding="utf-8") as f:
        config = Config.from_dict(json.load(f))
    metrics = read_metrics(metrics_path)
    o = config.optim
    advice = advise(
        metrics,
        angle_scale=equilibrium_angle(o.name, o.lr, o.hparams),
        planned_steps=config.train.steps,
        max_warmup=config.train.steps - round(o.cooldown_fraction * config.train.steps),
        steps=steps,
        levels=levels,
    )
    return advice, metrics, config


def plot_advice(advice: Advice, metrics: Mapping[str, Series], angle_scale: float | None, path: str) -> str:
    """Each signal per layer group over the logged steps, its level, N, and the fitted power law."""
    from matplotlib.figure import Figure

    by_signal = signals(metrics, angle_scale)
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    axes = fig.subplots(1, len(SIGNALS))
    titles = {"angle_ratio": "angular update / equilibrium angle", "rrc": "relative representation change"}
    for ax, name in zip(axes, SIGNALS):
        groups = by_signal[name]
        for i, group in enumerate(sorted(groups, key=lambda g: (g != "global", g))):
            steps = sorted(s for s in groups[group] if s >= 1)
            if not steps:
                continue
            style = dict(color="black", lw=2.0) if group == "global" else dict(color=f"C{i}", lw=1.0, alpha=0.8)
            ax.plot(steps, [groups[group][s] for s in steps], label=group, **style)
        level = next((c.level for c in advice.evidence if c.signal == name), None)
        if level is not None:
            ax.axhline(level, color="tab:red", ls="--", lw=1.2, label=f"level {level:.3g}")
        ax.axvline(advice.steps_used, color="gray", ls=":", lw=1.2, label=f"N = {advice.steps_used}")
        if name == advice.signal and advice.fit is not None and advice.needed:
            a, b = advice.fit
            xs = np.geomspace(1, max(advice.warmup_steps, advice.steps_used), 50)
            ax.plot(xs, np.exp(a + b * np.log(xs)), color="tab:red", lw=1.0, alpha=0.6, label="power-law fit")
            ax.axvline(advice.warmup_steps, color="tab:red", ls=":", lw=1.0, label=f"advised {advice.warmup_steps}")
        if not groups:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", color="gray")
        ax.set(xscale="log", yscale="log", xlabel="step", title=titles[name])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    verdict = (
        "no verdict"
        if advice.needed is None
        else f"warmup needed: ~{advice.warmup_steps} steps"
        if advice.needed
        else "no warmup needed"
    )
    fig.suptitle(f"Warmup advice from the first {advice.steps_used} steps: {verdict}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
