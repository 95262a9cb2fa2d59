"""``classic-aug``: conventional augmentation of real training pairs with MONAI random transforms.

The standard a reviewer asks for first: if synthetic data only helps as much as random affine + elastic
deformation, bias field, gamma and noise applied to the real cases, a generative model is not needed. Each
sample draws one training pair and applies every transform with fresh random parameters (spatial ones
identically to image and label).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from foscu_bench.conditioning import deformation_transform
from foscu_bench.generator import GeneratorBase, make_pair, synthetic_case_id, training_arrays
from foscu_bench.data.splits import require_training_set
from foscu_bench.pair import Pair


def intensity_transform(seed: int):
    """MRI-like intensity perturbations: bias field, gamma, contrast scale/shift, Gaussian noise."""
    from monai.transforms import (Compose, RandAdjustContrastd, RandBiasFieldd, RandGaussianNoised,
                                  RandScaleIntensityd, RandShiftIntensityd)

    chain = Compose([
        RandBiasFieldd(keys="image", prob=0.8, coeff_range=(0.05, 0.25), degree=3),
        RandAdjustContrastd(keys="image", prob=0.8, gamma=(0.7, 1.5)),
        RandScaleIntensityd(keys="image", prob=0.5, factors=0.15),
        RandShiftIntensityd(keys="image", prob=0.5, offsets=0.05),
        RandGaussianNoised(keys="image", prob=0.8, std=0.03),
    ])
    chain.set_random_state(seed=seed)
    return chain


class ClassicAugmentation(GeneratorBase):
    name = "classic-aug"

    def __init__(self, strength: float = 1.0) -> None:
        super().__init__()
        self.strength = float(strength)
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        train = require_training_set(train)
        self.images, self.labels = training_arrays(train)
        self._remember_fit(train, profile, seed)

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        import torch

        profile = self._require_fitted()
        rng = np.random.default_rng(seed)
        for i in range(n):
            index = int(rng.integers(len(self.images)))
            sample_seed = int(rng.integers(2 ** 31))
            spatial = deformation_transform(profile.shape, ["image", "label"], ["bilinear", "nearest"],
                                            sample_seed, self.strength)
            data = spatial({"image": torch.from_numpy(self.images[index][None].copy()),
                            "label": torch.from_numpy(self.labels[index][None].astype(np.float32))})
            data = intensity_transform(sample_seed + 1)(data)
            yield make_pair(np.asarray(data["image"]), np.rint(np.asarray(data["label"])[0]), profile,
                            synthetic_case_id(self.name, seed, i), source_case=self.train_case_ids[index])

    def settings(self) -> dict:
        return {"strength": self.strength}

    def _tensors(self) -> dict:
        return {"images": self.images, "labels": self.labels}

    def _restore(self, arrays, config) -> None:
        self.images, self.labels = arrays["images"], arrays["labels"]
