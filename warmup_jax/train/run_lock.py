"""One run per folder: an exclusive lock on ``train.out_dir`` for the life of a run.

Two runs writing to one folder would interleave ``metrics.jsonl`` and mix their checkpoints; a
second ``--resume`` of a live run would fork it. :class:`RunLock` holds ``fcntl.flock`` on
``<out_dir>/.run.lock`` (released by the kernel when the process dies, however it dies) and writes
the holder's process id, host and start time into it, so that a refused run can name the one that
holds the folder. Acquiring it also proves, before any work, that the folder and its
``checkpoints/`` can be created and written.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

from warmup_jax.errors import ConfigError

__all__ = ["RunLock"]

LOCK_NAME = ".run.lock"


def _probe_writable(folder: str, field: str) -> None:
    """Creates ``folder`` and writes and removes a file in it; ConfigError naming the path if not."""
    probe = os.path.join(folder, f".write_probe.{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{field}: cannot write to {folder!r}: {e.strerror or e}") from None


class RunLock:
    """``RunLock(out_dir).acquire()`` ... ``release()``; ConfigError if another process holds it."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self._handle = None

    def acquire(self) -> RunLock:
        _probe_writable(self.folder, f"train.out_dir={self.folder!r}")
        _probe_writable(os.path.join(self.folder, "checkpoints"), f"train.out_dir={self.folder!r}")
        handle = open(self.path, "a+")  # noqa: SIM115 -- held open for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                info = json.loads(holder)
                who = f"process {info['pid']} on {info['host']} (started {info['started']})"
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise ConfigError(
                f"train.out_dir={self.folder!r} is in use by {who}; wait for that run to end, stop it "
                "(SIGTERM saves a checkpoint), or choose another train.out_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
