"""How the trainer feeds the paper's optimizers: micro-batch statistics under clipping, GI-Adam's
initial gradient, and the refusal of setups an optimizer cannot work with."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from warmup_jax.config import ConfigError, load_config
from warmup_jax.data.loader import TrainLoader
from warmup_jax.model import gpt
from warmup_jax.model.config import ModelConfig
from warmup_jax.optim import recipes as wo_recipes
from warmup_jax.optim.snr import MicroBatchStats
from warmup_jax.train.step import init_train_state, make_mean_gradient, make_train_step
from warmup_jax.train.trainer import Trainer


def _recorder() -> optax.GradientTransformationExtraArgs:
    """Keeps, in its state, the squared norm of the mean gradient and the summed squared norms of the
    micro-batch gradients it was given (the two inputs of the SNR estimator)."""

    def init(params):
        del params
        return (jnp.zeros([]), jnp.zeros([]))

    def update(updates, state, params=None, *, micro_batch_stats: MicroBatchStats, **extra):
        del state, params, extra
        mean_sq = optax.tree.norm(updates, squared=True)
        return optax.tree.zeros_like(updates), (mean_sq, sum(jax.tree.leaves(micro_batch_stats.sum_sq_norms)))

    return optax.GradientTransformationExtraArgs(init, update)


def test_clipping_scales_the_micro_batch_statistics_like_the_mean_gradient():
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32)
    model_def, params = gpt.init_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(1), (4, 2, 9), 0, 32)  # K = 4 micro-batches of 2

    def recorded(clip):
        tx = _recorder()  # the step clips; the optimizer sees the clipped gradient and statistics
        step = jax.jit(make_train_step(model_def, tx, grad_clip=clip))
        new_state, metrics = step(init_train_state(params, tx, 0), tokens)
        mean_sq, sum_sq = new_state.opt_state
        return float(mean_sq), float(sum_sq), float(metrics["grad_norm"])

    mean_sq, sum_sq, grad_norm = recorded(0.0)
    clip = grad_norm / 10  # clips by a factor of 10
    clipped_mean_sq, clipped_sum_sq, _ = recorded(clip)
    np.testing.assert_allclose(clipped_mean_sq, mean_sq / 100, rtol=1e-4)
    np.testing.assert_allclose(clipped_sum_sq, sum_sq / 100, rtol=1e-4)
    # A clip above the gradient norm changes nothing.
    np.testing.assert_allclose(recorded(2 * grad_norm)[1], sum_sq, rtol=1e-6)


def _config(overrides, *extra):
    return load_config(
        "tiny",
        [
            *overrides,
            "train.steps=2",
            "train.eval_interval=0",
            "train.checkpoint_interval=0",
            "metrics.interval=0",
            *extra,
        ],
    )


def test_the_step_reports_how_often_the_spectral_bound_binds():
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32)
    model_def, params = gpt.init_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(1), (1, 4, 9), 0, 32)
    matrices = sum(x.ndim >= 2 for x in jax.tree.leaves(params))

    def reported(threshold):
        tx = wo_recipes.build("adamw_spectral_bound", 1e-2, threshold=threshold)
        _, metrics = jax.jit(make_train_step(model_def, tx))(init_train_state(params, tx, 0), tokens)
        return float(metrics["spectral_bound_fraction"]), float(metrics["spectral_bound_min_scale"])

    assert reported(1e3) == (0.0, 1.0)  # never binds
    fraction, min_scale = reported(1e-6)  # binds on every matrix
    assert fraction == 1.0 and 0.0 < min_scale < 1e-2
    assert matrices >= 4
    _, metrics = jax.jit(make_train_step(model_def, wo_recipes.build("adamw", 1e-2)))(
        init_train_state(params, wo_recipes.build("adamw", 1e-2), 0), tokens
    )
    assert "spectral_bound_fraction" not in metrics  # only with the bound in the optimizer


def test_gi_adam_starts_from_one_gradient_on_a_separate_batch(tiny_overrides):
    trainer = Trainer(_config(tiny_overrides, "optim.name=gi_adam", "optim.grad_clip=0"), quiet=True)
    tc = trainer.config.train
    loader = TrainLoader(
        trainer.data.train_tokens, seq_len=tc.seq_len, global_batch_size=tc.batch_size, seed=tc.seed + 1
    )
    rows = next(loader)
    g0 = jax.jit(make_mean_gradient(trainer.model_def))(
        trainer.state.params, rows.reshape(tc.grad_accum_steps, -1, rows.shape[-1])
    )
    adam_states = [
        s
        for s in jax.tree.leaves(trainer.state.opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    ]
    assert len(adam_states) == 1
    nu = adam_states[0].nu
    jax.tree.map(
        lambda v, g: np.testing.assert_allclose(np.asarray(v), np.square(np.asarray(g)), rtol=1e-4, atol=1e-12), nu, g0
    )
    assert float(optax.tree.norm(nu)) > 0
    # The batch is not the first training batch.
    assert not np.array_equal(rows, next(trainer.loader))
    trainer.close()


def test_gi_adam_trains_and_differs_from_adamw(tiny_overrides, tmp_path):
    gi = Trainer(_config(tiny_overrides, "optim.name=gi_adam", f"train.out_dir={tmp_path / 'gi'}"), quiet=True).run()
    adamw = Trainer(
        _config(tiny_overrides, "optim.name=adamw", f"train.out_dir={tmp_path / 'adamw'}"), quiet=True
    ).run()
    assert all(np.isfinite(v) for v in gi.train_losses.values())
    assert gi.train_losses[max(gi.train_losses)] < gi.train_losses[1]  # it learns
    assert gi.train_losses[1] == adamw.train_losses[1]  # same initial parameters and first batch
    assert gi.train_losses[2] != adamw.train_losses[2]  # a different first update


def test_lion_ar_rrc_needs_gradient_accumulation(tiny_overrides):
    with pytest.raises(ConfigError, match=r"train.grad_accum_steps=1.*lion_ar_rrc.*>= 2"):
        Trainer(_config(tiny_overrides, "optim.name=lion_ar_rrc", "train.grad_accum_steps=1"), quiet=True)


def _rotational_moves(trainer: Trainer, start) -> dict[str, float]:
    """Norm of the parameter change of every Dense kernel since ``start``."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(trainer.state.params))[0]
    flat0 = dict(jax.tree_util.tree_flatten_with_path(start)[0])
    return {
        jax.tree_util.keystr(path): float(np.linalg.norm(np.asarray(leaf) - np.asarray(flat0[path])))
        for path, leaf in flat
        if jax.tree_util.keystr(path).endswith("['kernel']")
    }


