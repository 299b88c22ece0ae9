"""Every source -> one flat token stream per split, tokenized once and cached as .npy.

Documents are tokenized in order and each is followed by the tokenizer's <|endoftext|> id.
The streams live in `<cache>/tokens/<dataset key>/<tokenizer id>/{train,val}.npy` (uint16
when the vocabulary fits, else uint32) and are opened with `np.load(mmap_mode="r")`, so
training reads them from disk instead of memory. `meta.json` is written last: a folder
without it is tokenized again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grain
import numpy as np
from tqdm.auto import tqdm

from warmup_jax.data import tfds_text
from warmup_jax.data._cache import file_lock, short_hash, write_json_atomic
from warmup_jax.data.config import DataConfig
from warmup_jax.data.corpus import CorpusError
from warmup_jax.data.tokenizer import (
    GPT2_VOCAB_SIZE,
    BPETokenizer,
    GPT2Tokenizer,
    Tokenizer,
    train_bpe,
)

log = logging.getLogger(__name__)

DOCS_PER_BATCH = 64
_COPY_CHUNK = 1 << 24  # tokens


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Tokenized train and validation streams plus the tokenizer that made them."""

    tokenizer: Tokenizer
    vocab_size: int  # the model's embedding needs at least this many rows
    train_tokens: np.ndarray  # 1-D, read-only memmap
    val_tokens: np.ndarray
    description: str  # e.g. "debian corpus: 4.2M train tokens, 85k val tokens, bpe-8192"
    # With data.num_parts > 1: the validation stream of every part (val_tokens is that of data.part).
    val_parts: tuple[np.ndarray, ...] = ()

    @property
    def eot_id(self) -> int:
        return self.tokenizer.eot_id


