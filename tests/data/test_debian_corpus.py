import collections
import shutil
import subprocess

import numpy as np
import pytest

from warmup_jax.data import CorpusError, DataConfig, corpus, prepare_data
from warmup_jax.data.debian_texts import bible_chapters, jargon_entries
from warmup_jax.data.tokens import open_text_splits


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt (Debian/Ubuntu)")
def test_real_debian_corpus_from_scratch(tmp_path):
    """Fetches the three packages with apt, extracts, splits, trains the BPE and tokenizes."""
    if subprocess.run(["apt-cache", "show", "jargon-text"], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
    cfg = DataConfig(cache_dir=str(tmp_path), bpe_vocab_size=2048)
    prepared = prepare_data(cfg)

    root = corpus.debian_corpus(tmp_path)
    docs = list(corpus.iter_debian_documents(root))
    by_source = collections.Counter(doc.source for doc in docs)
    assert by_source["bible-kjv-text"] == 1189  # one document per chapter
    assert by_source["jargon-text"] > 2000  # one per lexicon entry
    assert 300 < sum(n for s, n in by_source.items() if s.startswith("python3.")) < 1000  # one per .rst file
    genesis = next(doc for doc in docs if doc.doc_id == "kjv/01-Genesis/001")
    assert genesis.text.startswith("Genesis 1\n\n1 In the beginning God created the heaven and the earth.\n")
    assert (root / "licences" / "jargon-text").exists() and (root / ".complete").exists()

    splits = open_text_splits(cfg)
    assert len(splits.train) + len(splits.validation) == len(docs)
    assert 20 < len(splits.validation) < 200  # ~2%
    assert len(prepared.train_tokens) > 2_000_000 and len(prepared.val_tokens) > 10_000
    assert prepared.vocab_size == 2048
    text = prepared.tokenizer.decode(prepared.val_tokens[:2000])
    assert text.isprintable() or "\n" in text
    assert prepared.description.startswith("debian corpus: ")


def test_no_apt_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda tool: None)
    with pytest.raises(CorpusError, match=r"`apt-get` is not installed.*--set data.source=text_dir --set data.path="):
        corpus.debian_corpus(tmp_path)
    assert not (tmp_path / "corpus" / f"debian-v{corpus.DEBIAN_CORPUS_FORMAT}" / ".complete").exists()


def test_unknown_packages_trigger_one_apt_update(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, cwd=None):
        calls.append(cmd[:2])
        return subprocess.CompletedProcess(cmd, 100, stdout="", stderr="E: Unable to locate package")

    monkeypatch.setattr(corpus, "_run", fake_run)
    monkeypatch.setattr(corpus.os, "geteuid", lambda: 0)
    with pytest.raises(CorpusError, match="apt does not know the package.*data.source=text_dir"):
        corpus._apt_download(tmp_path / "debs")
    assert calls.count(["apt-get", "update"]) == 1


def test_bible_and_jargon_parsers():
    bible = "Header\nGe1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\nExo1:1 Now these.\n"
    chapters = list(bible_chapters(bible))
    assert [c[0] for c in chapters] == ["01-Genesis/001", "01-Genesis/002", "02-Exodus/001"]
    assert chapters[0][1] == "Genesis 1\n\n1 In the beginning.\n2 And the earth.\n"
    jargon = (
        "Title\n\n   :foo: n.\n\n   A thing.\n\n   :bar:\n\n   Another.\n\nAppendix\u00a0A.\u00a0Folklore\n\nStories.\n"
    )
    entries = [text for _, text in jargon_entries(jargon)]
    assert entries == [
        "Title\n",
        ":foo: n.\n\nA thing.\n",
        ":bar:\n\nAnother.\n",
        "Appendix A. Folklore\n\nStories.\n",
    ]


def test_lzw_round_trip_against_a_reference_encoder():
    from warmup_jax.data.debian_texts import lzw_decompress

    rng = np.random.default_rng(0)
    small = b"TOBEORNOTTOBEORTOBEORNOT#" * 50
    large = bytes(rng.integers(97, 113, 300_000, dtype=np.uint8))  # fills the 16-bit table
    for data, max_bits in ((small, 16), (large, 16), (large, 12)):
        assert lzw_decompress(_lzw_compress(data, max_bits, clear=False), max_bits) == data
        assert lzw_decompress(_lzw_compress(data, max_bits, clear=True), max_bits) == data


def _lzw_compress(data: bytes, max_bits: int, clear: bool) -> bytes:
    """A minimal Unix-compress style encoder (block mode), written for this test: codes packed
    LSB first; when the code width grows or after a CLEAR code (sent whenever the table is
    full if `clear`), the rest of the current group of 8 codes is padding."""
    table = {bytes([i]): i for i in range(256)}
    next_code, n_bits, emitted = 257, 9, 0
    acc, acc_bits, written, origin = 0, 0, 0, 0
    out = bytearray()

    def put(value, width):
        nonlocal acc, acc_bits, written
        acc |= value << acc_bits
        acc_bits += width
        written += width
        while acc_bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            acc_bits -= 8

    def pad_group():
        nonlocal origin
        put(0, (-(written - origin)) % (n_bits * 8))
        origin = written

    def emit(code):
        nonlocal n_bits, emitted
        if 256 + emitted >= (1 << n_bits) and n_bits < max_bits:
            pad_group()
            n_bits += 1
        put(code, n_bits)
        emitted += 1

    current = b""
    for byte in data:
        candidate = current + bytes([byte])
        if candidate in table:
            current = candidate
            continue
        emit(table[current])
        if next_code < (1 << max_bits):
            table[candidate] = next_code
            next_code += 1
        elif clear:
            emit(256)
            pad_group()
            table = {bytes([i]): i for i in range(256)}
            next_code, n_bits, emitted = 257, 9, 0
        current = bytes([byte])
    if current:
        emit(table[current])
    if acc_bits:
        out.append(acc)
    return bytes(out)
