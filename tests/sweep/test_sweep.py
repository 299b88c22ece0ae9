"""Sweeps: a 2-cell study of the tiny config trained for real (interrupted by SIGINT, resumed, limited by
--max-cells, skipped once recorded), validation before any work, failed and diverged cells recorded,
and the report's numbers and figures from the records."""

import dataclasses
import json
import os
import re
import shutil
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest

from warmup_jax.cli import main
from warmup_jax.config import ConfigError
from warmup_jax.sweep import Study, plan_cells
from warmup_jax.sweep.report import summarize, write_report
from warmup_jax.sweep.runner import read_records, run_sweep, select_cells, subsample
from warmup_jax.sweep.study import cell_id
from warmup_jax.train import logger as logger_lib
from warmup_jax.train import trainer as trainer_lib

STEPS = 4


def _base(text_corpus, data_cache):
    return [
        "data.source=text_dir",
        f"data.path={text_corpus}",
        f"data.cache_dir={data_cache}",
        "data.bpe_vocab_size=300",
        "model.n_layer=1",
        f"train.steps={STEPS}",
        "train.eval_batches=1",
        "train.checkpoint_interval=2",
        "train.tensorboard=false",
        "train.progress=false",
    ]


def _write_study(folder, base, grid, name="two_cells", **extra):
    """A study file in ``folder`` whose records and runs stay in ``folder``."""
    path = folder / f"{name}.py"
    fields = {"records": str(folder / "records.jsonl"), "runs_dir": str(folder / "runs"), **extra}
    path.write_text(
        textwrap.dedent(
            f"""\
            from warmup_jax.sweep import Study

            STUDY = Study(name={name!r}, config="tiny", base={base!r}, grid={grid!r},
                          **{fields!r})
            """
        )
    )
    return str(path)


class _Echo(list):
    def __call__(self, *parts, end="\n", flush=False):
        self.append(" ".join(str(p) for p in parts) + end)

    @property
    def text(self):
        return "".join(self)


@pytest.fixture(scope="module")
def swept(text_corpus, data_cache, tmp_path_factory):
    """The 2x1 grid (two learning rates) swept in three calls: SIGINT in the first cell (a checkpoint
    at step 3, no record), --max-cells 1 (that cell resumed and recorded), then the rest."""
    folder = tmp_path_factory.mktemp("sweep")
    study_file = _write_study(folder, _base(text_corpus, data_cache), {"optim.lr": [1e-3, 3e-3]})
    from warmup_jax.sweep import load_study

    study = load_study(study_file)
    original_write = logger_lib.MetricLogger.write
    sent = []

    def write_and_interrupt(self, step, metrics):
        original_write(self, step, metrics)
        if step == 2 and "loss" in metrics and not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the trainer checkpoints at the next boundary

    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logger_lib.MetricLogger, "write", write_and_interrupt)
        echo = _Echo()
        calls.append((run_sweep(study, echo=echo), echo.text, read_records(study.records_path)))
    checkpoints = os.path.join(study.cell_dir(plan_cells(study)[0].id), "checkpoints")
    saved_steps = sorted(int(name) for name in os.listdir(checkpoints) if name.isdigit())
    for max_cells in (1, None):
        echo = _Echo()
        calls.append((run_sweep(study, max_cells=max_cells, echo=echo), echo.text, read_records(study.records_path)))
    return study_file, study, calls, saved_steps


def test_sigint_stops_the_sweep_with_a_checkpoint_and_no_record(swept):
    _, study, calls, _ = swept
    result, output, records = calls[0]
    assert result.interrupted_by == "SIGINT" and result.exit_status == 130
    assert records == [] and result.ran == 0
    assert "SIGINT" in output and "resume" in output
    assert swept[3] == [2, 3]  # the periodic checkpoint, and the one at the step after the signal


