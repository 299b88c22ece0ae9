"""The warmup advisor: verdicts and lengths on synthetic metric logs with a known answer, the
equilibrium angles it divides by, and the advice of a recorded run (command line and in training)."""

import json
import math

import pytest

from warmup_jax import advisor
from warmup_jax.cli import main
from warmup_jax.config import ConfigError, load_config
from warmup_jax.optim.rotational import adamw_equilibrium_angle, lion_equilibrium_angle

from ._cli import train_tiny

SCALE = 0.01  # the equilibrium angle of the synthetic runs


def _log(angle_of_step, rrc_of_step=None, steps=60, groups=("global",)):
    metrics = {f"angle/{g}": {s: angle_of_step(s, g) * SCALE for s in range(1, steps + 1)} for g in groups}
    if rrc_of_step is not None:
        metrics |= {f"rrc/{g}": {s: rrc_of_step(s, g) for s in range(1, steps + 1)} for g in groups}
    return metrics


def test_a_decaying_angle_above_its_level_asks_for_the_step_where_it_reaches_the_level():
    # ratio 20 / sqrt(t): above 4 until t = 25, so a linear warmup of 25 steps keeps it at the level.
    metrics = _log(lambda s, g: 20 / math.sqrt(s))
    levels = advisor.Levels(angle_ratio=4.0, rrc=0.1)
    advice = advisor.advise(metrics, angle_scale=SCALE, planned_steps=300, steps=15, levels=levels)
    assert advice.needed is True
    assert advice.warmup_steps == 25
    assert advice.score == pytest.approx(sum(20 / math.sqrt(s) for s in range(1, 16)) / 15)
    assert advice.fit[1] == pytest.approx(-0.5)
    assert "warmup needed: about 25 steps" in advice.lines()[0]
    assert not any(line.startswith("how far to trust it") for line in advice.lines())  # levels of one's own
    default = advisor.advise(metrics, angle_scale=SCALE, planned_steps=300, steps=15)
    assert default.lines()[-1].startswith("how far to trust it: the default levels, fitted on")


def test_below_the_level_no_warmup_and_the_length_is_capped():
    levels = advisor.Levels(angle_ratio=4.0, rrc=0.1)
    calm = advisor.advise(_log(lambda s, g: 2.0), angle_scale=SCALE, planned_steps=300, steps=15, levels=levels)
    assert calm.needed is False and calm.warmup_steps == 0
    assert "no warmup needed" in calm.lines()[0]
    # Far above and not falling: the longest warmup the schedule allows.
    flat = advisor.advise(_log(lambda s, g: 50.0), angle_scale=SCALE, planned_steps=300, max_warmup=150, levels=levels)
    assert flat.needed and flat.warmup_steps == 150


def test_the_evidence_names_the_group_signal_and_step_that_crossed():
    levels = advisor.Levels(angle_ratio=4.0, rrc=0.1, signal="rrc")
    metrics = _log(
        lambda s, g: 1.0,
        rrc_of_step=lambda s, g: 0.5 if (g == "blocks.1" and s >= 3) else 0.01,
        groups=("global", "blocks.0", "blocks.1", "wte.embedding"),
    )
    metrics["angle/blocks.0.mlp.fc.kernel"] = {1: 99.0}  # a single tensor: not a group
    advice = advisor.advise(metrics, angle_scale=SCALE, planned_steps=300, steps=15, levels=levels)
    assert advice.needed is False  # the global RRC decides
    by = {(c.signal, c.group): c for c in advice.evidence}
    assert by[("rrc", "blocks.1")].first_step_above == 3 and by[("rrc", "blocks.1")].crossed
    assert by[("rrc", "blocks.0")].first_step_above is None
    assert ("angle_ratio", "wte") in by and ("angle_ratio", "blocks.0.mlp.fc.kernel") not in by
    assert advice.evidence[0].group == "global"


def test_without_the_deciding_signal_there_is_no_verdict():
    advice = advisor.advise(_log(lambda s, g: 9.0), angle_scale=None, planned_steps=300)
    assert advice.needed is None and "no verdict" in advice.lines()[0]
    assert advisor.default_steps(300) == 15 and advisor.default_steps(100) == 10 and advisor.default_steps(4) == 4


def test_equilibrium_angles_follow_each_family():
    lr = 2e-3
    assert advisor.equilibrium_angle("adamw", lr) == pytest.approx(float(adamw_equilibrium_angle(lr, 0.1, 0.9)))
    assert advisor.equilibrium_angle("radam", lr, {"b1": 0.8}) == pytest.approx(
        float(adamw_equilibrium_angle(lr, 0.1, 0.8))
    )
    assert advisor.equilibrium_angle("lion_ar", lr) == pytest.approx(float(lion_equilibrium_angle(lr, 1.0, 0.9, 0.99)))
    assert advisor.equilibrium_angle("lion_ar_fast_momentum", lr) == pytest.approx(
        float(lion_equilibrium_angle(lr, 1.0, 0.98**2, 0.98)), rel=1e-6
    )
    assert advisor.equilibrium_angle("adamw", lr, {"weight_decay": 0.0}) is None
    assert advisor.equilibrium_angle("no_such_optimizer", lr) is None


def test_levels_are_checked():
    with pytest.raises(ValueError, match=r"Levels.signal='loss' is not a signal; allowed: angle_ratio, rrc"):
        advisor.Levels(signal="loss")
    with pytest.raises(ValueError, match=r"Levels.rrc=-1 is not allowed"):
        advisor.Levels(rrc=-1)


def test_a_recorded_run_is_advised_in_training_and_from_its_folder(tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ("train.steps=12", "train.eval_interval=0", "metrics.interval=1", "train.advise_after_steps=10")
    assert train_tiny(tiny_overrides, *extra, "train.stop_after_advice=true") == 0
    printed = capsys.readouterr().out
    assert "advisor: warmup needed" in printed or "advisor: no warmup needed" in printed
    assert "stopping after step 10" in printed
    saved = json.loads((out / "advice.json").read_text())
    assert saved["step"] == 10 and saved["signal"] == advisor.DEFAULT_LEVELS.signal
    assert {"global", "blocks.0"} <= {c["group"] for c in saved["evidence"]}
    assert max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == 10  # stopped there

    assert main(["advise", str(out), "--steps", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(("warmup needed", "no warmup needed"))
    assert (out / "advice.png").stat().st_size > 10_000
    # The command's verdict is the one the run printed at step 10.
    first = next(line for line in printed.splitlines() if line.startswith("advisor: "))
    assert lines[0] == first.removeprefix("advisor: ")


def test_advice_input_errors(tiny_overrides, tmp_path, capsys):
    assert main(["advise", str(tmp_path / "nothing")]) == 2
    assert "config.json does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="train.stop_after_advice=true needs train.advise_after_steps >= 1"):
        load_config("tiny", [*tiny_overrides, "train.stop_after_advice=true"]).validate()
    with pytest.raises(ConfigError, match="train.advise_after_steps=500 is out of range"):
        load_config("tiny", [*tiny_overrides, "train.steps=100", "train.advise_after_steps=500"]).validate()
