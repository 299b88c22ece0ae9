"""A non-finite step never reaches a checkpoint: ``train.on_nonfinite`` stops (naming the step and
the last good checkpoint) or skips the update."""

import jax
import numpy as np
import pytest

from warmup_jax.config import load_config
from warmup_jax.train.checkpoint import Checkpointer
from warmup_jax.train.trainer import Trainer

from ._cli import metrics_lines, train_tiny

# lr 1e30: the first update overflows the parameters while its loss is still finite.
EXPLODE = [
    "optim.lr=1e30",
    "optim.grad_clip=0",
    "train.steps=6",
    "train.checkpoint_interval=1",
    "train.eval_interval=0",
]


def test_stop_writes_no_checkpoint_of_a_non_finite_state(tiny_overrides, tmp_path, capsys):
    # A 3-step warmup from 0: step 1 has LR 0 (a finite no-op, checkpointed), step 2 overflows.
    assert train_tiny(tiny_overrides + EXPLODE + ["optim.warmup_steps=3"]) == 1
    err = capsys.readouterr().err
    assert "the training state became non-finite at step 2" in err, err
    assert "the last good checkpoint is step 1" in err
    assert "Traceback" not in err
    assert Checkpointer(str(tmp_path / "run" / "checkpoints")).latest_step() == 1
    lines = metrics_lines(tmp_path / "run")
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]  # the bad step is logged


def test_skip_keeps_the_old_state_and_counts_the_skips(tiny_overrides, tmp_path):
    overrides = tiny_overrides + EXPLODE + ["train.on_nonfinite=skip", "train.max_skipped_steps=3"]
    config = load_config("tiny", overrides)
    trainer = Trainer(config, quiet=True)
    before = [np.asarray(x).copy() for x in jax.tree_util.tree_leaves(trainer.state.params)]
    with pytest.raises(FloatingPointError, match="4 steps in a row were non-finite at step 4"):
        trainer.run()
    after = [np.asarray(x) for x in jax.tree_util.tree_leaves(trainer.state.params)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # no update was applied
    lines = metrics_lines(tmp_path / "run")
    assert [line["step"] for line in lines if line.get("skipped")] == [1, 2, 3, 4]
    # The checkpoints of the skipped steps hold the (finite) initial parameters, never the overflow.
    assert Checkpointer(str(tmp_path / "run" / "checkpoints")).latest_step() == 3
