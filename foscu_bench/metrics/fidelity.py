"""Image-fidelity metrics that mean something at the sample sizes of 3D medical imaging.

- FID (Heusel et al. 2017): Fréchet distance between Gaussian fits of features; MONAI's
  ``compute_frechet_distance`` (scipy ``sqrtm``, eps on the diagonal when the product is singular, imaginary
  residue dropped) in float64.
- KID (Binkowski et al., ICLR 2018): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets of size m <= n; mean and std over subsets.
- MMD: MONAI ``MMDMetric`` (unbiased, linear kernel) on the features.
- MS-SSIM: MONAI ``MultiScaleSSIMMetric`` between random pairs of volumes: among synthetic volumes (diversity;
  lower is more diverse, compare with the same number among real volumes) and synthetic against real.

FID is biased at finite N and the bias depends on the generator (Chong & Forsyth, CVPR 2020), so every generator
is measured at the *same* N against the *same* real reference, beside the real-vs-real floor: the FID between
two disjoint halves of the real data at that N, the best any generator can reach. A bootstrap over volumes
gives FID's CI. With N below the feature dimension the covariance is singular and FID is dominated by bias:
``warning`` says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

KID_SUBSETS = 100
FID_BOOTSTRAP = 200
MIN_STABLE_N = 50


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between feature sets ``a`` (n x d) and ``b`` (m x d) through MONAI's Fréchet distance."""
    import torch
    from monai.metrics.fid import compute_frechet_distance

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = torch.from_numpy(a.mean(0)), torch.from_numpy(b.mean(0))
    sigma_a = torch.from_numpy(np.atleast_2d(np.cov(a, rowvar=False)))
    sigma_b = torch.from_numpy(np.atleast_2d(np.cov(b, rowvar=False)))
    return float(compute_frechet_distance(mu_a, sigma_a, mu_b, sigma_b))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the KID kernel (Binkowski et al. 2018, Eq. 4): diagonals excluded."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2 * k_xy.mean())


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = KID_SUBSETS, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets drawn without replacement within a subset.

    The subset size is ``subset_size`` (1000, as in Binkowski et al.) when both sets are larger; otherwise
    half the smaller set, so that subsets differ and the std measures something (at m = n every subset would
    be the whole set and the std would be zero). The estimate stays unbiased at any m >= 2.
    """
    rng = np.random.default_rng(seed)
    smallest = min(len(a), len(b))
    m = subset_size if smallest > subset_size else max(2, smallest // 2)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    values = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values, ddof=1))


def mmd_monai(a: np.ndarray, b: np.ndarray) -> float:
    """MONAI ``MMDMetric`` (unbiased, linear kernel) on equal-sized feature sets."""
    import torch
    from monai.metrics import MMDMetric

    n = min(len(a), len(b))
    return float(MMDMetric()(torch.from_numpy(a[:n]), torch.from_numpy(b[:n])))


def ms_ssim_settings(shape: tuple[int, ...]) -> dict:
    """Kernel and scale weights that fit the grid: MONAI needs every side > (kernel - 1) * 2^(scales - 1)."""
    smallest = min(shape)
    if smallest > 160:
        return {"kernel_size": 11, "weights": (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)}
    if smallest >= 32:
        return {"kernel_size": 7, "weights": (0.3, 0.4, 0.3)}
    return {"kernel_size": 3, "weights": (0.3, 0.4, 0.3)}


def mean_ms_ssim(x: np.ndarray, y: np.ndarray | None, n_pairs: int, seed: int) -> float:
    """Mean MS-SSIM over ``n_pairs`` random pairs (i != j within ``x`` when ``y`` is None)."""
    import torch
    from monai.metrics import MultiScaleSSIMMetric

    settings = ms_ssim_settings(x.shape[2:])
    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0, kernel_size=settings["kernel_size"],
                                  weights=settings["weights"])
    rng = np.random.default_rng(seed)
    if y is None:
        first = rng.integers(len(x), size=n_pairs)
        second = (first + 1 + rng.integers(len(x) - 1, size=n_pairs)) % len(x)
        left, right = x[first], x[second]
    else:
        left, right = x[rng.integers(len(x), size=n_pairs)], y[rng.integers(len(y), size=n_pairs)]
    return float(metric(torch.from_numpy(left), torch.from_numpy(right)).mean())


def fid_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = FID_BOOTSTRAP, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected percentile CI of FID, resampling volumes of both sets (not slices: slices of one volume
    are correlated).

    Resampling with replacement duplicates volumes, which shrinks the covariance estimates and shifts every
    bootstrap FID up; the percentile interval is therefore shifted back by the bootstrap's bias estimate
    (mean of the bootstrap values - the point estimate; Efron & Tibshirani 1993, ch. 10).
    """
    rng = np.random.default_rng(seed)
    values = np.array([frechet_distance(a[rng.integers(len(a), size=len(a))], b[rng.integers(len(b), size=len(b))])
                       for _ in range(n_boot)])
    bias = values.mean() - frechet_distance(a, b)
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha) - bias), float(np.quantile(values, 1 - alpha) - bias)


