"""Where a train step's time goes: warmup_jax's compiled step, operation by operation, beside PyTorch eager.

Both sides train the model of ``bench_vs_torch.py`` (the config's shapes, AdamW, clipping at 1.0,
float32, the same threads) on one fixed batch, so the loader is out of the picture; the trainer's
own throughput (loader, logging) is measured too, and the difference is the loader's share.

- warmup_jax: the trainer's step (``make_train_step``, update metrics off) is compiled once; its
  operations are traced with ``jax.profiler`` over ``--steps`` steps and each traced operation is
  attributed, through the compiled HLO's metadata, to the model part whose ``jax.named_scope`` it
  came from (attention, mlp, layer_norm, embedding, head, loss, clip, optimizer), to forward or
  backward, and to a kind: matmul, layout copy (a transpose or copy XLA inserts to give a matmul the
  operand layout it wants) or other (element-wise, reductions, scatter).
- PyTorch: ``torch.profiler`` over the same number of steps; operations by kind.
- The large-matmul peak of both (a 2048-cube float32 product), in the same run.

    python bench/profile_step.py                          # cpu_small
    python bench/profile_step.py --steps 10 --json /tmp/profile.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

PARTS = ("attention", "mlp", "layer_norm", "embedding", "head", "loss", "clip", "optimizer")
MATMUL_SIZE = 2048


def hlo_op_names(hlo_text: str) -> dict[str, str]:
    """``{instruction name: op_name metadata ("" where none)}`` of an optimized HLO module's text."""
    found = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = \S+ [\w\-]+\(", line)
        if match:
            meta = re.search(r'op_name="([^"]*)"', line)
            found[match.group(1)] = meta.group(1) if meta else ""
    return found


def classify(name: str, op_name: str) -> tuple[str, str, str]:
    """``(part, pass, kind)`` of one compiled operation."""
    part = next((p for p in PARTS if re.search(rf"\b{p}\b", op_name)), "other")
    direction = "backward" if "transpose(" in op_name else "forward"
    if part in ("clip", "optimizer"):
        direction = "update"
    if "dot" in name or "ynn" in name or "xnn" in name or "onednn" in name:
        kind = "matmul"
    elif name.startswith(("copy", "transpose")):
        kind = "layout copy"
    else:
        kind = "other"
    return part, direction, kind


def traced_durations(trace_dir: str, names: set[str], steps: int) -> dict[str, float]:
    """Milliseconds per step of each traced event whose name is a compiled instruction."""
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    total = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in names:
            total[event["name"]] += event["dur"] / 1e3 / steps
    return dict(total)


def profile_jax(config, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from warmup_jax.model import gpt
    from warmup_jax.train.optimizer import build_optimizer, build_schedule
    from warmup_jax.train.step import init_train_state, make_train_step

    tc = config.train
    model_def, params = gpt.init_params(config.model, tc.seed)
    tx = build_optimizer(config.optim, build_schedule(config.optim, tc.steps))
    step = make_train_step(model_def, tx, dropout=config.model.dropout, grad_clip=config.optim.grad_clip)
    state = init_train_state(params, tx, tc.seed)
    shape = (tc.grad_accum_steps, tc.micro_batch_size, tc.seq_len + 1)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, config.model.vocab_size, shape), jnp.int32)
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch).compile()
    op_names = hlo_op_names(compiled.as_text())

    def run(n: int) -> float:
        nonlocal state
        start = time.perf_counter()
        for _ in range(n):
            state, out = compiled(state, batch)
            float(out["loss"])
        return (time.perf_counter() - start) / n

    run(3)
    step_s = statistics.median(run(1) for _ in range(steps))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        run(steps)
        jax.profiler.stop_trace()
        durations = traced_durations(trace_dir, set(op_names), steps)
    table = collections.defaultdict(float)
    ops = []
    for name, ms in durations.items():
        op_name = op_names[name]
        part, direction, kind = classify(name, op_name)
        table[(part, direction, kind)] += ms
        ops.append(dict(name=name, ms=ms, part=part, direction=direction, kind=kind, op_name=op_name))
    ops.sort(key=lambda op: -op["ms"])
    return dict(step_ms=1e3 * step_s, traced_ms=sum(durations.values()), table=table, ops=ops)


