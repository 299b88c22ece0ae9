"""The training loop: set up (or resume), step, evaluate, log, checkpoint.

``train(config)`` is the library entry point behind ``warmup-jax train``. Everything is checked
before any work starts (config, devices, out_dir, checkpoint compatibility). Metrics of step t
are copied to the host only after step t+1 has been dispatched, so the device never waits for
logging. With ``metrics.interval`` (or a dense early phase) the per-layer update metrics of
:mod:`warmup_jax.metrics` are computed inside the step on the due steps and logged with the loss.
A checkpoint is written every ``train.checkpoint_interval`` steps, at the end, and on
SIGTERM (then the run stops with exit status 143 from the CLI).

Logged tokens/s and MFU count training steps only (:class:`warmup_jax.model.flops.ThroughputMeter`):
a step's time runs from the moment the previous step's metrics reached the host to the moment its
own did; the first step, steps compiled for a new batch shape, evaluations and checkpoint saves
are left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from warmup_jax import data as data_lib
from warmup_jax.config import Config, ConfigError
from warmup_jax.data._cache import write_json_atomic
from warmup_jax.data.loader import SeqLenWarmup, TrainLoader, eval_batches
from warmup_jax.errors import CheckpointError, CorruptCheckpointError, NonFiniteError
from warmup_jax.metrics.update import metrics_due
from warmup_jax.model import gpt
from warmup_jax.model.flops import ThroughputMeter, flops_per_token, peak_flops_per_device
from warmup_jax.optim import find_catapult_lr, gi_adam_init, recipes
from warmup_jax.train import mesh as mesh_lib
from warmup_jax.train.checkpoint import Checkpointer, abstract_like, config_dict
from warmup_jax.train.logger import MetricLogger, Progress
from warmup_jax.train.optimizer import (
    build_optimizer,
    build_schedule,
    check_optimizer_config,
    check_optimizer_fits_training,
    momentum_coefficient,
    needs_initial_gradient,
)
from warmup_jax.train.run_lock import RunLock
from warmup_jax.train.signals import StopFlag
from warmup_jax.train.step import (
    TrainState,
    clip_by_global_norm,
    init_train_state,
    make_eval_step,
    make_loss_fn,
    make_mean_gradient,
    make_train_step,
    pack_update_metrics,
)

CONFIG_FILE = "config.json"  # the run's resolved config, in the run folder
CATAPULT_FILE = "catapult_lr.json"  # eta_c of optim.catapult_init_lr, in the run folder


@dataclasses.dataclass
class TrainResult:
    out_dir: str
    final_step: int
    train_losses: dict[int, float]  # step (1-based: after that many updates) -> loss of that update
    eval_losses: dict[int, float]
    interrupted: bool = False
    interrupted_by: str | None = None  # "SIGINT" or "SIGTERM"
    # Over all measured training steps of this run (see the module docstring); NaN if none was measured.
    tokens_per_second: float = float("nan")
    mfu: float = float("nan")
    peak_flops_per_device: float = float("nan")
    peak_flops_source: str = ""


def resolve_vocab(config: Config, vocab_size: int) -> Config:
    if config.model.vocab_size == 0:
        return dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=vocab_size))
    if config.model.vocab_size < vocab_size:
        raise ConfigError(
            f"model.vocab_size={config.model.vocab_size} is smaller than the tokenizer's {vocab_size} tokens; "
            f"allowed: 0 (take it from the tokenizer) or >= {vocab_size}"
        )
    return config


class Trainer:
    """Holds everything a run needs; ``run()`` trains. Build with :meth:`from_config`."""

    def __init__(self, config: Config, *, quiet: bool = False):
        config.validate(num_devices=jax.device_count(), process_count=jax.process_count())
        if jax.default_backend() == "cpu" and "float16" in (config.model.compute_dtype, config.model.param_dtype):
            raise ConfigError(
                "model.compute_dtype / model.param_dtype 'float16' is not supported on CPU (XLA's CPU dot "
                "products refuse it); allowed there: 'float32' or 'bfloat16'"
            )
        check_optimizer_config(config.optim)
        check_optimizer_fits_training(config.optim, config.train)
        tc = config.train
        self.is_main = jax.process_index() == 0
        # One run per folder (the main process holds the lock; the folder must be writable).
        self.run_lock = RunLock(tc.out_dir).acquire() if self.is_main else None
        try:
            self.checkpointer = Checkpointer(os.path.join(tc.out_dir, "checkpoints"), keep=tc.keep_checkpoints)
        except BaseException:
            self._release_lock()
            raise
        try:
            self._set_up(config, quiet)
        except BaseException:
            self.checkpointer.close()  # nothing of a run that never started stays open
            self._release_lock()
            raise

    def _check_resume(self, step: int) -> None:
        """The config may continue the run saved at ``step``; records the changes allowed."""
        changes = self.checkpointer.check_compatible(
            step, config_dict(self.config), allow_changes=self.config.train.allow_config_change
        )
        self.config_changes = [f"{field}: {before!r} -> {now!r}" for field, before, now in changes]

    def _restore_newest_valid(self, abstract_state: Any) -> int:
        """Restores the newest checkpoint that reads and verifies; says which were skipped and why."""
        skipped = []
        for step in reversed(self.checkpointer.all_steps()):
            try:
                self._check_resume(step)
                restored, loader_state = self.checkpointer.restore(step, abstract_state, config_dict(self.config))
                self.loader.set_state(loader_state)
            except CorruptCheckpointError as e:
                skipped.append(str(e))
                continue
            except ValueError as e:  # the loader refused the saved iterator state
                skipped.append(f"checkpoint {self.checkpointer.directory}/{step}: {e}")
                continue
            self.state = TrainState(*restored) if not isinstance(restored, TrainState) else restored
            if skipped and self.is_main:  # always said, even by a quiet run: work was lost
                for reason in skipped:
                    print(f"warning: skipped {reason}", file=sys.stderr, flush=True)
                print(f"warning: resumed from step {step}, the newest checkpoint that verifies", file=sys.stderr)
            self.progress.message(f"resumed from step {step} in {self.checkpointer.directory}")
            for change in self.config_changes:
                self.progress.message(f"resuming with a changed config: {change}")
            return step
        raise CheckpointError(
            f"no checkpoint in {self.checkpointer.directory} can be resumed: "
            + " | ".join(skipped)
            + "; delete the folder's checkpoints/ to start afresh, or choose another train.out_dir"
        )

    @staticmethod
    def _check_eval_windows(tc, val_tokens: int) -> None:
        """ConfigError unless the validation stream holds train.eval_batches batches of distinct
        windows (more would evaluate the same text again, and materialize it all at the first eval)."""
        windows = val_tokens - tc.seq_len  # distinct start positions
        most = windows // tc.micro_batch_size
        if tc.eval_batches > most:
            raise ConfigError(
                f"train.eval_batches={tc.eval_batches} asks for {tc.eval_batches * tc.micro_batch_size:,} validation "
                f"windows of train.seq_len={tc.seq_len}, but the validation stream ({val_tokens:,} tokens) holds "
                f"{windows:,} distinct ones; allowed: 1 <= eval_batches <= {most:,}"
            )

    def _release_lock(self) -> None:
        if self.run_lock is not None:
            self.run_lock.release()

    def _set_up(self, config: Config, quiet: bool) -> None:
        tc = config.train
        self.config_changes: list[str] = []
        latest = self.checkpointer.latest_step()
        if latest is not None and not tc.resume:
            raise ConfigError(
                f"train.out_dir={tc.out_dir!r} already holds checkpoints (latest step {latest}); pass --resume "
                "(train.resume=true) to continue that run, or choose another train.out_dir"
            )
        self.progress = Progress(tc.steps, latest or 0, enabled=tc.progress and self.is_main and not quiet)

        self.data = data_lib.prepare_data(config.data)
        for split, tokens in (("training", self.data.train_tokens), ("validation", self.data.val_tokens)):
            if len(tokens) < tc.seq_len + 1:
                raise data_lib.CorpusError(
                    f"the {split} stream of {self.data.description.splitlines()[0]} has {len(tokens)} tokens, fewer "
                    f"than one window of train.seq_len={tc.seq_len} (+1); use more text or a shorter train.seq_len"
                )
        self._check_eval_windows(tc, min(len(t) for t in (self.data.val_tokens, *self.data.val_parts)))
        config = resolve_vocab(config, self.data.vocab_size)
        config.validate(num_devices=jax.device_count(), process_count=jax.process_count())
        self.config = config
        if self.is_main:  # what `warmup-jax advise` and other readers of the folder need to know
            write_json_atomic(Path(tc.out_dir) / CONFIG_FILE, config_dict(config))
        if latest is not None:
            # Before the expensive set-up, so that an incompatible run fails now; a corrupt newest
            # checkpoint is left to the restore below, which falls back to an older one.
            with contextlib.suppress(CorruptCheckpointError):
                self._check_resume(latest)
        self.progress.message(f"data: {self.data.description}")

        self.mesh = mesh_lib.make_mesh(tc.mesh_fsdp)
        self.batch_sharding = mesh_lib.batch_sharding(self.mesh)
        self.model_def, abstract_params = gpt.abstract_params(config.model)
        self.num_params = gpt.count_params(abstract_params)
        self.seq_len_warmup = SeqLenWarmup.from_config(config.data)
        warmup_init_lr = None
        if config.optim.catapult_init_lr:
            eta_c = self._catapult_lr(abstract_params, resuming=latest is not None)
            warmup_init_lr = min(eta_c, config.optim.lr)
            self.progress.message(
                f"catapult: eta_c = {eta_c:.4g} (first doubling LR whose trial step raised the loss); "
                f"the warmup starts at {warmup_init_lr:.4g}"
            )
        self.schedule = build_schedule(
            config.optim,
            tc.steps,
            tokens_per_step=lambda s: tc.batch_size * self.seq_len_at(s),
            warmup_init_lr=warmup_init_lr,
        )
        # Gradient clipping is the step's (make_train_step clips the mean gradient and rescales the
        # micro-batch statistics alike): build_optimizer does not clip.
        self.tx = build_optimizer(config.optim, self.schedule)

        # Initialise parameters and optimizer state directly in their sharded layout.
        abstract_state = jax.eval_shape(lambda p: init_train_state(p, self.tx, tc.seed), abstract_params)
        self.state_shardings = mesh_lib.state_shardings(abstract_state, self.mesh)
        self.checkpointer.check_space(abstract_state)  # now, not at the first save hours later

        initial = self._params_from_run(tc.init_from, abstract_params) if tc.init_from and latest is None else None

        def init_state(loaded):
            params = self._initial_params() if loaded is None else loaded
            return init_train_state(params, self.tx, tc.seed)

        metrics_cfg = config.metrics
        if metrics_cfg.momentum_beta is None:
            # The weight of the old momentum in this optimizer's direction (b1; beta**2 with Nesterov).
            beta = momentum_coefficient(config.optim)
            metrics_cfg = dataclasses.replace(metrics_cfg, momentum_beta=0.9 if beta is None else beta)
        self.metrics_config = metrics_cfg
        step_fn, self._metric_names = pack_update_metrics(
            make_train_step(
                self.model_def,
                self.tx,
                dropout=config.model.dropout,
                metrics=metrics_cfg,
                grad_clip=config.optim.grad_clip,
                skip_nonfinite=config.train.on_nonfinite == "skip",
            )
        )
        self.train_step = jax.jit(
            step_fn,
            in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, mesh_lib.replicated(self.mesh)),
            donate_argnums=0,
        )
        self.eval_step = jax.jit(
            make_eval_step(self.model_def),
            in_shardings=(self.state_shardings.params, mesh_lib.eval_batch_sharding(self.mesh)),
        )

        self.loader = TrainLoader(
            self.data.train_tokens,
            seq_len=tc.seq_len,
            global_batch_size=tc.batch_size,
            seed=tc.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            seq_len_warmup=self.seq_len_warmup,
            num_workers=config.data.num_workers,
        )
        if latest is not None:
            latest = self._restore_newest_valid(abstract_like(abstract_state, self.state_shardings))
        else:
            self.state = jax.jit(init_state, out_shardings=self.state_shardings)(initial)
            if needs_initial_gradient(config.optim):
                self.state = self._init_from_gradient(self.state)
        self.logger = MetricLogger(tc.out_dir, tensorboard=tc.tensorboard, enabled=self.is_main, resume_after=latest)
        if self.config_changes:  # resumed with train.allow_config_change: the record says what changed
            self.logger.write(latest, {"config_change": "; ".join(self.config_changes)})
        self._eval_data: dict[int | None, list[jax.Array]] = {}

    def _init_from_gradient(self, state: TrainState) -> TrainState:
        """Rebuilds the optimizer state from one gradient at the initial parameters (GI-Adam).

        The gradient is the mean over one global batch drawn from the training stream with another
        seed (``train.seed + 1``), so it is not one of the batches trained on; it is clipped like
        the gradients the optimizer will see (``optim.grad_clip``).
        """
        batch = self._probe_batch()
        mean_gradient = make_mean_gradient(self.model_def)
        clip = self.config.optim.grad_clip

        def init_opt_state(params, tokens):
            g0, _ = clip_by_global_norm(mean_gradient(params, tokens), clip)
            return gi_adam_init(self.tx, params, g0)

        opt_state = jax.jit(
            init_opt_state,
            in_shardings=(self.state_shardings.params, self.batch_sharding),
            out_shardings=self.state_shardings.opt_state,
        )(state.params, batch)
        self.progress.message(f"{self.config.optim.name}: optimizer state initialised from one gradient")
        return state._replace(opt_state=opt_state)

    def _params_from_run(self, folder: str, abstract_params: Any) -> Any:
        """The parameters of the newest checkpoint that verifies in run folder ``folder``
        (``train.init_from``), laid out like this run's; its optimizer state is not used."""
        directory = os.path.join(folder, "checkpoints")
        steps = Checkpointer(directory).all_steps() if os.path.isdir(directory) else []
        if not steps:
            raise ConfigError(
                f"train.init_from={folder!r} holds no checkpoint ({directory} is missing or empty); "
                "allowed: the train.out_dir of a run that saved one"
            )
        source = Checkpointer(directory, keep=len(steps) + 1)
        skipped = []
        try:
            for step in reversed(steps):
                saved = source.saved_config(step)
                source_config = Config.from_dict(saved)
                _, source_params = gpt.abstract_params(source_config.model)
                mismatch = _first_shape_mismatch(source_params, abstract_params)
                if mismatch:
                    raise ConfigError(
                        f"train.init_from={folder!r}: its model does not fit this one ({mismatch}); "
                        "allowed: a run of the same model.* shape and vocabulary"
                    )
                source_tx = build_optimizer(
                    source_config.optim, build_schedule(source_config.optim, source_config.train.steps)
                )
                abstract = jax.eval_shape(functools.partial(init_train_state, tx=source_tx, seed=0), source_params)
                shardings = mesh_lib.state_shardings(abstract, self.mesh)
                try:
                    restored, _ = source.restore(step, abstract_like(abstract, shardings), saved)
                except CorruptCheckpointError as e:
                    skipped.append(str(e))
                    continue
                for reason in skipped:
                    print(f"warning: skipped {reason}", file=sys.stderr, flush=True)
                params = (restored if isinstance(restored, TrainState) else TrainState(*restored)).params
                self.progress.message(f"parameters from {directory}/{step} (train.init_from); fresh optimizer state")
                return params
        finally:
            source.close()
        raise CheckpointError(f"train.init_from={folder!r}: no checkpoint there verifies: " + " | ".join(skipped))

    def _initial_params(self) -> Any:
        """The run's initial parameters (from ``train.seed``): what training starts from and what
        the catapult search probes. Call it under ``jax.jit`` to create them in their layout."""
        return gpt.init_params(self.config.model, jax.random.key(self.config.train.seed))[1]

    def _probe_batch(self) -> jax.Array:
        """One global batch drawn with another seed (``train.seed + 1``), so not one trained on: the
        data that the set-ups which look at the loss before training (GI-Adam, the catapult) see."""
        tc = self.config.train
        loader = TrainLoader(
            self.data.train_tokens,
            seq_len=tc.seq_len,
            global_batch_size=tc.batch_size,
            seed=tc.seed + 1,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        return self._device_batch(next(loader))

    def _catapult_lr(self, abstract_params: Any, *, resuming: bool) -> float:
        """Kalra & Barkeshli's eta_c for ``optim.catapult_init_lr``: the smallest LR on a doubling grid
        (from 1e-6) whose first step, from the run's initial parameters on the probe batch and
        clipped like training, raises the loss on that batch. Recorded in the run folder
        (``catapult_lr.json``) and read back on resume, so a resumed run keeps its schedule."""
        config = self.config
        path = os.path.join(config.train.out_dir, CATAPULT_FILE)
        if resuming and os.path.exists(path):
            with open(path) as f:
                return float(json.load(f)["eta_c"])
        params = jax.jit(self._initial_params, out_shardings=mesh_lib.state_shardings(abstract_params, self.mesh))()
        tokens = self._probe_batch()
        loss = make_loss_fn(self.model_def, 0.0)

        def probe_loss(p: Any) -> jax.Array:  # the mean over the micro-batches, like a training step
            return jnp.mean(jax.lax.map(lambda t: loss(p, t, None), tokens))

        clip = config.optim.grad_clip

        def optimizer(lr: jax.Array) -> optax.GradientTransformation:
            tx = recipes.build(config.optim.name, lr, **config.optim.hparams)
            return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx

        eta_c = find_catapult_lr(probe_loss, params, optimizer)
        if self.is_main:
            record = {"eta_c": eta_c, "peak_lr": config.optim.lr, "warmup_init_lr": min(eta_c, config.optim.lr)}
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.replace(path + ".tmp", path)
        return eta_c

    def seq_len_at(self, step: int) -> int:
        if self.seq_len_warmup is None:
            return self.config.train.seq_len
        return self.seq_len_warmup.length_at(step, self.config.train.seq_len)

    def update_metrics_due(self, step: int) -> bool:
        """Whether the update that completes ``step`` (1-based) computes the update metrics."""
        mc = self.metrics_config
        return mc.enabled and metrics_due(
            step, interval=mc.interval, dense_interval=mc.dense_interval, dense_until_step=mc.dense_until_step
        )

    def _device_batch(self, rows: np.ndarray) -> jax.Array:
        tc = self.config.train
        local = rows.reshape(tc.grad_accum_steps, -1, rows.shape[-1])
        return mesh_lib.global_batch_from_local(local, self.batch_sharding)

    def evaluate(self, part: int | None = None) -> float:
        """The mean loss on the fixed validation batches of the run's part (or of part ``part`` of
        ``data.num_parts``)."""
        tc = self.config.train
        if part not in self._eval_data:
            batches = eval_batches(
                self.data.val_tokens if part is None else self.data.val_parts[part],
                seq_len=tc.seq_len,
                batch_size=tc.micro_batch_size,
                num_batches=tc.eval_batches,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )
            sharding = mesh_lib.eval_batch_sharding(self.mesh)
            self._eval_data[part] = [mesh_lib.global_batch_from_local(np.asarray(b), sharding) for b in batches]
        losses = [self.eval_step(self.state.params, batch) for batch in self._eval_data[part]]
        return float(np.mean(jax.device_get(losses)))

    def save(self) -> None:
        step = int(jax.device_get(self.state.step))
        self.checkpointer.save(step, self.state, self.loader.get_state(), config_dict(self.config))

    def _non_finite(self, step: int, metrics: dict[str, float], skips: list[int]) -> None:
        """A step with a non-finite loss, gradient or new parameters: log it, then skip or stop."""
        tc = self.config.train
        values = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("loss", "grad_norm", "update_norm") if k in metrics)
        if tc.on_nonfinite == "skip":
            skips.append(step)
            metrics["skipped"] = 1.0
            if len(skips) <= tc.max_skipped_steps:
                self.progress.message(f"step {step}: non-finite ({values}); update skipped ({len(skips)} in a row)")
                return
        self.logger.write(step, metrics)
        latest = self.checkpointer.latest_step()
        kept = (
            f"the last good checkpoint is step {latest} in {self.checkpointer.directory} (resume with --resume)"
            if latest is not None
            else "no checkpoint was written before it"
        )
        what = f"{len(skips)} steps in a row were non-finite" if skips else "the training state became non-finite"
        raise NonFiniteError(
            f"{what} at step {step} ({values}); stopped without saving it; {kept}. "
            "Lower optim.lr, or set train.on_nonfinite=skip to skip such updates"
        )

    def run(self, *, until_step: int | None = None, stop: StopFlag | None = None) -> TrainResult:
        """Trains to ``train.steps``, or stops early after ``until_step`` (saving a checkpoint there).

        ``stop``: a :class:`StopFlag` already entered by the caller (the command line enters one
        before building the trainer, so that a signal during start-up is kept); by default the run
        enters its own. A signal saves a checkpoint at the next step boundary and stops
        (``TrainResult.interrupted_by``). Raises NonFiniteError on a non-finite step
        (``train.on_nonfinite``); the trainer is closed (logs flushed, pending checkpoint writes
        finished) whatever ends the run."""
        try:
            with contextlib.nullcontext(stop) if stop is not None else StopFlag() as flag:
                return self._run(until_step, flag)
        except BaseException:
            self.close()
            raise

    def _run(self, until_step: int | None, flag: StopFlag) -> TrainResult:
        tc = self.config.train
        stop_at = tc.steps if until_step is None else min(until_step, tc.steps)
        start_step = int(jax.device_get(self.state.step))
        result = TrainResult(tc.out_dir, start_step, {}, {})
        peak, peak_source = peak_flops_per_device(tc.peak_flops_per_device)
        result.peak_flops_per_device, result.peak_flops_source = peak, peak_source
        n_matmul = self.num_params - self.config.model.block_size * self.config.model.n_embd
        self.progress.message(
            f"model: {self.num_params / 1e6:.2f}M parameters; {jax.device_count()} device(s), mesh "
            f"{dict(self.mesh.shape)}; MFU against a peak of {peak / 1e12:.3g} TFLOP/s per device ({peak_source})"
        )
        self.logger.write(start_step, {"peak_flops_per_device": peak, "peak_flops_source": peak_source})
        meter = ThroughputMeter(peak * jax.device_count(), clock=time.perf_counter)
        pending = None  # (step, metrics on device, lr, tokens, seq_len)
        compiled_shapes = set()
        metric_names = None  # of the packed update metrics; named before the first step is traced
        skips: list[int] = []  # the steps skipped in a row (train.on_nonfinite="skip")

        def flush(item) -> None:
            step, metrics_device, lr, tokens, seq_len = item
            metrics_device = dict(metrics_device)
            update_values = metrics_device.pop("update_metrics", None)
            if update_values is not None and not self.update_metrics_due(step):
                update_values = None  # zeros on this step: not even copied
            scalars, update_values = jax.device_get((metrics_device, update_values))
            meter.step_done(tokens, tokens * flops_per_token(self.config.model, n_matmul, seq_len))
            metrics = {k: float(v) for k, v in scalars.items()}
            metrics["lr"], metrics["seq_len"] = lr, seq_len
            if update_values is not None:
                metrics.update(zip(metric_names, np.asarray(update_values).tolist()))
                metrics["batch_size"] = tc.batch_size
            result.train_losses[step] = metrics["loss"]
            if not metrics.pop("finite"):
                self._non_finite(step, metrics, skips)
            else:
                skips.clear()
            if step % tc.log_interval == 0 or step == tc.steps:
                postfix = {"loss": f"{metrics['loss']:.4f}", "lr": f"{lr:.2e}"}
                window = meter.window()
                if window is not None:  # None: no measured step since the last log (e.g. only the first step)
                    metrics.update(tokens_per_s=window.tokens_per_s, mfu=window.mfu)
                    postfix.update({"tok/s": f"{window.tokens_per_s:,.0f}", "MFU": f"{100 * window.mfu:.1f}%"})
                self.progress.update(step, postfix)
            self.logger.write(step, metrics)

        for step in range(start_step, stop_at):
            if flag.stop and step == start_step:  # signalled during start-up: keep it, train nothing
                if self.checkpointer.latest_step() != start_step:
                    self.save()
                self.progress.message(f"{flag.signal_name}: saved a checkpoint in {self.checkpointer.directory}")
                result.interrupted, result.interrupted_by = True, flag.signal_name
                break
            seq_len = self.seq_len_at(step)
            batch = self._device_batch(next(self.loader))
            lr = float(self.schedule(step))
            if metric_names is None and self.metrics_config.enabled:
                metric_names = self._metric_names(self.state, batch)
            self.state, metrics = self.train_step(self.state, batch)
            if batch.shape not in compiled_shapes:
                # Compiled in that call, while the pending step ran: its time is not a step's.
                compiled_shapes.add(batch.shape)
                meter.skip_next()
            if pending is not None:
                flush(pending)
            pending = (step + 1, metrics, lr, tc.batch_size * seq_len, seq_len)
            done = step + 1
            evaluate = (tc.eval_interval and done % tc.eval_interval == 0) or done == tc.steps
            save = tc.checkpoint_interval and done % tc.checkpoint_interval == 0
            advise = done == tc.advise_after_steps
            stop = flag.stop or done == until_step or (advise and tc.stop_after_advice)
            if evaluate or save or stop or advise:
                # Both wait for this step anyway: take its metrics first, so that the pause
                # below holds no training time.
                flush(pending)
                pending = None
            if evaluate:
                with meter.paused():
                    eval_loss = self.evaluate()
                    by_part = {
                        f"eval_loss_part{k}": eval_loss if k == self.config.data.part else self.evaluate(k)
                        for k in range(len(self.data.val_parts))
                    }
                result.eval_losses[done] = eval_loss
                self.logger.write(done, {"eval_loss": eval_loss, **by_part})
                self.progress.message(f"step {done}: eval loss {eval_loss:.4f}")
            if advise:
                self._advise(done)
            if save and not stop:
                with meter.paused():
                    self.save()
            if stop:
                self.save()
                reason = flag.signal_name or f"stopped at step {done}"
                self.progress.message(f"{reason}: saved a checkpoint in {self.checkpointer.directory}")
                # A stop the run was told to make after its advice is an end, not an interruption.
                advised_stop = advise and tc.stop_after_advice and not flag.stop and done != until_step
                result.interrupted = done < tc.steps and not advised_stop
                result.interrupted_by = flag.signal_name
                break
        if pending is not None:
            flush(pending)
        total = meter.total()
        if total is not None:
            result.tokens_per_second, result.mfu = total.tokens_per_s, total.mfu
        result.final_step = int(jax.device_get(self.state.step))
        if not result.interrupted:
            self.save()
        self.close()
        return result

    def _advise(self, step: int) -> None:
        """``train.advise_after_steps``: the advisor's verdict from this run's first ``step`` steps,
        printed (also by a quiet run) and written to ``advice.json``."""
        from warmup_jax import advisor

        if not self.is_main:
            return
        o, tc = self.config.optim, self.config.train
        advice = advisor.advise(
            advisor.read_metrics(os.path.join(tc.out_dir, "metrics.jsonl")),
            angle_scale=advisor.equilibrium_angle(o.name, o.lr, o.hparams),
            planned_steps=tc.steps,
            max_warmup=tc.steps - round(o.cooldown_fraction * tc.steps),
            steps=step,
        )
        lines = advice.lines()
        if o.warmup_steps:
            lines.append(f"(this run warms up over {o.warmup_steps} steps: the advice is meant for a run without)")
        if tc.stop_after_advice:
            lines.append(f"stopping after step {step} (train.stop_after_advice); --resume continues the run")
        print("\n".join(f"advisor: {line}" for line in lines), flush=True)
        record = {
            "step": step,
            "needed": advice.needed,
            "warmup_steps": advice.warmup_steps,
            "signal": advice.signal,
            "score": advice.score,
            "level": advice.level,
            "evidence": [dataclasses.asdict(c) for c in advice.evidence],
        }
        write_json_atomic(Path(tc.out_dir) / "advice.json", record)

    def close(self) -> None:
        self.progress.close()
        self.logger.close()
        self.checkpointer.close()
        self._release_lock()


def _first_shape_mismatch(a: Any, b: Any) -> str:
    """'' when the two parameter trees have the same paths, shapes and dtypes; else the first difference."""
    flat_a = dict(jax.tree_util.tree_flatten_with_path(a)[0])
    flat_b = dict(jax.tree_util.tree_flatten_with_path(b)[0])
    for path in sorted(set(flat_a) | set(flat_b), key=str):
        x, y = flat_a.get(path), flat_b.get(path)
        if x is None or y is None or x.shape != y.shape or x.dtype != y.dtype:
            describe = lambda v: "absent" if v is None else f"{v.dtype}{list(v.shape)}"
            return f"{jax.tree_util.keystr(path)}: {describe(x)} there, {describe(y)} here"
    return ""


def train(config: Config, *, quiet: bool = False) -> TrainResult:
    """Trains (or resumes, with ``train.resume``) the run described by ``config``."""
    return Trainer(config, quiet=quiet).run()
