"""Bad input fails before any work, with a message naming the field or file, the value and what is
allowed, and a non-zero exit status; checkpoints are never left half-written or silently mixed."""

import gc
import logging
import os

import numpy as np
import pytest

from warmup_jax.cli import main
from warmup_jax.config import ConfigError, load_config
from warmup_jax.errors import CheckpointError
from warmup_jax.train.trainer import Trainer

from ._cli import train_tiny


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optim.lr=-0.001", "optim.lr=-0.001 is out of range"),
        ("optim.warmup_steps=15", "optim.warmup_steps=15 is out of range; allowed: 0 <= warmup_steps <= 10"),
        ("train.batch_size=6", "not divisible by the 8 devices"),
        ("train.seq_len=128", "train.seq_len=128 is longer than the position table (model.block_size=64)"),
        ("train.steps=ten", "train.steps='ten' is not an integer"),
        ("model.norm_position=middle", "model.norm_position='middle' is not allowed; choose one of: 'pre', 'post'"),
        ("optim.name=adamv", "optim.name='adamv' is not a known optimizer"),
        ("optim.hparams.beta9=0.5", "optim.hparams.beta9 is not a hyperparameter of optimizer 'adamw'"),
        ("data.tokenizer=bpee", "data.tokenizer='bpee'"),
        # non-finite and out-of-range values that used to be accepted and failed later or trained silently wrong
        ("optim.lr=nan", "optim.lr=nan is not a finite number"),
        ("optim.lr=inf", "optim.lr=inf is not a finite number"),
        ("optim.end_lr=inf", "optim.end_lr=inf is not a finite number"),
        ("optim.grad_clip=nan", "optim.grad_clip=nan is not a finite number"),
        ("optim.cooldown_fraction=nan", "optim.cooldown_fraction=nan is not a finite number"),
        ("optim.warmup_init_lr=1", "optim.warmup_init_lr=1.0 is out of range"),
        ("optim.catapult_init_lr=true", "optim.catapult_init_lr=true chooses where the warmup starts"),
        ("optim.hparams.eps=-1", "optim.hparams.eps=-1 must lie in [0.0, inf)"),
        ("optim.hparams.b2=nan", "optim.hparams.b2=nan must lie in [0.0, 1.0)"),
        ("optim.hparams.b2=abc", "optim.hparams.b2='abc' is not a number"),
        ("optim.hparams.b1=1.5", "optim.hparams.b1=1.5 must lie in [0.0, 1.0)"),
        ("model.layer_norm_epsilon=inf", "model.layer_norm_epsilon=inf is not a finite number"),
        ("model.dropout=nan", "model.dropout=nan is not a finite number"),
        ("model.vocab_multiple=1e9", "model.vocab_multiple=1000000000 is out of range"),
        ("train.seed=1e30", "is out of range; allowed: 0 <= seed <= 4294967295"),
        ("metrics.momentum_beta=abc", "metrics.momentum_beta='abc' is not a number"),
        ("metrics.momentum_beta=nan", "metrics.momentum_beta=nan is not a finite number"),
        ("model.compute_dtype=float16", "'float16' is not supported on CPU"),
    ],
)
def test_bad_config_values_exit_2_naming_the_field(tiny_overrides, tmp_path, capsys, override, expected):
    assert train_tiny(tiny_overrides, override) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before any work


def test_a_sequence_length_warmup_longer_than_the_context_is_refused(tiny_overrides, capsys):
    assert train_tiny(tiny_overrides, "data.seq_len_warmup_steps=4", "data.seq_len_min=64") == 2
    assert "data.seq_len_min=64 is longer than train.seq_len=32" in capsys.readouterr().err


def test_missing_corpus_folder(tiny_overrides, tmp_path, capsys):
    missing = tmp_path / "no_such_corpus"
    assert train_tiny(tiny_overrides, f"data.path={missing}") == 2
    assert str(missing) in capsys.readouterr().err


def test_unknown_named_config(capsys):
    assert main(["train", "--config", "tinny"]) == 2
    assert "did you mean 'tiny'" in capsys.readouterr().err


