"""Fidelity metrics against independent formulas, their behaviour under degradation, and weight loading."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg, ndimage

from foscu_bench.metrics.features import FeatureWeightsError, get_extractor
from foscu_bench.metrics.fidelity import (bootstrap_indices, difference_interval, fd_infinity, fidelity_report,
                                          floor_corrected_reduction, frechet_distance, kernel_inception_distance,
                                          kid_replicates, memorisation, mmd2_unbiased, prdc, split_halves)


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula (numpy/scipy), written independently of MONAI."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_frechet_distance_matches_an_independent_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 24))
    b = rng.normal(0.3, 1.4, size=(250, 24)) @ rng.normal(size=(24, 24)) * 0.3
    assert frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_stays_real_with_fewer_volumes_than_features():
    """n < d (the tiny profile): singular covariances; the symmetric form agrees with pytorch-fid's formula where
    that one is well defined and is finite and >= 0 where MONAI's sqrtm would refuse."""
    from foscu_bench.metrics.fidelity import _symmetric_frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 12)), rng.normal(0.2, 1.3, size=(280, 12))
    stats = lambda x: (x.mean(0), np.cov(x, rowvar=False))  # noqa: E731
    assert _symmetric_frechet_distance(*stats(a), *stats(b)) == pytest.approx(reference_fid(a, b), rel=1e-6)
    for seed in range(20):
        small = np.random.default_rng(seed)
        x, y = small.normal(size=(8, 32)), small.normal(0.5, 2.0, size=(8, 32)) @ small.normal(size=(32, 32))
        value = frechet_distance(x, y)
        assert np.isfinite(value) and value >= 0


def brute_force_mmd2(x, y):
    k = lambda u, v: (u @ v / len(u) + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_polynomial_mmd_and_is_unbiased():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 4)), rng.normal(0.5, 1.0, size=(7, 4))
    assert mmd2_unbiased(x, y) == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)
    # known distributions: N(0, I) vs N(0.3, I) in 4-d; the population MMD^2 from very large samples
    truth = mmd2_unbiased(rng.normal(size=(4000, 4)), rng.normal(0.3, 1.0, size=(4000, 4)))
    small = [mmd2_unbiased(rng.normal(size=(8, 4)), rng.normal(0.3, 1.0, size=(8, 4))) for _ in range(3000)]
    standard_error = np.std(small) / np.sqrt(len(small))
    assert abs(np.mean(small) - truth) < 3.5 * standard_error
    # the biased (V-statistic) estimator at n = 8 is far off: the unbiased one matters at our sample sizes
    same = [mmd2_unbiased(rng.normal(size=(8, 4)), rng.normal(size=(8, 4))) for _ in range(2000)]
    assert abs(np.mean(same)) < 3.5 * np.std(same) / np.sqrt(len(same))
    mean, std = kernel_inception_distance(rng.normal(size=(40, 4)), rng.normal(0.3, 1.0, size=(40, 4)),
                                          subsets=50, subset_size=20)
    assert std > 0 and mean > 0


@pytest.fixture(scope="module")
def tiny_real_images(tmp_path_factory):
    import os

    from foscu_bench.data.dataset import open_dataset
    os.environ["FOSCU_BENCH_CACHE"] = str(tmp_path_factory.mktemp("fidelity-cache"))
    ds = open_dataset("phantom", profile="tiny", phantom_options={"n_cases": 24})
    return np.stack([p.image for p in ds.pairs()]), get_extractor("foscu-ae3d-corpus")


def _shuffle_slices(volumes: np.ndarray, k: int) -> np.ndarray:
    if k == 0:
        return volumes
    order = np.arange(volumes.shape[-1])
    cycle = np.random.default_rng(0).permutation(k)  # one k-cycle through random slices: none stays in place
    order[cycle[(np.arange(k) + 1) % k]] = cycle  # (a circular shift would keep most neighbours together)
    return volumes[..., order]


