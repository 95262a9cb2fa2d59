"""Controls behind the generator contract: they show that the protocol can see a true gain and a true harm.

- ``phantom-oracle`` (positive control): fresh simulator patients from the phantom the dataset was made with,
  disjoint from every case of the dataset (their own random stream, their own ids), same contrast and profile,
  preprocessed by the same MONAI chain. Extra *real* data by construction: a protocol that cannot detect it
  cannot judge a generator. It exists only for the phantom and refuses any other dataset.
- ``mismatched-labels`` (negative control): real training images, each paired with another training case's
  label. Realistic images, wrong labels: training on them must hurt, and a protocol must show that.

- ``copy-control`` (memorisation control): the training cases themselves, lightly perturbed (Gaussian noise of
  1% of the intensity range, a global intensity scale within 2%), labels unchanged. A generator that memorised
  its training set looks like this: the fidelity metrics must flag it as near-copies, not reward it. Not run by
  default (ask for it with ``--generator copy-control``).

All are ``kind="control"``: tables and figures show them apart from generators, and their p-values form their
own Holm family.
"""

from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from foscu_bench.data.splits import require_training_set
from foscu_bench.errors import ConfigError
from foscu_bench.generator import GeneratorBase, GeneratorMeta, make_pair, register, synthetic_case_id, training_arrays
from foscu_bench.pair import Pair

ORACLE_STREAM = 0x0C_AC1E
"""First entropy word of every oracle patient's seed; dataset cases use ``SeedSequence([dataset_seed, index])``
(two words), oracle patients ``SeedSequence([ORACLE_STREAM, sample_seed, i])`` (three): disjoint streams."""


def oracle_seed(sample_seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([ORACLE_STREAM, int(sample_seed), int(index)])


def _oracle_patient(config, profile, seed: int, index: int, case_id: str) -> Pair:
    """One preprocessed oracle patient, from the preprocessed-pair cache when it was made before."""
    from pathlib import Path

    from foscu_bench.data.cache import cache_key, load_cached_pair, store_cached_pair
    from foscu_bench.data.label_map import IDENTITY
    from foscu_bench.data.phantom import generate_case
    from foscu_bench.data.phantom_source import PHANTOM_VERSION
    from foscu_bench.data.preprocess import PREPROCESS_VERSION, preprocess_case
    from foscu_bench.data.volume_io import RawCase

    key = cache_key({"oracle": [ORACLE_STREAM, int(seed), int(index)], "config": config.to_dict(),
                     "phantom": PHANTOM_VERSION, "shape": profile.shape, "spacing": profile.spacing,
                     "percentiles": profile.intensity_percentiles, "preprocess": PREPROCESS_VERSION})
    pair = load_cached_pair(key)
    if pair is None:
        case = generate_case(oracle_seed(seed, index), config)
        raw = RawCase(case_id=case_id, patient_id=case_id, image=case.image, label=case.label, affine=case.affine,
                      image_path=Path(f"oracle:{case_id}"), label_path=Path(f"oracle:{case_id}"),
                      meta={"phantom": case.info, "oracle_seed": [ORACLE_STREAM, int(seed), int(index)]})
        pair = preprocess_case(raw, IDENTITY, profile)
        store_cached_pair(key, pair)
    return pair


class PhantomOracle(GeneratorBase):
    name = "phantom-oracle"

    def __init__(self) -> None:
        super().__init__()
        self.phantom_config: dict | None = None

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        """Learns nothing: reads which phantom the training cases come from, and refuses anything else."""
        train = require_training_set(train)
        configs = set()
        for pair in train:
            config = pair.meta.get("source", {}).get("phantom_config")
            if config is None:
                raise ConfigError(f"phantom-oracle is a positive control for the phantom datasets only (it draws "
                                  f"fresh simulator patients); training case {pair.case_id!r} is not a phantom "
                                  f"case. On real data run without it (--no-controls keeps only the negative "
                                  f"control off too)")
            configs.add(json.dumps(config, sort_keys=True))
        if len(configs) != 1:
            raise ConfigError(f"phantom-oracle: the training cases come from {len(configs)} different phantom "
                              f"configurations; expected one")
        self.phantom_config = json.loads(configs.pop())
        self._remember_fit(train, profile, seed)

    def _phantom(self):
        from foscu_bench.data.phantom import PhantomConfig

        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.phantom_config.items()}
        return PhantomConfig(**values)

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        """Patient i of sample seed s is ``oracle_seed(s, i)`` whatever the level or run, so its preprocessed pair
        is cached by content like a dataset case (a grid's levels, the fidelity step and later runs share it)."""
        profile = self._require_fitted()
        config = self._phantom()
        for i in range(n):
            case_id = synthetic_case_id(self.name, seed, i)
            pair = _oracle_patient(config, profile, seed, i, case_id)
            yield make_pair(pair.image, pair.label, profile, case_id, oracle_seed=[ORACLE_STREAM, int(seed), i])

    def _tensors(self) -> dict:
        return {"phantom_config_json": np.frombuffer(json.dumps(self.phantom_config, sort_keys=True).encode(),
                                                     dtype=np.uint8)}

    def _restore(self, arrays, config) -> None:
        self.phantom_config = json.loads(arrays["phantom_config_json"].tobytes().decode())


