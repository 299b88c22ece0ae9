"""Compile time of the train step, looped vs scanned blocks (``model.scan_layers``).

    python bench/bench_compile.py gpt2_124m                       # with the update metrics (default)
    python bench/bench_compile.py gpt2_350m metrics.interval=0    # without them

Arguments: a named config, then ``--set``-style overrides. Traces, lowers and compiles the train
step for abstract parameters (nothing is allocated), micro-batch 1 x 64 tokens, float32.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp

from warmup_jax.config import load_config
from warmup_jax.model import gpt
from warmup_jax.train.optimizer import build_optimizer, build_schedule
from warmup_jax.train.step import init_train_state, make_train_step

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("config", help="a named config, e.g. gpt2_124m")
parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="--set-style overrides")
args = parser.parse_args()
name = args.config
for scan in (False, True):
    cfg = load_config(
        name,
        [
            f"model.scan_layers={str(scan).lower()}",
            "model.vocab_size=50257",
            "model.compute_dtype=float32",
            *args.overrides,
        ],
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
    print(f"{name} scan_layers={scan}: trace+lower {mid - start:.1f} s, compile {end - mid:.1f} s", flush=True)