DEGRADATIONS = {
    "noise": (lambda x, s: np.clip(x + np.random.default_rng(0).normal(0, s, x.shape), 0, 1), (0.0, 0.03, 0.08, 0.2)),
    "blur": (lambda x, s: ndimage.gaussian_filter(x, (0, 0, s, s, s)) if s else x, (0.0, 0.5, 1.0, 2.0)),
    "intensity shift": (lambda x, s: np.clip(x + s, 0, 1), (0.0, 0.05, 0.1, 0.2)),
    "shuffled slices": (_shuffle_slices, (0, 4, 8, 16)),
}


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_fid_and_kid_grow_with_degradation_for_the_default_extractor(tiny_real_images, name):
    images, extractor = tiny_real_images
    degrade, strengths = DEGRADATIONS[name]
    reference = extractor(images)["volume"]
    fids, kids = [], []
    for strength in strengths:
        features = extractor(degrade(images.copy(), strength).astype(np.float32))["volume"]
        fids.append(frechet_distance(features, reference))
        kids.append(kernel_inception_distance(features, reference, subsets=50, seed=0)[0])
    assert all(b > a for a, b in zip(fids, fids[1:])), (name, fids)
    assert all(b > a for a, b in zip(kids, kids[1:])), (name, kids)


def test_fidelity_report_puts_the_floor_beside_the_generator(tiny_real_images):
    images, extractor = tiny_real_images
    held_out, train = images[:16], images[16:]
    half_a, _ = split_halves(len(held_out), seed=0)  # "synthetic" = degraded copies of the floor's half A
    noisy = np.clip(held_out[half_a] + np.random.default_rng(3).normal(0, 0.15, held_out[half_a].shape), 0, 1)
    report = fidelity_report(noisy.astype(np.float32), held_out, extractor, seed=0, n_boot=30, ms_ssim_pairs=8,
                             train_images=train)
    generator, floor = report["generator"], report["real_vs_real"]
    assert generator["n_real"] == generator["n_synthetic"] == floor["n_real"] == report["n_per_set"] == 8
    assert generator["fid"] > floor["fid"]
    assert generator["fid_ci_low"] <= generator["fid"] <= generator["fid_ci_high"]
    excess = generator["excess_over_floor"]["fid"]
    assert excess["difference"] == pytest.approx(generator["fid"] - floor["fid"])
    assert excess["difference"] > 0 and excess["ci_low"] <= excess["difference"] <= excess["ci_high"]
    assert generator["kid_se"] > 0 and len(generator["replicates"]["fid"]) == 30
    assert report["warning"] and "small-sample" in report["warning"]
    assert 0 < generator["ms_ssim"] <= 1 and 0 < floor["ms_ssim"] <= 1
    assert 0 <= generator["precision"] <= 1 and 0 <= generator["coverage"] <= 1
    assert report["memorisation"]["n_train"] == len(train)


def test_kid_bootstrap_standard_error_matches_the_spread_of_independent_estimates():
    rng = np.random.default_rng(4)
    draw = lambda n, shift: rng.normal(shift, 1.0, size=(n, 6))  # noqa: E731
    estimates = [mmd2_unbiased(draw(40, 0.0), draw(40, 0.4)) for _ in range(400)]
    x, y = draw(40, 0.0), draw(40, 0.4)
    reps = kid_replicates(x, y, bootstrap_indices(40, 400, 0, 1), bootstrap_indices(40, 400, 0, 2))
    assert np.std(reps) == pytest.approx(np.std(estimates), rel=0.35)
    # leaving out the pairs of a volume with its own duplicate keeps the replicates unbiased (a naive bootstrap of
    # the U-statistic counts k(x_i, x_i) as an off-diagonal pair and is biased upwards)
    z = draw(40, 0.0)
    same = kid_replicates(x, z, bootstrap_indices(40, 400, 0, 1), bootstrap_indices(40, 400, 0, 2))
    assert abs(np.mean(same) - mmd2_unbiased(x, z)) < 0.25 * np.std(same)


