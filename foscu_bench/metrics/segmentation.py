"""Per-case segmentation metrics in physical units: Dice, normalised surface Dice (NSD) and HD95, from MONAI.

One implementation is pinned (MONAI's ``compute_dice``, ``compute_surface_dice``, ``compute_hausdorff_distance``
with the case spacing), because surface-metric implementations disagree by large margins (Podobnik & Vrtovec,
arXiv 2410.02630). Surfaces are MONAI's: mask voxels removed by one binary erosion; distances are Euclidean
in mm between surface voxel centres. HD95 is the symmetric 95th-percentile Hausdorff distance (max of the two
directed 95th percentiles). NSD (Nikolov et al. 2021) counts surface voxels of each mask within ``tolerance_mm``
of the other surface.

Empty masks (Metrics Reloaded, Maier-Hein et al., Nat. Methods 2024, make the choice explicit):
- reference and prediction both empty: Dice 1, NSD 1, HD95 0 (nothing to find and nothing found);
- exactly one empty: Dice 0, NSD 0, HD95 = the field-of-view diagonal in mm (the worst attainable distance),
  so a missed organ is penalised instead of silently dropped as NaN.
The runner reports tumour metrics only for cases whose reference contains tumour (NaN otherwise), so the
"both empty = 1" rule never inflates a mean tumour Dice.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_NSD_TOLERANCE_MM = 2.0
METRIC_IMPLEMENTATION = "monai"


@dataclass(frozen=True)
class CaseMetrics:
    dice: float
    nsd: float
    hd95: float

    def as_dict(self, suffix: str) -> dict[str, float]:
        return {f"dice_{suffix}": self.dice, f"nsd_{suffix}": self.nsd, f"hd95_{suffix}": self.hd95}


def fov_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(shape, dtype=float) * np.asarray(spacing, dtype=float)))


def binary_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                   tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> CaseMetrics:
    """Dice, NSD and HD95 of two binary masks (X, Y, Z) with voxel ``spacing`` in mm."""
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    pred, ref = np.asarray(prediction, dtype=bool), np.asarray(reference, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    pred_empty, ref_empty = not pred.any(), not ref.any()
    if pred_empty and ref_empty:
        return CaseMetrics(1.0, 1.0, 0.0)
    if pred_empty or ref_empty:
        return CaseMetrics(0.0, 0.0, fov_diagonal_mm(ref.shape, spacing))

    def onehot(mask: np.ndarray) -> "torch.Tensor":
        fg = torch.from_numpy(mask)[None, None]
        return torch.cat([~fg, fg], dim=1).float()

    p, r = onehot(pred), onehot(ref)
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = float(compute_dice(p, r, include_background=False)[0, 0])
        nsd = float(compute_surface_dice(p, r, [tolerance_mm], include_background=False, spacing=spacing)[0, 0])
        hd95 = float(compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=spacing)[0, 0])
    return CaseMetrics(dice, nsd, hd95)


def case_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                 tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict[str, float]:
    """All metrics of one case from label maps (0 bg, 1 liver, 2 tumour).

    Liver metrics use the whole organ (liver + tumour), as liver segmentation is scored in LiTS/CHAOS.
    Tumour metrics are NaN when the reference has no tumour (see module docstring).
    """
    row = binary_metrics(prediction > 0, reference > 0, spacing, tolerance_mm).as_dict("liver")
    if np.any(reference == 2):
        row.update(binary_metrics(prediction == 2, reference == 2, spacing, tolerance_mm).as_dict("tumour"))
    else:
        row.update({"dice_tumour": float("nan"), "nsd_tumour": float("nan"), "hd95_tumour": float("nan")})
    return row