def profile_torch(config, steps: int, threads: int) -> dict:
    import numpy as np
    import torch
    from bench_vs_torch import torch_model_and_optimizer

    model, opt = torch_model_and_optimizer(config, torch, threads)
    tc = config.train
    tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, (tc.batch_size, tc.seq_len + 1))
    batch = torch.from_numpy(tokens)

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            loss = model(batch[:, :-1], batch[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss.item()
        return (time.perf_counter() - start) / n

    run(3)
    step_s = statistics.median(run(1) for _ in range(steps))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run(steps)
    kinds = collections.defaultdict(float)
    ops = []
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1e3 / steps
        name = event.key
        if re.search(r"aten::(mm|addmm|bmm|matmul|linear|_scaled_dot_product|baddbmm)", name) or "mkldnn" in name:
            kind = "matmul"
        elif re.search(r"aten::(copy_|contiguous|clone|transpose|t|permute|view|reshape|as_strided|expand)$", name):
            kind = "layout copy"
        else:
            kind = "other"
        kinds[kind] += ms
        ops.append(dict(name=name, ms=ms, kind=kind, calls=event.count // steps))
    ops.sort(key=lambda op: -op["ms"])
    return dict(step_ms=1e3 * step_s, kinds=dict(kinds), ops=ops)


def matmul_peaks(threads: int) -> dict[str, float]:
    """GFLOP/s of a ``MATMUL_SIZE``-cube float32 product in JAX and in PyTorch (best of 5)."""
    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(threads)
    n = MATMUL_SIZE
    flops = 2 * n**3
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    best = {"jax": 0.0, "torch": 0.0}
    ta = torch.randn(n, n)
    torch.mm(ta, ta)
    for _ in range(5):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best["jax"] = max(best["jax"], flops / (time.perf_counter() - start) / 1e9)
        start = time.perf_counter()
        torch.mm(ta, ta)
        best["torch"] = max(best["torch"], flops / (time.perf_counter() - start) / 1e9)
    return best


def print_report(config, jax_result: dict, torch_result: dict, peaks: dict, trainer_tps: float | None) -> None:
    tc = config.train
    tokens = tc.batch_size * tc.seq_len
    jx, pt = jax_result, torch_result
    print(
        f"\n{config.name}: {config.model.n_layer} layers, d {config.model.n_embd}, "
        f"{tc.batch_size}x{tc.seq_len} tokens, vocab {config.model.padded_vocab_size()}"
    )
    print(
        f"step (fixed batch): warmup_jax {jx['step_ms']:.0f} ms ({tokens / jx['step_ms'] * 1e3:,.0f} tokens/s), "
        f"PyTorch eager {pt['step_ms']:.0f} ms ({tokens / pt['step_ms'] * 1e3:,.0f} tokens/s); "
        f"ratio {pt['step_ms'] / jx['step_ms']:.3f}"
    )
    if trainer_tps:
        loader = 1 - jx["step_ms"] / (tokens / trainer_tps * 1e3)
        print(f"warmup_jax trainer (loader, logging): {trainer_tps:,.0f} tokens/s; outside the step: {loader:.1%}")
    print(
        f"large matmul ({MATMUL_SIZE}^3 float32): JAX {peaks['jax']:.1f} GFLOP/s, PyTorch {peaks['torch']:.1f} GFLOP/s"
    )
    print(f"\nwarmup_jax, ms per step by part (traced {jx['traced_ms']:.0f} of {jx['step_ms']:.0f} ms):")
    kinds = ("matmul", "layout copy", "other")
    print(f"{'part':12s} {'pass':9s} " + " ".join(f"{k:>11s}" for k in kinds) + f" {'total':>8s}")
    rows = sorted({(p, d) for p, d, _ in jx["table"]}, key=lambda r: -sum(jx["table"].get((*r, k), 0) for k in kinds))
    for part, direction in rows:
        values = [jx["table"].get((part, direction, k), 0.0) for k in kinds]
        print(f"{part:12s} {direction:9s} " + " ".join(f"{v:11.1f}" for v in values) + f" {sum(values):8.1f}")
    totals = [sum(v for (_, _, k), v in jx["table"].items() if k == kind) for kind in kinds]
    print(f"{'all':22s} " + " ".join(f"{v:11.1f}" for v in totals) + f" {sum(totals):8.1f}")
    print("\nwarmup_jax, the 12 slowest operations:")
    for op in jx["ops"][:12]:
        print(f"  {op['ms']:7.1f} ms  {op['name']:28s} {op['part']}/{op['direction']}/{op['kind']}")
    print("\nPyTorch eager, ms per step by kind: " + ", ".join(f"{k} {v:.1f}" for k, v in pt["kinds"].items()))
    print("PyTorch eager, the 12 slowest operations (self time):")
    for op in pt["ops"][:12]:
        print(f"  {op['ms']:7.1f} ms  {op['name']:40s} x{op['calls']}  {op['kind']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu_small")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--vocab-size", type=int, default=8192, help="model vocabulary (random tokens)")
    parser.add_argument("--steps", type=int, default=8, help="timed and traced steps of each side")
    parser.add_argument("--trainer", action="store_true", help="also time the real trainer (needs the corpus)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax

    from warmup_jax.config import load_config

    config = load_config(args.config, ["metrics.interval=0", *args.overrides])
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=args.vocab_size))
    threads = os.cpu_count() if jax.default_backend() == "cpu" else 1
    peaks = matmul_peaks(threads)
    jax_result = profile_jax(config, args.steps)
    torch_result = profile_torch(config, args.steps, threads)
    trainer_tps = None
    if args.trainer:
        from bench_vs_torch import run_jax

        trainer_tps = run_jax(args.config, args.overrides, 4 * args.steps, args.steps, metrics=False)
    print_report(config, jax_result, torch_result, peaks, trainer_tps)
    if args.json:
        jax_result["table"] = [dict(part=p, direction=d, kind=k, ms=v) for (p, d, k), v in jax_result["table"].items()]
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config, threads=threads, peaks=peaks, jax=jax_result, torch=torch_result), f)


if __name__ == "__main__":
    main()