def test_lion_ar_rrc_trains_with_gradient_accumulation_and_its_factor_acts(tiny_overrides, tmp_path):
    from warmup_jax.optim.snr import SNRState

    overrides = ("train.grad_accum_steps=2", "train.batch_size=16", "train.steps=6", "train.checkpoint_interval=0")
    runs = {}
    for name in ("lion_ar_rrc", "lion_ar"):
        trainer = Trainer(
            _config(tiny_overrides, f"optim.name={name}", *overrides, f"train.out_dir={tmp_path / name}"), quiet=True
        )
        start = jax.device_get(trainer.state.params)
        result = trainer.run()
        assert all(np.isfinite(v) for v in result.train_losses.values())
        runs[name] = (trainer, _rotational_moves(trainer, start))
    trainer, moves_rrc = runs["lion_ar_rrc"]
    # The SNR estimate was updated on every step (K = 2 micro-batches each) ...
    snr_states = [x for x in jax.tree.leaves(trainer.state.opt_state, is_leaf=lambda x: isinstance(x, SNRState))
                  if isinstance(x, SNRState)]  # fmt: skip
    assert len(snr_states) == 1 and int(snr_states[0].count) == 6
    assert all(float(v) > 0 for v in jax.tree.leaves(snr_states[0].noise))
    # ... and the factor f = 1/sqrt(1 + B phi) <= 1 shortened the rotations of every kernel.
    moves_plain = runs["lion_ar"][1]
    assert moves_rrc.keys() == moves_plain.keys() and moves_rrc
    for path in moves_rrc:
        assert moves_rrc[path] < moves_plain[path], path


