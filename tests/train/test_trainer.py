"""The training loop: sharding equivalence, bit-exact resume, SIGTERM, the CLI smoke run."""

import json
import os
import signal

import jax
import numpy as np
import optax

from warmup_jax.config import load_config
from warmup_jax.model import gpt
from warmup_jax.model.config import ModelConfig
from warmup_jax.train import mesh as mesh_lib
from warmup_jax.train.step import init_train_state, make_train_step
from warmup_jax.train.trainer import Trainer


def test_sharded_step_equals_single_device_step():
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    model_def, params = gpt.init_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(1), (2, 8, 17), 0, 64)  # K=2 micro-batches of 8
    tx = optax.sgd(1.0)  # update = -gradient, so new params expose the gradient exactly

    def run(mesh):
        state = init_train_state(params, tx, 0)
        shardings = mesh_lib.state_shardings(state, mesh)
        step = jax.jit(
            make_train_step(model_def, tx),
            in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
            out_shardings=(shardings, mesh_lib.replicated(mesh)),
        )
        new_state, metrics = step(
            jax.device_put(state, shardings), jax.device_put(tokens, mesh_lib.batch_sharding(mesh))
        )
        grads = jax.tree_util.tree_map(lambda new, old: old - new, new_state.params, params)
        return float(metrics["loss"]), grads, new_state

    single_loss, single_grads, _ = run(mesh_lib.make_mesh(1, jax.devices()[:1]))
    mesh = mesh_lib.make_mesh(fsdp=2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
    sharded_loss, sharded_grads, sharded_state = run(mesh)
    # The big kernels really are split over the fsdp axis.
    qkv = sharded_state.params["blocks"]["0"]["attn"]["qkv"]["kernel"]
    assert "fsdp" in str(qkv.sharding.spec)
    np.testing.assert_allclose(sharded_loss, single_loss, rtol=1e-5)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7),
        sharded_grads,
        single_grads,
    )


def _config(overrides, *extra):
    return load_config(
        "tiny",
        [
            *overrides,
            "train.steps=6",
            "train.eval_interval=0",
            "train.log_interval=1",
            "train.checkpoint_interval=0",
            *extra,
        ],
    )


def test_resume_continues_bit_exactly(tiny_overrides, tmp_path):
    uninterrupted = Trainer(_config(tiny_overrides, f"train.out_dir={tmp_path / 'a'}")).run()

    first = Trainer(_config(tiny_overrides, f"train.out_dir={tmp_path / 'b'}")).run(until_step=3)
    assert first.interrupted and first.final_step == 3
    resumed = Trainer(_config(tiny_overrides, f"train.out_dir={tmp_path / 'b'}", "train.resume=true")).run()
    assert sorted(resumed.train_losses) == [4, 5, 6]
    for step in (4, 5, 6):
        assert resumed.train_losses[step] == uninterrupted.train_losses[step]  # bit-exact
    assert resumed.eval_losses[6] == uninterrupted.eval_losses[6]


def test_sigterm_saves_a_checkpoint_and_stops(tiny_overrides, tmp_path):
    trainer = Trainer(_config(tiny_overrides))
    step_fn = trainer.train_step
    calls = []

    def step_then_signal(state, batch):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step_fn(state, batch)

    trainer.train_step = step_then_signal
    result = trainer.run()
    assert result.interrupted and result.final_step == 2
    assert trainer.checkpointer.latest_step() == 2


def test_cli_smoke_run_writes_logs_and_checkpoint(tiny_overrides, tmp_path, capsys):
    from warmup_jax.cli import main

    out = tmp_path / "run"
    assert main(["train", "--config", "tiny", *sum((["--set", o] for o in tiny_overrides), [])]) == 0
    assert "validation loss" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    assert [x["step"] for x in train_lines] == list(range(1, 21))
    assert train_lines[-1]["loss"] < train_lines[0]["loss"]
    assert any("eval_loss" in x for x in lines)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "tensorboard"))
    assert sorted(os.listdir(out / "checkpoints")) == ["10", "20"]
