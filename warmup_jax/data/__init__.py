"""Data: corpora, tokenizers, cached token streams and the grain training loader.

Depends on numpy, tensorflow-datasets (no TensorFlow), grain, tiktoken and tokenizers; never
on jax.numpy (jax is imported only for the default process index / count). See DATA.md.
"""

from warmup_jax.data.config import ConfigError, DataConfig
from warmup_jax.data.corpus import CorpusError
from warmup_jax.data.loader import (
    SeqLenWarmup,
    TokenWindows,
    TrainLoader,
    eval_batches,
    seq_len_at,
    seq_len_buckets,
    tokens_seen,
)
from warmup_jax.data.tokenizer import Tokenizer
from warmup_jax.data.tokens import PreparedData, get_tokenizer, prepare_data

__all__ = [
    "ConfigError",
    "CorpusError",
    "DataConfig",
    "PreparedData",
    "SeqLenWarmup",
    "TokenWindows",
    "Tokenizer",
    "TrainLoader",
    "eval_batches",
    "get_tokenizer",
    "prepare_data",
    "seq_len_at",
    "seq_len_buckets",
    "tokens_seen",
]
