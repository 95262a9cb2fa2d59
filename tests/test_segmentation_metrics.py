"""Dice / NSD / HD95 / RAVD agree with an independent numpy/scipy implementation, anisotropic spacing included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from foscu_bench.metrics.segmentation import binary_metrics, case_metrics, fov_diagonal_mm


def reference_metrics(pred: np.ndarray, ref: np.ndarray, spacing, tolerance: float):
    """Independent implementation: surfaces = mask minus its erosion; distances by scipy's exact EDT in mm."""
    dice = 2 * np.logical_and(pred, ref).sum() / (pred.sum() + ref.sum())
    edge_p = pred & ~ndimage.binary_erosion(pred)
    edge_r = ref & ~ndimage.binary_erosion(ref)
    d_pr = ndimage.distance_transform_edt(~edge_r, sampling=spacing)[edge_p]
    d_rp = ndimage.distance_transform_edt(~edge_p, sampling=spacing)[edge_r]
    nsd = ((d_pr <= tolerance).sum() + (d_rp <= tolerance).sum()) / (d_pr.size + d_rp.size)
    hd95 = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
    return dice, nsd, hd95


def blob(shape, centre, radii, spacing):
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    return (((grid - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(-1) <= 1


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.5, 1.5, 4.0), (12.0, 9.0, 7.5), (0.7, 2.3, 5.1)])
def test_matches_independent_implementation(spacing):
    rng = np.random.default_rng(int(sum(spacing) * 10))
    shape = (28, 24, 18)
    extent = np.array(shape) * np.array(spacing)
    for _ in range(4):
        ref = blob(shape, extent * rng.uniform(0.4, 0.6, 3), extent * rng.uniform(0.15, 0.3, 3), spacing)
        pred = blob(shape, extent * rng.uniform(0.4, 0.6, 3), extent * rng.uniform(0.15, 0.3, 3), spacing)
        pred |= rng.uniform(size=shape) < 0.002  # speckle: far-away false positives stress HD95
        tol = 2.0 * max(spacing)
        ours = binary_metrics(pred, ref, spacing, tol)
        dice, nsd, hd95 = reference_metrics(pred, ref, spacing, tol)
        assert ours["dice"] == pytest.approx(dice, rel=1e-6)
        assert ours["nsd"] == pytest.approx(nsd, rel=1e-6)
        assert ours["hd95"] == pytest.approx(hd95, rel=1e-6)
        assert ours["ravd"] == pytest.approx(100 * abs(int(pred.sum()) - int(ref.sum())) / int(ref.sum()), rel=1e-12)


def test_hand_computed_shift_along_thick_slices():
    """A 4x4x4 cube shifted by one slice of 5 mm: Dice 3/4, every surface distance 0 or 5 mm."""
    ref = np.zeros((10, 10, 10), bool)
    ref[3:7, 3:7, 3:7] = True
    pred = np.roll(ref, 1, axis=2)
    m = binary_metrics(pred, ref, (1.0, 1.0, 5.0), tolerance_mm=2.0)
    assert m["dice"] == pytest.approx(0.75)
    assert m["hd95"] == pytest.approx(5.0)
    # same shift in-plane at 1 mm: HD95 is 1 mm, everything within a 2 mm tolerance
    m2 = binary_metrics(np.roll(ref, 1, axis=0), ref, (1.0, 1.0, 5.0), tolerance_mm=2.0)
    assert m2["hd95"] == pytest.approx(1.0) and m2["nsd"] == pytest.approx(1.0)


def test_identical_masks_are_perfect():
    ref = blob((16, 16, 16), (8, 8, 8), (5, 4, 3), (1, 1, 1))
    m = binary_metrics(ref, ref, (2, 2, 3))
    assert (m["dice"], m["nsd"], m["hd95"]) == (1.0, 1.0, 0.0)


def test_empty_mask_conventions():
    empty = np.zeros((10, 12, 8), bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True
    spacing = (1.0, 2.0, 3.0)
    diag = fov_diagonal_mm(empty.shape, spacing)
    assert diag == pytest.approx(np.sqrt(10 ** 2 + 24 ** 2 + 24 ** 2))
    both = binary_metrics(empty, empty, spacing)
    assert (both["dice"], both["nsd"], both["hd95"]) == (1.0, 1.0, 0.0)
    for pred, ref in ((empty, full), (full, empty)):
        m = binary_metrics(pred, ref, spacing)
        assert (m["dice"], m["nsd"], m["ravd"]) == (0.0, 0.0, 100.0) and m["hd95"] == pytest.approx(diag)
    assert both["ravd"] == 0.0


def test_dice_helper_is_the_metric_and_its_empty_rule():
    from foscu_bench.metrics.segmentation import dice

    a = blob((16, 16, 16), (8, 8, 8), (5, 4, 3), (1, 1, 1))
    b = np.roll(a, 2, axis=0)
    assert dice(a, b) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), rel=1e-6)
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0 and dice(a, np.zeros_like(a)) == 0.0


def test_case_metrics_liver_includes_tumour_and_tumour_nan_without_reference():
    ref = np.zeros((12, 12, 12), np.uint8)
    ref[2:10, 2:10, 2:10] = 1
    pred = ref.copy()
    row = case_metrics(pred, ref, (1, 1, 1))
    assert row["dice_liver"] == 1.0 and np.isnan(row["dice_tumour"])
    ref_t = ref.copy()
    ref_t[4:6, 4:6, 4:6] = 2
    row = case_metrics(pred, ref_t, (1, 1, 1))
    assert row["dice_liver"] == 1.0  # tumour voxels are liver for the organ score
    assert row["dice_tumour"] == 0.0  # missed tumour
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(pred[:-1] > 0, ref > 0, (1, 1, 1))
