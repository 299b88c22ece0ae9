"""DataConfig: where the text comes from, how it is tokenized, how it is batched."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from warmup_jax.errors import ConfigError  # one error type for every config section

SOURCES = ("debian", "nanogpt_bin", "text_dir", "tfds")
TOKENIZERS = ("bpe", "gpt2")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data settings (the `data.` section of the experiment config).

    source: "debian" (default corpus built from Debian packages), "text_dir" (a folder of
      .txt/.md/.rst files, searched recursively), "tfds" (a prepared TFDS catalog dataset) or
      "nanogpt_bin" (a folder with nanoGPT's uint16 train.bin / val.bin).
    path: the folder (text_dir, nanogpt_bin) or the TFDS name, e.g. "wikipedia/20230601.en".
    tokenizer: "gpt2" (exact GPT-2 BPE) or "bpe" (byte-level BPE trained on the train split).
    validation_fraction: share of documents (or, for a TFDS dataset without a validation
      split, of the train split) held out for validation.
    cache_dir: "" means $WARMUP_JAX_CACHE, else ~/.cache/warmup_jax.
    seq_len_warmup_steps: length of the sequence-length warmup (0 = off); lengths ramp from
      seq_len_min to the model's sequence length in multiples of seq_len_bucket.
    bpe_train_max_bytes: at most this much text (in document order) trains the BPE.
    num_parts, part: train on part `part` (0-based) of `num_parts` contiguous, equal slices of the
      token streams in document order (for continued pre-training on another part of a corpus).
      The validation stream is cut at the same fractions, so each part is evaluated on its own
      held-out text; the trainer also reports the validation loss of every part.
    """

    source: str = "debian"
    path: str = ""
    tfds_text_key: str = "text"
    tfds_data_dir: str = ""
    tokenizer: str = "bpe"
    bpe_vocab_size: int = 8192
    validation_fraction: float = 0.02
    cache_dir: str = ""
    seed: int = 0
    num_workers: int = 0
    seq_len_warmup_steps: int = 0
    seq_len_min: int = 8
    seq_len_bucket: int = 8
    bpe_train_max_bytes: int = 200_000_000
    num_parts: int = 1
    part: int = 0

    def validate(self) -> None:
        """Raises ConfigError for the first field whose value is not allowed."""
        _check_choice("source", self.source, SOURCES)
        _check_type("path", self.path, str)
        _check_type("tfds_text_key", self.tfds_text_key, str)
        _check_type("tfds_data_dir", self.tfds_data_dir, str)
        _check_type("cache_dir", self.cache_dir, str)
        _check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        _check_int("bpe_vocab_size", self.bpe_vocab_size, 258, 2**31 - 1)
        _check_fraction("validation_fraction", self.validation_fraction)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_int("num_workers", self.num_workers, 0, 1024)
        _check_int("seq_len_warmup_steps", self.seq_len_warmup_steps, 0, 2**31 - 1)
        _check_int("seq_len_min", self.seq_len_min, 1, 2**31 - 1)
        _check_int("seq_len_bucket", self.seq_len_bucket, 1, 2**31 - 1)
        _check_int("bpe_train_max_bytes", self.bpe_train_max_bytes, 1, 2**62)
        _check_int("num_parts", self.num_parts, 1, 1024)
        _check_int("part", self.part, 0, self.num_parts - 1)
        if self.source == "debian":
            if self.path:
                raise ConfigError(
                    f"data.path={self.path!r} is not used by data.source='debian'; leave it empty, "
                    "or use data.source='text_dir' to train on a folder of text files"
                )
        elif not self.path:
            what = "a TFDS name such as 'wikipedia/20230601.en'" if self.source == "tfds" else "a folder"
            raise ConfigError(f"data.path='' is not allowed with data.source={self.source!r}; give {what}")
        if self.source == "tfds" and not self.tfds_text_key:
            raise ConfigError("data.tfds_text_key='' is not allowed; name the dataset's text feature")
        if self.source == "nanogpt_bin" and self.tokenizer != "gpt2":
            raise ConfigError(
                f"data.tokenizer={self.tokenizer!r} is not allowed with data.source='nanogpt_bin' "
                "(its .bin files hold GPT-2 token ids); choose one of: 'gpt2'"
            )

    def resolved_cache_dir(self) -> Path:
        """The cache folder: cache_dir, else $WARMUP_JAX_CACHE, else ~/.cache/warmup_jax."""
        return resolve_cache_dir(self.cache_dir)


def resolve_cache_dir(cache_dir: str | os.PathLike = "") -> Path:
    chosen = str(cache_dir) or os.environ.get("WARMUP_JAX_CACHE", "") or "~/.cache/warmup_jax"
    return Path(chosen).expanduser()


def _check_type(field: str, value, kind: type) -> None:
    if not isinstance(value, kind):
        raise ConfigError(f"data.{field}={value!r} is not allowed; it must be a {kind.__name__}")


def _check_choice(field: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"data.{field}={value!r} is not allowed; choose one of: {allowed}")


def _check_int(field: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"data.{field}={value!r} is not allowed; it must be an integer in [{low}, {high}]")


def _check_fraction(field: str, value) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value <= 0.5
    if not ok:
        raise ConfigError(f"data.{field}={value!r} is not allowed; it must be a number in (0, 0.5]")
