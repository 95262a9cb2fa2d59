"""Image-fidelity metrics that mean something at the sample sizes of 3D medical imaging.

- FID (Heusel et al. 2017): Fréchet distance between Gaussian fits of features; MONAI's
  ``compute_frechet_distance`` (scipy ``sqrtm``) in float64.
- FD-infinity (Chong & Forsyth, CVPR 2020): FID is biased at finite n by a term ~ k/n whose k depends on the
  generator; FID is measured on random subsets of several sizes, fitted linearly in 1/n and extrapolated to
  1/n = 0.
- KID (Binkowski et al., ICLR 2018): the unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3 on the full sets, its standard error from a U-statistic bootstrap (resampled
  volumes, pairs of a volume with itself left out, so the estimator stays unbiased in every replicate). The
  kernel is not scale-free: Inception's features are O(1), ours are moments of layers with very different scales
  (x.y / d in the hundreds gave KIDs in the thousands, dominated by a few features), so KID sees features
  z-scored by the reference, as PRDC does (``KID_VERSION`` 2; 1 was raw features).
- MMD: MONAI ``MMDMetric`` (unbiased, linear kernel).
- Precision / recall / density / coverage (Naeem et al., ICML 2020) with the ``prdc`` package, k = 5, on
  features standardised by the reference: fidelity and diversity apart.
- MS-SSIM: MONAI ``MultiScaleSSIMMetric`` between random pairs of volumes (diversity among synthetic volumes;
  compare with the same number among real ones).
- Memorisation: each synthetic volume's distance to its nearest *training* volume in standardised feature space,
  against how close held-out real volumes come to the training set (see ``memorisation``).

Every comparison is paired on one reference: the bootstrap replicates of every set resample the reference with
the same indices (one seeded stream), and the set itself with its own stream. The difference between two
generators, or between a generator and the real-vs-real floor, is then a difference of replicates: its CI needs
no features of the other set, only the stored replicates (``difference_interval``), even across runs that
share the reference.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

KID_SUBSETS = 100
FID_BOOTSTRAP = 200
MIN_STABLE_N = 50
PRDC_K = 5
FIDELITY_VOLUMES = {"tiny": 8, "quick": 100, "paper": 100}
"""Volumes per set (synthetic, reference, floor) for fidelity: 100 at quick and paper (issue #15: FID's covariance
needs n well above the feature dimension, KID and PRDC need n for their variance); tiny keeps tests fast."""
KID_VERSION = 2
"""2: KID on features z-scored by the reference (every set of a report shares the transform, so replicates still
pair); 1: raw extractor features. Stored in every report: KIDs of different versions are different units."""
REFERENCE_STREAM = 0x5EF
"""Entropy word of the reference's bootstrap indices: equal in every report, so replicates pair up."""


def fidelity_volumes(profile: str) -> int:
    return FIDELITY_VOLUMES.get(profile, 100)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between feature sets ``a`` (n x d) and ``b`` (m x d) through MONAI's Fréchet distance.

    Where n or m is below d the covariances are singular and MONAI's ``sqrtm`` of their product can come out with an
    imaginary part it refuses (> 1e-3; seen on AVX2 CPUs at the tiny profile, n = 8, d = 32); there the trace term
    is taken in the symmetric form tr((S_a^1/2 S_b S_a^1/2)^1/2), which is real by construction and equal wherever
    both exist. The report's stability warning already marks such n."""
    import torch
    from monai.metrics.fid import compute_frechet_distance

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sigma_a, sigma_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    try:
        return float(compute_frechet_distance(torch.from_numpy(a.mean(0)), torch.from_numpy(sigma_a),
                                              torch.from_numpy(b.mean(0)), torch.from_numpy(sigma_b)))
    except ValueError:
        return _symmetric_frechet_distance(a.mean(0), sigma_a, b.mean(0), sigma_b)


