"""Set-up every bench shares: a dataset's seed-0 training split, the real-only reference U-Net and the held-out
consistency judge.

Imported by the scripts in this folder (``python bench/<script>.py`` puts ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

from foscu_bench.data.dataset import Dataset, open_dataset
from foscu_bench.data.splits import Split, TrainingSet, split_dataset
from foscu_bench.segmentation import train_segmentation


def training_split(dataset: str = "phantom", profile: str = "quick", label_map: str | None = None,
                   split_seed: int = 0) -> tuple[Dataset, Split, TrainingSet]:
    ds = open_dataset(dataset, label_map=label_map, profile=profile)
    split = split_dataset(ds, split_seed)
    return ds, split, TrainingSet.from_dataset(ds, split)


def reference_unet(ds: Dataset, train: TrainingSet, seed: int = 0):
    """The real-only U-Net (profile budget) that judges image-label consistency of generated pairs."""
    return train_segmentation(list(train), [], "real", ds.profile.segmentation, seed=seed).model


JUDGE_CASES = 32
"""Test cases the held-out judge trains on: as many as the quick training split, so its skill matches the
reference U-Net's."""


def held_out_judge(ds: Dataset, split: Split, settings=None) -> tuple[object, list]:
    """A real-only U-Net (seed 0) on the first ``JUDGE_CASES`` test cases, which no generator saw, and the test cases
    after them (where its ceiling is measured); ``settings`` default to the profile's."""
    test = ds.pairs(split.test)
    model = train_segmentation(test[:JUDGE_CASES], [], "real", settings or ds.profile.segmentation, seed=0).model
    return model, test[JUDGE_CASES:]