class MismatchedLabels(GeneratorBase):
    name = "mismatched-labels"

    def __init__(self) -> None:
        super().__init__()
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        train = require_training_set(train)
        if len(train) < 2:
            raise ConfigError("mismatched-labels needs at least 2 training cases to pair an image with another "
                              "case's label")
        self.images, self.labels = training_arrays(train)
        self._remember_fit(train, profile, seed)

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        profile = self._require_fitted()
        rng = np.random.default_rng(seed)
        count = len(self.images)
        for i in range(n):
            image_index = int(rng.integers(count))
            label_index = (image_index + 1 + int(rng.integers(count - 1))) % count  # never the image's own label
            yield make_pair(self.images[image_index], self.labels[label_index], profile,
                            synthetic_case_id(self.name, seed, i), image_case=self.train_case_ids[image_index],
                            label_case=self.train_case_ids[label_index])

    def _tensors(self) -> dict:
        return {"images": self.images, "labels": self.labels}

    def _restore(self, arrays, config) -> None:
        self.images, self.labels = arrays["images"], arrays["labels"]


COPY_NOISE, COPY_SCALE = 0.01, 0.02


class CopyControl(MismatchedLabels):
    """Training pairs, lightly perturbed: what a generator that memorised its training set would return."""

    name = "copy-control"

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        profile = self._require_fitted()
        rng = np.random.default_rng(seed)
        for i in range(n):
            index = i % len(self.images)
            noise = rng.normal(0.0, COPY_NOISE, self.images[index].shape)
            image = np.clip(self.images[index] * rng.uniform(1 - COPY_SCALE, 1 + COPY_SCALE) + noise, 0.0, 1.0)
            yield make_pair(image.astype(np.float32), self.labels[index], profile, synthetic_case_id(self.name, seed, i),
                            image_case=self.train_case_ids[index], label_case=self.train_case_ids[index])


PHANTOM_ORACLE = register(GeneratorMeta(
    name="phantom-oracle", kind="control", target="foscu_bench.controls:PhantomOracle",
    citation="positive control of foscu-bench: fresh patients from the dataset's own simulator",
    reference="https://arxiv.org/abs/2312.12407",
    conditioning="nothing: new simulator patients (disjoint random streams), same contrast and profile",
    description="Positive control: extra real phantom cases. The protocol must detect their gain."))

MISMATCHED_LABELS = register(GeneratorMeta(
    name="mismatched-labels", kind="control", target="foscu_bench.controls:MismatchedLabels",
    citation="negative control of foscu-bench: realistic images with another case's label",
    reference="https://arxiv.org/abs/2312.12407",
    conditioning="real training images paired with the label of a different training case",
    description="Negative control: realistic images whose labels do not match. The protocol must detect the harm."))

COPY_CONTROL = register(GeneratorMeta(
    name="copy-control", kind="control", target="foscu_bench.controls:CopyControl",
    citation="memorisation control of foscu-bench: the training cases, lightly perturbed",
    reference="https://arxiv.org/abs/2307.01148",
    conditioning="none: training images with 1% noise and a 2% intensity scale, their own labels",
    description="Memorisation control: copies of the training set. Fidelity metrics must flag them."))

POSITIVE, NEGATIVE = PHANTOM_ORACLE.name, MISMATCHED_LABELS.name