@pytest.mark.parametrize("name", ["lion_ar", "adamw", "adamw_spectral_bound"])
def test_scanned_layers_train_like_looped_layers(tiny_overrides, tmp_path, name):
    """Stacked blocks must not change the optimizer's parameter groups or neurons: a LayerNorm gain of
    shape (L, d) stays a no-decay vector, a kernel (L, in, out) rotates per layer and column, and the
    spectral bound holds each layer's matrix on its own."""
    moves, losses = {}, {}
    for scan in (False, True):
        cfg = _config(
            tiny_overrides,
            f"optim.name={name}",
            "train.steps=3",
            f"model.scan_layers={str(scan).lower()}",
            f"train.out_dir={tmp_path / str(scan)}",
        )
        trainer = Trainer(cfg, quiet=True)
        start = jax.device_get(trainer.state.params)
        losses[scan] = trainer.run().train_losses
        end = jax.device_get(trainer.state.params)
        if not scan:
            start, end = gpt.stack_blocks(start), gpt.stack_blocks(end)
        # How far every tensor moved, per layer for the blocks.
        moves[scan] = jax.tree.map(
            lambda a, b: np.sqrt(
                np.sum(np.square(b - a), axis=tuple(range(1, a.ndim))) if a.ndim > 1 else np.linalg.norm(b - a)
            ),
            start,
            end,
        )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3), moves[True], moves[False])
    for step in (1, 2, 3):
        np.testing.assert_allclose(losses[True][step], losses[False][step], rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "hparams", "expected"),
    [
        ("adamw", (), 0.9),
        ("lion_ar_fast_momentum", (), 0.98**2),  # Nesterov: the old momentum's weight is beta^2
        ("lion_a_fast_momentum", ("optim.hparams.beta=0.95", "optim.hparams.nesterov=false"), 0.95),
    ],
)
def test_momentum_metrics_take_beta_from_the_optimizer(tiny_overrides, name, hparams, expected):
    trainer = Trainer(_config(tiny_overrides, f"optim.name={name}", *hparams), quiet=True)
    try:
        assert trainer.metrics_config.momentum_beta == pytest.approx(expected, rel=1e-12)
    finally:
        trainer.close()


def test_catapult_refuses_optimizers_whose_first_step_is_not_plain(tiny_overrides):
    for name in ("gi_adam", "lion_ar_rrc"):
        with pytest.raises(ConfigError, match=f"catapult_init_lr=true.*'{name}'"):
            Trainer(
                _config(
                    tiny_overrides,
                    f"optim.name={name}",
                    "optim.catapult_init_lr=true",
                    "optim.warmup_steps=1",
                    "train.grad_accum_steps=2",
                    "train.batch_size=16",
                ),
                quiet=True,
            )


def test_catapult_starts_the_warmup_at_eta_c_and_a_resume_keeps_it(tiny_overrides, tmp_path):
    """The warmup starts at min(eta_c, peak): eta_c's trial step raises the probe batch's loss and the
    step at eta_c / 2 does not; a resumed run reads eta_c back from the run folder."""
    from warmup_jax.train.step import make_loss_fn
    from warmup_jax.train.trainer import CATAPULT_FILE

    peak = 10.0  # above eta_c, so that the warmup starts at eta_c itself
    overrides = (f"optim.lr={peak}", "optim.catapult_init_lr=true", "optim.warmup_steps=2", "train.steps=4")
    trainer = Trainer(_config(tiny_overrides, *overrides, f"train.out_dir={tmp_path / 'run'}"), quiet=True)
    recorded = json.loads((tmp_path / "run" / CATAPULT_FILE).read_text())
    eta_c = recorded["eta_c"]
    assert 0 < eta_c < peak and recorded["warmup_init_lr"] == eta_c
    assert float(trainer.schedule(0)) == pytest.approx(eta_c) and float(trainer.schedule(2)) == peak

    params = jax.device_get(trainer.state.params)  # the initial parameters
    tokens = trainer._probe_batch()
    loss = make_loss_fn(trainer.model_def, 0.0)
    probe = lambda p: jnp.mean(jax.lax.map(lambda t: loss(p, t, None), tokens))  # noqa: E731

    def after_one_step(lr):
        clip = trainer.config.optim.grad_clip  # clipped like training
        tx = (
            optax.chain(optax.clip_by_global_norm(clip), wo_recipes.build("adamw", lr))
            if clip
            else wo_recipes.build("adamw", lr)
        )
        updates, _ = tx.update(jax.grad(probe)(params), tx.init(params), params)
        return float(probe(optax.apply_updates(params, updates)))

    start = float(probe(params))
    assert after_one_step(eta_c) > start >= after_one_step(eta_c / 2)

    trainer.run(until_step=1)
    (tmp_path / "run" / CATAPULT_FILE).write_text(json.dumps({"eta_c": 0.125}))
    resumed = Trainer(
        _config(tiny_overrides, *overrides, f"train.out_dir={tmp_path / 'run'}", "train.resume=true"), quiet=True
    )
    assert float(resumed.schedule(0)) == 0.125
