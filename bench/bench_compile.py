"""Compile time of the train step, looped vs scanned blocks (``model.scan_layers``).

    python bench/bench_compile.py gpt2_124m                       # with the update metrics (default)
    python bench/bench_compile.py gpt2_350m metrics.interval=0    # without them
    python bench/bench_compile.py gpt2_124m --repeats 3           # median of 3 fresh processes each

Arguments: a named config, then ``--set``-style overrides. Traces, lowers and compiles the train
step for abstract parameters (nothing is allocated), micro-batch 1 x 64 tokens, float32. Every
measurement runs in a fresh process (the first compile of a process also pays for XLA's own
start-up, and a second one would find warm caches), looped and scanned alternating.
"""

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time


def measure(name: str, scan: bool, overrides: list[str]) -> dict:
    """Lowers and compiles the step once in this process; seconds of each, and the HLO's size."""
    import jax
    import jax.numpy as jnp

    from warmup_jax.config import load_config
    from warmup_jax.model import gpt
    from warmup_jax.train.optimizer import build_optimizer, build_schedule
    from warmup_jax.train.step import init_train_state, make_train_step

    cfg = load_config(
        name,
        [f"model.scan_layers={str(scan).lower()}", "model.vocab_size=50257", "model.compute_dtype=float32", *overrides],
    )
    model_def, params = gpt.abstract_params(cfg.model)
    tx = build_optimizer(cfg.optim, build_schedule(cfg.optim, cfg.train.steps))
    state = jax.eval_shape(functools.partial(init_train_state, tx=tx, seed=0), params)
    tokens = jax.ShapeDtypeStruct((1, 1, 65), jnp.int32)
    step = jax.jit(make_train_step(model_def, tx, metrics=cfg.metrics, grad_clip=cfg.optim.grad_clip), donate_argnums=0)
    start = time.perf_counter()
    lowered = step.lower(state, tokens)
    mid = time.perf_counter()
    lowered.compile()
    end = time.perf_counter()
    return {"lower_s": mid - start, "compile_s": end - mid, "hlo_lines": lowered.as_text().count("\n")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a named config, e.g. gpt2_124m")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="--set-style overrides")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per variant (median reported)")
    parser.add_argument("--one", choices=("looped", "scanned"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.config, args.one == "scanned", args.overrides)))
        return
    results = {"looped": [], "scanned": []}
    for _ in range(args.repeats):
        for variant in results:
            cmd = [sys.executable, __file__, args.config, *args.overrides, "--one", variant]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
    for variant, runs in results.items():
        lower = statistics.median(r["lower_s"] for r in runs)
        comp = statistics.median(r["compile_s"] for r in runs)
        print(
            f"{args.config} {variant}: trace+lower {lower:.1f} s, compile {comp:.1f} s "
            f"(median of {len(runs)}; {runs[0]['hlo_lines']:,} lines of StableHLO)",
            flush=True,
        )


if __name__ == "__main__":
    main()
