"""The embedded ``phantom`` dataset as a source: cases are generated on demand, deterministically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foscu_bench.hashing import json_hash
from foscu_bench.data.label_map import IDENTITY, LabelMap
from foscu_bench.data.phantom import PhantomConfig, case_seed, generate_case
from foscu_bench.data.sources import BUILTIN_DATASETS, CaseRecord
from foscu_bench.data.volume_io import RawCase
from foscu_bench.profiles import Profile, get_profile

PHANTOM_VERSION = "3"
"""Bumped whenever the phantom's code changes its arrays, so caches and fingerprints follow."""

REFERENCE_STREAM = 0x4EF_CA5E
"""First entropy word of the held-out *reference* patients (fidelity only): ``SeedSequence([REFERENCE_STREAM,
dataset_seed, index])``. Dataset cases use two words, oracle patients start with ``ORACLE_STREAM``, the
extractor's corpus with ``CORPUS_STREAM``: four disjoint streams."""


def reference_seed(dataset_seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([REFERENCE_STREAM, int(dataset_seed), int(index)])


class PhantomSource:
    kind = "phantom"
    default_label_map: LabelMap = IDENTITY

    def __init__(self, profile: Profile | str = "quick", n_cases: int | None = None, seed: int = 0,
                 weighting: str = "T1", tumour_fraction: float = 0.4) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.n_cases = int(n_cases if n_cases is not None else self.profile.n_phantom_cases)
        self.seed = int(seed)
        self.config = PhantomConfig(spacing=self.profile.phantom_spacing, weighting=weighting,  # type: ignore[arg-type]
                                    tumour_fraction=tumour_fraction)
        self.description = (f"procedural abdominal {weighting}-weighted MRI phantom, {self.n_cases} cases, "
                            f"seed {self.seed}")

    def records(self) -> list[CaseRecord]:
        return [CaseRecord(case_id=f"phantom_{i:04d}", patient_id=f"phantom_{i:04d}", details={"index": i})
                for i in range(self.n_cases)]

    def reference_records(self, count: int) -> list[CaseRecord]:
        """Fresh held-out patients for the fidelity reference: their own ids and random stream, never part of the
        dataset (its fingerprint, split and every training set stay as they are)."""
        return [CaseRecord(case_id=f"phantom_ref_{i:04d}", patient_id=f"phantom_ref_{i:04d}",
                           details={"index": i, "stream": "reference"}) for i in range(count)]

    def _seed(self, record: CaseRecord) -> tuple[np.random.SeedSequence, list[int]]:
        index = record.details["index"]
        if record.details.get("stream") == "reference":
            return reference_seed(self.seed, index), [REFERENCE_STREAM, self.seed, index]
        return case_seed(self.seed, index), [self.seed, index]

    def load(self, record: CaseRecord) -> RawCase:
        seed, words = self._seed(record)
        case = generate_case(seed, self.config)
        where = Path(f"phantom:{record.case_id}")
        return RawCase(case_id=record.case_id, patient_id=record.patient_id, image=case.image, label=case.label,
                       affine=case.affine, image_path=where, label_path=where,
                       meta={"phantom": case.info, "phantom_config": self.config.to_dict(), "phantom_seed": words})

    def content_key(self, record: CaseRecord) -> str:
        payload = {"version": PHANTOM_VERSION, "config": self.config.to_dict(), "seed": self.seed,
                   "index": record.details["index"]}
        if record.details.get("stream"):
            payload["stream"] = record.details["stream"]
        return json_hash(payload, None)

    def describe(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "n_cases": self.n_cases, "config": self.config.to_dict(),
                "version": PHANTOM_VERSION}


def _phantom(profile: Profile | str = "quick", **kwargs) -> PhantomSource:
    return PhantomSource(profile=profile, **kwargs)


def _phantom_t2(profile: Profile | str = "quick", **kwargs) -> PhantomSource:
    kwargs.setdefault("weighting", "T2")
    return PhantomSource(profile=profile, **kwargs)


BUILTIN_DATASETS["phantom"] = _phantom
BUILTIN_DATASETS["phantom-t2"] = _phantom_t2
