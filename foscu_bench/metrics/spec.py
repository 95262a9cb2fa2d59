"""The one specification of per-case segmentation metrics: adding a metric is one ``CaseMetric`` entry.

From ``CASE_METRICS`` come the columns of metrics.csv (``<name>_<structure>``), what each case is scored with
(including the empty-mask rule), which columns ``stats.json`` compares against real-only (Holm per column and
arm), and the delta columns of all four leaderboard formats and the CLI summary (``leaderboard=True``).

Empty masks (Metrics Reloaded, Maier-Hein et al., Nat. Methods 2024, make the choice explicit): each metric
states its value when reference and prediction are both empty and when exactly one is; the runner reports
tumour metrics only for cases whose reference contains tumour (NaN otherwise), so "both empty" never inflates a
mean tumour score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np

STRUCTURES = ("liver", "tumour")
"""Liver = label > 0 (the whole organ, tumour included, as LiTS/CHAOS score it); tumour = label == 2."""


def fov_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(shape, dtype=float) * np.asarray(spacing, dtype=float)))


def _onehot(mask: np.ndarray):
    import torch

    fg = torch.from_numpy(np.ascontiguousarray(mask))[None, None]
    return torch.cat([~fg, fg], dim=1).float()


def _monai(function: Callable, **kwargs) -> Callable:
    """A MONAI metric function of two binary masks (computed with the case spacing where it takes one)."""

    def compute(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> float:
        extra = {k: (v(spacing, tolerance_mm) if callable(v) else v) for k, v in kwargs.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(function(_onehot(prediction), _onehot(reference), include_background=False, **extra)[0, 0])

    return compute


def _spacing(spacing, tolerance_mm):
    return [float(s) for s in spacing]


def _tolerance(spacing, tolerance_mm):
    return [float(tolerance_mm)]


def _dice(prediction, reference, spacing, tolerance_mm) -> float:
    from monai.metrics import compute_dice

    return _monai(compute_dice)(prediction, reference, spacing, tolerance_mm)


def _nsd(prediction, reference, spacing, tolerance_mm) -> float:
    from monai.metrics import compute_surface_dice

    return _monai(compute_surface_dice, class_thresholds=_tolerance, spacing=_spacing)(
        prediction, reference, spacing, tolerance_mm)


def _hd95(prediction, reference, spacing, tolerance_mm) -> float:
    from monai.metrics import compute_hausdorff_distance

    return _monai(compute_hausdorff_distance, percentile=95, spacing=_spacing)(prediction, reference, spacing,
                                                                               tolerance_mm)


def _ravd(prediction, reference, spacing, tolerance_mm) -> float:
    reference_voxels = int(reference.sum())
    return 100.0 * abs(int(prediction.sum()) - reference_voxels) / reference_voxels


@dataclass(frozen=True)
class CaseMetric:
    name: str
    """Column stem: the metrics.csv columns are ``<name>_<structure>``."""
    label: str
    unit: str
    direction: Literal["higher", "lower"]
    """Which way is better."""
    description: str
    compute: Callable[[np.ndarray, np.ndarray, Sequence[float], float], float]
    """``compute(prediction, reference, spacing_mm, nsd_tolerance_mm)`` for two non-empty boolean masks."""
    both_empty: float
    one_empty: float | Literal["fov_diagonal"]
    compared: tuple[str, ...] = STRUCTURES
    """Structures whose column is compared with real-only in stats.json."""
    leaderboard: bool = False
    """Show the liver delta (with CI and Holm p) in the leaderboard and the CLI summary."""
    delta_scale: float = 1.0
    """Deltas are displayed times this (100: Dice points, the unit of the paper's '+0.67%')."""
    delta_unit: str = ""
    value_format: str = ".4f"

    def columns(self) -> list[str]:
        return [f"{self.name}_{structure}" for structure in STRUCTURES]

    def score(self, prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
              tolerance_mm: float) -> float:
        pred_empty, ref_empty = not prediction.any(), not reference.any()
        if pred_empty and ref_empty:
            return float(self.both_empty)
        if pred_empty or ref_empty:
            return fov_diagonal_mm(reference.shape, spacing) if self.one_empty == "fov_diagonal" else float(self.one_empty)
        return self.compute(prediction, reference, spacing, tolerance_mm)

    def empty_rule(self) -> str:
        return f"{self.name}: both empty {self.both_empty:g}, one empty " + (
            "field-of-view diagonal" if self.one_empty == "fov_diagonal" else f"{self.one_empty:g}")


CASE_METRICS: tuple[CaseMetric, ...] = (
    CaseMetric("dice", "Dice", "", "higher", "Dice similarity coefficient (MONAI compute_dice)", _dice,
               both_empty=1.0, one_empty=0.0, leaderboard=True, delta_scale=100.0, delta_unit="pts"),
    CaseMetric("nsd", "NSD", "", "higher",
               "normalised surface Dice at the profile's tolerance (MONAI compute_surface_dice, Nikolov et al. 2021)",
               _nsd, both_empty=1.0, one_empty=0.0, compared=("liver",), delta_scale=100.0, delta_unit="pts"),
    CaseMetric("hd95", "HD95", "mm", "lower",
               "symmetric 95th-percentile Hausdorff distance in mm (MONAI compute_hausdorff_distance)", _hd95,
               both_empty=0.0, one_empty="fov_diagonal", compared=("liver",), delta_unit="mm", value_format=".2f"),
    CaseMetric("ravd", "RAVD", "%", "lower",
               "relative absolute volume difference |V_pred - V_ref| / V_ref in % (CHAOS challenge metric; liver "
               "volumetry)", _ravd, both_empty=0.0, one_empty=100.0, compared=("liver",), leaderboard=True,
               delta_unit="%", value_format=".2f"),
)
PRIMARY = "dice_liver"


def metric_columns() -> tuple[str, ...]:
    """metrics.csv metric columns: every metric of the liver, then of the tumour."""
    return tuple(f"{m.name}_{s}" for s in STRUCTURES for m in CASE_METRICS)


def compared_columns() -> tuple[str, ...]:
    return tuple(f"{m.name}_{s}" for m in CASE_METRICS for s in m.compared)


def metric_of(column: str) -> CaseMetric:
    name = column.rsplit("_", 1)[0]
    return next(m for m in CASE_METRICS if m.name == name)


def leaderboard_columns() -> tuple[str, ...]:
    """Liver columns whose delta the leaderboard and the CLI summary show, the primary metric first."""
    return tuple(f"{m.name}_liver" for m in CASE_METRICS if m.leaderboard)


def empty_mask_policy() -> str:
    return ("; ".join(m.empty_rule() for m in CASE_METRICS)
            + "; tumour metrics NaN without a reference tumour")
