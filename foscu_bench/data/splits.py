"""Patient-level train / validation / test splits, and the only door through which generators get data.

A ``Split`` is deterministic from (case list, patient ids, seed, fractions) and is stored with every run.
Generators are fitted on a ``TrainingSet``, which can only be built from a split's training ids and checks
that no case and no patient of the validation or test split is inside: test data cannot reach a generator
by construction, and a hand-made list of pairs is refused (see ``require_training_set``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from foscu_bench.errors import ConfigError, FoscuError
from foscu_bench.pair import Pair

if TYPE_CHECKING:
    from foscu_bench.data.dataset import Dataset


class LeakageError(FoscuError):
    """Held-out data would reach a generator or the training of a model."""


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    fractions: tuple[float, float, float]
    held_out_patients: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Split":
        return cls(train=tuple(data["train"]), val=tuple(data["val"]), test=tuple(data["test"]),
                   seed=int(data["seed"]), fractions=tuple(data["fractions"]),  # type: ignore[arg-type]
                   held_out_patients=tuple(data.get("held_out_patients", ())))


def make_split(case_to_patient: dict[str, str], seed: int,
               fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)) -> Split:
    """Split whole patients (all their cases together) with a seeded shuffle.

    Counts are rounded per split; test gets at least one patient and train at least one, validation
    gets at least one when its fraction is positive and at least three patients exist.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    patients = sorted(set(case_to_patient.values()))
    if len(patients) < 2:
        raise ConfigError(f"need at least 2 patients to split, got {len(patients)}")
    order = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    n = len(patients)
    n_test = max(1, int(round(fractions[2] * n)))
    n_val = int(round(fractions[1] * n))
    if fractions[1] > 0 and n >= 3:
        n_val = max(1, n_val)
    n_val = min(n_val, n - n_test - 1)
    test_p, val_p = set(order[:n_test]), set(order[n_test:n_test + n_val])

    def cases(group: set[str] | None) -> tuple[str, ...]:
        return tuple(sorted(c for c, p in case_to_patient.items()
                            if (p in group if group is not None else p not in test_p | val_p)))

    return Split(train=cases(None), val=cases(val_p), test=cases(test_p), seed=seed,
                 fractions=tuple(fractions), held_out_patients=tuple(sorted(test_p | val_p)))  # type: ignore[arg-type]


def split_dataset(dataset: "Dataset", seed: int) -> Split:
    """The profile's split; phantoms use ``phantom_split_fractions`` where the profile sets them (more test cases)."""
    fractions = dataset.profile.split_fractions
    if getattr(dataset.source, "kind", None) == "phantom" and dataset.profile.phantom_split_fractions is not None:
        fractions = dataset.profile.phantom_split_fractions
    return make_split({c: dataset.record(c).patient_id for c in dataset.case_ids}, seed, fractions)


class TrainingSet(Sequence[Pair]):
    """Training pairs of one split, verified free of held-out cases and patients."""

    def __init__(self, pairs: Sequence[Pair], split: Split) -> None:
        held_out_patients = {p.patient_id for p in pairs if p.patient_id in split.held_out_patients}
        leaked = [p.case_id for p in pairs if p.case_id not in split.train]
        if leaked:
            raise LeakageError(f"cases {leaked[:5]} are not in the training split: generators may only see "
                               f"training cases")
        if held_out_patients:
            raise LeakageError(f"patients {sorted(held_out_patients)[:5]} are held out")
        self._pairs = tuple(pairs)
        self.split = split

    @classmethod
    def from_dataset(cls, dataset: "Dataset", split: Split) -> "TrainingSet":
        return cls(dataset.pairs(split.train), split)

    def __getitem__(self, index):  # type: ignore[override]
        return self._pairs[index]

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self._pairs)

    @property
    def case_ids(self) -> tuple[str, ...]:
        return tuple(p.case_id for p in self._pairs)


def require_training_set(data: object) -> TrainingSet:
    """Generators call this on what they are given: anything but a ``TrainingSet`` is refused."""
    if not isinstance(data, TrainingSet):
        raise LeakageError(f"generators are fitted on a TrainingSet (built from a split), got {type(data).__name__}")
    return data