def test_max_cells_resumes_the_interrupted_cell_then_the_next_call_completes(swept):
    _, study, calls, _ = swept
    (limited, output, records), (rest, rest_output, all_records) = calls[1], calls[2]
    cells = plan_cells(study)
    assert limited.ran == 1 and limited.left == 1 and limited.exit_status == 3
    assert [r["cell_id"] for r in records] == [cells[0].id]
    assert records[0]["resumed_from_steps"] == [3]
    assert records[0]["train_loss"]["step"] == list(range(1, STEPS + 1))  # the whole curve, both sessions
    assert re.search(
        rf"cell 1/2 {cells[0].id} optim.lr=0.001 \.\.\. done, loss \d\.\d{{4}} in \d+s; 1 left, ETA", output
    )
    assert rest.ran == 1 and rest.left == 0 and rest.exit_status == 0
    assert [r["cell_id"] for r in all_records] == [c.id for c in cells]
    assert "cell 2/2" in rest_output and "0 left" in rest_output


def test_records_hold_the_results(swept):
    _, study, calls, _ = swept
    records = calls[-1][2]
    for record, lr in zip(records, (1e-3, 3e-3)):
        assert record["status"] == "ok" and record["values"] == {"optim.lr": lr}
        assert record["overrides"] == [f"optim.lr={lr}"] and record["config"] == "tiny"
        assert record["final_step"] == STEPS and record["final_eval_step"] == STEPS
        assert np.isclose(record["final_eval_loss"], record["eval_loss"]["value"][-1], rtol=1e-5)
        assert record["best_eval_loss"] <= record["final_eval_loss"]
        assert record["metrics"]["update_l2"]["step"] == list(range(1, STEPS + 1))  # dense early phase
        assert record["tokens_per_second"] > 0 and record["wall_s"] > 0
        assert record["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", record["git_commit"])
        assert record["host"]["backend"] == "cpu" and record["host"]["jax"] and record["host"]["cpu"]
        assert re.fullmatch(r"[0-9a-f]{12}", record["host"]["cpu_flags_sha"])
        # Checkpoints of a finished cell are deleted; its metrics.jsonl stays.
        assert not os.path.exists(os.path.join(record["out_dir"], "checkpoints"))
        assert os.path.isfile(os.path.join(record["out_dir"], "metrics.jsonl"))


def test_a_finished_sweep_trains_nothing(swept, monkeypatch, capsys):
    study_file, study, _, _ = swept
    before = Path(study.records_path).read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a recorded cell was trained again")

    monkeypatch.setattr(trainer_lib, "Trainer", no_training)
    assert main(["sweep", study_file]) == 0
    assert "2 cells, 2 recorded, 0 to run" in capsys.readouterr().out
    assert Path(study.records_path).read_text() == before


def test_a_bad_field_fails_before_any_work(text_corpus, data_cache, tmp_path, capsys):
    base = _base(text_corpus, data_cache)
    study_file = _write_study(tmp_path, base, {"optim.lr": [1e-3], "optim.lrr": [1, 2]})
    assert main(["sweep", study_file]) == 2
    error = capsys.readouterr().err
    assert "optim.lrr" in error and "cell 1/2" in error and "did you mean 'optim.lr'" in error
    assert not (tmp_path / "records.jsonl").exists() and not (tmp_path / "runs").exists()
    # A value out of range names the cell and the field too.
    study = Study(name="s", config="tiny", base=base, grid={"optim.warmup_steps": [0, 1000]})
    with pytest.raises(ConfigError, match=r"cell 2/2 \(optim.warmup_steps=1000\).*optim.warmup_steps"):
        plan_cells(study)
    with pytest.raises(ConfigError, match="train.out_dir"):
        plan_cells(Study(name="s", config="tiny", grid={"train.out_dir": ["x"]}))


class _FakeTrainer:
    """Stands in for the trainer: lr 1e-3 raises, any other lr diverges at step 3."""

    def __init__(self, config, quiet=False):
        self.config = config

    def run(self):
        if self.config.optim.lr == 1e-3:
            raise RuntimeError("boom\nin two lines")
        os.makedirs(self.config.train.out_dir, exist_ok=True)
        with open(os.path.join(self.config.train.out_dir, "metrics.jsonl"), "w") as f:
            for step, loss in ((1, 5.0), (2, 4.5), (3, float("nan"))):
                f.write(json.dumps({"step": step, "loss": loss}) + "\n")
        raise FloatingPointError("loss is nan at step 3; stopping")

    def close(self):
        pass


