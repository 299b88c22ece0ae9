"""Typed configs: named configs load and validate; overrides parse to the field's type."""

import pytest

from warmup_jax.config import ConfigError, apply_overrides, list_configs, load_config


def _launch_command(doc: str) -> list[str]:
    """The ``warmup-jax ...`` command of a config docstring's ``Launch:`` line, as argv."""
    line = next(line for line in doc.splitlines() if line.startswith("Launch:"))
    command = line.removeprefix("Launch:").split("(")[0].split()
    assert command[0] == "warmup-jax", line
    return command[1:]


@pytest.mark.parametrize("name", list_configs())
def test_every_named_config_validates_and_its_launch_command_builds_it(name):
    import importlib

    from warmup_jax import cli

    config = load_config(name)
    config.validate()
    doc = importlib.import_module(f"warmup_jax.configs.{name}").__doc__
    assert "Expected:" in doc, f"configs/{name}.py states no expected run time"
    args = cli.build_parser().parse_args(_launch_command(doc))
    assert args.command == "train"
    launched = load_config(args.config, args.overrides)
    launched.validate()
    # The documented command runs this config, changed only where its --set says so.
    assert launched.name == config.name
    changed = {o.split("=")[0].split(".")[0] for o in args.overrides}
    for section in ("model", "data", "optim", "train", "metrics"):
        if section not in changed:
            assert getattr(launched, section) == getattr(config, section), section


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
