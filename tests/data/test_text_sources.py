import dataclasses
import shutil

import numpy as np
import pytest

from warmup_jax.data import CorpusError, DataConfig, prepare_data
from warmup_jax.data.tfds_text import validation_ids
from warmup_jax.data.tokens import open_text_splits


def _doc_ids(source):
    return [source[i]["doc_id"].decode() for i in range(len(source))]


def test_text_dir_splits_are_disjoint_and_cover_the_folder(text_config, text_folder):
    splits = open_text_splits(text_config)
    train, val = set(_doc_ids(splits.train)), set(_doc_ids(splits.validation))
    files = {str(p.relative_to(text_folder)) for p in text_folder.rglob("*") if p.suffix in (".txt", ".md", ".rst")}
    assert train and val
    assert not train & val
    assert train | val == files  # ignored.bin is not a document
    assert 2 <= len(val) <= 16  # about 20% of 40 documents


def test_text_dir_tokens(text_config, text_folder):
    prepared = prepare_data(text_config)
    tokenizer = prepared.tokenizer
    assert prepared.vocab_size == tokenizer.vocab_size <= 320
    assert prepared.train_tokens.dtype == np.uint16 and isinstance(prepared.train_tokens, np.memmap)
    assert int(prepared.train_tokens.max()) < prepared.vocab_size
    splits = open_text_splits(text_config)
    # one EOT after every document, and the stream decodes back to the documents in order
    for stream, source in ((prepared.train_tokens, splits.train), (prepared.val_tokens, splits.validation)):
        assert int((stream == tokenizer.eot_id).sum()) == len(source)
        assert stream[-1] == tokenizer.eot_id
        first_doc = np.split(np.asarray(stream), np.flatnonzero(stream == tokenizer.eot_id))[0]
        assert tokenizer.decode(first_doc) == source[0]["text"].decode()
    assert prepared.description.startswith(f"text_dir {text_folder}: ")
    assert "train tokens" in prepared.description and "bpe-" in prepared.description


def test_text_dir_is_deterministic_and_cached(text_config, tmp_path):
    first = prepare_data(text_config)
    again = prepare_data(text_config)  # from the cache
    assert again.train_tokens.filename == first.train_tokens.filename
    elsewhere = prepare_data(dataclasses.replace(text_config, cache_dir=str(tmp_path / "other_cache")))
    np.testing.assert_array_equal(first.train_tokens, elsewhere.train_tokens)  # rebuilt from scratch: same
    np.testing.assert_array_equal(first.val_tokens, elsewhere.val_tokens)


def test_changed_folder_is_rebuilt(text_config, text_folder):
    before = prepare_data(text_config)
    before_key = open_text_splits(text_config).key
    (text_folder / "new.txt").write_text("A brand new document about foxes. " * 20)
    after = prepare_data(text_config)
    assert open_text_splits(text_config).key != before_key
    assert len(after.train_tokens) + len(after.val_tokens) > len(before.train_tokens) + len(before.val_tokens)


def test_gpt2_tokenizer_on_text_dir(text_config):
    prepared = prepare_data(dataclasses.replace(text_config, tokenizer="gpt2"))
    assert prepared.vocab_size == 50257
    assert prepared.train_tokens.dtype == np.uint16
    assert int((prepared.train_tokens == 50256).sum()) == len(open_text_splits(text_config).train)
    assert "gpt2" in prepared.description


def test_missing_text_folder(tmp_path):
    missing = tmp_path / "nowhere"
    cfg = DataConfig(source="text_dir", path=str(missing), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CorpusError, match=f"data.path='{missing}' is not a folder"):
        prepare_data(cfg)


def test_folder_without_text_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "image.png").write_bytes(b"\x89PNG")
    cfg = DataConfig(source="text_dir", path=str(tmp_path / "empty"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CorpusError, match="no .txt/.md/.rst files"):
        prepare_data(cfg)


def test_validation_ids_never_empty_or_everything():
    ids = [f"doc{i}" for i in range(1000)]
    chosen = validation_ids(ids, 0.02)
    assert 5 <= len(chosen) <= 40 and chosen == validation_ids(list(reversed(ids)), 0.02)
    assert len(validation_ids(["a", "b"], 0.001)) == 1
    assert len(validation_ids(["a", "b"], 0.5)) == 1
    with pytest.raises(CorpusError, match="at least 2 documents"):
        validation_ids(["only"], 0.1)


def test_nanogpt_bin(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 50257, 5000, dtype=np.uint16)
    val = rng.integers(0, 50257, 700, dtype=np.uint16)
    train.tofile(tmp_path / "train.bin")
    val.tofile(tmp_path / "val.bin")
    prepared = prepare_data(
        DataConfig(source="nanogpt_bin", path=str(tmp_path), tokenizer="gpt2", cache_dir=str(tmp_path))
    )
    np.testing.assert_array_equal(prepared.train_tokens, train)
    np.testing.assert_array_equal(prepared.val_tokens, val)
    assert prepared.vocab_size == 50257 and prepared.tokenizer.name == "gpt2"
    assert prepared.description == f"nanogpt_bin {tmp_path}: 5k train tokens, 700 val tokens, gpt2"


def test_nanogpt_bin_missing_files(tmp_path):
    np.zeros(10, np.uint16).tofile(tmp_path / "train.bin")
    cfg = DataConfig(source="nanogpt_bin", path=str(tmp_path), tokenizer="gpt2", cache_dir=str(tmp_path))
    with pytest.raises(CorpusError, match=f"missing: {tmp_path / 'val.bin'}"):
        prepare_data(cfg)


def test_tfds_catalog_errors(tmp_path):
    unknown = DataConfig(
        source="tfds", path="no_such_dataset_xyz", tfds_data_dir=str(tmp_path), cache_dir=str(tmp_path)
    )
    with pytest.raises(CorpusError, match="'no_such_dataset_xyz' .* cannot be opened"):
        prepare_data(unknown)
    unprepared = dataclasses.replace(unknown, path="mnist")
    with pytest.raises(CorpusError, match="'mnist' is not prepared .* nothing is downloaded at run time"):
        prepare_data(unprepared)


def test_tfds_catalog_source_reads_a_prepared_dataset(text_config, tmp_path):
    """A dataset prepared in ArrayRecord format is read by name, without TensorFlow."""
    local = open_text_splits(text_config)
    data_dir = tmp_path / "tfds_data"
    shutil.copytree(text_config.resolved_cache_dir() / "tfds" / "warmup_text", data_dir / "warmup_text")
    cfg = DataConfig(
        source="tfds",
        path=f"warmup_text/{local.key}",
        tfds_data_dir=str(data_dir),
        cache_dir=str(tmp_path / "cache2"),
        tokenizer="gpt2",
    )
    splits = open_text_splits(cfg)
    assert _doc_ids(splits.validation) == _doc_ids(local.validation)
    with pytest.raises(CorpusError, match="tfds_text_key='body' is not a feature"):
        open_text_splits(dataclasses.replace(cfg, tfds_text_key="body"))
    prepared = prepare_data(cfg)
    assert int((prepared.val_tokens == 50256).sum()) == len(local.validation)
