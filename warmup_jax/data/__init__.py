"""Data: corpora, tokenizers, cached token streams and the grain training loader.

Depends on numpy, tensorflow-datasets (no TensorFlow), grain, tiktoken and tokenizers; never
on jax.numpy (jax is imported only for the default process index / count). See DATA.md.

The names below are imported on first use, so that ``warmup_jax.data.config`` (and with it
``warmup_jax.config``) can be imported without grain, tensorflow-datasets or the tokenizers.
"""

import importlib
from typing import Any

_WHERE = {
    "ConfigError": "warmup_jax.data.config",
    "DataConfig": "warmup_jax.data.config",
    "CorpusError": "warmup_jax.data.corpus",
    "SeqLenWarmup": "warmup_jax.data.loader",
    "TokenWindows": "warmup_jax.data.loader",
    "TrainLoader": "warmup_jax.data.loader",
    "eval_batches": "warmup_jax.data.loader",
    "seq_len_at": "warmup_jax.data.loader",
    "seq_len_buckets": "warmup_jax.data.loader",
    "tokens_seen": "warmup_jax.data.loader",
    "Tokenizer": "warmup_jax.data.tokenizer",
    "PreparedData": "warmup_jax.data.tokens",
    "get_tokenizer": "warmup_jax.data.tokens",
    "prepare_data": "warmup_jax.data.tokens",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'warmup_jax.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