def test_failed_and_diverged_cells_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_lib, "Trainer", _FakeTrainer)
    study = Study(
        name="broken",
        config="tiny",
        grid={"optim.lr": [1e-3, 1.0]},
        records=str(tmp_path / "records.jsonl"),
        runs_dir=str(tmp_path / "runs"),
    )
    result = run_sweep(study, echo=_Echo())
    assert result.exit_status == 0 and result.failed == 1 and result.diverged == 1
    failed, diverged = read_records(study.records_path)
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom in two lines"
    assert "boom" in Path(failed["out_dir"], "error.txt").read_text()
    assert diverged["status"] == "diverged" and diverged["final_step"] == 3
    assert diverged["final_train_loss"] == 4.5 and diverged["final_eval_loss"] is None
    assert diverged["train_loss"]["value"] == [5.0, 4.5, None]
    # Failed cells are recorded: skipped unless retried.
    assert run_sweep(study, echo=_Echo()).ran == 0
    assert run_sweep(study, retry_failed=True, echo=_Echo()).ran == 1
    # Records written with other base overrides are not taken for this study's.
    changed = dataclasses.replace(study, base=["train.steps=30"])
    with pytest.raises(ConfigError, match="another name"):
        run_sweep(changed, echo=_Echo())


def test_report_numbers_equal_the_records(swept, tmp_path):
    """The real records, plus a second seed per learning rate (a copy with another loss), grouped."""
    _, _, calls, _ = swept
    records = calls[-1][2]
    extra = []
    for record, shift in zip(records, (0.25, -0.125)):
        copy = json.loads(json.dumps(record))
        copy["cell_id"] += "-seed1"
        copy["values"]["train.seed"] = 1
        copy["final_eval_loss"] += shift
        extra.append(copy)
    records_file = tmp_path / "records.jsonl"
    records_file.write_text("".join(json.dumps(r) + "\n" for r in [*records, *extra]))
    out = tmp_path / "RESULTS.md"
    paths = write_report(str(records_file), out=str(out), figures_dir=str(tmp_path / "figures"))
    assert paths[0] == str(out)
    assert any(p.endswith("final_loss_vs_lr.png") for p in paths) and any(p.endswith("update_l2.png") for p in paths)
    for path in paths[1:]:
        assert os.path.getsize(path) > 1000
    markdown = out.read_text()
    for record, copy in zip(records, extra):
        losses = [record["final_eval_loss"], copy["final_eval_loss"]]
        lr = record["values"]["optim.lr"]
        expected = (
            f"| {lr} | {np.mean(losses):.4f} ± {np.std(losses, ddof=1):.4f} | "
            f"{min(losses):.4f}–{max(losses):.4f} | {record['best_eval_loss']:.4f} | 2 | 0 | 0 |"
        )
        assert expected in markdown
    assert "![Final validation loss vs learning rate](figures/final_loss_vs_lr.png)" in markdown
    groups = summarize([*records, *extra], ["optim.lr", "train.seed"], "train.seed")
    assert [g.values for g in groups] == [{"optim.lr": 1e-3}, {"optim.lr": 3e-3}]
    # From the study file, through the CLI.
    study_file = swept[0]
    assert main(["report", study_file, "--out", str(tmp_path / "R.md"), "--figures", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "final_loss_vs_lr.png").is_file()
    assert f"{records[0]['final_eval_loss']:.4f}" in (tmp_path / "R.md").read_text()


def test_cells_have_stable_ids_typed_values_and_can_be_selected():
    first = plan_cells(Study(name="s", config="tiny", grid={"optim.lr": ["1e-3"], "train.seed": [0, 1]}))
    second = plan_cells(Study(name="s", config="tiny", grid={"train.seed": [1, 0], "optim.lr": [0.001]}))
    assert {c.id for c in first} == {c.id for c in second}
    assert first[0].values == {"optim.lr": 0.001, "train.seed": 0}
    assert first[0].config.train.out_dir == os.path.join("runs/sweeps", "s", first[0].id)
    assert [c.values["train.seed"] for c in select_cells(first, ["train.seed=1"])] == [1]
    assert len(select_cells(first, ["optim.lr=1e-3"])) == 2
    with pytest.raises(ConfigError, match="no cell of the study sets optim.name"):
        select_cells(first, ["optim.name=adamw"])
    with pytest.raises(ConfigError, match="same values"):
        plan_cells(Study(name="s", config="tiny", grid={"optim.lr": [1e-3, 0.001]}))


def test_subsample_keeps_at_most_200_points_with_the_ends_and_the_early_steps():
    steps = list(range(1, 5001))
    curve = subsample(steps, [float(s) for s in steps])
    assert len(curve["step"]) <= 200
    assert curve["step"][0] == 1 and curve["step"][-1] == 5000
    assert curve["step"][:10] == list(range(1, 11))  # geometric half: dense early
    assert subsample([1, 2], [float("nan"), 1.0]) == {"step": [1, 2], "value": [None, 1.0]}


class _CheckpointingTrainer:
    """Stands in for the trainer: saves a checkpoint folder and a validation loss; a run with
    train.init_from fails, as the real one does, when the source holds no checkpoint."""

    trained: list = []

    def __init__(self, config, quiet=False):
        self.config = config
        start = config.train.init_from
        if start:
            folder = os.path.join(start, "checkpoints")
            if not (os.path.isdir(folder) and os.listdir(folder)):
                raise ConfigError(f"train.init_from={start!r} holds no checkpoint")

    def run(self):
        out = self.config.train.out_dir
        os.makedirs(os.path.join(out, "checkpoints", str(STEPS)), exist_ok=True)
        with open(os.path.join(out, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"step": STEPS, "loss": 5.0, "eval_loss": 5.0 + self.config.optim.lr}) + "\n")
        self.trained.append(os.path.basename(out))
        return trainer_lib.TrainResult(out, STEPS, {STEPS: 5.0}, {STEPS: 5.0}, tokens_per_second=1.0)

    def close(self):
        pass


