"""Set-up every bench shares: a dataset's seed-0 training split and the real-only reference U-Net.

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