def test_kid_sees_features_in_the_units_of_the_reference():
    """KID version 2: the same sets in other feature units (a per-feature scale and shift, as extractors' moment
    features have) give the same KID, SE and replicates, equal to the polynomial MMD of the reference-z-scored
    features; FID keeps the extractor's units (it scales with them)."""
    from foscu_bench.metrics.fidelity import KID_VERSION, set_scores

    rng = np.random.default_rng(5)
    a, b = rng.normal(0.3, 1.2, size=(30, 6)), rng.normal(size=(40, 6))
    scale, shift = np.array([1, 10, 100, 0.1, 1000, 3.0]), np.arange(6.0)
    plain = set_scores({"v": a}, {"v": b}, own_stream=1, seed=0, n_boot=20)
    units = set_scores({"v": a * scale + shift}, {"v": b * scale + shift}, own_stream=1, seed=0, n_boot=20)
    assert KID_VERSION == plain["kid_version"] == 2
    z = lambda f: (f - b.mean(0)) / b.std(0)  # noqa: E731
    assert plain["kid"] == pytest.approx(brute_force_mmd2(z(a), z(b)), rel=1e-9)
    assert units["kid"] == pytest.approx(plain["kid"], rel=1e-9)
    assert units["kid_se"] == pytest.approx(plain["kid_se"], rel=1e-9)
    assert np.allclose(units["replicates"]["kid"], plain["replicates"]["kid"], rtol=1e-9)
    assert units["fid"] > 100 * plain["fid"]


def test_fd_infinity_removes_most_of_the_small_sample_bias():
    """Gaussian features, d = 16, n = 80, means 0.3 apart in every dimension: the true FD is 16 * 0.09 = 1.44."""
    fids, extrapolated = [], []
    for trial in range(6):
        rng = np.random.default_rng(trial)
        a, b = rng.normal(size=(80, 16)), rng.normal(0.3, 1.0, size=(80, 16))
        fids.append(frechet_distance(a, b))
        extrapolated.append(fd_infinity(a, b, seed=trial)["fd_infinity"])
    assert np.mean(fids) - 1.44 > 1.5  # FID at n = 80 more than doubles the true distance
    assert abs(np.mean(extrapolated) - 1.44) < 0.5, extrapolated


