"""Whole train-step time of several optimizers on one model, alternated in one process.

    python bench/bench_step_ratio.py                                  # cpu_small: adamw vs lion_ar
    python bench/bench_step_ratio.py --optimizers adamw lion_ar lion_a lion_ar_fast_momentum
    python bench/bench_step_ratio.py --rounds 9 --json out.json

What a user feels is the train step (forward, backward, clipping, optimizer update), not the
optimizer update alone, so this times the step the trainer compiles (``make_train_step`` with the
config's clipping; metrics off) on random tokens. Each optimizer has its own train state; a round
runs ``--steps`` consecutive steps of each optimizer in turn, so slow changes in the load of a
shared machine hit all of them alike. Reported per optimizer: the median over rounds of its mean
step time, tokens/s, and the median over rounds of the paired ratio to the first optimizer.
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

from warmup_jax.config import load_config
from warmup_jax.model import gpt
from warmup_jax.train.optimizer import build_optimizer, build_schedule
from warmup_jax.train.step import init_train_state, make_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu_small")
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "lion_ar"], help="the first is the reference")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--vocab-size", type=int, default=8192, help="model vocabulary (random tokens)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per optimizer per round")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    runners = {}
    for name in args.optimizers:
        config = load_config(args.config, [f"optim.name={name}", "metrics.interval=0", *args.overrides])
        model_cfg = dataclasses.replace(config.model, vocab_size=args.vocab_size)
        tc = config.train
        model_def, params = gpt.init_params(model_cfg, tc.seed)
        tx = build_optimizer(config.optim, build_schedule(config.optim, tc.steps))
        step = make_train_step(model_def, tx, dropout=model_cfg.dropout, grad_clip=config.optim.grad_clip)
        runners[name] = dict(
            step=jax.jit(step, donate_argnums=0), state=init_train_state(params, tx, tc.seed), times=[]
        )
    rng = np.random.default_rng(0)
    shape = (tc.grad_accum_steps, tc.micro_batch_size, tc.seq_len + 1)
    batches = [jnp.asarray(rng.integers(0, args.vocab_size, shape), jnp.int32) for _ in range(4)]

    def one_step(runner, batch) -> float:
        start = time.perf_counter()
        runner["state"], out = runner["step"](runner["state"], batch)
        float(out["loss"])  # the host copy a training run makes of its logged values
        return time.perf_counter() - start

    for runner in runners.values():  # compilation and a warm-up round, not timed
        for i in range(args.steps + 1):
            one_step(runner, batches[i % len(batches)])
    for _ in range(args.rounds):
        for runner in runners.values():
            runner["times"].append(
                sum(one_step(runner, batches[i % len(batches)]) for i in range(args.steps)) / args.steps
            )

    reference = runners[args.optimizers[0]]["times"]
    tokens = tc.batch_size * tc.seq_len
    results = {
        "config": args.config,
        "overrides": args.overrides,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "host": platform.node(),
        "rounds": args.rounds,
        "steps": args.steps,
        "tokens_per_step": tokens,
        "optimizers": {},
    }
    print(
        f"{args.config}: batch {tc.batch_size}x{tc.seq_len}, K={tc.grad_accum_steps}, {jax.default_backend()} "
        f"({jax.devices()[0].device_kind}), {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'optimizer':24s} {'ms/step':>8s} {'min':>7s} {'max':>7s} {'tokens/s':>9s} {'ratio':>6s}")
    for name, runner in runners.items():
        times = runner["times"]
        ratio = statistics.median(t / r for t, r in zip(times, reference))
        median = statistics.median(times)
        results["optimizers"][name] = dict(
            ms_per_step=1e3 * median, tokens_per_s=tokens / median, ratio=ratio, times=times
        )
        print(
            f"{name:24s} {1e3 * median:8.1f} {1e3 * min(times):7.1f} {1e3 * max(times):7.1f} "
            f"{tokens / median:9,.0f} {ratio:6.3f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
