"""The light entry points stay light: configs and optimizers load without the data stack."""

import subprocess
import sys

import pytest

HEAVY = ("grain", "tensorflow_datasets", "tiktoken", "tokenizers", "orbax")


@pytest.mark.parametrize("module", ["warmup_jax.config", "warmup_jax.optim"])
def test_import_does_not_load_the_data_stack(module):
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"


def test_data_names_resolve_lazily():
    import warmup_jax.data as data

    assert data.DataConfig.__module__ == "warmup_jax.data.config"
    assert callable(data.prepare_data)
    with pytest.raises(AttributeError, match="no_such_name"):
        data.no_such_name  # noqa: B018


def test_every_package_is_installed():
    """A package missing from pyproject.toml's list works in the editable install but not from a wheel."""
    import pathlib

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = pathlib.Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "warmup_jax").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"
