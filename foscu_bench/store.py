"""Atomic file writes: a result file is either absent or complete, never half-written.

Every writer goes through a temporary file in the destination directory followed by ``os.replace``, which
is atomic on POSIX and Windows when source and target are on the same filesystem. An interrupted process
leaves at most a ``.tmp-*`` file behind, which readers ignore.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from foscu_bench.errors import FoscuError


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it over ``target``, on error delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory beside ``target``; on success it replaces ``target``, on error it is
    deleted. Readers never see a half-written folder (an existing ``target`` is removed just before the rename)."""
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (fsync before rename, so a crash cannot leave zeros)."""
    target = Path(target)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return target


def atomic_write_text(target: str | Path, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, obj: Any) -> Path:
    """Write JSON with sorted keys and a trailing newline, so identical content gives identical bytes."""
    return atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(target: str | Path, **arrays: np.ndarray) -> Path:
    """Save arrays as an uncompressed ``.npz`` atomically (uncompressed: loading is the hot path)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(target, buffer.getvalue())


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class LockedError(FoscuError):
    """Another process holds the lock of a run directory or cache entry."""


@contextmanager
def exclusive_lock(path: str | Path, wait: bool = False, what: str = "") -> Iterator[Path]:
    """Hold an exclusive advisory lock (``flock``) on ``path`` for the duration of the block.

    The lock dies with the process (kill -9 included), so a crashed run never leaves a stale lock. With
    ``wait=False`` a held lock raises ``LockedError`` at once, naming ``what`` is being protected.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LockedError(f"{what or path.parent}: in use by another foscu-bench process (pid {holder}); "
                              f"wait for it to finish or write elsewhere (--out)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
