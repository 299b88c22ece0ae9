"""Time one optimizer update for GPT-2-124M-shaped parameters: LionAR, LionAR+RRC, LionA vs AdamW.

Each optimizer's update plus ``optax.apply_updates`` is jitted with the parameters and optimizer
state donated (as a training step would), warmed up, then timed for ``--steps`` calls per round;
the optimizers take turns round by round so that load from other processes hits all of them alike.
The script prints the median time per update and its ratio to AdamW.

    python bench/bench_optimizers.py                      # 124M parameters, 5 rounds x 5 steps
    python bench/bench_optimizers.py --rounds 9 --json /tmp/bench_optim.json
    python bench/bench_optimizers.py --n-layer 2 --vocab 4096   # quick smoke run
    python bench/bench_optimizers.py --xla-cpu-fast-math        # every jit with reassociation

``--xla-cpu-fast-math`` compiles every optimizer's step with XLA's ``xla_cpu_enable_fast_math``
(through ``jax.jit(..., compiler_options=...)``, so only these steps; XLA keeps honouring NaNs,
infinities, division and library functions by default, so it mainly allows reassociation and
FMA contraction). It lets LLVM vectorise the per-neuron sums of the rotational transforms,
which XLA:CPU otherwise emits as scalar loops; see BENCHMARKS.md.
"""

import argparse
import functools
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import warmup_jax.optim as wo


def gpt2_params(key: jax.Array, n_layer: int, d_model: int, vocab: int, context: int) -> dict:
    """nanoGPT GPT-2 shapes in Flax layout: kernels (in, out), embeddings (rows, d), no biases."""
    keys = iter(jax.random.split(key, 4 * n_layer + 2))
    normal = lambda shape: 0.02 * jax.random.normal(next(keys), shape, jnp.float32)  # noqa: E731
    blocks = {
        i: {
            "ln1": {"scale": jnp.ones(d_model)},
            "attn": {"qkv": {"kernel": normal((d_model, 3 * d_model))}, "proj": {"kernel": normal((d_model, d_model))}},
            "ln2": {"scale": jnp.ones(d_model)},
            "mlp": {
                "fc": {"kernel": normal((d_model, 4 * d_model))},
                "proj": {"kernel": normal((4 * d_model, d_model))},
            },
        }
        for i in range(n_layer)
    }
    return {
        "wte": {"embedding": normal((vocab, d_model))},
        "wpe": {"embedding": normal((context, d_model))},
        "blocks": blocks,
        "ln_f": {"scale": jnp.ones(d_model)},
    }


def optimizers(lr: float) -> dict[str, optax.GradientTransformation]:
    return {
        "adamw (optax)": optax.adamw(lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, mask=wo.decay_mask()),
        "lion_ar": wo.lion_ar(lr),
        "lion_ar_rrc": wo.lion_ar_rrc(lr),
        "lion_a": wo.lion_a(lr),
        "lion (optax)": optax.lion(lr, weight_decay=1.0, mask=wo.decay_mask()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed updates per round")
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--json", type=str, default=None, help="write the results here")
    parser.add_argument(
        "--xla-cpu-fast-math",
        action="store_true",
        help="compile every step with xla_cpu_enable_fast_math (reassociation)",
    )
    args = parser.parse_args()

    params = gpt2_params(jax.random.key(0), args.n_layer, args.d_model, args.vocab, args.context)
    grads = jax.tree.map(lambda p: 1e-3 * jax.random.normal(jax.random.key(1), p.shape), params)
    # Micro-batch statistics as gradient accumulation would produce them (K = 40, b = 12).
    stats = wo.MicroBatchStats(
        jax.tree.map(lambda g: 40 * 1.5 * jnp.sum(g * g), grads), num_micro_batches=40, micro_batch_size=12
    )
    num_params = wo.count_params(params)
    print(
        f"{num_params / 1e6:.1f}M parameters in {len(jax.tree.leaves(params))} tensors; "
        f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, "
        f"{platform.processor() or platform.machine()}"
        + (", xla_cpu_enable_fast_math" if args.xla_cpu_fast_math else "")
    )

    options = {"xla_cpu_enable_fast_math": True} if args.xla_cpu_fast_math else None
    runs = {}
    for name, tx in optimizers(3e-4).items():

        @functools.partial(jax.jit, donate_argnums=(0, 1), compiler_options=options)
        def step(params, state, grads, tx=tx):
            updates, state = tx.update(grads, state, params, micro_batch_stats=stats)
            return optax.apply_updates(params, updates), state

        p = jax.tree.map(jnp.copy, params)
        s = tx.init(p)
        p, s = step(p, s, grads)  # compile and warm up
        jax.block_until_ready((p, s))
        runs[name] = {"step": step, "params": p, "state": s, "times": []}

    for _ in range(args.rounds):
        for run in runs.values():
            for _ in range(args.steps):
                start = time.perf_counter()
                run["params"], run["state"] = run["step"](run["params"], run["state"], grads)
                jax.block_until_ready((run["params"], run["state"]))
                run["times"].append(time.perf_counter() - start)

    base = statistics.median(runs["adamw (optax)"]["times"])
    results = {}
    print(f"\n{'optimizer':16s} {'median ms':>10s} {'min ms':>8s} {'x adamw':>8s}")
    for name, run in runs.items():
        med = statistics.median(run["times"])
        results[name] = {
            "median_s": med,
            "min_s": min(run["times"]),
            "ratio_to_adamw": med / base,
            "samples": len(run["times"]),
        }
        print(f"{name:16s} {med * 1e3:10.1f} {min(run['times']) * 1e3:8.1f} {med / base:8.2f}")
    ratio = results["lion_ar"]["ratio_to_adamw"]
    print(f"\nLionAR / AdamW = {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "num_params": num_params, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
