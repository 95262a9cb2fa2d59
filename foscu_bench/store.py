"""The run directory's layout (its only owner), the fit cache entries, synthetic sets, and atomic writes.

Atomic file writes: a result file is either absent or complete, never half-written.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from foscu_bench.errors import FoscuError
from foscu_bench.faults import kill_point


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
        kill_point(f"write:{target.name}")  # crash-safety tests: killed with the new file complete, not renamed
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory beside ``target``; on success it replaces ``target``, on error it is
    deleted. Readers never see a half-written folder: an existing ``target`` is renamed aside, the staging folder
    renamed in, then the old one deleted (a kill between the two renames leaves no ``target``, never a mixed one)."""
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield staging
        kill_point(f"write:{target.name}/")  # crash-safety tests: the new folder complete, not swapped in
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{target.name}-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_temporaries(directory: str | Path, target_name: str | None = None) -> int:
    """Delete the ``.tmp-*`` files and folders that killed writers left under ``directory`` (all of them, or only
    those of ``target_name`` directly inside it); returns how many. Call it only while holding the lock that
    makes this process the directory's single writer, never beside a live writer."""
    import shutil

    directory = Path(directory)
    if not directory.is_dir():
        return 0
    if target_name is None:
        stale = list(directory.rglob(".tmp-*"))
    else:
        stale = [p for pattern in (f".tmp-{target_name}-*", f".tmp-old-{target_name}-*")
                 for p in directory.glob(pattern)]
    removed = 0
    for path in sorted(stale, key=lambda p: len(p.parts)):  # parents first
        if not (path.exists() or path.is_symlink()):
            continue  # went with its parent
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


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


# -- the run directory's layout (its only owner) -----------------------------------------------------------------
STEP_KINDS = ("fitpart", "fit", "sample", "unet", "fidelity")


@dataclass(frozen=True)
class Step:
    """One unit of a run: its identity names its result file.

    ``n_real``/``draw`` name the real-data level (a nested subset of the training split); a run on the whole
    split alone leaves them unset, and its step names stay ``kind/generator[/synthetic-only][/seed-s]``.
    """

    kind: str
    generator: str | None = None
    seed: int | None = None
    arm: str | None = None
    n_real: int | None = None
    draw: int = 0
    part: str | None = None
    """A ``fitpart`` step's part of the generator's fit (``Generator.fit_parts``)."""

    @property
    def level(self) -> str | None:
        return None if self.n_real is None else f"n-{self.n_real}-draw-{self.draw}"

    @property
    def name(self) -> str:
        parts = [self.kind, self.generator or "real-only"]
        if self.part is not None:
            parts.append(self.part)
        if self.arm in ARM_SUFFIXES:
            parts.append(ARM_SUFFIXES[self.arm])
        if self.level is not None:
            parts.append(self.level)
        if self.seed is not None:
            parts.append(f"seed-{self.seed}")
        return "/".join(parts)

    @property
    def filename(self) -> str:
        return self.name.replace("/", "--") + ".json"

    @classmethod
    def from_name(cls, name: str) -> "Step":
        """Inverse of ``name`` (and of ``filename`` without ``.json``, with ``--`` for ``/``)."""
        parts = name.removesuffix(".json").replace("--", "/").split("/")
        kind, generator, rest = parts[0], parts[1], parts[2:]
        if kind not in STEP_KINDS:
            raise ValueError(f"not a step name: {name!r}")
        part, rest = (rest[0], rest[1:]) if kind == "fitpart" and rest else (None, rest)
        seed = int(rest[-1].removeprefix("seed-")) if rest and rest[-1].startswith("seed-") else None
        n_real, draw = None, 0
        level = next((p for p in rest if p.startswith("n-")), None)
        if level is not None:
            _, n, _, d = level.split("-")
            n_real, draw = int(n), int(d)
        arm = None
        if kind == "unet":
            suffix = {v: k for k, v in ARM_SUFFIXES.items()}
            arm = next((suffix[p] for p in rest if p in suffix),
                       "real" if generator == "real-only" else "real+synthetic")
        return cls(kind, None if generator == "real-only" else generator, seed, arm, n_real, draw, part)


