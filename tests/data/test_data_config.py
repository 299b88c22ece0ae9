import dataclasses

import pytest

from warmup_jax.data import ConfigError, DataConfig
from warmup_jax.data.config import resolve_cache_dir


def test_defaults_are_valid():
    cfg = DataConfig()
    cfg.validate()
    assert (cfg.source, cfg.tokenizer, cfg.bpe_vocab_size) == ("debian", "bpe", 8192)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_bad_tokenizer_message_names_field_value_and_choices():
    with pytest.raises(ConfigError) as error:
        DataConfig(tokenizer="bpee").validate()
    assert str(error.value) == "data.tokenizer='bpee' is not allowed; choose one of: 'bpe', 'gpt2'"


@pytest.mark.parametrize(
    "field, value",
    [
        ("source", "wikipedia"),
        ("path", 3),
        ("tfds_text_key", None),
        ("tfds_data_dir", 1.5),
        ("cache_dir", None),
        ("bpe_vocab_size", 100),
        ("bpe_vocab_size", 8192.0),
        ("validation_fraction", 0.0),
        ("validation_fraction", 0.9),
        ("validation_fraction", "0.1"),
        ("seed", -1),
        ("seed", True),
        ("num_workers", -2),
        ("seq_len_warmup_steps", -1),
        ("seq_len_min", 0),
        ("seq_len_bucket", 0),
        ("bpe_train_max_bytes", 0),
        ("num_parts", 0),
        ("part", 1),  # with the default num_parts=1
        ("part", -1),
    ],
)
def test_every_field_is_checked(field, value):
    with pytest.raises(ConfigError) as error:
        DataConfig(**{field: value}).validate()
    message = str(error.value)
    assert message.startswith(f"data.{field}={value!r} is not allowed"), message


def test_prepare_data_validates(tmp_path):
    from warmup_jax.data import prepare_data

    with pytest.raises(ConfigError, match=r"data\.seq_len_bucket=0"):
        prepare_data(dataclasses.replace(DataConfig(cache_dir=str(tmp_path)), seq_len_bucket=0))


@pytest.mark.parametrize("source", ["text_dir", "nanogpt_bin", "tfds"])
def test_sources_that_read_a_path_require_one(source):
    with pytest.raises(ConfigError, match=rf"data\.path='' is not allowed with data\.source='{source}'"):
        DataConfig(source=source, tokenizer="gpt2").validate()


def test_debian_source_takes_no_path():
    with pytest.raises(ConfigError, match=r"data\.path='/x' is not used by data\.source='debian'"):
        DataConfig(path="/x").validate()


def test_nanogpt_bin_needs_the_gpt2_tokenizer():
    with pytest.raises(ConfigError, match=r"data\.tokenizer='bpe' is not allowed with data\.source='nanogpt_bin'"):
        DataConfig(source="nanogpt_bin", path="/data/owt").validate()
    DataConfig(source="nanogpt_bin", path="/data/owt", tokenizer="gpt2").validate()


def test_empty_tfds_text_key_rejected():
    with pytest.raises(ConfigError, match=r"data\.tfds_text_key=''"):
        DataConfig(source="tfds", path="wikipedia/20230601.en", tfds_text_key="").validate()


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("WARMUP_JAX_CACHE", str(tmp_path / "env"))
    assert DataConfig().resolved_cache_dir() == tmp_path / "env"
    assert DataConfig(cache_dir=str(tmp_path / "own")).resolved_cache_dir() == tmp_path / "own"
    monkeypatch.delenv("WARMUP_JAX_CACHE")
    assert str(resolve_cache_dir("")).endswith(".cache/warmup_jax")
