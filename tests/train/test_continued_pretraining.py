"""Continued pre-training: training on one part of a corpus (data.num_parts, data.part), starting a
run from another run's parameters (train.init_from), and the validation loss of every part."""

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from warmup_jax.config import ConfigError, load_config
from warmup_jax.data.tokens import PreparedData, select_part, stream_parts
from warmup_jax.errors import CheckpointError
from warmup_jax.sweep.runner import _results
from warmup_jax.train.trainer import Trainer


def test_a_stream_is_cut_into_contiguous_parts_of_equal_length():
    tokens = np.arange(103)
    parts = stream_parts(tokens, 4)
    assert [len(p) for p in parts] in ([26, 26, 25, 26], [26, 25, 26, 26], [25, 26, 26, 26], [26, 26, 26, 25])
    np.testing.assert_array_equal(np.concatenate(parts), tokens)  # nothing lost, nothing repeated
    assert stream_parts(tokens, 1)[0] is not None and len(stream_parts(tokens, 1)[0]) == 103


def test_a_part_takes_the_same_fraction_of_both_streams():
    data = PreparedData(None, 10, np.arange(1000), np.arange(100) + 5000, "corpus: 1k train tokens\nmore")
    part = select_part(data, 1, 4)
    np.testing.assert_array_equal(part.train_tokens, np.arange(250, 500))
    np.testing.assert_array_equal(part.val_tokens, np.arange(5025, 5050))
    assert len(part.val_parts) == 4 and part.val_parts[1] is part.val_tokens
    assert "part 1 of 4" in part.description.splitlines()[0]
    assert part.description.splitlines()[1] == "more"
    assert select_part(data, 0, 1) is data


def _config(overrides, out_dir, *extra):
    return load_config(
        "tiny",
        [
            *overrides,
            f"train.out_dir={out_dir}",
            "train.steps=3",
            "train.eval_interval=0",
            "train.eval_batches=2",
            "train.checkpoint_interval=0",
            "metrics.interval=0",
            "data.num_parts=2",
            *extra,
        ],
    )


@pytest.fixture
def first_run(tiny_overrides, tmp_path):
    """A finished 3-step run on part 0 of 2; its folder."""
    out = tmp_path / "first"
    Trainer(_config(tiny_overrides, out, "data.part=0")).run()
    return out


def test_a_run_starts_from_the_parameters_of_another_and_reports_every_part(tiny_overrides, tmp_path, first_run):
    source = Trainer(_config(tiny_overrides, first_run, "data.part=0", "train.resume=true"), quiet=True)
    saved_params = jax.device_get(source.state.params)  # what the finished run saved
    source.close()

    second = Trainer(_config(tiny_overrides, tmp_path / "second", "data.part=1", f"train.init_from={first_run}"))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(second.state.params), saved_params)
    assert int(second.state.step) == 0  # a new run: its own step count, schedule and optimizer state
    fresh = Trainer(_config(tiny_overrides, tmp_path / "fresh", "data.part=1"), quiet=True)
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(fresh.state.params)[0]), np.asarray(jax.tree.leaves(second.state.params)[0])
    )
    fresh.close()
    second.run()

    lines = [json.loads(line) for line in (tmp_path / "second" / "metrics.jsonl").read_text().splitlines()]
    final = [line for line in lines if "eval_loss" in line][-1]
    assert final["eval_loss"] == final["eval_loss_part1"]  # the run's own part
    assert np.isfinite(final["eval_loss_part0"]) and final["eval_loss_part0"] != final["eval_loss_part1"]
    record = _results(str(tmp_path / "second"), num_parts=2)
    assert record["final_eval_loss_by_part"] == [final["eval_loss_part0"], final["eval_loss_part1"]]
    # the curves keep 6 significant digits; the final values are exact
    assert [c["value"][-1] for c in record["eval_loss_by_part"]] == pytest.approx(
        record["final_eval_loss_by_part"], rel=1e-5
    )
    assert "final_eval_loss_by_part" not in _results(str(tmp_path / "second"))


def test_init_from_refuses_a_folder_without_checkpoints_or_another_model(tiny_overrides, tmp_path, first_run):
    with pytest.raises(ConfigError, match=r"train.init_from=.*holds no checkpoint"):
        Trainer(_config(tiny_overrides, tmp_path / "a", f"train.init_from={tmp_path / 'nothing'}"), quiet=True)
    with pytest.raises(ConfigError, match=r"train.init_from=.*does not fit this one \(.*"):
        Trainer(_config(tiny_overrides, tmp_path / "b", f"train.init_from={first_run}", "model.n_embd=32"), quiet=True)
    with pytest.raises(ConfigError, match="catapult_init_lr=true with train.init_from"):
        _config(
            tiny_overrides,
            tmp_path / "c",
            f"train.init_from={first_run}",
            "optim.catapult_init_lr=true",
            "optim.warmup_steps=1",
        ).validate()


def test_init_from_takes_the_newest_checkpoint_that_verifies(tiny_overrides, tmp_path, capsys):
    source = tmp_path / "source"
    extra = ("data.part=0", "train.checkpoint_interval=1", "train.keep_checkpoints=3")
    Trainer(_config(tiny_overrides, source, *extra)).run()
    for path in _state_files(source / "checkpoints" / "3"):  # one byte flipped in each data file
        data = bytearray(Path(path).read_bytes())
        data[len(data) // 2] ^= 0x10
        Path(path).write_bytes(bytes(data))
    second = Trainer(_config(tiny_overrides, tmp_path / "second", f"train.init_from={source}"), quiet=True)
    assert "warning: skipped checkpoint" in capsys.readouterr().err
    resumed = Trainer(_config(tiny_overrides, source, *extra, "train.resume=true"), quiet=True)  # falls back too
    assert int(resumed.state.step) == 2
    jax.tree.map(
        np.testing.assert_array_equal, jax.device_get(second.state.params), jax.device_get(resumed.state.params)
    )
    second.close()
    resumed.close()
    for path in _state_files(source / "checkpoints" / "2"):
        Path(path).write_bytes(b"")
    for path in _state_files(source / "checkpoints" / "1"):
        Path(path).write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint there verifies"):
        Trainer(_config(tiny_overrides, tmp_path / "third", f"train.init_from={source}"), quiet=True)


def _state_files(step_dir):
    for root, _, files in os.walk(step_dir / "state"):
        if "ocdbt.process" in root and "/d" in root:
            yield from (os.path.join(root, name) for name in files)
