"""Train-step time with the per-layer update metrics off, every step, and every 10 steps.

    python bench/bench_metrics.py                      # cpu_small, random tokens
    python bench/bench_metrics.py --rounds 9 --json out.json
    python bench/bench_metrics.py --set train.grad_accum_steps=2   # adds the SNR metrics

All variants run in one process on the same model, batch and optimizer, each with its own train
state. A round runs ``--steps`` consecutive steps of each variant in turn (as a training run would),
so that slow changes in the load of other processes on a shared machine hit all variants alike. Each
step is timed synchronously, including the host copy of its logged values (the packed
update-metric vector only on due steps). Reported: the median over rounds of the mean step time
of a round, and the median over rounds of the paired overhead (variant / off in the same round,
minus 1); with ``--steps 10`` the every-10 variant computes metrics on exactly one step per
round. Process CPU time (all threads) is recorded too; it is less sensitive to other processes
than wall-clock time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from warmup_jax.config import MetricsConfig, load_config
from warmup_jax.metrics.update import metrics_due
from warmup_jax.model import gpt
from warmup_jax.train.optimizer import build_optimizer, build_schedule
from warmup_jax.train.step import init_train_state, make_train_step, pack_update_metrics


def _variants(rrc_tokens: int) -> dict[str, MetricsConfig | None]:
    return {
        "off": None,
        # dense_until_step=0: no dense early phase, so that "every 10 steps" is every 10 steps from
        # the start (the default dense phase computes metrics on each of the first 100 steps).
        "every step": MetricsConfig(interval=1, dense_until_step=0, rrc_tokens=rrc_tokens),
        "every 10 steps": MetricsConfig(interval=10, dense_until_step=0, rrc_tokens=rrc_tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu_small")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--vocab-size", type=int, default=8192, help="model vocabulary (random tokens)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--rrc-tokens", type=int, default=MetricsConfig().rrc_tokens)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    config = load_config(args.config, args.overrides)
    model_cfg = dataclasses.replace(config.model, vocab_size=args.vocab_size)
    tc = config.train
    model_def, params = gpt.init_params(model_cfg, tc.seed)
    tx = build_optimizer(config.optim, build_schedule(config.optim, tc.steps))
    rng = np.random.default_rng(0)
    shape = (tc.grad_accum_steps, tc.micro_batch_size, tc.seq_len + 1)
    batches = [jnp.asarray(rng.integers(0, args.vocab_size, shape), jnp.int32) for _ in range(4)]

    runners = {}
    for name, metrics in _variants(args.rrc_tokens).items():
        fn = make_train_step(
            model_def, tx, dropout=model_cfg.dropout, metrics=metrics, grad_clip=config.optim.grad_clip
        )
        packed, names_of = pack_update_metrics(fn)  # the trainer's form: one vector of metrics
        step_fn = jax.jit(packed, donate_argnums=0)
        state = init_train_state(jax.tree.map(jnp.copy, params), tx, tc.seed)
        num_names = len(names_of(state, batches[0]))  # before the first call donates the state
        start = time.perf_counter()
        state, out = step_fn(state, batches[0])
        jax.block_until_ready(out)
        runners[name] = dict(
            fn=fn,
            step=step_fn,
            state=state,
            metrics=metrics,
            times=[],
            cpu_times=[],
            compile_s=time.perf_counter() - start,
            names=num_names,
        )

    def one_step(runner, batch) -> tuple[float, float]:
        """One synchronous step and the host copy of its metrics: (wall s, process CPU s)."""
        start, cpu_start = time.perf_counter(), time.process_time()
        runner["state"], out = runner["step"](runner["state"], batch)
        runner["done"] += 1
        _fetch(out, runner["metrics"], runner["done"])
        return time.perf_counter() - start, time.process_time() - cpu_start

    for runner in runners.values():
        runner["done"] = 1  # the compile call above made one step
    for i in range(args.steps):  # warm-up round (not timed)
        for runner in runners.values():
            one_step(runner, batches[i % len(batches)])
    for _ in range(args.rounds):
        walls = {name: 0.0 for name in runners}
        cpus = {name: 0.0 for name in runners}
        for name, runner in runners.items():  # variants take turns round by round
            for i in range(args.steps):  # consecutive steps of one variant, as in a training run
                wall, cpu = one_step(runner, batches[i % len(batches)])
                walls[name] += wall / args.steps
                cpus[name] += cpu / args.steps
        for name, runner in runners.items():
            runner["times"].append(walls[name])
            runner["cpu_times"].append(cpus[name])

    results = {
        "config": args.config,
        "overrides": args.overrides,
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "host": platform.node(),
        "rounds": args.rounds,
        "steps": args.steps,
        "rrc_tokens": args.rrc_tokens,
        "grad_accum_steps": tc.grad_accum_steps,
        "tokens_per_step": tc.batch_size * tc.seq_len,
        "variants": {},
    }
    print(
        f"{args.config}: batch {tc.batch_size}x{tc.seq_len}, K={tc.grad_accum_steps}, backend "
        f"{jax.default_backend()} ({jax.devices()[0].device_kind}), {args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"{'variant':16s} {'wall ms/step':>12s} {'min':>7s} {'max':>7s} {'overhead':>8s} "
        f"{'CPU ms/step':>11s} {'overhead':>8s} {'compile s':>9s} {'#metrics':>8s}"
    )
    for name, runner in runners.items():
        times, cpu_times = runner["times"], runner["cpu_times"]
        median, cpu_median = statistics.median(times), statistics.median(cpu_times)
        overhead = statistics.median(t / o - 1.0 for t, o in zip(times, runners["off"]["times"]))
        cpu_overhead = statistics.median(t / o - 1.0 for t, o in zip(cpu_times, runners["off"]["cpu_times"]))
        results["variants"][name] = dict(
            median_s=median,
            min_s=min(times),
            max_s=max(times),
            overhead=overhead,
            cpu_median_s=cpu_median,
            cpu_overhead=cpu_overhead,
            compile_s=runner["compile_s"],
            num_metrics=runner["names"],
            times_s=times,
            cpu_times_s=cpu_times,
        )
        print(
            f"{name:16s} {1e3 * median:12.1f} {1e3 * min(times):7.1f} {1e3 * max(times):7.1f} {100 * overhead:7.1f}% "
            f"{1e3 * cpu_median:11.1f} {100 * cpu_overhead:7.1f}% {runner['compile_s']:9.1f} {runner['names']:8d}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _fetch(out: dict, metrics: MetricsConfig | None, step: int) -> None:
    """What the trainer's flush copies to the host for one step."""
    out = dict(out)
    vector = out.pop("update_metrics", None)
    due = metrics is not None and metrics_due(step, interval=metrics.interval)
    jax.device_get((out, vector if due else None))


if __name__ == "__main__":
    main()
