"""Typed configs: named configs load and validate; overrides parse to the field's type."""

import pytest

from warmup_jax.config import ConfigError, apply_overrides, list_configs, load_config


@pytest.mark.parametrize("name", list_configs())
def test_every_named_config_loads_validates_and_documents_its_launch(name):
    import importlib

    config = load_config(name)
    config.validate()
    doc = importlib.import_module(f"warmup_jax.configs.{name}").__doc__
    assert "Launch:" in doc and "Expected:" in doc


def test_overrides_parse_to_field_types():
    config = load_config(
        "tiny",
        [
            "optim.lr=3e-3",
            "train.steps=1e3",
            "model.use_bias=true",
            "optim.hparams.b2=0.99",
            "optim.hparams.nesterov=True",
            "data.path=/x",
        ],
    )
    assert config.optim.lr == 3e-3 and config.train.steps == 1000 and config.model.use_bias is True
    assert config.optim.hparams == {"b2": 0.99, "nesterov": True}
    assert config.data.path == "/x"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train=3", "train is a section"),
        ("train.steps.x=3", "train.steps is a value, not a section"),
        ("model.use_bias=maybe", "model.use_bias='maybe' is not a boolean"),
        ("steps", "must look like section.field=value"),
        ("trian.steps=3", "did you mean 'train'"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_config("tiny"), [override])


def test_config_file_path(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("from warmup_jax.configs import tiny\n\ndef get_config():\n    return tiny.get_config()\n")
    assert load_config(str(path)).name == "tiny"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.py"))