@dataclasses.dataclass(frozen=True)
class TextSplits:
    """Random-access documents of one dataset: records are dicts, text under `text_key`."""

    train: Sequence[dict]
    validation: Sequence[dict]
    text_key: str
    key: str  # identifies the dataset contents (cache key)
    label: str  # for the description, e.g. "debian corpus"


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Fetches, splits, tokenizes (each once, cached) and opens the data `cfg` describes.

    A cache that is complete for `cfg` may be read-only. An I/O failure (a read-only or full
    cache that still lacks something) is a CorpusError naming the path; what was finished stays
    cached, and a half-written file is never taken for a finished one.
    """
    cfg.validate()
    cache = cfg.resolved_cache_dir()
    try:
        return select_part(_prepare_data(cfg, cache), cfg.part, cfg.num_parts)
    except FileNotFoundError:
        raise
    except OSError as e:
        path = e.filename or cache
        hint = (
            "free space there, or set data.cache_dir to a folder with room"
            if e.errno in (errno.ENOSPC, errno.EDQUOT)
            else "set data.cache_dir to a writable folder (a read-only cache serves runs once it holds their "
            "data: `warmup-jax prepare-data` fills one)"
        )
        raise CorpusError(
            f"data.cache_dir={str(cache)!r}: cannot prepare the data, {str(path)!r}: {e.strerror or e}; {hint}"
        ) from None


def stream_parts(tokens: np.ndarray, num_parts: int) -> list[np.ndarray]:
    """``num_parts`` contiguous slices of a token stream, of equal length up to one token (views)."""
    bounds = np.linspace(0, len(tokens), num_parts + 1).round().astype(np.int64)
    return [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def select_part(data: PreparedData, part: int, num_parts: int) -> PreparedData:
    """The data of part ``part`` of ``num_parts`` (``data.part``, ``data.num_parts``): the same
    fraction of the training and of the validation stream, both in document order."""
    if num_parts == 1:
        return data
    train = stream_parts(data.train_tokens, num_parts)[part]
    val_parts = tuple(stream_parts(data.val_tokens, num_parts))
    first, *rest = data.description.split("\n", 1)
    sizes = f"{_human(len(train))} train, {_human(len(val_parts[part]))} val tokens"
    label = f"{first}; part {part} of {num_parts} (0-based): {sizes}"
    return dataclasses.replace(
        data,
        train_tokens=train,
        val_tokens=val_parts[part],
        val_parts=val_parts,
        description="\n".join([label, *rest]),
    )


def _prepare_data(cfg: DataConfig, cache: Path) -> PreparedData:
    if cfg.source == "nanogpt_bin":
        return _open_nanogpt_bin(cfg.path, cache)
    splits = open_text_splits(cfg)
    tokenizer, tokenizer_id = _tokenizer_for_splits(cfg, splits, cache)
    out_dir = cache / "tokens" / splits.key / tokenizer_id
    with file_lock(cache / "locks" / f"tokens-{splits.key}-{tokenizer_id}.lock"):
        if not (out_dir / "meta.json").exists():
            out_dir.mkdir(parents=True, exist_ok=True)
            counts, start = {}, time.perf_counter()
            for name, source in (("train", splits.train), ("val", splits.validation)):
                counts[name] = write_token_stream(
                    source, splits.text_key, tokenizer, out_dir / f"{name}.npy", desc=name
                )
            log.info(
                "tokenized %s with %s in %.1fs: %s",
                splits.label,
                tokenizer.name,
                time.perf_counter() - start,
                counts,
            )
            write_json_atomic(
                out_dir / "meta.json", {"tokenizer": tokenizer.name, "tokens": counts, "label": splits.label}
            )
    train = np.load(out_dir / "train.npy", mmap_mode="r")
    val = np.load(out_dir / "val.npy", mmap_mode="r")
    return PreparedData(
        tokenizer, tokenizer.vocab_size, train, val, _describe(splits.label, train, val, tokenizer.name)
    )


def get_tokenizer(spec: DataConfig | str) -> Tokenizer:
    """The tokenizer of a DataConfig (training the BPE if needed), or by name: "gpt2" or a BPE .json path."""
    if isinstance(spec, DataConfig):
        if spec.tokenizer == "gpt2":
            return GPT2Tokenizer()
        return _tokenizer_for_splits(spec, open_text_splits(spec), spec.resolved_cache_dir())[0]
    if spec == "gpt2":
        return GPT2Tokenizer()
    if str(spec).endswith(".json") and Path(spec).is_file():
        return BPETokenizer(spec)
    raise ValueError(f"unknown tokenizer {spec!r}; give 'gpt2', the path of a BPE .json file, or a DataConfig")


# ----------------------------------------------------------------------------- sources


def open_text_splits(cfg: DataConfig) -> TextSplits:
    """The train / validation documents of a text source (debian, text_dir or tfds)."""
    cache = cfg.resolved_cache_dir()
    if cfg.source in ("debian", "text_dir"):
        sources, key = tfds_text.text_data_sources(cfg.source, cfg.path, cfg.validation_fraction, cache)
        label = "debian corpus" if cfg.source == "debian" else f"text_dir {cfg.path}"
        return TextSplits(sources["train"], sources["validation"], "text", key, label)
    if cfg.source == "tfds":
        return _open_tfds_catalog(cfg)
    raise ValueError(f"data.source={cfg.source!r} has no documents (it is already tokenized)")


def _open_tfds_catalog(cfg: DataConfig) -> TextSplits:
    import tensorflow_datasets as tfds

    data_dir = os.path.expanduser(cfg.tfds_data_dir) if cfg.tfds_data_dir else None
    where = f"data_dir {data_dir!r}" if data_dir else "the default TFDS data_dir (~/tensorflow_datasets)"
    prepare_hint = (
        f"Prepare it first on a machine with network access, in ArrayRecord format, e.g. "
        f"`tfds build {cfg.path.split('/')[0]} --file_format=array_record"
        + (f" --data_dir={data_dir}`" if data_dir else "`")
        + ", then point data.tfds_data_dir at that folder."
    )
    try:
        builder = tfds.builder(cfg.path, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as error:  # unknown name, missing optional dependency of its builder, ...
        raise CorpusError(
            f"TFDS dataset {cfg.path!r} (data.path) cannot be opened from {where}: {_first_line(error)}. {prepare_hint}"
        ) from error
    if not prepared:
        raise CorpusError(
            f"TFDS dataset {cfg.path!r} is not prepared in {where}; nothing is downloaded at run time. {prepare_hint}"
        )
    features = builder.info.features
    if cfg.tfds_text_key not in features:
        raise CorpusError(
            f"data.tfds_text_key={cfg.tfds_text_key!r} is not a feature of {cfg.path!r}; "
            f"it has: {', '.join(features.keys())}"
        )
    splits = builder.info.splits
    if "validation" in splits:
        train_split, val_split = "train", "validation"
    else:
        n = splits["train"].num_examples
        n_val = max(1, round(n * cfg.validation_fraction))
        train_split, val_split = f"train[:{n - n_val}]", f"train[{n - n_val}:]"
    try:
        train, val = tfds.data_source(cfg.path, split=[train_split, val_split], data_dir=data_dir, download=False)
    except Exception as error:
        raise CorpusError(
            f"TFDS dataset {cfg.path!r} cannot be read without TensorFlow: {_first_line(error)}. {prepare_hint}"
        ) from error
    key = "tfds_" + short_hash(
        [
            cfg.path,
            str(builder.data_dir),
            str(builder.info.version),
            train_split,
            val_split,
            cfg.tfds_text_key,
        ]
    )
    return TextSplits(train, val, cfg.tfds_text_key, key, f"tfds {cfg.path}")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


_ID_CHUNK = 1 << 24  # tokens per block of the id check (32 MB of uint16)


def check_token_ids(path: Path, tokens: np.ndarray, vocab_size: int, cache: Path) -> None:
    """Raises CorpusError naming the file and the first position of an id >= ``vocab_size``.

    Reads the whole stream once, in blocks (seconds per GB); a stream that passed is remembered in
    ``<cache>/checked/`` by path, size and modification time, so later runs skip the scan.
    """
    stat = path.stat()
    marker = cache / "checked" / f"{short_hash([str(path.resolve()), stat.st_size, stat.st_mtime_ns, vocab_size])}.json"
    if marker.exists():
        return
    blocks = range(0, len(tokens), _ID_CHUNK)
    for start in tqdm(blocks, desc=f"checking {path.name}", unit="block", disable=len(blocks) < 8, leave=False):
        block = np.asarray(tokens[start : start + _ID_CHUNK])
        if int(block.max()) >= vocab_size:
            at = int(np.argmax(block >= vocab_size))
            raise CorpusError(
                f"{str(path)!r} holds id {int(block[at])} at token {start + at:,}; ids must be < {vocab_size} "
                "(a stream of GPT-2 token ids)"
            )
    with contextlib.suppress(OSError):  # a read-only cache: the scan is repeated next time
        write_json_atomic(marker, {"path": str(path), "size": stat.st_size, "tokens": len(tokens)})


def _open_nanogpt_bin(folder: str, cache: Path) -> PreparedData:
    root = Path(folder).expanduser()
    paths = {name: root / f"{name}.bin" for name in ("train", "val")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise CorpusError(
            f"data.source='nanogpt_bin' needs train.bin and val.bin (uint16 GPT-2 token ids, as "
            f"nanoGPT's prepare.py writes them) in data.path={folder!r}; missing: {', '.join(missing)}"
        )
    arrays = {}
    for name, path in paths.items():
        if path.stat().st_size < 4 or path.stat().st_size % 2:
            raise CorpusError(f"{str(path)!r} is not a stream of uint16 tokens (size {path.stat().st_size} bytes)")
        arrays[name] = np.memmap(path, dtype=np.uint16, mode="r")
        check_token_ids(path, arrays[name], GPT2_VOCAB_SIZE, cache)
    tokenizer = GPT2Tokenizer()
    label = f"nanogpt_bin {folder}"
    return PreparedData(
        tokenizer,
        tokenizer.vocab_size,
        arrays["train"],
        arrays["val"],
        _describe(label, arrays["train"], arrays["val"], tokenizer.name),
    )


# ----------------------------------------------------------------------------- tokenizing


def _tokenizer_for_splits(cfg: DataConfig, splits: TextSplits, cache: Path) -> tuple[Tokenizer, str]:
    """(tokenizer, id used in cache paths); the BPE is trained on the train split once."""
    if cfg.tokenizer == "gpt2":
        return GPT2Tokenizer(), "gpt2"
    tokenizer_id = f"bpe-{cfg.bpe_vocab_size}-{short_hash([splits.key, cfg.bpe_vocab_size, cfg.bpe_train_max_bytes])}"
    path = cache / "tokenizers" / f"{tokenizer_id}.json"
    with file_lock(cache / "locks" / f"{tokenizer_id}.lock"):
        if not path.exists():
            start = time.perf_counter()
            texts = _texts_up_to(splits.train, splits.text_key, cfg.bpe_train_max_bytes)
            train_bpe(texts, cfg.bpe_vocab_size, path)
            log.info(
                "trained a byte-level BPE (%d ids) on %s in %.1fs",
                cfg.bpe_vocab_size,
                splits.label,
                time.perf_counter() - start,
            )
    return BPETokenizer(path), tokenizer_id


def _texts_up_to(source: Sequence[dict], text_key: str, max_bytes: int) -> Iterator[str]:
    used = 0
    for i in range(len(source)):
        raw = source[i][text_key]
        yield _as_text(raw)
        used += len(raw)
        if used >= max_bytes:
            return


def _as_text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_token_stream(source: Sequence[dict], text_key: str, tokenizer: Tokenizer, path: Path, desc: str = "") -> int:
    """Tokenizes every document of `source` (each followed by EOT) into `path` (.npy); returns the count.

    A grain pipeline reads and decodes the records and tokenizes DOCS_PER_BATCH documents per
    `encode_batch` call (which uses all cores); the ids are streamed to a temporary file,
    so memory stays small however large the corpus is.
    """
    dtype = token_dtype(tokenizer.vocab_size)
    eot = np.array([tokenizer.eot_id], dtype)

    def encode(texts: list[str]) -> np.ndarray:
        pieces = []
        for ids in tokenizer.encode_batch(texts):
            pieces += [np.asarray(ids, dtype), eot]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype)

    batches = (
        grain.MapDataset.source(source)
        .map(lambda record: _as_text(record[text_key]))
        .batch(DOCS_PER_BATCH, batch_fn=list)
        .map(encode)
        .to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    )
    raw_path = path.with_name(f".{path.name}.{os.getpid()}.raw")
    count = 0
    with (
        open(raw_path, "wb") as raw,
        tqdm(
            total=len(source), unit="doc", desc=f"tokenizing {desc}".strip(), mininterval=1.0, leave=False
        ) as progress,
    ):
        for i, ids in enumerate(batches):
            raw.write(ids.tobytes())
            count += len(ids)
            progress.update(min(DOCS_PER_BATCH, len(source) - i * DOCS_PER_BATCH))
    _raw_to_npy(raw_path, path, dtype, count)
    return count


def _raw_to_npy(raw_path: Path, path: Path, dtype: np.dtype, count: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if count == 0:
        with open(tmp, "wb") as f:
            np.lib.format.write_array(f, np.zeros(0, dtype))
    else:
        src = np.memmap(raw_path, dtype=dtype, mode="r", shape=(count,))
        dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(count,))
        for start in range(0, count, _COPY_CHUNK):
            dst[start : start + _COPY_CHUNK] = src[start : start + _COPY_CHUNK]
        dst.flush()
        del src, dst
    os.replace(tmp, path)
    raw_path.unlink()


def _describe(label: str, train: np.ndarray, val: np.ndarray, tokenizer_name: str) -> str:
    return f"{label}: {_human(len(train))} train tokens, {_human(len(val))} val tokens, {tokenizer_name}"


def _human(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)