def test_a_source_cell_keeps_its_checkpoints_and_is_trained_again_when_they_are_lost(tmp_path, monkeypatch):
    """A cell another cell starts from (train.init_from) keeps its checkpoints; on a machine where they
    are gone, the sweep trains it again before the cell that needs them."""
    monkeypatch.setattr(trainer_lib, "Trainer", _CheckpointingTrainer)
    monkeypatch.setattr(_CheckpointingTrainer, "trained", [])
    source = {"optim.lr": 1e-3}
    runs = tmp_path / "runs"
    start = str(runs / "chained" / cell_id(source))
    study = Study(
        name="chained",
        config="tiny",
        cells=[source, {"optim.lr": 2e-3, "train.init_from": start}],
        records=str(tmp_path / "records.jsonl"),
        runs_dir=str(runs),
    )
    assert run_sweep(study, echo=_Echo()).ok == 2
    first_source, dependent = read_records(study.records_path)
    assert os.listdir(Path(start, "checkpoints"))  # kept: the source
    assert not Path(dependent["out_dir"], "checkpoints").exists()  # deleted: an ordinary finished cell

    # Another machine: the records, but no runs; the dependent still to run.
    shutil.rmtree(runs)
    Path(study.records_path).write_text(json.dumps(first_source) + "\n")
    listing = _Echo()
    run_sweep(study, list_only=True, echo=listing)
    assert "to run again" in listing[0] and listing[1].rstrip().endswith(": to run")
    _CheckpointingTrainer.trained.clear()
    result = run_sweep(study, echo=_Echo())
    assert result.ran == 2 and result.ok == 2
    assert _CheckpointingTrainer.trained == [cell_id(source), dependent["cell_id"]]  # the source first
    assert run_sweep(study, echo=_Echo()).ran == 0  # all recorded, the source's checkpoints present
    # With the source's checkpoints gone but nothing left that needs them, nothing is trained again.
    shutil.rmtree(Path(start, "checkpoints"))
    assert run_sweep(study, echo=_Echo()).ran == 0
