"""Throughput accounting: FLOPs per token, peak FLOP/s per device, model FLOPs utilisation."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from warmup_jax.model.config import ModelConfig

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets.
PEAK_FLOPS = {
    "h100": 989e12,
    "h200": 989e12,
    "a100": 312e12,
    "l4": 121e12,
    "a10": 125e12,
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v6": 918e12,
}


def flops_per_token(cfg: ModelConfig, num_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 N for the matmuls with the weights (forward + backward) plus
    12 L D T for attention scores and values (PaLM appendix B; nanoGPT's estimate_mfu).

    ``num_params`` should exclude the position table (it costs a lookup, not a matmul); the tied
    output head is counted through the token embedding.
    """
    return 6.0 * num_params + 12.0 * cfg.n_layer * cfg.n_embd * seq_len


@functools.cache
def measured_matmul_flops(size: int = 1024, repeats: int = 5) -> float:
    """Best float32 matmul FLOP/s of the first device, measured (the CPU has no data sheet)."""
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def peak_flops_per_device(override: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from)."""
    if override > 0:
        return override, "config"
    kind = jax.devices()[0].device_kind.lower()
    for name, flops in PEAK_FLOPS.items():
        if name in kind:
            return flops, f"data sheet ({kind})"
    return measured_matmul_flops(), f"measured f32 matmul ({kind})"
