"""Fixtures for the data tests: tiny text corpora written into tmp_path."""

import random
from pathlib import Path

import pytest

from warmup_jax.data import DataConfig

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "brew",
    "potent",
    "elixirs",
    "in",
    "an",
    "old",
    "stone",
    "tower",
    "near",
    "river",
    "bank",
    "under",
    "pale",
    "moon",
    "light",
    "and",
    "every",
    "traveller",
    "listens",
]


def write_corpus(folder: Path, num_files: int = 40, seed: int = 0) -> list[Path]:
    """Writes `num_files` small English-like documents (nested folders, mixed suffixes)."""
    rng = random.Random(seed)
    paths = []
    for i in range(num_files):
        suffix = (".txt", ".md", ".rst")[i % 3]
        path = folder / f"part{i % 4}" / f"doc{i:03d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))).capitalize() + "."
            for _ in range(rng.randint(3, 12))
        ]
        path.write_text(f"Document {i}: " + " ".join(sentences) + "\n", encoding="utf-8")
        paths.append(path)
    (folder / "ignored.bin").write_bytes(b"\x00\x01 not text")  # wrong suffix: not a document
    return paths


@pytest.fixture
def corpus_writer():
    return write_corpus


@pytest.fixture
def text_folder(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    write_corpus(folder)
    return folder


@pytest.fixture
def text_config(tmp_path, text_folder) -> DataConfig:
    return DataConfig(
        source="text_dir",
        path=str(text_folder),
        cache_dir=str(tmp_path / "cache"),
        bpe_vocab_size=320,
        validation_fraction=0.2,
    )
