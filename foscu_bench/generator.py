"""The generator protocol, its metadata, and a lazy registry (built-ins + the ``foscu_bench.generators`` entry points).

Like MTEB's ``ModelMeta``, every generator is described by a strict ``GeneratorMeta`` (name, kind, citation,
what it conditions on, where its class lives); like lm-evaluation-harness, the class is a lazy ``"module:Class"``
target, so ``import foscu_bench`` never imports torch or diffusion code. Third-party packages register a
``GeneratorMeta`` under the entry-point group ``foscu_bench.generators``.

Generators only ever see a ``TrainingSet`` (``data.splits``): ``fit`` must call ``require_training_set``.
Everything a generator samples passes ``validate_pair`` before anyone uses it (``sample_validated``).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Protocol, runtime_checkable

from foscu_bench.errors import ConfigError, FoscuError
from foscu_bench.pair import InvalidPairError, Pair, validate_pair

if TYPE_CHECKING:
    import torch

    from foscu_bench.data.splits import TrainingSet
    from foscu_bench.profiles import Profile

ENTRY_POINT_GROUP = "foscu_bench.generators"


@runtime_checkable
class Generator(Protocol):
    name: str

    def fit(self, train: "TrainingSet", profile: "Profile", seed: int, device: "torch.device") -> None: ...

    def sample(self, n: int, seed: int) -> Iterator[Pair]: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, device: "torch.device") -> "Generator": ...


@dataclass(frozen=True)
class GeneratorMeta:
    """What a generator is, for listings, manifests and leaderboards."""

    name: str
    kind: Literal["learned", "rule-based"]
    target: str
    """``"package.module:Class"``, imported only when the generator is used."""
    citation: str
    reference: str
    conditioning: str
    """What the images are generated from (e.g. 'deformed real training labels', 'generated labels')."""
    description: str
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("learned", "rule-based"):
            raise ValueError(f"{self.name}: kind must be 'learned' or 'rule-based', got {self.kind!r}")
        if ":" not in self.target:
            raise ValueError(f"{self.name}: target must be 'module:Class', got {self.target!r}")
        if not self.citation:
            raise ValueError(f"{self.name}: a citation is required")

    def load_class(self) -> type:
        module_name, _, class_name = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"generator {self.name!r}: cannot import {self.target} ({exc})") from None


_BUILTIN: dict[str, GeneratorMeta] = {}


def register(meta: GeneratorMeta) -> GeneratorMeta:
    if meta.name in _BUILTIN and _BUILTIN[meta.name] != meta:
        raise ValueError(f"generator {meta.name!r} is registered twice with different metadata")
    _BUILTIN[meta.name] = meta
    return meta


def _load_builtins() -> None:
    importlib.import_module("foscu_bench.baselines.registry")
    try:
        importlib.import_module("foscu_bench.generators.registry")
    except ModuleNotFoundError as exc:  # the paper's generator lands in its own issue
        if exc.name != "foscu_bench.generators.registry":
            raise


def _load_entry_points() -> dict[str, GeneratorMeta]:
    found: dict[str, GeneratorMeta] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        meta = ep.load()
        if not isinstance(meta, GeneratorMeta):
            raise ConfigError(f"entry point {ep.name!r} in {ENTRY_POINT_GROUP} must point to a GeneratorMeta, "
                              f"got {type(meta).__name__}")
        found[meta.name] = meta
    return found


def registry() -> dict[str, GeneratorMeta]:
    """All generators: built-ins first, then entry points (which may not shadow a built-in)."""
    _load_builtins()
    merged = dict(_BUILTIN)
    for name, meta in _load_entry_points().items():
        if name in merged and merged[name] != meta:
            raise ConfigError(f"entry point generator {name!r} clashes with a built-in generator of that name")
        merged[name] = meta
    return merged


def get_meta(name: str) -> GeneratorMeta:
    metas = registry()
    if name not in metas:
        close = difflib.get_close_matches(name, metas, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown generator {name!r}{hint} Available: {', '.join(sorted(metas))}")
    return metas[name]


def parameter_count(name: str, profile: "Profile") -> int | None:
    """Parameters of the generator's sampling-time networks at ``profile`` (None if it does not say)."""
    counter = getattr(get_meta(name).load_class(), "count_parameters", None)
    return int(counter(profile)) if counter is not None else None


def create(name: str, **config) -> Generator:
    """A fresh, unfitted generator instance."""
    cls = get_meta(name).load_class()
    return cls(**config)


def load(name: str, directory: Path, device: "torch.device | str" = "cpu") -> Generator:
    import torch

    cls = get_meta(name).load_class()
    return cls.load(Path(directory), torch.device(device) if isinstance(device, str) else device)


class SampleError(FoscuError):
    """A generator produced an invalid pair."""


def sample_validated(generator: Generator, n: int, seed: int, shape: tuple[int, int, int],
                     progress: Callable[[int], None] | None = None) -> list[Pair]:
    """Draw ``n`` pairs and validate each: shape, finiteness, dtypes, label values, unique case ids.

    ``progress(k)`` is called after the k-th pair.
    """
    pairs, seen = [], set()
    for pair in generator.sample(n, seed):
        try:
            validate_pair(pair, shape)
        except InvalidPairError as exc:
            raise SampleError(f"generator {generator.name!r} produced an invalid pair: {exc}") from None
        if pair.case_id in seen:
            raise SampleError(f"generator {generator.name!r} produced case id {pair.case_id!r} twice")
        seen.add(pair.case_id)
        pairs.append(pair)
        if progress is not None:
            progress(len(pairs))
    if len(pairs) != n:
        raise SampleError(f"generator {generator.name!r} produced {len(pairs)} pairs, {n} were asked for")
    return pairs
