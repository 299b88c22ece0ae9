"""Training throughput side by side: warmup_jax's trainer vs a PyTorch eager reference, alternated.

The reference is a nanoGPT-style GPT written here in plain PyTorch with the same shapes as the
config's model (pre-LN blocks, exact GELU, no biases, tied embeddings, causal attention through
``scaled_dot_product_attention``), trained eagerly with ``torch.optim.AdamW`` (β = 0.9, 0.95,
weight decay 0.1 on matrices), global-norm clipping at 1.0, float32, on the same token stream
(random windows), with ``torch.set_num_threads`` = the cores JAX uses. warmup_jax runs its real
trainer (loader, compiled step, logging; no evaluation, no checkpoints until the end, update
metrics off as the reference has none; ``--metrics`` turns them on). The two take turns
``--rounds`` times so that background load hits both alike; each round drops its first
``--warmup`` steps (compilation, allocator warm-up) and reports tokens/s over the rest.

    python bench/bench_vs_torch.py                          # cpu_small: 4 layers, d 256, 16 x 128, vocab 8192
    python bench/bench_vs_torch.py --steps 30 --rounds 3 --json /tmp/vs_torch.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time


def torch_gpt(cfg, torch):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg.n_embd
            self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
            self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.fc, self.out = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

        def forward(self, x):
            B, T, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            heads = lambda t: t.view(B, T, cfg.n_head, d // cfg.n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
            for p in self.parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.02)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T  # tied
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    return GPT()


def torch_model_and_optimizer(config, torch, threads: int):
    """The reference GPT (seed 0) and its AdamW (β = 0.9, 0.95; weight decay 0.1 on matrices)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_gpt(config.model, torch)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=config.optim.lr,
        betas=(0.9, 0.95),
    )
    return model, opt


def run_torch(config, tokens, steps: int, warmup: int, threads: int) -> float:
    import numpy as np
    import torch

    model, opt = torch_model_and_optimizer(config, torch, threads)
    B, T = config.train.batch_size, config.train.seq_len
    rng = np.random.default_rng(0)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        rows = rng.integers(0, len(tokens) - T - 1, size=B)
        batch = torch.from_numpy(np.stack([np.asarray(tokens[r : r + T + 1], dtype=np.int64) for r in rows]))
        loss = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert math.isfinite(loss.item())
    return steps * B * T / (time.perf_counter() - start)


def run_jax(config_name: str, overrides: list[str], steps: int, warmup: int, metrics: bool) -> float:
    from warmup_jax.config import load_config
    from warmup_jax.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        config = load_config(
            config_name,
            [
                f"train.steps={warmup + steps}",
                "train.eval_interval=0",
                "train.checkpoint_interval=0",
                f"train.log_interval={warmup}",
                f"train.out_dir={out}",
                "train.tensorboard=false",
                "train.progress=false",
                *([] if metrics else ["metrics.interval=0"]),
                *overrides,
            ],
        )
        trainer = Trainer(config, quiet=True)
        trainer.run()
        with open(os.path.join(out, "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
    # The trainer's throughput windows end at multiples of the log interval; the first one holds
    # the compilation and the steps of the warm-up.
    windows = [line["tokens_per_s"] for line in lines if "tokens_per_s" in line][1:]
    return statistics.mean(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu_small")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round (a multiple of --warmup)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--metrics", action="store_true", help="warmup_jax with its update metrics on")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import jax

    from warmup_jax.config import load_config
    from warmup_jax.data import prepare_data
    from warmup_jax.train.trainer import resolve_vocab

    config = load_config(args.config, args.overrides)
    data = prepare_data(config.data)
    config = resolve_vocab(config, data.vocab_size)
    threads = os.cpu_count() if jax.default_backend() == "cpu" else 1
    results = {"torch": [], "warmup_jax": []}
    for round_ in range(args.rounds):
        results["torch"].append(run_torch(config, data.train_tokens, args.steps, args.warmup, threads))
        results["warmup_jax"].append(run_jax(args.config, args.overrides, args.steps, args.warmup, args.metrics))
        print(
            f"round {round_ + 1}/{args.rounds}: PyTorch eager {results['torch'][-1]:,.0f} tokens/s, "
            f"warmup_jax {results['warmup_jax'][-1]:,.0f} tokens/s",
            flush=True,
        )
    torch_median, jax_median = (statistics.median(results[k]) for k in ("torch", "warmup_jax"))
    print(
        f"{args.config} ({config.model.n_layer} layers, d {config.model.n_embd}, {config.train.batch_size}x"
        f"{config.train.seq_len} tokens, vocab {config.model.vocab_size}, {threads} threads): medians "
        f"PyTorch eager {torch_median:,.0f}, warmup_jax {jax_median:,.0f} tokens/s; "
        f"ratio warmup_jax / PyTorch {jax_median / torch_median:.3f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": args.config, "threads": threads, **results, "ratio": jax_median / torch_median}, f)


if __name__ == "__main__":
    main()
