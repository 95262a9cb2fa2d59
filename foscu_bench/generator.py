"""The public generator contract, its metadata, and a lazy registry (built-ins + the ``foscu_bench.generators``
entry points).

Everything the benchmark runner calls on a generator is named here, once:

- ``config(profile)``: the fully resolved settings at a profile (JSON). Part of the fit cache key, the manifest
  and every exported dataset's ``generator_config_hash``, so a changed size can never reuse a stale fit.
- ``fit(train, profile, seed, device, *, progress=None, work_dir=None)``: fit on a ``TrainingSet`` only.
  ``progress(stage, iteration, total, loss)`` reports training; ``work_dir`` is a folder the generator may use
  for stage checkpoints, kept by the runner across a killed fit (so fitting resumes) and deleted after ``save``.
- ``sample(n, seed)``: ``n`` pairs, deterministic for a seed.
- ``save(directory)`` / ``load(directory, device)``: verified safetensors checkpoints.
- ``loss_curves()``: training losses per stage (empty for rule-based generators).
- ``parameter_count(profile)``: parameters of the networks used at sampling time (0 for rule-based ones).

``GeneratorBase`` implements the bookkeeping (checkpoints, fitted state, the resolved config) so that a
generator writes ``fit``, ``sample``, ``config`` and two checkpoint hooks. ``foscu_bench.testing.check_generator``
checks any generator, built-in or third-party, against this contract.

Like MTEB's ``ModelMeta``, every generator is described by a strict ``GeneratorMeta`` (name, kind, citation,
what it conditions on, where its class lives); like lm-evaluation-harness, the class is a lazy ``"module:Class"``
target, so ``import foscu_bench`` never imports torch or diffusion code. Third-party packages register a
``GeneratorMeta`` under the entry-point group ``foscu_bench.generators``.

Generators only ever see a ``TrainingSet`` (``data.splits``): ``fit`` must call ``require_training_set``.
Everything a generator samples passes ``validate_pair`` before anyone uses it (``sample_validated``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal, Protocol, runtime_checkable

import numpy as np

from foscu_bench.errors import ConfigError, FoscuError
from foscu_bench.pair import InvalidPairError, Pair, validate_pair

if TYPE_CHECKING:
    import torch

    from foscu_bench.data.splits import TrainingSet
    from foscu_bench.profiles import Profile

ENTRY_POINT_GROUP = "foscu_bench.generators"
KINDS = ("learned", "rule-based", "control")
ProgressCallback = Callable[[str, int, int, float], None]
"""``progress(stage, iteration, total, loss)``, called by ``fit`` as training advances."""


@runtime_checkable
class Generator(Protocol):
    """What the runner uses, and nothing else (see the module docstring for each member's meaning)."""

    name: str

    def config(self, profile: "Profile | None" = None) -> dict: ...

    def fit(self, train: "TrainingSet", profile: "Profile", seed: int, device: "torch.device | str" = "cpu", *,
            progress: ProgressCallback | None = None, work_dir: Path | None = None) -> None: ...

    def sample(self, n: int, seed: int) -> Iterator[Pair]: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, device: "torch.device | str" = "cpu") -> "Generator": ...

    def loss_curves(self) -> dict[str, list[float]]: ...

    @classmethod
    def parameter_count(cls, profile: "Profile") -> int: ...


class NotFittedError(FoscuError):
    """sample/save was called before fit/load."""


