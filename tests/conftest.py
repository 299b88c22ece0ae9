"""Test set-up: 8 fake CPU devices, so meshes and sharding are exercised without accelerators.

XLA reads XLA_FLAGS when jax initialises its backends, so this must run before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import random  # noqa: E402

import pytest  # noqa: E402

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
    "in",
    "an",
    "old",
    "town",
    "by",
    "the",
    "river",
    "where",
    "nobody",
    "expects",
    "them",
    "to",
    "speak",
    "of",
    "warmup",
    "schedules",
    "or",
    "optimizers",
]


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory):
    """A small folder of seeded pseudo-English .txt files (no network, no Debian packages)."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for i in range(40):
        lines = (" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 20))) for _ in range(150))
        (folder / f"doc{i:02d}.txt").write_text("\n".join(lines))
    return folder


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """One cache for the session, so the corpus is built and tokenized once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_overrides(text_corpus, data_cache, tmp_path):
    """--set overrides that point the tiny config at the test corpus and a fresh out_dir."""
    return [
        "data.source=text_dir",
        f"data.path={text_corpus}",
        f"data.cache_dir={data_cache}",
        "data.bpe_vocab_size=300",
        f"train.out_dir={tmp_path / 'run'}",
        "train.progress=false",
    ]
