"""A local TFDS dataset of text documents (ArrayRecord files, train and validation splits).

The debian and text_dir sources are both written through `WarmupText`. Its builder config is
named after a hash of the corpus (package versions or the folder's file list, sizes and
modification times) and of the validation fraction, so a changed corpus gets a new dataset
and an unchanged one is read back from `<cache>/tfds` without rebuilding. Reading uses
`tfds.data_source`, which needs no TensorFlow.

A document goes to the validation split when the SHA-256 of its id, read as a number in
[0, 1), is below the validation fraction (at least one document goes each way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import tensorflow_datasets as tfds

from warmup_jax.data import corpus
from warmup_jax.data._cache import file_lock, short_hash

DATASET_NAME = "warmup_text"
SPLITS = ("train", "validation")
_FORMAT = 1  # bump when the record layout or the split rule changes


@dataclasses.dataclass(eq=False)
class WarmupTextConfig(tfds.core.BuilderConfig):
    corpus: str = "text_dir"  # "debian" or "text_dir"
    path: str = ""  # the extracted Debian corpus or the text folder
    validation_fraction: float = 0.02


class WarmupText(tfds.core.GeneratorBasedBuilder):
    """Documents of a local corpus: features text, doc_id and source."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: list = []  # made at run time, see `text_data_sources`

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # No checksums file to find next to this module. (tfds' own lookup imports the
        # `importlib_resources` backport, which tfds only requires on Python < 3.9.)
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description="Local text corpus for warmup_jax (one record per document).",
            features=tfds.features.FeaturesDict(
                {"text": text, "doc_id": tfds.features.Text(), "source": tfds.features.Text()}
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        ids = [doc.doc_id for doc in self._documents()]
        validation = validation_ids(ids, self.builder_config.validation_fraction)
        return {split: self._generate_examples(split, validation) for split in SPLITS}

    def _generate_examples(self, split: str, validation: frozenset[str]):
        for doc in self._documents():
            if (doc.doc_id in validation) == (split == "validation"):
                yield doc.doc_id, {"text": doc.text, "doc_id": doc.doc_id, "source": doc.source}

    def _documents(self) -> Iterator[corpus.Document]:
        config = self.builder_config
        if config.corpus == "debian":
            return corpus.iter_debian_documents(Path(config.path))
        return corpus.iter_text_dir_documents(config.path)


def validation_ids(doc_ids: Sequence[str], fraction: float) -> frozenset[str]:
    """The ids whose hash falls below `fraction`; never empty, never all (needs two ids)."""
    if len(doc_ids) < 2:
        raise corpus.CorpusError(f"need at least 2 documents to make train and validation splits, got {len(doc_ids)}")
    if len(set(doc_ids)) != len(doc_ids):
        raise ValueError("document ids are not unique")
    score = {doc_id: _unit_hash(doc_id) for doc_id in doc_ids}
    chosen = {doc_id for doc_id, s in score.items() if s < fraction}
    if not chosen:
        chosen = {min(score, key=score.get)}
    if len(chosen) == len(doc_ids):
        chosen.discard(max(score, key=score.get))
    return frozenset(chosen)


def _unit_hash(doc_id: str) -> float:
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2.0**64


def text_data_sources(
    kind: str, path: str, validation_fraction: float, cache_dir: Path
) -> tuple[dict[str, Sequence[dict]], str]:
    """Builds (once) and opens the dataset of a local corpus.

    Returns ({"train": source, "validation": source}, dataset key); each source is a
    random-access sequence of {"text": bytes, "doc_id": bytes, "source": bytes}.
    """
    cache_dir = Path(cache_dir)
    if kind == "debian":
        root = corpus.debian_corpus(cache_dir)
        fingerprint = corpus.debian_fingerprint(root)
    elif kind == "text_dir":
        root = Path(path).expanduser().resolve()
        fingerprint = corpus.text_dir_fingerprint(root)
    else:
        raise ValueError(f"no local corpus of kind {kind!r}")
    key = f"{kind}_{short_hash([_FORMAT, fingerprint, validation_fraction])}"
    config = WarmupTextConfig(name=key, corpus=kind, path=str(root), validation_fraction=validation_fraction)
    data_dir = cache_dir / "tfds"
    with file_lock(cache_dir / "locks" / f"tfds-{key}.lock"), _without_custom_config_warning():
        sources = tfds.data_source(
            DATASET_NAME,
            split=list(SPLITS),
            data_dir=os.fspath(data_dir),
            builder_kwargs={"config": config, "file_format": "array_record"},
            download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(try_download_gcs=False)},
        )
    return dict(zip(SPLITS, sources)), key


class _DropCustomConfigWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using custom data configuration")


@contextlib.contextmanager
def _without_custom_config_warning():
    """tfds warns on every open that our run-time config is not in BUILDER_CONFIGS; that is by design."""
    absl_logger = logging.getLogger("absl")
    drop = _DropCustomConfigWarning()
    absl_logger.addFilter(drop)
    try:
        yield
    finally:
        absl_logger.removeFilter(drop)
