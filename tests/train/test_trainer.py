"""The train step (clipping once, update metrics named up front) and the training loop: sharding
equivalence, bit-exact resume, SIGTERM, the CLI smoke run."""

import json
import os
import signal

import jax
import numpy as np
import optax
import pytest

from warmup_jax.config import MetricsConfig, OptimConfig, load_config
from warmup_jax.metrics import update as update_lib
from warmup_jax.model import gpt
from warmup_jax.model.config import ModelConfig
from warmup_jax.optim.snr import MicroBatchStats, global_norm_clip_factor, rescale_micro_batch_stats
from warmup_jax.train import mesh as mesh_lib
from warmup_jax.train.optimizer import build_optimizer
from warmup_jax.train.step import init_train_state, make_loss_fn, make_train_step, pack_update_metrics
from warmup_jax.train.trainer import Trainer

SMALL = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32)
CLIP = 0.3  # below the gradient norms of SMALL's first steps, so that clipping acts


def _batches(n, key=1):
    return [jax.random.randint(k, (2, 4, 9), 0, 32) for k in jax.random.split(jax.random.key(key), n)]


def _mean_gradient_and_stats(loss_fn, params, tokens_KxbxT1):
    """The mean gradient over the K micro-batches, and their per-tensor squared-norm sums."""
    grads = [jax.grad(loss_fn)(params, tokens, None) for tokens in tokens_KxbxT1]
    mean = jax.tree.map(lambda *g: sum(g) / len(g), *grads)
    sq = [update_lib.sq_norms(g) for g in grads]
    stats = MicroBatchStats({p: sum(s[p] for s in sq) for p in sq[0]}, len(grads), tokens_KxbxT1.shape[1])
    return mean, stats


@pytest.mark.parametrize("name", ["adamw", "lion_ar_rrc"])
def test_step_clips_once_as_a_clipping_chain_did(name):
    """The step clips the gradient itself (the optimizer gets an unclipped tx); the trajectory is the
    one of the former set-up, optax.chain(clip_by_global_norm, tx) with the micro-batch statistics
    rescaled by the clip factor (built here explicitly)."""
    model_def, params = gpt.init_params(SMALL, 0)
    tx = build_optimizer(OptimConfig(name=name, lr=3e-3, grad_clip=0.0), 3e-3)
    chained = optax.chain(optax.clip_by_global_norm(CLIP), tx)
    loss_fn = make_loss_fn(model_def, 0.0)

    @jax.jit
    def reference_step(params, opt_state, tokens_KxbxT1):
        mean, stats = _mean_gradient_and_stats(loss_fn, params, tokens_KxbxT1)
        stats = rescale_micro_batch_stats(stats, global_norm_clip_factor(mean, CLIP))
        updates, opt_state = chained.update(mean, opt_state, params, micro_batch_stats=stats)
        return optax.apply_updates(params, updates), opt_state, optax.tree.norm(mean)

    step = jax.jit(make_train_step(model_def, tx, grad_clip=CLIP))
    state = init_train_state(params, tx, 0)
    ref_params, ref_opt_state = params, chained.init(params)
    for tokens in _batches(5):
        ref_params, ref_opt_state, ref_norm = reference_step(ref_params, ref_opt_state, tokens)
        state, out = step(state, tokens)
        np.testing.assert_allclose(out["grad_norm"], ref_norm, rtol=1e-5)  # the norm before clipping
        assert float(ref_norm) > CLIP
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.params, ref_params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.opt_state, ref_opt_state[1]
        )


def test_update_metrics_are_named_up_front_and_see_the_clipped_gradient():
    """``metrics["update_metrics"]`` is a dict (zeros when not due); pack_update_metrics names the
    packed vector from jax.eval_shape, without a name list filled while tracing. The metrics get the
    clipped gradient: every value is the one of the unclipped gradient with ``grad_clip`` (the
    former call) except the SNR's signal and noise, which describe the clipped gradients (x c^2)."""
    model_def, params = gpt.init_params(SMALL, 0)
    tx = optax.adamw(3e-3)
    step = make_train_step(
        model_def, tx, metrics=MetricsConfig(interval=2, dense_until_step=0, rrc_tokens=0), grad_clip=CLIP
    )
    assert not hasattr(step, "metric_names")
    packed_step, metric_names = pack_update_metrics(step)
    state = init_train_state(params, tx, 0)
    batches = _batches(2)
    names = metric_names(state, batches[0])
    assert len(names) > 50 and list(names) == sorted(names) and "snr/global" in names

    _, abstract_out = jax.eval_shape(step, state, batches[0])
    assert isinstance(abstract_out["update_metrics"], dict) and sorted(abstract_out["update_metrics"]) == list(names)

    packed_step = jax.jit(packed_step)
    state1, out1 = packed_step(state, batches[0])
    assert out1["update_metrics"].shape == (len(names),)
    assert not np.any(out1["update_metrics"])  # step 1: not due, zeros
    state2, out2 = packed_step(state1, batches[1])
    values = dict(zip(names, np.asarray(out2["update_metrics"]).tolist()))

    mean, stats = _mean_gradient_and_stats(make_loss_fn(model_def, 0.0), state1.params, batches[1])
    expected = update_lib.update_metrics(
        state1.params,
        state2.params,
        grads=mean,
        micro_batch_stats=stats,
        first_moment=update_lib.find_first_moment(state1.opt_state, state1.params),
        momentum_beta=0.9,
        grad_clip=CLIP,
    )
    assert sorted(expected) == list(names)
    c2 = float(global_norm_clip_factor(mean, CLIP)) ** 2
    assert c2 < 1
    for name in names:
        scale = c2 if name in ("snr_noise/global", "snr_signal/global") else 1.0
        np.testing.assert_allclose(values[name], scale * float(expected[name]), rtol=2e-4, atol=1e-7, err_msg=name)


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


