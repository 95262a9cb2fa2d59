"""``open_dataset``: one object for a source + label map + profile, yielding preprocessed, validated pairs."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Callable, Iterable

from foscu_bench.data.cache import cache_key, cached_pair_path, load_cached_pair, store_cached_pair
from foscu_bench.data.label_map import LabelMap, parse_label_map
from foscu_bench.data.preprocess import PREPROCESS_VERSION, preprocess_case
from foscu_bench.data.sources import CaseRecord, DatasetSource, open_source
from foscu_bench.data.volume_io import RawCase
from foscu_bench.errors import ConfigError
from foscu_bench.pair import Pair, validate_pair
from foscu_bench.profiles import Profile, get_profile


class Dataset:
    """A dataset at a profile: lists cases cheaply, loads them preprocessed (cached by content hash)."""

    def __init__(self, source: DatasetSource, label_map: LabelMap, profile: Profile, name: str) -> None:
        self.source, self.label_map, self.profile, self.name = source, label_map, profile, name
        self._records = {r.case_id: r for r in source.records()}
        self._extra: dict[str, CaseRecord] = {}
        """Held-out reference patients (phantom only): loadable like cases, outside the dataset's identity."""
        self._keys: dict[str, str] = {}

    @property
    def case_ids(self) -> list[str]:
        return list(self._records)

    def record(self, case_id: str) -> CaseRecord:
        try:
            return self._records[case_id] if case_id in self._records else self._extra[case_id]
        except KeyError:
            raise ConfigError(f"dataset {self.name!r} has no case {case_id!r}") from None

    def reference_case_ids(self, count: int) -> list[str]:
        """Ids of ``count`` fresh held-out patients where the source can make them (the phantom), else none.
        They never enter ``case_ids``, the fingerprint or the split: they are for the fidelity reference only."""
        make = getattr(self.source, "reference_records", None)
        if make is None or count <= 0:
            return []
        records = make(count)
        self._extra.update({r.case_id: r for r in records})
        return [r.case_id for r in records]

    def raw_case(self, case_id: str) -> RawCase:
        return self.source.load(self.record(case_id))

    def _key(self, case_id: str) -> str:
        if case_id not in self._keys:
            self._keys[case_id] = cache_key({
                "content": self.source.content_key(self.record(case_id)), "label_map": self.label_map.to_dict(),
                "shape": self.profile.shape, "spacing": self.profile.spacing,
                "percentiles": self.profile.intensity_percentiles, "preprocess": PREPROCESS_VERSION})
        return self._keys[case_id]

    def pair(self, case_id: str) -> Pair:
        """The preprocessed pair of one case, from the cache when its content is unchanged."""
        key = self._key(case_id)
        pair = load_cached_pair(key)
        if pair is None:
            pair = validate_pair(preprocess_case(self.raw_case(case_id), self.label_map, self.profile),
                                 self.profile.shape)
            store_cached_pair(key, pair)
        return pair

    def pairs(self, case_ids: Iterable[str] | None = None,
              progress: Callable[[str], None] | None = None) -> list[Pair]:
        """Pairs in order; cases missing from the cache are made in parallel processes when the source is
        generated (the phantom: ~0.5 s a case at quick) and more than a few are missing."""
        case_ids = list(self.case_ids if case_ids is None else case_ids)
        generated = getattr(self.source, "kind", None) == "phantom"
        missing = [c for c in case_ids if not cached_pair_path(self._key(c)).is_file()] if generated else []
        workers = min(os.cpu_count() or 1, len(missing))
        if workers > 1 and worth_parallel(len(missing), self.profile.shape):
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers, initializer=_single_thread) as pool:
                for case_id in pool.map(_make_cached_pair, [(self, c) for c in missing]):
                    if progress is not None:
                        progress(case_id)
            done = set(missing)
        else:
            done = set()
        out = []
        for case_id in case_ids:
            out.append(self.pair(case_id))
            if progress is not None and case_id not in done:
                progress(case_id)
        return out

    def fingerprint(self) -> str:
        """Hash of all case contents, the label map and the preprocessing: equal fingerprints, equal data."""
        digest = hashlib.sha256()
        for case_id in sorted(self.case_ids):
            digest.update(f"{case_id}:{self._key(case_id)}\n".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source.describe(), "label_map": str(self.label_map),
                "profile": self.profile.name, "n_cases": len(self._records)}


PARALLEL_MIN_CASES = 32
"""Below this many missing cases of up to 32^3 (~0.4 s each), starting worker processes (each imports torch and
MONAI) costs more than it saves; larger grids count in 32^3 units (a 128^3 paper case, ~13 s, counts 64), so 20
paper cases are made in parallel (serially they took 205 s on a 16-core GPU machine)."""


def worth_parallel(n_missing: int, shape: tuple[int, int, int]) -> bool:
    """A case costs ~0.4 s up to 32^3 (tiny 0.39 s, quick 0.44 s: mostly fixed costs), then grows with the voxels."""
    return n_missing * max(1.0, math.prod(shape) / 32 ** 3) >= PARALLEL_MIN_CASES


def _single_thread() -> None:
    """Worker processes share the cores: one torch thread each."""
    import torch

    torch.set_num_threads(1)


def _make_cached_pair(job: tuple["Dataset", str]) -> str:
    dataset, case_id = job
    dataset.pair(case_id)  # preprocessed and written to the cache atomically
    return case_id


def open_dataset(spec: str | Path, label_map: str | LabelMap | None = None, profile: str | Profile = "quick",
                 phantom_options: dict | None = None, **path_options) -> Dataset:
    """Open ``phantom`` (or another built-in) or a dataset folder; ``label_map`` overrides the source default."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    source = open_source(spec, profile=profile.name, phantom_options=phantom_options, **path_options)
    if isinstance(label_map, str):
        label_map = parse_label_map(label_map)
    name = str(spec) if not Path(str(spec)).exists() else Path(spec).resolve().name
    return Dataset(source, label_map or source.default_label_map, profile, name)

