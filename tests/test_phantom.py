"""The embedded phantom: determinism, valid anatomy, realistic liver volumes, MRI-like contrast."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from foscu_bench.data import phantom as ph
from foscu_bench.data.phantom import PhantomConfig, case_seed, generate_case
from foscu_bench.profiles import get_profile

TINY = PhantomConfig(spacing=get_profile("tiny").phantom_spacing)
QUICK = PhantomConfig(spacing=get_profile("quick").phantom_spacing)


@lru_cache(maxsize=None)
def quick_case(index: int, dataset_seed: int = 0, weighting: str = "T1"):
    return generate_case(case_seed(dataset_seed, index), PhantomConfig(spacing=QUICK.spacing, weighting=weighting))


def test_same_seed_gives_identical_arrays():
    a, b = quick_case(3), generate_case(case_seed(0, 3), QUICK)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)


def test_different_seeds_give_different_patients():
    a, b = quick_case(1), quick_case(2)
    assert not np.array_equal(a.label, b.label)
    dice = 2 * np.sum((a.label > 0) & (b.label > 0)) / (np.sum(a.label > 0) + np.sum(b.label > 0))
    assert dice < 0.95, "two patients' livers should not be near-identical"


def test_labels_and_image_are_valid():
    from scipy import ndimage

    surrounded = []
    for seed in range(4):
        case = generate_case(seed, TINY if seed else QUICK, force_tumour=True)
        assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
        assert case.image.shape == case.label.shape
        assert set(np.unique(case.label)) == {0, 1, 2}
        assert np.isfinite(case.image).all() and case.image.min() >= 0  # Rician magnitude is non-negative
        # HCC nodules sit in the liver (they may bulge at its surface): their outer shell is mostly liver
        tumour = case.label == 2
        shell = ndimage.binary_dilation(tumour) & ~tumour
        surrounded.append((case.label[shell] == 1).mean())
    assert np.mean(surrounded) > 0.6 and min(surrounded) > 0.3


def test_liver_volumes_are_adult_like():
    """Adult livers are ~1.0-2.5 l (mean ~1.5 l); the phantom must spread across that range."""
    volumes = []
    for i in range(12):
        case = quick_case(i)
        volumes.append(np.count_nonzero(case.label) * np.prod(QUICK.spacing) / 1000)
    volumes = np.array(volumes)
    assert 1100 < volumes.mean() < 2000
    assert volumes.min() > 700 and volumes.max() < 3200
    assert volumes.std() / volumes.mean() > 0.08, "liver size must vary between patients"


def test_anatomy_is_resolution_independent():
    """One seed is one patient at any grid: tiny and quick liver volumes agree within 15%."""
    for i in range(3):
        tiny, quick = generate_case(case_seed(0, i), TINY), quick_case(i)
        v_tiny = np.count_nonzero(tiny.label) * np.prod(TINY.spacing)
        v_quick = np.count_nonzero(quick.label) * np.prod(QUICK.spacing)
        assert abs(v_tiny - v_quick) / v_quick < 0.15


def test_tumour_fraction_is_honoured():
    config = PhantomConfig(spacing=TINY.spacing, tumour_fraction=0.5)
    has = [generate_case(case_seed(1, i), config).info["has_tumour"] for i in range(40)]
    assert 0.3 < np.mean(has) < 0.7
    none = PhantomConfig(spacing=TINY.spacing, tumour_fraction=0.0)
    assert not any(np.any(generate_case(case_seed(1, i), none).label == 2) for i in range(10))


@pytest.mark.parametrize("weighting, brighter, darker", [
    ("T1", ph.LIVER, ph.SPLEEN),   # T1: liver brighter than spleen
    ("T2", ph.SPLEEN, ph.LIVER),   # T2: spleen brighter than liver (as in CHAOS T2-SPIR)
    ("T2", ph.GALLBLADDER, ph.LIVER),
    ("T1", ph.FAT, ph.MUSCLE),
])
def test_tissue_contrast_follows_mri_physics(weighting, brighter, darker):
    wins = 0
    for i in range(4):
        case = quick_case(i, weighting=weighting)
        a, b = case.image[case.tissue == brighter], case.image[case.tissue == darker]
        if a.size and b.size:
            wins += np.median(a) > np.median(b)
    assert wins >= 3


def test_noise_is_rician_in_air():
    case = quick_case(0)
    air = case.image[case.tissue == ph.AIR]
    # Rician magnitude of pure noise has mean sigma*sqrt(pi/2) > 0
    assert air.mean() > 0
    assert abs(air.mean() / case.info["noise_sigma"] - np.sqrt(np.pi / 2)) < 0.25


def test_thick_slices_are_anisotropic():
    assert QUICK.spacing[2] > QUICK.spacing[0] and QUICK.spacing[2] > QUICK.spacing[1]
    affine = QUICK.affine()
    np.testing.assert_allclose(np.diag(affine)[:3], QUICK.spacing)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="weighting"):
        PhantomConfig(weighting="PD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tumour_fraction"):
        PhantomConfig(tumour_fraction=1.5)


def test_parallel_generation_pays_by_volume():
    """Worker processes cost a few seconds to start: worth it for 32+ quick cases, for any 2 paper cases."""
    from foscu_bench.data.dataset import worth_parallel

    assert not worth_parallel(20, (32, 32, 32)) and worth_parallel(40, (32, 32, 32))
    assert worth_parallel(2, (128, 128, 128)) and not worth_parallel(12, (16, 16, 16))
    assert worth_parallel(40, (16, 16, 16))  # small grids cost about what quick ones do


def test_parallel_generation_gives_the_serial_pairs(tmp_path, monkeypatch):
    """Missing phantom cases are made in worker processes; the pairs are exactly the serial ones."""
    from foscu_bench.data import dataset as D
    from foscu_bench.data.dataset import open_dataset

    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "parallel"))
    monkeypatch.setattr(D, "PARALLEL_MIN_CASES", 0)
    seen = []
    parallel = open_dataset("phantom", profile="tiny").pairs(progress=seen.append)
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "serial"))
    monkeypatch.setattr(D, "PARALLEL_MIN_CASES", 10 ** 9)
    serial = open_dataset("phantom", profile="tiny").pairs()
    assert sorted(seen) == sorted(p.case_id for p in serial)  # progress once per case
    for a, b in zip(parallel, serial):
        assert a.case_id == b.case_id and a.meta == b.meta
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