# The spectral bound's state (power-iteration vectors, with empty nodes for vectors) must checkpoint too.
@pytest.mark.parametrize("optimizer", ["adamw", "adamw_spectral_bound"])
def test_resume_continues_bit_exactly(tiny_overrides, tmp_path, optimizer):
    name = f"optim.name={optimizer}"
    uninterrupted = Trainer(_config(tiny_overrides, name, f"train.out_dir={tmp_path / 'a'}")).run()

    first = Trainer(_config(tiny_overrides, name, f"train.out_dir={tmp_path / 'b'}")).run(until_step=3)
    assert first.interrupted and first.final_step == 3
    resumed = Trainer(_config(tiny_overrides, name, f"train.out_dir={tmp_path / 'b'}", "train.resume=true")).run()
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


def test_ctrl_c_saves_a_checkpoint_and_stops_like_sigterm(tiny_overrides, tmp_path):
    trainer = Trainer(_config(tiny_overrides))
    step_fn = trainer.train_step
    calls = []

    def step_then_interrupt(state, batch):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: no KeyboardInterrupt, a checkpoint at the boundary
        return step_fn(state, batch)

    trainer.train_step = step_then_interrupt
    result = trainer.run()
    assert result.interrupted and result.interrupted_by == "SIGINT" and result.final_step == 3
    assert trainer.checkpointer.latest_step() == 3


def test_a_signal_during_start_up_is_kept(tiny_overrides, tmp_path):
    """The command line installs its handlers first: SIGTERM while the trainer is being built (data,
    model, compilation) ends in a checkpoint of step 0 and exit status 143, not in a lost start-up."""
    from warmup_jax import cli
    from warmup_jax.train import trainer as trainer_lib

    built = trainer_lib.Trainer.__init__

    def build_then_signal(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the trainer is being set up
        built(self, *args, **kwargs)

    trainer_lib.Trainer.__init__ = build_then_signal
    try:
        status = cli.main(["train", "--config", "tiny", *sum((["--set", o] for o in tiny_overrides), [])])
    finally:
        trainer_lib.Trainer.__init__ = built
    assert status == 143
    assert os.listdir(tmp_path / "run" / "checkpoints") == ["0"]
    resumed = Trainer(load_config("tiny", [*tiny_overrides, "train.resume=true"])).run()  # goes on from there
    assert not resumed.interrupted and resumed.final_step == 20


def test_resume_refuses_a_changed_trajectory_unless_allowed(tiny_overrides, tmp_path, capsys):
    """One run, resumed four ways: a changed trajectory is refused (every change listed); changes
    of how it reports are free; allowed changes are logged; the log lines of the steps trained
    again after a kill are dropped; a finished run says so."""
    from warmup_jax.cli import main

    def cli(*extra):
        return main(["train", "--config", "tiny", *sum((["--set", o] for o in [*tiny_overrides, *extra]), [])])

    base = ["train.steps=8", "train.eval_interval=0", "train.checkpoint_interval=4"]
    Trainer(load_config("tiny", [*tiny_overrides, *base])).run(until_step=4)
    capsys.readouterr()
    # an omitted --set (the LR reverts) and a longer schedule: refused, every change listed
    assert cli("train.eval_interval=0", "train.checkpoint_interval=4", "optim.lr=0.01", "train.resume=true") == 2
    err = capsys.readouterr().err
    assert "optim.lr: 0.003 -> 0.01" in err and "train.steps: 8 -> 20" in err, err
    # what a killed run leaves: log lines past its checkpoint, a torn last one
    log = tmp_path / "run" / "metrics.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + json.dumps({"step": 6, "loss": 1.0}) + '\n{"step": 7')
    # a changed LR, allowed, and a changed log interval (free): resumed to the end
    assert (
        cli(*base, "optim.lr=0.01", "train.log_interval=1", "train.resume=true", "train.allow_config_change=true") == 0
    )
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == list(range(1, 9))  # one line per step
    assert [x["config_change"] for x in lines if "config_change" in x] == ["optim.lr: 0.003 -> 0.01"]
    assert cli(*base, "optim.lr=0.01", "train.resume=true") == 0  # resuming a finished run says so
    assert "already finished at step 8" in capsys.readouterr().out
