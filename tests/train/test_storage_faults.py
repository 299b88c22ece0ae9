"""Storage that fails under a run: a full disk, a read-only cache, an evaluation larger than the
validation stream. Each is one line naming the path or field, before any work where it can be
known then, and never costs a complete checkpoint."""

import contextlib
import dataclasses
import errno
import os
import shutil
import subprocess
import uuid

import pytest

from warmup_jax.config import DataConfig
from warmup_jax.data import CorpusError, prepare_data
from warmup_jax.data import _cache as cache_lib
from warmup_jax.data import tokens as tokens_lib
from warmup_jax.train import checkpoint as checkpoint_lib

from ._cli import metrics_lines, train_tiny


def _trained_steps(out_dir) -> list[int]:
    if not (out_dir / "metrics.jsonl").exists():
        return []
    return [r["step"] for r in metrics_lines(out_dir) if "loss" in r]


def test_an_evaluation_larger_than_the_validation_stream_is_refused_up_front(tiny_overrides, tmp_path, capsys):
    """eval_batches=1e9 used to allocate at the final evaluation and lose the run."""
    assert train_tiny(tiny_overrides, "train.eval_batches=1000000000", "train.eval_interval=0") == 2
    err = capsys.readouterr().err
    assert "train.eval_batches=1000000000 asks for 8,000,000,000 validation windows" in err, err
    assert "allowed: 1 <= eval_batches <= " in err
    assert _trained_steps(tmp_path / "run") == []


def test_a_disk_without_room_for_one_checkpoint_is_refused_before_training(
    tiny_overrides, tmp_path, capsys, monkeypatch
):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint_lib.shutil, "disk_usage", lambda path: usage._replace(free=300_000))
    assert train_tiny(tiny_overrides, "train.steps=2") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "checkpoints has 0.3 MiB free, and a checkpoint of this run needs about" in err, err
    assert "no checkpoint of this run is complete yet" in err
    assert _trained_steps(tmp_path / "run") == []


def _failing_save(real_save, fail_from_step: int):
    """CheckpointManager.save that leaves a half-written folder and fails like a full disk from a step on."""

    def save(self, step, *args, **kwargs):
        if step < fail_from_step:
            return real_save(self, step, *args, **kwargs)
        partial = os.path.join(str(self.directory), f"{step}.orbax-checkpoint-tmp-{uuid.uuid4().hex[:6]}")
        os.makedirs(os.path.join(partial, "state"))
        with open(os.path.join(partial, "state", "half"), "wb") as f:
            f.write(b"\0" * 1000)
        raise ValueError(
            f'RESOURCE_EXHAUSTED: Error writing "params.wte/0" in OCDBT database at local file "{partial}": '
            "Failed to write 552310 bytes to file 24: No space left on device [os_error_code='28']"
        )

    return save


def test_a_save_failing_midway_keeps_the_last_checkpoint_and_cleans_up(tiny_overrides, tmp_path, capsys, monkeypatch):
    manager = checkpoint_lib.ocp.CheckpointManager
    monkeypatch.setattr(manager, "save", _failing_save(manager.save, fail_from_step=4))
    args = ("train.steps=6", "train.checkpoint_interval=2", "train.eval_interval=0")
    assert train_tiny(tiny_overrides, *args) == 1
    err = capsys.readouterr().err.strip()
    ckpt = tmp_path / "run" / "checkpoints"
    assert err == (
        f"error: cannot save checkpoint {ckpt / '4'}: No space left on device; the newest complete checkpoint, "
        f"{ckpt / '2'}, is kept (resume from it with --resume)"
    )
    assert sorted(os.listdir(ckpt)) == ["2"]  # the half-written folder is gone, step 2 kept

    monkeypatch.undo()  # space again: the run resumes from step 2 and finishes
    assert train_tiny(tiny_overrides, *args, "train.resume=true") == 0
    assert _trained_steps(tmp_path / "run") == list(range(1, 7))


def test_a_full_disk_under_the_metrics_log_is_one_line(tiny_overrides, tmp_path, capsys):
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "metrics.jsonl").symlink_to("/dev/full")
    assert train_tiny(tiny_overrides, "train.steps=2", "train.eval_interval=0") == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write {str(out_dir / 'metrics.jsonl')!r}: No space left on device", err


# ----------------------------------------------------------------------------- the data cache


def test_a_lock_on_a_read_only_cache_is_skipped(tmp_path, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache_lib, "open", read_only, raising=False)
    entered = []
    with cache_lib.file_lock(tmp_path / "x.lock"):
        entered.append(True)
    assert entered == [True]

    def broken(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(cache_lib, "open", broken, raising=False)
    with pytest.raises(OSError, match="Input/output error"), cache_lib.file_lock(tmp_path / "x.lock"):
        pass


@pytest.mark.parametrize(
    "code, hint",
    [(errno.EROFS, "set data.cache_dir to a writable folder"), (errno.ENOSPC, "free space there")],
)
def test_a_cache_that_cannot_be_written_names_the_path(text_corpus, tmp_path, monkeypatch, code, hint):
    def fail(source, key, tokenizer, path, desc):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(tokens_lib, "write_token_stream", fail)
    cfg = DataConfig(source="text_dir", path=str(text_corpus), bpe_vocab_size=300, cache_dir=str(tmp_path / "c"))
    with pytest.raises(CorpusError) as info:
        prepare_data(cfg)
    message = str(info.value)
    assert message.startswith(f"data.cache_dir={str(tmp_path / 'c')!r}: cannot prepare the data, ")
    assert f"train.npy': {os.strerror(code)}; {hint}" in message, message


@contextlib.contextmanager
def _read_only_mount(folder, fill_from=None):
    """A tmpfs at ``folder`` (filled from ``fill_from``), remounted read-only; skips without permission."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs (root)")
    try:
        if fill_from is not None:
            shutil.copytree(fill_from, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("locks"))
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # open memory maps: detach now


def test_a_read_only_cache_serves_what_it_holds_and_names_what_it_lacks(text_corpus, tmp_path):
    writable = tmp_path / "writable"
    cfg = DataConfig(source="text_dir", path=str(text_corpus), bpe_vocab_size=300, cache_dir=str(writable))
    expected = prepare_data(cfg)
    with _read_only_mount(tmp_path / "shared", fill_from=writable) as shared:
        got = prepare_data(dataclasses.replace(cfg, cache_dir=str(shared)))
        assert (got.train_tokens == expected.train_tokens).all() and got.description == expected.description
    lacking = "Read-only file system; set data.cache_dir to a writable folder"
    with _read_only_mount(tmp_path / "empty") as empty, pytest.raises(CorpusError, match=lacking):
        prepare_data(dataclasses.replace(cfg, cache_dir=str(empty)))
