"""The figures of ``warmup-jax plot`` from small synthetic run folders (no training)."""

import json
import os

import numpy as np
import pytest

from warmup_jax.cli import main
from warmup_jax.metrics import plots

PNG = b"\x89PNG\r\n\x1a\n"
# Two blocks of two Dense layers and a LayerNorm, and a tied embedding: few panels, quick to draw.
TENSORS = [f"blocks.{i}.{layer}" for i in range(2) for layer in ("attn.qkv.kernel", "mlp.fc.kernel", "ln1.scale")]
TENSORS.append("wte.embedding")
DENSE = [name.removesuffix(".kernel") for name in TENSORS if name.endswith(".kernel")]


def _write_run(path, *, snr: bool = True, update_metrics: bool = True, steps: int = 40) -> str:
    """A ``metrics.jsonl`` as the trainer writes it: loss and lr every step, validation every 10
    steps, update metrics on a few due steps (with the SNR only for ``grad_accum_steps >= 2``)."""
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    due = {1, 2, 4, 8, 16, 32, steps}
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for step in range(1, steps + 1):
            record = {"step": step, "loss": 5.0 / step**0.3 + 0.05 * rng.random(), "lr": 1e-3 * min(1.0, step / 10)}
            if update_metrics and step in due:
                scale = step**-0.5
                for name in [*TENSORS, "blocks.0", "blocks.1", "global"]:
                    record[f"update_l2/{name}"] = scale * rng.uniform(0.5, 1.5)
                    record[f"weight_norm/{name}"] = rng.uniform(5, 10)
                    record[f"relative_update/{name}"] = 0.1 * scale * rng.uniform(0.5, 1.5)
                    if not name.endswith(".scale"):
                        record[f"angle/{name}"] = 0.05 * scale * rng.uniform(0.5, 1.5)
                        record[f"angle_neuron_rms/{name}"] = 0.07 * scale * rng.uniform(0.5, 1.5)
                    if snr:
                        record[f"snr/{name}"] = 1e-3 * rng.uniform(0.5, 1.5)
                    record[f"grad_momentum_cos/{name}"] = float("nan") if step == 1 else rng.uniform(-0.3, 0.5)
                    record[f"momentum_cancellation/{name}"] = 0.0 if step == 1 else rng.uniform(-1.0, 0.5)
                for name in [*DENSE, "wte", "blocks.0", "blocks.1", "global"]:
                    record[f"rrc/{name}"] = 0.02 * scale * rng.uniform(0.5, 1.5)
                if snr:
                    record["snr_noise/global"] = rng.uniform(50, 100)
                    record["snr_signal/global"] = rng.uniform(0.05, 0.1)
                    record["critical_batch/global"] = record["snr_noise/global"] / record["snr_signal/global"]
                record["batch_size"] = 16
            f.write(json.dumps(record) + "\n")
            if step % 10 == 0:
                f.write(json.dumps({"step": step, "eval_loss": 5.0 / step**0.3}) + "\n")
    return str(path)


def _assert_png(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG, path
    assert os.path.getsize(path) > 10_000, path


@pytest.fixture
def notes(monkeypatch):
    """The notes the figures draw where they have nothing to show, as ``[text, ...]``."""
    seen = []
    original = plots._note
    monkeypatch.setattr(plots, "_note", lambda ax, text: (seen.append(text), original(ax, text)))
    return seen


@pytest.mark.parametrize("name", plots.FIGURES)
def test_each_figure_is_drawn_from_a_synthetic_run(tmp_path, notes, name):
    run = plots.Run(_write_run(tmp_path / "run"), "run")
    colors = plots._colors(1)
    out = str(tmp_path / "out")
    os.makedirs(out)
    per_group = {  # the arguments plot_runs passes
        "update_l2": dict(metric="update_l2", ylabel="l2", title="l2"),
        "angular_update": dict(metric="angle", dashed_metric="angle_neuron_rms", ylabel="rad", title="angle"),
        "rrc": dict(metric="rrc", ylabel="rrc", title="rrc"),
    }
    if name in per_group:
        path = plots.plot_per_group([run], colors, out, name=name, **per_group[name])
    else:
        path = getattr(plots, f"plot_{name}")([run], colors, out)
    assert path == os.path.join(out, f"{name}.png")
    _assert_png(path)
    assert notes == []  # every figure found its series


def test_one_micro_batch_run_skips_snr_png_and_names_the_setting(tmp_path, notes, capsys):
    run = _write_run(tmp_path / "k1", snr=False)
    assert main(["plot", run]) == 0
    out, err = capsys.readouterr()
    written = out.split()
    assert [os.path.basename(p) for p in written] == [f"{n}.png" for n in plots.FIGURES if n != "snr"]
    assert not os.path.exists(os.path.join(run, "snr.png"))
    assert all(os.path.isfile(p) for p in written)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "snr.png" in lines[0] and "train.grad_accum_steps" in lines[0]
    assert "metrics.interval" not in err  # the metrics were on: that hint would be wrong
    assert notes == []


def test_snr_png_is_written_when_one_of_the_runs_has_snr(tmp_path, monkeypatch, capsys):
    legends = []
    original = plots._legend
    monkeypatch.setattr(plots, "_legend", lambda fig, h, labels: (legends.append(labels), original(fig, h, labels)))
    with_snr, without = _write_run(tmp_path / "k2"), _write_run(tmp_path / "k1", snr=False)
    paths = plots.plot_runs([with_snr, without], str(tmp_path / "out"))
    assert paths == [os.path.join(str(tmp_path / "out"), f"{name}.png") for name in plots.FIGURES]
    for path in paths:
        _assert_png(path)
    assert capsys.readouterr().err == ""
    assert ["k2", "k1 (no SNR: train.grad_accum_steps < 2)"] in legends  # the run without SNR says why


def test_run_without_update_metrics_still_gets_snr_png_with_the_interval_hint(tmp_path, notes, capsys):
    run = _write_run(tmp_path / "off", update_metrics=False)
    paths = plots.plot_runs([run])
    assert [os.path.basename(p) for p in paths] == [f"{name}.png" for name in plots.FIGURES]
    assert all(os.path.dirname(p) == run for p in paths)
    snr_notes = [text for text in notes if text.startswith("no SNR")]
    assert len(snr_notes) == 1 and "metrics.interval" in snr_notes[0] and "train.grad_accum_steps" in snr_notes[0]
    assert capsys.readouterr().err == ""


def test_metric_names_and_layer_groups():
    assert plots.metric_kind("angle/blocks.3.mlp.fc.kernel") == ("angle", "blocks.3.mlp.fc.kernel")
    assert plots.layer_group("blocks.3.mlp.fc.kernel") == "mlp.fc"
    assert plots.layer_group("blocks.3.attn.qkv") == "attn.qkv"
    assert plots.layer_group("wte.embedding") == "wte"
    assert plots.layer_group("blocks.3") is None and plots.layer_group("global") is None