def _symmetric_frechet_distance(mu_a, sigma_a, mu_b, sigma_b) -> float:
    def psd_sqrt(matrix):
        values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
        return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T

    root_a = psd_sqrt(sigma_a)
    middle = np.linalg.eigvalsh(root_a @ sigma_b @ root_a)
    trace_sqrt = float(np.sqrt(np.clip(middle, 0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_sqrt)


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
    """KID mean and std over ``subsets`` random subsets (the original protocol; kept for comparison with papers).

    The subset size is ``subset_size`` when both sets are larger, otherwise half the smaller set, so that subsets
    differ. The std over subsets is *not* a standard error of the mean: ``kid_replicates`` gives that.
    """
    rng = np.random.default_rng(seed)
    smallest = min(len(a), len(b))
    m = subset_size if smallest > subset_size else max(2, smallest // 2)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    values = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values, ddof=1))


def _u_mean(kernel: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean of ``kernel[i, j]`` over resampled pairs whose *original* volumes differ, per replicate row."""
    block = kernel[index[:, :, None], index[:, None, :]]
    keep = index[:, :, None] != index[:, None, :]
    return (block * keep).sum((1, 2)) / np.maximum(keep.sum((1, 2)), 1)


def kid_replicates(x: np.ndarray, y: np.ndarray, x_index: np.ndarray, y_index: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the unbiased MMD^2 (KID): rows of ``x_index`` / ``y_index`` resample the sets;
    pairs of a volume with its own duplicate are left out, which keeps every replicate unbiased."""
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    cross = k_xy[x_index[:, :, None], y_index[:, None, :]].mean((1, 2))
    return _u_mean(k_xx, x_index) + _u_mean(k_yy, y_index) - 2 * cross


def fid_replicates(x: np.ndarray, y: np.ndarray, x_index: np.ndarray, y_index: np.ndarray) -> np.ndarray:
    """FID of every bootstrap resample (rows of the index arrays); volumes are resampled, never slices."""
    return np.array([frechet_distance(x[i], y[j]) for i, j in zip(x_index, y_index)])


def bootstrap_indices(n: int, n_boot: int, seed: int, stream: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)])).integers(n, size=(n_boot, n))


def interval(point: float, replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected percentile interval (Efron & Tibshirani 1993, ch. 10): resampling with replacement
    duplicates volumes, which shrinks covariances and shifts every bootstrap FID up; the percentile interval
    is shifted back by the bootstrap's bias estimate (mean of the replicates - the point estimate)."""
    replicates = np.asarray(replicates, dtype=np.float64)
    bias = replicates.mean() - point
    alpha = (1 - level) / 2
    return float(np.quantile(replicates, alpha) - bias), float(np.quantile(replicates, 1 - alpha) - bias)


def difference_interval(point_a: float, replicates_a, point_b: float, replicates_b,
                        level: float = 0.95) -> dict:
    """``a - b`` with its paired bootstrap CI: both sets of replicates must share the reference's resampling
    (``REFERENCE_STREAM``, same seed, same reference), which ``fidelity_report`` guarantees."""
    a, b = np.asarray(replicates_a, np.float64), np.asarray(replicates_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"replicates do not pair up: {a.shape} vs {b.shape}")
    difference = point_a - point_b
    low, high = interval(difference, a - b, level)
    return {"difference": float(difference), "ci_low": low, "ci_high": high}


def fid_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = FID_BOOTSTRAP, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected percentile CI of FID, resampling volumes of both sets."""
    reps = fid_replicates(a, b, bootstrap_indices(len(a), n_boot, seed, 1), bootstrap_indices(len(b), n_boot, seed,
                                                                                            REFERENCE_STREAM))
    return interval(frechet_distance(a, b), reps, level)


def fd_infinity(a: np.ndarray, b: np.ndarray, seed: int = 0, points: int = 5, repeats: int = 8) -> dict:
    """FD-infinity (Chong & Forsyth 2020): FID on random subsets of ``points`` sizes from n/2 to n (``repeats``
    each, both sets subsampled to the same size), least squares FID = FD_inf + slope / size, FD_inf returned."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xFD]))
    n = min(len(a), len(b))
    sizes = np.unique(np.linspace(max(4, n // 2), n, points).astype(int))
    if len(sizes) < 2:
        return {"fd_infinity": None, "slope": None, "sizes": [int(s) for s in sizes]}
    xs, ys = [], []
    for size in sizes:
        for _ in range(repeats if size < n else 1):
            xs.append(1.0 / size)
            ys.append(frechet_distance(a[rng.choice(len(a), size, replace=False)],
                                       b[rng.choice(len(b), size, replace=False)]))
    slope, intercept = np.polyfit(xs, ys, 1)
    return {"fd_infinity": float(intercept), "slope": float(slope), "sizes": [int(s) for s in sizes]}


def mmd_monai(a: np.ndarray, b: np.ndarray) -> float:
    """MONAI ``MMDMetric`` (unbiased, linear kernel) on equal-sized feature sets."""
    import torch
    from monai.metrics import MMDMetric

    n = min(len(a), len(b))
    return float(MMDMetric()(torch.from_numpy(a[:n]), torch.from_numpy(b[:n])))


def standardiser(reference: np.ndarray):
    """z-score by the reference's per-feature mean and sd: nearest-neighbour metrics weigh every feature alike
    (the extractor's features mix means and sds of layers with very different scales)."""
    mean, sd = reference.mean(0), reference.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return lambda f: (np.asarray(f, np.float64) - mean) / sd


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K) -> dict:
    """Precision, recall, density and coverage (Naeem et al. 2020) with the reference ``prdc`` package."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the package prints the set sizes
        warnings.filterwarnings("ignore", message="Inside a Dask worker")  # sklearn: n_jobs=1 there, as everywhere
        scores = compute_prdc(real_features=real, fake_features=fake, nearest_k=min(k, len(real) - 1, len(fake) - 1))
    return {name: float(value) for name, value in scores.items()}


def nearest_distances(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from every row of ``x`` to its nearest row of ``y``, and that row's index."""
    from scipy.spatial.distance import cdist

    d = cdist(x, y)
    nearest = d.argmin(1)
    return d[np.arange(len(x)), nearest], nearest


def memorisation(synthetic: np.ndarray, train: np.ndarray, held_out: np.ndarray,
                 train_ids: list[str] | None = None, listed: int = 10) -> dict:
    """How close synthetic volumes come to the training volumes, against how close independent real patients do.

    A synthetic volume is a *near-copy* when it lies closer to a training volume than any held-out real volume
    does (threshold = the smallest held-out-to-training distance). A generator that samples new patients of the
    training distribution falls below it with probability about 1 / (n_held_out + 1); ``p_value`` is the
    one-sided binomial probability of at least the observed count under that rate. ``distance_ratio``: median
    synthetic distance / median held-out distance (1: like new patients; near 0: copies).
    """
    from scipy.stats import binom, mannwhitneyu

    d_synthetic, nearest = nearest_distances(synthetic, train)
    d_held_out, _ = nearest_distances(held_out, train)
    threshold = float(d_held_out.min())
    copies = np.flatnonzero(d_synthetic < threshold)
    rate = 1.0 / (len(held_out) + 1)
    order = np.argsort(d_synthetic)[:listed]
    ids = train_ids or [str(i) for i in range(len(train))]
    return {
        "n_synthetic": int(len(synthetic)), "n_train": int(len(train)), "n_held_out": int(len(held_out)),
        "threshold": threshold, "near_copies": int(len(copies)),
        "near_copy_fraction": float(len(copies) / len(synthetic)),
        "expected_fraction_by_chance": rate,
        "p_value": float(binom.sf(len(copies) - 1, len(synthetic), rate)) if len(copies) else 1.0,
        "median_distance": float(np.median(d_synthetic)), "median_held_out_distance": float(np.median(d_held_out)),
        "distance_ratio": float(np.median(d_synthetic) / np.median(d_held_out)),
        "closer_than_held_out_p": float(mannwhitneyu(d_synthetic, d_held_out, alternative="less").pvalue),
        "closest": [{"synthetic_index": int(i), "nearest_train_case": ids[int(nearest[i])],
                     "distance": float(d_synthetic[i])} for i in order],
    }


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


def joined_views(features: dict[str, np.ndarray], views) -> np.ndarray:
    """The views' features side by side (N x sum of D), in the order of ``views``."""
    return np.concatenate([features[v] for v in views], 1)


def set_scores(features: dict[str, np.ndarray], reference: dict[str, np.ndarray], own_stream: int, seed: int,
               n_boot: int) -> dict:
    """FID, FD-infinity, KID (+ SE), MMD and PRDC of one feature set against the reference, averaged over views
    (MAISI's 2.5D protocol), with the FID and KID bootstrap replicates that pair with every other set's."""
    per_view, fid_reps, kid_reps = {}, [], []
    for view in reference:
        a, b = features[view], reference[view]
        a_index = bootstrap_indices(len(a), n_boot, seed, own_stream)
        b_index = bootstrap_indices(len(b), n_boot, seed, REFERENCE_STREAM)
        fid_reps.append(fid_replicates(a, b, a_index, b_index))
        z = standardiser(b)  # KID's kernel is not scale-free (KID_VERSION)
        za, zb = z(a), z(b)
        kid_reps.append(kid_replicates(za, zb, a_index, b_index))
        kid_mean, kid_std = kernel_inception_distance(za, zb, seed=seed)
        per_view[view] = {"fid": frechet_distance(a, b), **fd_infinity(a, b, seed), "kid": mmd2_unbiased(za, zb),
                          "kid_mean": kid_mean, "kid_std": kid_std, "mmd": mmd_monai(a, b)}
    fid_reps, kid_reps = np.mean(fid_reps, 0), np.mean(kid_reps, 0)
    fid, kid, kid_mean, kid_std = (float(np.mean([v[key] for v in per_view.values()]))
                                   for key in ("fid", "kid", "kid_mean", "kid_std"))
    real = joined_views(reference, reference)
    scale = standardiser(real)
    low, high = interval(fid, fid_reps)
    return {"fid": fid, "fid_ci_low": low, "fid_ci_high": high,
            "fd_infinity": _mean_or_none([v["fd_infinity"] for v in per_view.values()]),
            "kid": kid, "kid_se": float(np.std(kid_reps, ddof=1)), "kid_ci": list(interval(kid, kid_reps)),
            "kid_version": KID_VERSION,
            "kid_mean": kid_mean, "kid_std": kid_std,
            "mmd": float(np.mean([v["mmd"] for v in per_view.values()])),
            **prdc(scale(real), scale(joined_views(features, reference))),
            "n_real": int(len(next(iter(reference.values())))), "n_synthetic": int(len(next(iter(features.values())))),
            "per_view": per_view if len(per_view) > 1 else {},
            "replicates": {"fid": [float(x) for x in fid_reps], "kid": [float(x) for x in kid_reps]}}


def _mean_or_none(values: list) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def stability_warning(n: int, feature_dim: int) -> str | None:
    if n < feature_dim or n < MIN_STABLE_N:
        return (f"n={n} volumes per set with {feature_dim} features: the covariance is "
                f"{'singular' if n <= feature_dim else 'poorly estimated'} and FID is dominated by small-sample bias; "
                f"read FD-infinity and KID, compare generators only at equal n and against the real-vs-real floor")
    return None


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, seeded halves of ``n`` held-out volumes: A (the floor's sample) and B (the reference)."""
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.sort(order[:half]), np.sort(order[half:2 * half])


def excess_over_floor(scores: dict, floor: dict) -> dict:
    """FID and KID above the real-vs-real floor, with paired bootstrap CIs (same reference resamples)."""
    return {metric: difference_interval(scores[metric], scores["replicates"][metric], floor[metric],
                                        floor["replicates"][metric]) for metric in ("fid", "kid")}


def floor_corrected_reduction(generator: dict, reference: dict, floor: dict) -> dict | None:
    """The paper's "FID reduction %" made well defined: 100 * (1 - excess(generator) / excess(reference)), where
    excess = FID - floor on the same held-out reference, with a paired bootstrap CI from the stored replicates.
    None where a set lacks replicates or the reference generator is not above the floor (the ratio means nothing)."""
    sets = (generator, reference, floor)
    if any("replicates" not in s or not s["replicates"].get("fid") for s in sets):
        return None
    gen, ref, flo = (np.asarray(s["replicates"]["fid"], np.float64) for s in sets)
    excess_ref = reference["fid"] - floor["fid"]
    if excess_ref <= 0 or np.mean(ref - flo <= 0) > 0.025:
        return None
    pct = 100.0 * (1.0 - (generator["fid"] - floor["fid"]) / excess_ref)
    low, high = interval(pct, 100.0 * (1.0 - (gen - flo) / (ref - flo)))
    return {"pct": float(pct), "ci_low": low, "ci_high": high}


def fidelity_report(synthetic_images: np.ndarray, held_out_images: np.ndarray, extractor, seed: int = 0,
                    n_boot: int = FID_BOOTSTRAP, ms_ssim_pairs: int = 64, train_images: np.ndarray | None = None,
                    train_ids: list[str] | None = None) -> dict:
    """Fidelity of one synthetic set against held-out real volumes, with the real-vs-real floor at the same n.

    The held-out volumes (never seen by a generator, the extractor or a U-Net's training) are split into seeded
    halves A and B; B is the reference. The floor compares A with B, the generator's first |A| volumes are
    compared with B: same n, same reference. With ``train_images``, the memorisation check runs as well.
    """
    half_a, half_b = split_halves(len(held_out_images), seed)
    n = len(half_a)
    if n < 4 or len(synthetic_images) < n:
        raise ValueError(f"need >= 8 held-out and >= {n} synthetic volumes, got {len(held_out_images)} and "
                         f"{len(synthetic_images)}")
    held_out = extractor(held_out_images)
    synthetic = extractor(synthetic_images[:n])
    reference = {view: f[half_b] for view, f in held_out.items()}
    floor = set_scores({view: f[half_a] for view, f in held_out.items()}, reference, 1, seed, n_boot)
    scores = set_scores(synthetic, reference, 2, seed, n_boot)
    feature_dim = sum(f.shape[1] for f in held_out.values())
    synthetic_only = synthetic_images[:n]
    report = {
        "generator": scores | {
            "ms_ssim": mean_ms_ssim(synthetic_only, None, ms_ssim_pairs, seed),
            "ms_ssim_synthetic_real": mean_ms_ssim(synthetic_only, held_out_images[half_b], ms_ssim_pairs, seed),
            "excess_over_floor": excess_over_floor(scores, floor)},
        "real_vs_real": floor | {"ms_ssim": mean_ms_ssim(held_out_images[half_a], None, ms_ssim_pairs, seed)},
        "n_per_set": n, "feature_dim": int(feature_dim), "warning": stability_warning(n, feature_dim),
        "ms_ssim_settings": ms_ssim_settings(held_out_images.shape[2:]), "bootstrap": n_boot,
    }
    if train_images is not None:
        train = extractor(train_images)
        scale = standardiser(joined_views(reference, reference))
        synthetic_, train_, held_out_ = (scale(joined_views(f, reference)) for f in (synthetic, train, held_out))
        report["memorisation"] = memorisation(synthetic_, train_, held_out_, train_ids)
    return report