def brute_force_prdc(real, fake, k):
    """Naeem et al. 2020, Eqs. 3-6, written from the paper with explicit loops."""
    def radius(x):
        return np.array([np.sort(np.linalg.norm(x - p, axis=1))[k] for p in x])  # k-th neighbour, self excluded

    r_real, r_fake = radius(real), radius(fake)
    d = np.linalg.norm(real[:, None] - fake[None], axis=2)
    precision = np.mean([(d[:, j] <= r_real).any() for j in range(len(fake))])
    recall = np.mean([(d[i] <= r_fake).any() for i in range(len(real))])
    density = np.mean([(d[:, j] <= r_real).sum() for j in range(len(fake))]) / k
    coverage = np.mean([(d[i] <= r_real[i]).any() for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_matches_the_paper_definitions():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(50, 5)), rng.normal(0.7, 0.6, size=(45, 5))
    ours, truth = prdc(real, fake, k=5), brute_force_prdc(real, fake, 5)
    assert ours == pytest.approx(truth, abs=1e-9)
    assert prdc(real, real + 1e-6, k=5)["coverage"] == pytest.approx(1.0)


def test_memorisation_flags_copies_of_training_volumes_and_not_new_patients():
    rng = np.random.default_rng(7)
    train, held_out = rng.normal(size=(30, 8)), rng.normal(size=(100, 8))
    copies = memorisation(train[rng.integers(30, size=40)] + rng.normal(0, 0.02, (40, 8)), train, held_out)
    fresh = memorisation(rng.normal(size=(40, 8)), train, held_out)
    assert copies["near_copy_fraction"] == 1.0 and copies["p_value"] < 1e-10 and copies["distance_ratio"] < 0.1
    assert fresh["near_copies"] <= 2 and fresh["p_value"] > 0.01 and 0.7 < fresh["distance_ratio"] < 1.4
    names = [f"case_{i}" for i in range(30)]
    listed = memorisation(train[:3] + 1e-3, train, held_out, names)["closest"]
    assert {c["nearest_train_case"] for c in listed} == {"case_0", "case_1", "case_2"}


def test_paired_differences_share_the_reference_resampling():
    rng = np.random.default_rng(8)
    reference = rng.normal(size=(60, 6))
    g1, g2 = rng.normal(0.3, 1, size=(60, 6)), rng.normal(0.5, 1, size=(60, 6))
    ref_index = bootstrap_indices(60, 200, 0, 99)
    from foscu_bench.metrics.fidelity import fid_replicates, interval

    reps = {name: fid_replicates(g, reference, bootstrap_indices(60, 200, 0, k), ref_index)
            for k, (name, g) in enumerate((("g1", g1), ("g2", g2)), start=1)}
    points = {"g1": frechet_distance(g1, reference), "g2": frechet_distance(g2, reference)}
    paired = difference_interval(points["g2"], reps["g2"], points["g1"], reps["g1"])
    assert paired["difference"] == pytest.approx(points["g2"] - points["g1"])
    assert paired["ci_low"] <= paired["difference"] <= paired["ci_high"]
    low, high = interval(points["g1"], reps["g1"])
    assert low <= points["g1"] <= high
    floor = {"fid": 0.5, "replicates": {"fid": list(np.full(200, 0.5))}}
    reduction = floor_corrected_reduction({"fid": points["g1"], "replicates": {"fid": list(reps["g1"])}},
                                          {"fid": points["g2"], "replicates": {"fid": list(reps["g2"])}}, floor)
    assert reduction["pct"] == pytest.approx(100 * (1 - (points["g1"] - 0.5) / (points["g2"] - 0.5)))
    assert reduction["ci_low"] <= reduction["pct"] <= reduction["ci_high"]
    with pytest.raises(ValueError, match="do not pair up"):
        difference_interval(1.0, [1.0, 2.0], 0.5, [1.0])


def test_medicalnet_weights_load_from_a_local_file(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    from foscu_bench.metrics.features import build_medicalnet

    monkeypatch.delenv("FOSCU_BENCH_MEDICALNET_RESNET10", raising=False)
    torch.manual_seed(0)
    network = build_medicalnet(10).eval()
    # MedicalNet ships {"state_dict": {"module.<key>": ...}} with a segmentation head we do not use
    state = {f"module.{k}": v for k, v in network.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(2)
    torch.save({"state_dict": state}, tmp_path / "resnet_10_23dataset.pth")
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp_path / "resnet10.safetensors"))
    volumes = np.random.default_rng(0).uniform(size=(3, 1, 16, 16, 16)).astype(np.float32)
    for name in ("resnet_10_23dataset.pth", "resnet10.safetensors"):
        extractor = get_extractor("medicalnet-resnet10", weights=str(tmp_path / name))
        features = extractor(volumes)["volume"]
        assert features.shape == (3, 512)
        assert extractor.provenance["weights_sha256"]
    from foscu_bench.metrics.features import _zscore_body

    with torch.no_grad():
        direct = network(torch.from_numpy(_zscore_body(volumes))).numpy()
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)


def test_missing_or_unreachable_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv("FOSCU_BENCH_MEDICALNET_RESNET10", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FeatureWeightsError, match=r"not found; pass weights=PATH \(or set FOSCU_BENCH_MEDICALNET"):
        get_extractor("medicalnet-resnet10", weights=str(tmp_path / "absent.pth"))
    with pytest.raises(FeatureWeightsError, match="cannot fetch hf://TencentMedicalNet/MedicalNet-Resnet10"):
        get_extractor("medicalnet-resnet10")
    with pytest.raises(FeatureWeightsError, match="no weights given"):
        get_extractor("radimagenet-resnet50-2.5d")
    (tmp_path / "wrong.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FeatureWeightsError, match="cannot read weights"):
        get_extractor("medicalnet-resnet10", weights=str(tmp_path / "wrong.safetensors"))


def test_the_25d_extractor_embeds_three_planes(tmp_path):
    import torch

    from foscu_bench.metrics.features import build_resnet50_2d

    torch.manual_seed(0)
    torch.save(build_resnet50_2d().state_dict(), tmp_path / "resnet50.pt")
    extractor = get_extractor("radimagenet-resnet50-2.5d", weights=str(tmp_path / "resnet50.pt"))
    volumes = np.random.default_rng(0).uniform(size=(2, 1, 16, 16, 16)).astype(np.float32)
    views = extractor(volumes)
    assert set(views) == {"axial", "coronal", "sagittal"}
    assert all(v.shape == (2, 2048) for v in views.values())