def _short(overrides, *extra):
    return load_config("tiny", [*overrides, "train.steps=2", "train.eval_interval=0", *extra])


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_checkpoint_errors(tiny_overrides, tmp_path, capsys, caplog):
    Trainer(_short(tiny_overrides)).run()
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(os.listdir(ckpt)) == ["2"]

    # Existing checkpoints are never overwritten silently.
    with pytest.raises(ConfigError, match="already holds checkpoints .* pass --resume"):
        Trainer(_short(tiny_overrides))

    # A checkpoint of another model is refused before restoring, naming the field.
    with pytest.raises(CheckpointError, match="model"):
        Trainer(_short(tiny_overrides, "train.resume=true", "model.n_embd=32"))

    # A half-written save (orbax's temporary folder) is ignored: the last complete step is used.
    (ckpt / "4.orbax-checkpoint-tmp-1234").mkdir()
    (ckpt / "4.orbax-checkpoint-tmp-1234" / "junk").write_text("partial")
    trainer = Trainer(_short(tiny_overrides, "train.resume=true", "train.steps=3", "train.allow_config_change=true"))
    assert int(trainer.state.step) == 2
    trainer.close()

    # Corrupt array data gives a CheckpointError naming the checkpoint folder, via the CLI too.
    for root, _, files in os.walk(ckpt / "2" / "state"):
        for name in files:
            if "ocdbt.process" in root and "/d" in root:
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"\0garbage\0")
    code = train_tiny(tiny_overrides, "train.steps=3", "train.resume=true", "train.allow_config_change=true")
    err = capsys.readouterr().err
    assert code == 2 and "cannot be read" in err and str(ckpt / "2") in err
    # ... and leaves nothing behind: no asyncio "Task exception was never retrieved" tracebacks for the
    # other failed reads whenever the garbage collector runs later (in some later test).
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_a_closed_output_pipe_stops_quietly():
    """`warmup-jax configs | head -1`: the command stops at the broken pipe without a traceback."""
    import subprocess
    import sys

    script = "import sys; from warmup_jax import cli; sys.exit(cli.main(['configs']))"
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.readline()
    reader.stdout.close()  # the reader goes away after one line
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_a_second_run_on_a_live_folder_is_refused(tiny_overrides, tmp_path, capsys):
    """Two runs on one out_dir (or a --resume of a live run): the second is refused, naming the first."""
    first = Trainer(load_config("tiny", tiny_overrides))  # holds the folder until it is closed
    try:
        assert train_tiny(tiny_overrides, "train.resume=true") == 2
        err = capsys.readouterr().err
        assert f"is in use by process {os.getpid()}" in err, err
        assert (
            not (tmp_path / "run" / "metrics.jsonl").exists()
            or "loss" not in (tmp_path / "run" / "metrics.jsonl").read_text()
        )
    finally:
        first.close()
    assert train_tiny(tiny_overrides, "train.steps=2", "train.eval_interval=0") == 0  # free again once it ended


@pytest.mark.parametrize("blocker", ["out_dir", "checkpoints"])
def test_an_unwritable_out_dir_fails_before_any_work(tiny_overrides, tmp_path, capsys, blocker):
    """A regular file where the run folder (or its checkpoints/ folder) must go: one line, exit 2."""
    if blocker == "out_dir":
        (tmp_path / "plain").write_text("x")
        out_dir, bad = tmp_path / "plain" / "run", tmp_path / "plain" / "run"
    else:
        out_dir = tmp_path / "run2"
        out_dir.mkdir()
        (out_dir / "checkpoints").write_text("x")  # found only at the first save before
        bad = out_dir / "checkpoints"
    assert train_tiny(tiny_overrides, f"train.out_dir={out_dir}") == 2
    err = capsys.readouterr().err
    assert f"cannot write to {str(bad)!r}" in err, err
    assert "Traceback" not in err


def test_token_ids_out_of_range_anywhere_in_a_bin_file_are_named(tmp_path, data_cache):
    """An id >= 50257 after the first 2**20 tokens used to pass the check (NaN at step 3 instead)."""
    from warmup_jax.config import DataConfig
    from warmup_jax.data import CorpusError, prepare_data

    folder = tmp_path / "owt"
    folder.mkdir()
    tokens = np.full((1 << 20) + 100, 50256, dtype=np.uint16)
    tokens[(1 << 20) + 17] = 60000
    tokens.tofile(folder / "train.bin")
    np.full(500, 11, dtype=np.uint16).tofile(folder / "val.bin")
    cfg = DataConfig(source="nanogpt_bin", path=str(folder), tokenizer="gpt2", cache_dir=str(data_cache))
    with pytest.raises(CorpusError, match=r"train.bin' holds id 60000 at token 1,048,593; ids must be < 50257"):
        prepare_data(cfg)
    tokens[(1 << 20) + 17] = 5
    tokens.tofile(folder / "train.bin")
    assert len(prepare_data(cfg).train_tokens) == len(tokens)  # fixed: accepted (and remembered)


def test_a_stream_shorter_than_one_window_is_named(tiny_overrides, tmp_path, capsys):
    folder = tmp_path / "short"
    folder.mkdir()
    np.arange(1000, dtype=np.uint16).tofile(folder / "train.bin")
    np.arange(20, dtype=np.uint16).tofile(folder / "val.bin")  # fewer than seq_len + 1 = 33
    overrides = [o for o in tiny_overrides if not o.startswith(("data.source", "data.path", "data.bpe"))]
    assert train_tiny(overrides, "data.source=nanogpt_bin", f"data.path={folder}", "data.tokenizer=gpt2") == 2
    err = capsys.readouterr().err
    assert "the validation stream" in err and "has 20 tokens, fewer than one window of train.seq_len=32" in err, err
