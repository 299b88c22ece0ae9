"""Update metrics inside training: unchanged trajectory, one compilation, logs and plots."""

import json
import math
import os

import pytest

from warmup_jax.config import load_config
from warmup_jax.metrics.plots import FIGURES, plot_runs
from warmup_jax.train.trainer import Trainer

# Due steps of the "gated" run: dense (every step) up to step 2, then every 3rd step.
GATED = ["metrics.interval=3", "metrics.dense_interval=1", "metrics.dense_until_step=2", "metrics.rrc_tokens=64"]
GATED_DUE = [1, 2, 3, 6]


@pytest.fixture(scope="module")
def runs(text_corpus, data_cache, tmp_path_factory):
    """Four 6-step tiny runs (2 micro-batches per step, parameters sharded over 2 of the 8 fake
    devices): metrics off, gated, every step with warmup, and gated with scanned (stacked) blocks."""
    root = tmp_path_factory.mktemp("metric_runs")
    base = [
        "data.source=text_dir",
        f"data.path={text_corpus}",
        f"data.cache_dir={data_cache}",
        "data.bpe_vocab_size=300",
        "train.progress=false",
        "train.steps=6",
        "train.eval_interval=0",
        "train.log_interval=1",
        "train.checkpoint_interval=0",
        "train.batch_size=16",
        "train.grad_accum_steps=2",
        "train.mesh_fsdp=2",
    ]
    out = {}
    variants = (
        ("off", ["metrics.interval=0"]),
        ("gated", GATED),
        ("warmup", ["metrics.interval=1", "optim.warmup_steps=2"]),
        ("scanned", [*GATED, "model.scan_layers=true"]),
    )
    for name, extra in variants:
        trainer = Trainer(load_config("tiny", [*base, f"train.out_dir={root / name}", *extra]))
        result = trainer.run()
        lines = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
        out[name] = dict(result=result, trainer=trainer, lines=lines, dir=str(root / name))
    return out


def test_metrics_do_not_change_the_trajectory(runs):
    off, gated = runs["off"]["result"], runs["gated"]["result"]
    assert sorted(off.train_losses) == list(range(1, 7))
    assert gated.train_losses == off.train_losses  # bit-identical floats
    assert gated.eval_losses == off.eval_losses


def test_gated_step_compiles_once_while_metrics_switch_on_and_off(runs):
    trainer = runs["gated"]["trainer"]
    logged = [x["step"] for x in runs["gated"]["lines"] if "update_l2/global" in x]
    assert logged == GATED_DUE  # metrics really switched on and off across the 6 steps
    assert trainer.train_step._cache_size() == 1


def test_logged_metric_names_and_values(runs):
    lines = [x for x in runs["gated"]["lines"] if "loss" in x]
    first = lines[0]
    for name in (
        "update_l2/blocks.0.attn.qkv.kernel",
        "weight_norm/wte.embedding",
        "relative_update/global",
        "angle/blocks.1.mlp.fc.kernel",
        "angle_neuron_rms/global",
        "angle/blocks.0",
        "rrc/blocks.1.mlp.proj",
        "rrc/global",
        "snr/blocks.0.attn.proj.kernel",
        "snr/global",
        "critical_batch/global",
        "grad_momentum_cos/global",
        "momentum_cancellation/blocks.1",
    ):
        assert name in first, name
    assert "angle/blocks.0.ln1.scale" not in first  # angles only for matrices
    for line in lines:
        if "update_l2/global" in line:
            # Same quantity as the step's own optax.tree.norm(updates), computed from the params.
            assert math.isclose(line["update_l2/global"], line["update_norm"], rel_tol=1e-4)
            assert line["angle/global"] > 0 and line["rrc/global"] > 0 and line["snr/global"] >= 0
    assert math.isnan(first["grad_momentum_cos/global"])  # m_0 = 0: undefined at step 1
    assert math.isfinite(lines[1]["grad_momentum_cos/global"])
    # No update metrics on the other steps.
    assert not any(k.startswith("update_l2/") for k in lines[3])


def test_scanned_layers_log_the_same_per_layer_metrics(runs):
    looped = [x for x in runs["gated"]["lines"] if "loss" in x]
    scanned = [x for x in runs["scanned"]["lines"] if "loss" in x]
    assert [sorted(x) for x in scanned] == [sorted(x) for x in looped]  # stacked tensors split per layer
    for a, b in zip(scanned, looped):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4)
    first_scanned, first_looped = scanned[0], looped[0]
    bad = [
        (name, value, first_scanned[name])
        for name, value in first_looped.items()
        if "/" in name
        and math.isfinite(value)
        and not math.isclose(first_scanned[name], value, rel_tol=2e-3, abs_tol=1e-6)
    ]
    assert not bad, bad


def test_plot_runs_writes_the_figures_for_two_runs(runs, tmp_path):
    paths = plot_runs([runs["gated"]["dir"], runs["warmup"]["dir"]], out_dir=str(tmp_path / "plots"))
    assert [os.path.basename(p) for p in paths] == [f"{name}.png" for name in FIGURES]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 10_000
    # A run without update metrics still gets every figure (with a note), in its own folder.
    default = plot_runs([runs["off"]["dir"]])
    assert len(default) == len(FIGURES) and all(os.path.isfile(p) for p in default)
    assert all(os.path.dirname(p) == runs["off"]["dir"] for p in default)


def test_plot_cli_rejects_a_folder_without_metrics(tmp_path, capsys):
    from warmup_jax.cli import main

    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