class GeneratorBase:
    """Base class of every built-in generator; third-party generators may derive from it too.

    A subclass sets ``name`` and implements:

    - ``__init__(**settings)``: keyword settings only, with defaults; ``settings()`` returns them (JSON), so
      ``cls(**settings())`` recreates the generator (checkpoints rely on it);
    - ``config(profile)``: every setting that changes results at ``profile``, resolved (sizes, budgets,
      learning rates), a superset of ``settings()``; the default returns ``settings()``;
    - ``fit(...)``: ends with ``self._remember_fit(train, profile, seed)``;
    - ``sample(n, seed)``: build pairs with ``make_pair`` and ``synthetic_case_id``;
    - ``_tensors()`` / ``_restore(arrays, config)``: the arrays a checkpoint holds, and how to rebuild from them;
    - ``_networks(profile)`` (learned generators): the sampling-time networks, for ``parameter_count``;
    - ``loss_curves()`` (learned generators);
    - optionally ``fit_parts`` and ``fit_part(part, ...)``: parts of the fit that need nothing from one another,
      which the runner trains as steps of their own beside each other before the fit resumes them from
      ``work_dir`` (Duo-Diffusion's label and image chains), and ``training_seconds()``: the fit's compute as the
      generator counted it across resumed attempts.
    """

    name: ClassVar[str] = ""
    fit_parts: ClassVar[tuple[str, ...]] = ()
    """Parts of ``fit`` that need nothing from one another, which a runner may train in parallel steps before the
    fit (``fit_part``); ``fit`` then resumes them from ``work_dir`` and trains the rest."""

    def __init__(self) -> None:
        self.profile: Profile | None = None
        self.fit_seed: int | None = None
        self.train_case_ids: list[str] = []
        self.device = "cpu"

    # -- the contract ----------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Constructor keyword arguments that recreate this generator (JSON)."""
        return {}

    def config(self, profile: "Profile | None" = None) -> dict:
        """Fully resolved settings at ``profile`` (default: the fitted profile)."""
        return dict(self.settings())

    def fit(self, train: "TrainingSet", profile: "Profile", seed: int, device="cpu", *,
            progress: ProgressCallback | None = None, work_dir: Path | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def fit_part(self, part: str, train: "TrainingSet", profile: "Profile", seed: int, device="cpu", *,
                 work_dir: Path, progress: ProgressCallback | None = None) -> None:
        """Train one of ``fit_parts`` to its end into ``work_dir``, as ``fit`` with the same arguments would."""
        raise ConfigError(f"generator {self.name!r} has no fit part {part!r} (its parts: {list(self.fit_parts)})")

    def sample(self, n: int, seed: int) -> Iterator[Pair]:  # pragma: no cover - overridden
        raise NotImplementedError

    def loss_curves(self) -> dict[str, list[float]]:
        """Training losses per stage, for the loss-curve figure (empty for rule-based generators)."""
        return {}

    def training_seconds(self) -> float | None:
        """Compute seconds of the last fit as the generator counted them, over every attempt a resumed fit took and
        every part it trained apart (None: not counted, and the runner times the fit call)."""
        return None

    @classmethod
    def parameter_count(cls, profile: "Profile") -> int:
        """Parameters of the networks used at sampling time (0 for rule-based generators)."""
        return int(sum(p.numel() for net in cls()._networks(profile) for p in net.parameters()))

    def _networks(self, profile: "Profile") -> list:
        return []

    # -- checkpoint hooks --------------------------------------------------------------------------------
    def _tensors(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray], config: dict) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _profile_for(self, profile: "Profile | None") -> "Profile":
        profile = profile or self.profile
        if profile is None:
            raise NotFittedError(f"generator {self.name!r}: config() needs a profile before the generator is fitted")
        return profile

    def _require_fitted(self) -> "Profile":
        if self.profile is None:
            raise NotFittedError(f"generator {self.name!r} must be fitted (or loaded) before sampling or saving")
        return self.profile

    def _remember_fit(self, train, profile: "Profile", seed: int) -> None:
        self.profile, self.fit_seed = profile, int(seed)
        self.train_case_ids = list(train.case_ids)

    def save(self, directory: Path) -> None:
        from foscu_bench.checkpoint import save_checkpoint

        profile = self._require_fitted()
        config = {"generator": self.name, "profile": profile.name, "profile_content": profile.content(),
                  "fit_seed": self.fit_seed, "train_case_ids": self.train_case_ids,
                  "generator_settings": self.settings(), "generator_config": self.config(profile)}
        save_checkpoint(directory, self._tensors(), config)

    @classmethod
    def load(cls, directory: Path, device="cpu"):
        from foscu_bench.checkpoint import CheckpointError, load_checkpoint
        from foscu_bench.profiles import get_profile

        arrays, config = load_checkpoint(directory)
        if config.get("generator") != cls.name:
            raise CheckpointError(f"{directory}: checkpoint of generator {config.get('generator')!r}, "
                                  f"not {cls.name!r}")
        generator = cls(**config.get("generator_settings", {}))
        generator.profile = get_profile(config["profile"])
        if "profile_content" in config and generator.profile.content() != config["profile_content"]:
            raise CheckpointError(f"{directory}: fitted at a {config['profile']!r} profile whose sizes differ from "
                                  f"this version's; fit again")
        if "generator_config" in config:
            from foscu_bench.store import _json_default

            current = json.loads(json.dumps(generator.config(generator.profile), default=_json_default))
            changed = sorted(k for k in set(current) | set(config["generator_config"])
                             if current.get(k) != config["generator_config"].get(k))
            if changed:
                raise CheckpointError(f"{directory}: fitted with another {cls.name!r} configuration than this version's "
                                      f"(differs in {', '.join(changed)}); fit again")
        generator.fit_seed = config["fit_seed"]
        generator.train_case_ids = list(config["train_case_ids"])
        generator.device = str(device)
        generator._restore(arrays, config)
        return generator


