"""Shared helpers for the optim tests: a tiny GPT-shaped parameter tree and angle maths."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import warmup_jax.optim as wo


def tiny_params(key: jax.Array, dtype: Any = jnp.float32, scale: float = 0.02) -> dict:
    """GPT-2-like paths, tiny shapes: kernels (in, out), embeddings (vocab, d), a LayerNorm gain."""
    k = jax.random.split(key, 4)
    normal = lambda kk, shape: (scale * jax.random.normal(kk, shape)).astype(dtype)  # noqa: E731
    return {
        "blocks": {
            0: {
                "attn": {"qkv": {"kernel": normal(k[0], (8, 24))}},
                "mlp": {"fc": {"kernel": normal(k[1], (8, 16))}},
                "ln1": {"scale": jnp.ones((8,), dtype)},
            }
        },
        "wte": {"embedding": normal(k[2], (16, 8))},
    }


def random_like(key: jax.Array, tree: Any, scale: float = 1.0) -> Any:
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([(scale * jax.random.normal(kk, x.shape)).astype(x.dtype) for kk, x in zip(keys, leaves)])


def micro_batch_stats(
    grads: Any, num_micro_batches: int = 4, micro_batch_size: int = 3, noise: float = 2.0
) -> wo.MicroBatchStats:
    """Statistics consistent with ``grads`` plus extra per-micro-batch noise of relative size."""

    def sum_sq(g):
        return num_micro_batches * (1.0 + noise) * jnp.sum(jnp.square(g.astype(jnp.float32)))

    sum_sq = jax.tree.map(sum_sq, grads)
    return wo.MicroBatchStats(sum_sq, num_micro_batches, micro_batch_size)


def neuron_angles(before: np.ndarray, after: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Per-neuron angle in float64 with the stable form 2 atan2(|a^ - b^|, |a^ + b^|)."""
    a = np.asarray(before, np.float64)
    b = np.asarray(after, np.float64)
    a = a / np.sqrt(np.sum(a * a, axis=axes, keepdims=True))
    b = b / np.sqrt(np.sum(b * b, axis=axes, keepdims=True))
    diff = np.sqrt(np.sum((a - b) ** 2, axis=axes))
    summ = np.sqrt(np.sum((a + b) ** 2, axis=axes))
    return 2.0 * np.arctan2(diff, summ)


def neuron_norms(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.sqrt(np.sum(x * x, axis=axes))
