"""Small helpers for the on-disk cache: inter-process locks, atomic writes, stable hashes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path

# A cache this process cannot write to (a read-only mount shared by a cluster, another user's
# folder) needs no lock: this process can only read it, and the first write it attempts fails.
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


@contextlib.contextmanager
def file_lock(path: Path):
    """Holds an exclusive advisory lock on `path` (created if needed) for the with-block.

    On a cache that cannot be written, the block runs without a lock (readers need none)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 -- closed below
    except OSError as e:
        if e.errno not in _READ_ONLY:
            raise
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_text_atomic(path: Path, text: str) -> None:
    """Writes to a temporary sibling, then renames: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def short_hash(obj, length: int = 16) -> str:
    """A stable hex digest of a JSON-serializable value."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