ARM_SUFFIXES = {"synthetic": "synthetic-only", "real+synthetic-exposure": "exposure-matched"}
"""Arms named in step names (the real and the compute-matched real+synthetic arms need no suffix)."""


@dataclass(frozen=True)
class RunLayout:
    """Where every file of a run directory lies; the runner, exports and figures all go through it."""

    directory: Path

    @property
    def run_id(self) -> str:
        return self.directory.name

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.directory / "metrics.csv"

    @property
    def stats(self) -> Path:
        return self.directory / "stats.json"

    @property
    def fidelity(self) -> Path:
        return self.directory / "fidelity.json"

    @property
    def lock(self) -> Path:
        return self.directory / ".lock"

    @property
    def steps_dir(self) -> Path:
        return self.directory / "steps"

    def step(self, step: Step) -> Path:
        return self.steps_dir / step.filename

    def synthetic(self, generator: str, seed: int, n_real: int | None = None, draw: int = 0) -> Path:
        level = "" if n_real is None else f"n-{n_real}-draw-{draw}/"
        return self.directory / "synthetic" / generator / f"{level}seed-{seed}.npz"

    def read_step(self, step: Step) -> dict | None:
        """The step's record, or None when it is missing or unreadable (an unfinished step)."""
        path = self.step(step)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def write_step(self, step: Step, record: dict) -> Path:
        return atomic_write_json(self.step(step), record)

    def step_records(self, kind: str | None = None) -> list[tuple[Step, dict]]:
        """Every readable step record of the run (of one ``kind``), sorted by step file name."""
        found = []
        for path in sorted(self.steps_dir.glob("*.json")) if self.steps_dir.is_dir() else []:
            try:
                step = Step.from_name(path.name)
            except (ValueError, IndexError):
                continue
            if kind is None or step.kind == kind:
                record = self.read_step(step)
                if record is not None:
                    found.append((step, record))
        return found


@dataclass(frozen=True)
class FitEntry:
    """One cached generator fit: ``fit.json`` (the record), ``checkpoint/``, ``work/`` (stage checkpoints of a
    fit in progress, kept across a kill so fitting resumes) and a lock beside it."""

    directory: Path

    @property
    def record(self) -> Path:
        return self.directory / "fit.json"

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoint"

    @property
    def work(self) -> Path:
        return self.directory / "work"

    @property
    def lock(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.lock"

    @property
    def done(self) -> bool:
        return self.record.is_file()


# -- synthetic sets on disk ------------------------------------------------------------------------------------
def save_synthetic(path: Path, pairs: list) -> Path:
    """A sampled set as one uncompressed ``.npz`` (images, labels, case ids, spacing, per-pair meta), atomically."""
    return atomic_save_npz(path, images=np.stack([p.image for p in pairs]), labels=np.stack([p.label for p in pairs]),
                           case_ids=np.array([p.case_id for p in pairs]), spacing=np.array(pairs[0].spacing),
                           meta=np.array(json.dumps([p.meta for p in pairs], sort_keys=True, default=str)))


def load_synthetic(path: Path, profile=None) -> list:
    """The pairs of a synthetic set, validated (against ``profile``'s grid when given)."""
    from foscu_bench.errors import DataError
    from foscu_bench.pair import Pair, validate_pair

    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
            case_ids, spacing = [str(c) for c in data["case_ids"]], tuple(float(s) for s in data["spacing"])
            metas = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(path, f"not a readable synthetic set ({exc}); delete it and re-run to resample") from None
    pairs = [Pair(image=img, label=lab, spacing=spacing, case_id=c, patient_id=c, meta=m)
             for img, lab, c, m in zip(images, labels, case_ids, metas)]
    for pair in pairs:
        validate_pair(pair, profile.shape if profile else None)
    return pairs
