"""Per-case segmentation metrics in physical units (Dice, NSD, HD95, RAVD; ``metrics.spec`` lists them), from MONAI.

One implementation is pinned (MONAI's ``compute_dice``, ``compute_surface_dice``, ``compute_hausdorff_distance``
with the case spacing), because surface-metric implementations disagree by large margins (Podobnik & Vrtovec,
arXiv 2410.02630). Surfaces are MONAI's: mask voxels removed by one binary erosion; distances are Euclidean
in mm between surface voxel centres. HD95 is the symmetric 95th-percentile Hausdorff distance (max of the two
directed 95th percentiles). NSD (Nikolov et al. 2021) counts surface voxels of each mask within ``tolerance_mm``
of the other surface.

Empty masks follow each metric's rule in ``metrics.spec`` (Metrics Reloaded): both empty gives Dice 1, NSD 1,
HD95 0, RAVD 0; exactly one empty gives Dice 0, NSD 0, HD95 = the field-of-view diagonal in mm, RAVD 100%, so a
missed organ is penalised instead of silently dropped as NaN.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from foscu_bench.metrics.spec import CASE_METRICS, STRUCTURES, fov_diagonal_mm

DEFAULT_NSD_TOLERANCE_MM = 2.0
METRIC_IMPLEMENTATION = "monai"
__all__ = ["binary_metrics", "case_metrics", "dice", "fov_diagonal_mm"]


def binary_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                   tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict[str, float]:
    """Every ``CASE_METRICS`` entry of two binary masks (X, Y, Z) with voxel ``spacing`` in mm, by metric name."""
    pred, ref = np.asarray(prediction, dtype=bool), np.asarray(reference, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    return {m.name: m.score(pred, ref, spacing, tolerance_mm) for m in CASE_METRICS}


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two masks (anything > 0 is foreground), MONAI-backed, with the spec's empty-mask rule."""
    metric = next(m for m in CASE_METRICS if m.name == "dice")
    return metric.score(np.asarray(prediction) > 0, np.asarray(reference) > 0, (1.0, 1.0, 1.0), 0.0)


def case_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                 tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict[str, float]:
    """All metrics of one case from label maps (0 bg, 1 liver, 2 tumour), as metrics.csv columns.

    Liver metrics use the whole organ (liver + tumour), as liver segmentation is scored in LiTS/CHAOS.
    Tumour metrics are NaN when the reference has no tumour (see module docstring).
    """
    masks = {"liver": (prediction > 0, reference > 0), "tumour": (prediction == 2, reference == 2)}
    row: dict[str, float] = {}
    for structure in STRUCTURES:
        pred, ref = masks[structure]
        if structure != "liver" and not np.any(ref):
            row.update({f"{m.name}_{structure}": float("nan") for m in CASE_METRICS})
            continue
        row.update({f"{name}_{structure}": value
                    for name, value in binary_metrics(pred, ref, spacing, tolerance_mm).items()})
    return row