@dataclass
class FidelityScores:
    fid: float
    fid_ci_low: float
    fid_ci_high: float
    kid_mean: float
    kid_std: float
    mmd: float
    n_real: int
    n_synthetic: int
    per_view: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def feature_scores(synthetic: dict[str, np.ndarray], real: dict[str, np.ndarray], seed: int = 0,
                   n_boot: int = FID_BOOTSTRAP) -> FidelityScores:
    """FID (+ bootstrap CI), KID and MMD per feature view, averaged over views (MAISI's 2.5D protocol)."""
    per_view = {}
    for view in real:
        a, b = synthetic[view], real[view]
        low, high = fid_bootstrap_ci(a, b, n_boot=n_boot, seed=seed)
        kid_mean, kid_std = kernel_inception_distance(a, b, seed=seed)
        per_view[view] = {"fid": frechet_distance(a, b), "fid_ci_low": low, "fid_ci_high": high,
                          "kid_mean": kid_mean, "kid_std": kid_std, "mmd": mmd_monai(a, b)}
    averaged = {key: float(np.mean([v[key] for v in per_view.values()])) for key in next(iter(per_view.values()))}
    n_real, n_synthetic = len(next(iter(real.values()))), len(next(iter(synthetic.values())))
    return FidelityScores(**averaged, n_real=n_real, n_synthetic=n_synthetic,
                          per_view=per_view if len(per_view) > 1 else {})


def stability_warning(n: int, feature_dim: int) -> str | None:
    if n < feature_dim or n < MIN_STABLE_N:
        return (f"n={n} volumes per set with {feature_dim} features: the covariance is "
                f"{'singular' if n <= feature_dim else 'poorly estimated'} and FID is dominated by small-sample bias; "
                f"compare generators only at equal n and against the real-vs-real floor")
    return None


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, seeded halves of ``n`` real volumes (the floor's two samples)."""
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.sort(order[:half]), np.sort(order[half:2 * half])


def fidelity_report(synthetic_images: np.ndarray, real_images: np.ndarray, extractor, seed: int = 0,
                    n_boot: int = FID_BOOTSTRAP, ms_ssim_pairs: int = 64) -> dict:
    """Fidelity of one synthetic set against real volumes, with the real-vs-real floor at the same n.

    The real volumes are split into halves A and B; B is the reference. The floor compares A with B, the
    generator's first |A| volumes are compared with B: same n, same reference, so the two are comparable.
    """
    half_a, half_b = split_halves(len(real_images), seed)
    n = len(half_a)
    if n < 2 or len(synthetic_images) < n:
        raise ValueError(f"need >= 4 real and >= {n} synthetic volumes, got {len(real_images)} and "
                         f"{len(synthetic_images)}")
    real_features = extractor(real_images)
    synthetic_features = extractor(synthetic_images[:n])
    reference = {view: f[half_b] for view, f in real_features.items()}
    floor = feature_scores({view: f[half_a] for view, f in real_features.items()}, reference, seed, n_boot)
    scores = feature_scores(synthetic_features, reference, seed, n_boot)
    feature_dim = next(iter(real_features.values())).shape[1]
    synthetic_only = synthetic_images[:max(n, 2)]
    return {
        "generator": scores.to_dict() | {
            "ms_ssim": mean_ms_ssim(synthetic_only, None, ms_ssim_pairs, seed),
            "ms_ssim_synthetic_real": mean_ms_ssim(synthetic_only, real_images[half_b], ms_ssim_pairs, seed)},
        "real_vs_real": floor.to_dict() | {"ms_ssim": mean_ms_ssim(real_images, None, ms_ssim_pairs, seed)},
        "n_per_set": n, "feature_dim": int(feature_dim), "warning": stability_warning(n, feature_dim),
        "ms_ssim_settings": ms_ssim_settings(real_images.shape[2:]),
    }
