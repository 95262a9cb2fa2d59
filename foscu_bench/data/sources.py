"""Dataset sources: where cases come from, behind one small interface, chosen by a registry.

A source lists ``CaseRecord``s (cheap: no volume is read) and loads one record into a ``RawCase`` on its
native grid with its own label values. Preprocessing and label mapping happen downstream, identically for
every source, the embedded phantom included.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from foscu_bench.data.label_map import LabelMap
from foscu_bench.data.volume_io import RawCase
from foscu_bench.errors import ConfigError, DataError


@dataclass(frozen=True)
class CaseRecord:
    """A case before it is read: its ids, the files that define it, and loader-specific details."""

    case_id: str
    patient_id: str
    files: tuple[Path, ...] = ()
    details: dict = field(default_factory=dict, hash=False, compare=False)


class DatasetSource(Protocol):
    kind: str
    description: str
    default_label_map: LabelMap

    def records(self) -> list[CaseRecord]: ...

    def load(self, record: CaseRecord) -> RawCase: ...

    def content_key(self, record: CaseRecord) -> str:
        """A hash of everything that defines the case's content (file bytes, or generator settings)."""
        ...

    def describe(self) -> dict: ...


def hash_files(paths: tuple[Path, ...] | list[Path]) -> str:
    """SHA-256 over the bytes of the given files (content, not names or mtimes, defines a case)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise DataError(path, f"cannot read file ({exc.strerror or exc})") from None
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceKind:
    """One entry of the source registry: how to recognise a dataset on disk and open it."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    open: Callable[..., DatasetSource]
    example: str = ""
    priority: int = 50
    """Lower is tried first: specific layouts (AMOS, CHAOS) before the generic NIfTI folder."""


SOURCE_KINDS: list[SourceKind] = []
BUILTIN_DATASETS: dict[str, Callable[..., DatasetSource]] = {}


def register_source_kind(kind: SourceKind) -> SourceKind:
    SOURCE_KINDS.append(kind)
    SOURCE_KINDS.sort(key=lambda k: k.priority)
    return kind


def open_source(spec: str | Path, profile: str = "quick", phantom_options: dict | None = None,
                **path_options) -> DatasetSource:
    """``spec`` is a built-in dataset name (``phantom``) or a path; a path's layout is detected.

    ``phantom_options`` (n_cases, seed, tumour_fraction) go to built-in generated datasets; ``path_options``
    (e.g. ``modality`` for AMOS, ``sequence`` for CHAOS) to on-disk sources that accept them.
    """
    _import_builtin_sources()
    spec = str(spec)
    if spec in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[spec](profile=profile, **(phantom_options or {}))
    path = Path(spec).expanduser()
    if not path.exists():
        names = ", ".join(BUILTIN_DATASETS)
        raise ConfigError(f"dataset {spec!r} is neither a built-in dataset ({names}) nor an existing path")
    for kind in SOURCE_KINDS:
        if kind.detect(path):
            return kind.open(path, **{k: v for k, v in path_options.items() if v is not None})
    layouts = "; ".join(f"{k.name}: {k.example}" for k in SOURCE_KINDS)
    raise DataError(path, f"no known dataset layout found. Supported layouts: {layouts}")


def _import_builtin_sources() -> None:
    """Register the built-in sources on first use (keeps ``import foscu_bench`` light)."""
    from foscu_bench.data import amos, chaos, folders, phantom_source  # noqa: F401
