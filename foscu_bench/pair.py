"""The unit of data everywhere in the suite: one image/label pair on the processing grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foscu_bench.errors import FoscuError

LABELS: dict[str, int] = {"background": 0, "liver": 1, "tumour": 2}
"""Our label convention; every source is mapped to it (see ``data.label_map``)."""


@dataclass(frozen=True)
class Pair:
    """An image (float32, ``1 x X x Y x Z``, intensities in [0, 1]) and its label (uint8, ``X x Y x Z``).

    Arrays are RAS-oriented; ``spacing`` is the voxel size in mm in the same axis order. ``patient_id`` is
    what splits group on: two pairs of one patient never fall in different splits.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    case_id: str
    patient_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def liver_volume_ml(self) -> float:
        """Liver including tumour, in millilitres (tumours are part of the organ)."""
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        return float(np.count_nonzero(self.label)) * voxel_ml

    @property
    def has_tumour(self) -> bool:
        return bool(np.any(self.label == LABELS["tumour"]))


class InvalidPairError(FoscuError):
    """A pair (loaded or generated) breaks the contract of ``Pair``."""


def validate_pair(pair: Pair, shape: tuple[int, int, int] | None = None) -> Pair:
    """Check the ``Pair`` contract; raise ``InvalidPairError`` naming the case and the broken rule.

    Used on every loaded and every sampled pair, so a generator that emits NaNs, wrong shapes or label values
    outside {0, 1, 2} fails loudly instead of silently poisoning a segmentation experiment.
    """
    where = f"case {pair.case_id!r}"
    image, label = pair.image, pair.label
    if not isinstance(image, np.ndarray) or image.dtype != np.float32:
        raise InvalidPairError(f"{where}: image must be a float32 numpy array, got {type(image).__name__} "
                               f"{getattr(image, 'dtype', '')}")
    if image.ndim != 4 or image.shape[0] != 1:
        raise InvalidPairError(f"{where}: image must have shape 1 x X x Y x Z, got {image.shape}")
    if not isinstance(label, np.ndarray) or label.dtype != np.uint8:
        raise InvalidPairError(f"{where}: label must be a uint8 numpy array, got {getattr(label, 'dtype', type(label))}")
    if label.shape != image.shape[1:]:
        raise InvalidPairError(f"{where}: label shape {label.shape} does not match image shape {image.shape[1:]}")
    if shape is not None and tuple(label.shape) != tuple(shape):
        raise InvalidPairError(f"{where}: expected grid {tuple(shape)}, got {label.shape}")
    if not np.all(np.isfinite(image)):
        raise InvalidPairError(f"{where}: image has {int(np.count_nonzero(~np.isfinite(image)))} NaN/inf voxels")
    values = np.unique(label)
    bad = [int(v) for v in values if int(v) not in LABELS.values()]
    if bad:
        raise InvalidPairError(f"{where}: label values {bad} are outside {{0 background, 1 liver, 2 tumour}}")
    if len(pair.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in pair.spacing):
        raise InvalidPairError(f"{where}: spacing must be three positive numbers, got {pair.spacing}")
    return pair