def volume_seeds(n: int, seed: int) -> list[int]:
    """``n`` per-volume seeds drawn from ``seed``: volume i of a sample depends on (seed, i) only."""
    return [int(s) for s in np.random.default_rng(seed).integers(2 ** 31, size=n)]


def volume_streams(n: int, seed: int, batch: int) -> Iterator[tuple[int, list[np.random.Generator]]]:
    """(index of the first volume, one random stream per volume) for each batch of ``batch`` volumes. Each volume
    draws only from its own stream, so the batch size never changes which volume comes out."""
    seeds = volume_seeds(n, seed)
    for start in range(0, n, batch):
        yield start, [np.random.default_rng(s) for s in seeds[start:start + batch]]


def synthetic_case_id(name: str, seed: int, index: int) -> str:
    return f"{name}-s{seed}-{index:05d}"


def make_pair(image: np.ndarray, label: np.ndarray, profile: "Profile", case_id: str, **meta: Any) -> Pair:
    """A valid ``Pair`` from generator output: image clipped to [0, 1] float32 (1 x X x Y x Z), label uint8."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    image = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)
    return Pair(image=image, label=np.asarray(label, dtype=np.uint8), spacing=profile.spacing, case_id=case_id,
                patient_id=case_id, meta=meta)


def training_arrays(train) -> tuple[np.ndarray, np.ndarray]:
    """Stacked training images (N x X x Y x Z float32) and labels (N x X x Y x Z uint8)."""
    return (np.stack([p.image[0] for p in train]).astype(np.float32),
            np.stack([p.label for p in train]).astype(np.uint8))


def _imported_modules(name: str, source: str) -> set[str]:
    """Module names imported anywhere in ``source`` (module level and inside functions), relative ones resolved."""
    import ast

    package = name if name.endswith("__init__") else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules imported by name
    return found


def code_fingerprint(cls: type) -> str:
    """SHA-256 over the source of the modules a generator class is made of.

    The modules are those of its class hierarchy and every module of its own top-level package or of
    ``foscu_bench`` that they import (anywhere in the file, transitively). Editing any of them changes the
    fingerprint, and so the fit cache key: a fit is never reused across a code change that could alter it, while
    editing an unrelated generator does not invalidate this one. Third-party libraries are covered by the
    versions recorded in the manifest.
    """
    return modules_fingerprint([c.__module__ for c in cls.__mro__],
                               roots={cls.__module__.split(".")[0], "foscu_bench"})


def modules_fingerprint(modules: list[str], roots: set[str] | None = None) -> str:
    """SHA-256 over the source of ``modules`` and of every module of ``roots`` (default: their own top-level
    packages and ``foscu_bench``) that they import, transitively (static AST closure: names imported from a
    module count too)."""
    import importlib.util

    roots = roots or {m.split(".")[0] for m in modules} | {"foscu_bench"}
    pending = [m for m in modules if m.split(".")[0] in roots]
    seen: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in seen or name.split(".")[0] not in roots:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue  # a name imported from a module, not a module
        seen[name] = Path(spec.origin).read_text()
        pending += sorted(_imported_modules(name if not spec.origin.endswith("__init__.py") else f"{name}.__init__",
                                            seen[name]) - set(seen))
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class GeneratorMeta:
    """What a generator is, for listings, manifests and leaderboards."""

    name: str
    kind: Literal["learned", "rule-based", "control"]
    """``control``: a positive or negative control, shown apart from generators in tables and figures."""
    target: str
    """``"package.module:Class"``, imported only when the generator is used."""
    citation: str
    reference: str
    conditioning: str
    """What the images are generated from (e.g. 'deformed real training labels', 'generated labels')."""
    description: str
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
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
    importlib.import_module("foscu_bench.generators.registry")
    importlib.import_module("foscu_bench.controls")


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


def parameter_count(name: str, profile: "Profile") -> int:
    """Parameters of the generator's sampling-time networks at ``profile``."""
    return int(get_meta(name).load_class().parameter_count(profile))


def create(name: str, **settings) -> Generator:
    """A fresh, unfitted generator instance."""
    cls = get_meta(name).load_class()
    return cls(**settings)


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
