"""Checkpoint integrity: array fingerprints and item digests recorded at save, verified at restore;
a corrupt newest checkpoint falls back to the newest that verifies, and says so."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from warmup_jax.config import load_config
from warmup_jax.errors import CheckpointError
from warmup_jax.train.checkpoint import array_fingerprints
from warmup_jax.train.trainer import Trainer


def test_fingerprints_see_one_bit_and_a_swap_and_not_the_layout():
    x = jnp.arange(1280, dtype=jnp.float32).reshape(10, 128) / 7
    base = array_fingerprints({"x": x})
    flipped = np.asarray(x).copy().view(np.uint32)
    flipped[3, 41] ^= 1 << 9
    assert array_fingerprints({"x": jnp.asarray(flipped.view(np.float32))}) != base
    swapped = np.asarray(x).copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert array_fingerprints({"x": jnp.asarray(swapped)}) != base
    mesh = jax.make_mesh((8,), ("d",))
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "d")))
    assert array_fingerprints({"x": sharded}) == base  # the same array on 8 devices: the same value
    assert array_fingerprints({"x": x.astype(jnp.bfloat16)}) != array_fingerprints({"x": x})


def _state_files(step_dir):
    for root, _, files in os.walk(step_dir / "state"):
        if "ocdbt.process" in root and "/d" in root:
            yield from (os.path.join(root, name) for name in files)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_newest_that_verifies(tiny_overrides, tmp_path, capsys):
    overrides = [*tiny_overrides, "train.steps=6", "train.eval_interval=0", "train.checkpoint_interval=2"]
    overrides += ["train.keep_checkpoints=3"]
    Trainer(load_config("tiny", overrides)).run(until_step=4)
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(os.listdir(ckpt)) == ["2", "4"]
    # One byte flipped in the middle of each data file of step 4: a read that still succeeds.
    for path in _state_files(ckpt / "4"):
        data = bytearray(Path(path).read_bytes())
        data[len(data) // 2] ^= 0x10
        Path(path).write_bytes(bytes(data))
    trainer = Trainer(load_config("tiny", [*overrides, "train.resume=true"]))
    err = capsys.readouterr().err
    assert "fails its integrity check" in err or "cannot be read" in err, err
    assert "resumed from step 2, the newest checkpoint that verifies" in err
    assert int(trainer.state.step) == 2
    trainer.close()


def test_an_edited_iterator_step_is_refused(tiny_overrides, tmp_path, capsys):
    overrides = [*tiny_overrides, "train.steps=4", "train.eval_interval=0", "train.checkpoint_interval=2"]
    Trainer(load_config("tiny", overrides)).run(until_step=2)
    data = tmp_path / "run" / "checkpoints" / "2" / "data" / "metadata"
    state = json.loads(data.read_text())
    state["step"] = 1
    data.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="its data item was changed after it was saved"):
        Trainer(load_config("tiny", [*overrides, "train.resume=true"]))
