"""Paired statistics of an augmented arm against real-only, computed from per-case rows only.

Design (see ANCHORS.md, "Seeds vs cases"): the unit of the primary test is the *test case*, with each case's
metric averaged over seeds first. An exact two-sided Wilcoxon over 5 seed means can never go below
p = 0.0625, so a seed-level test alone cannot show anything at 5 seeds; it is reported as a secondary test.
Seed ``s`` of every arm shares the U-Net initialisation, data order and augmentation stream, so seeds are
paired between arms and the bootstrap resamples them jointly.

All functions take arrays shaped (n_cases, n_seeds) of a metric for arm A (augmented) and arm B (real-only),
rows and columns aligned (same case, same seed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

DEFAULT_BOOTSTRAP = 10_000


@dataclass(frozen=True)
class PairedComparison:
    n_cases: int
    n_seeds: int
    delta_mean: float
    """Mean over cases of (seed-averaged A - seed-averaged B)."""
    ci_low: float
    ci_high: float
    """Percentile bootstrap 95% CI of delta_mean, resampling cases and (paired) seeds."""
    p_value: float
    """Two-sided paired Wilcoxon signed-rank test on the per-case seed-averaged differences (primary)."""
    p_seed_ttest: float
    """Two-sided paired t-test on per-seed means over cases (secondary; NaN with one seed)."""
    effect_size_dz: float
    """Cohen's d_z: mean / sd of the per-case differences."""
    rank_biserial: float
    """Matched-pairs rank-biserial correlation (the Wilcoxon test's effect size), in [-1, 1]."""
    mde: float
    """Minimum detectable effect (two-sided alpha 0.05, power 0.8) of this design: n_cases x n_seeds."""
    test: str = "wilcoxon signed-rank (cases, seed-averaged)"

    def to_dict(self) -> dict:
        return asdict(self)


def _as_matrix(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"expected (n_cases, n_seeds), got shape {arr.shape}")
    return arr


def bootstrap_ci(diff: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Two-level percentile bootstrap of the mean difference: cases and seeds resampled with replacement.

    ``diff`` is (n_cases, n_seeds) of paired differences. Seed columns are resampled jointly for all cases
    (a seed is one training run shared by all test cases); cases independently of seeds.
    """
    diff = _as_matrix(diff)
    n_cases, n_seeds = diff.shape
    rng = np.random.default_rng(seed)
    cases = rng.integers(0, n_cases, size=(n_boot, n_cases))
    if n_seeds > 1:
        seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        seed_means = np.stack([diff[:, s].mean(axis=1) for s in seeds])  # (n_boot, n_cases)
        means = np.take_along_axis(seed_means, cases, axis=1).mean(axis=1)
    else:
        means = diff[cases, 0].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def wilcoxon_p(case_diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p on per-case differences; 1.0 when all differences are zero."""
    case_diff = np.asarray(case_diff, dtype=float)
    if np.allclose(case_diff, 0):
        return 1.0
    return float(stats.wilcoxon(case_diff, zero_method="wilcox", alternative="two-sided").pvalue)


def rank_biserial(case_diff: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation: (sum of positive ranks - sum of negative ranks) / total."""
    d = np.asarray(case_diff, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided one-sample (paired) t-test detects with ``power``.

    Exact, from the noncentral t distribution with n - 1 degrees of freedom: solves
    P(|T| > t_crit | noncentrality = delta * sqrt(n) / sd) = power for delta.
    """
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return float("nan") if n < 2 or not np.isfinite(sd) else 0.0
    df = n - 1
    t_crit = stats.t.ppf(1 - alpha / 2, df)

    def achieved(delta: float) -> float:
        nc = delta * np.sqrt(n) / sd
        value = float(stats.nct.sf(t_crit, df, nc) + stats.nct.cdf(-t_crit, df, nc))
        if not np.isfinite(value):  # scipy's nct fails at very large df, where t is normal anyway
            value = float(stats.norm.sf(t_crit - nc) + stats.norm.cdf(-t_crit - nc))
        return value - power

    # bracket: the normal approximation (z_a/2 + z_power) * sd / sqrt(n) is a lower bound; 3x it is ample
    upper = 3 * (t_crit + stats.norm.ppf(power)) * sd / np.sqrt(n)
    return float(optimize.brentq(achieved, 0.0, upper, xtol=1e-12 * sd))


def variance_components(diff: np.ndarray) -> tuple[float, float]:
    """Between-case variance of the true difference and within-case (seed-to-seed) variance.

    From the one-way random-effects model d[c, s] = mu + b_c + e_cs: within = mean over cases of the seed
    variance; between = var of case means - within / n_seeds (floored at 0).
    """
    diff = _as_matrix(diff)
    n_seeds = diff.shape[1]
    within = float(np.mean(np.var(diff, axis=1, ddof=1))) if n_seeds > 1 else 0.0
    between = max(float(np.var(diff.mean(axis=1), ddof=1)) - within / n_seeds, 0.0)
    return between, within


def design_mde(diff: np.ndarray, n_cases: int | None = None, n_seeds: int | None = None,
               alpha: float = 0.05, power: float = 0.8) -> float:
    """MDE of a design with ``n_cases`` x ``n_seeds``, from variance components estimated on ``diff``.

    The sd of a case's seed-averaged difference is sqrt(between + within / n_seeds): more seeds shrink the
    seed noise, more cases shrink the standard error of the mean.
    """
    diff = _as_matrix(diff)
    between, within = variance_components(diff)
    n_cases = n_cases or diff.shape[0]
    n_seeds = n_seeds or diff.shape[1]
    return minimum_detectable_effect(float(np.sqrt(between + within / n_seeds)), n_cases, alpha, power)


def compare_paired(augmented, real_only, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> PairedComparison:
    """Compare two arms on aligned (n_cases, n_seeds) metric matrices."""
    a, b = _as_matrix(augmented), _as_matrix(real_only)
    if a.shape != b.shape:
        raise ValueError(f"arms are not aligned: {a.shape} vs {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("metric matrices contain NaN: drop or define those cases before testing")
    diff = a - b
    case_diff = diff.mean(axis=1)
    seed_diff = diff.mean(axis=0)
    low, high = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    sd = float(np.std(case_diff, ddof=1)) if len(case_diff) > 1 else float("nan")
    if len(seed_diff) > 1 and not np.allclose(seed_diff, seed_diff[0]):
        p_seed = float(stats.ttest_rel(a.mean(axis=0), b.mean(axis=0)).pvalue)
    else:
        p_seed = float("nan") if len(seed_diff) < 2 else 1.0
    return PairedComparison(
        n_cases=a.shape[0], n_seeds=a.shape[1], delta_mean=float(case_diff.mean()), ci_low=low, ci_high=high,
        p_value=wilcoxon_p(case_diff), p_seed_ttest=p_seed,
        effect_size_dz=float(case_diff.mean() / sd) if sd and np.isfinite(sd) else float("nan"),
        rank_biserial=rank_biserial(case_diff), mde=design_mde(diff))


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="mergesort")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def metric_matrix(rows, arm_key: str, arm: str, metric: str, case_ids, seeds) -> np.ndarray:
    """(n_cases, n_seeds) matrix of ``metric`` for one arm from per-case rows (pandas DataFrame)."""
    sub = rows[rows[arm_key] == arm].pivot_table(index="case_id", columns="seed", values=metric, aggfunc="first")
    missing_cases = set(case_ids) - set(sub.index)
    missing_seeds = set(seeds) - set(sub.columns)
    if missing_cases or missing_seeds:
        raise ValueError(f"{arm_key}={arm!r} lacks cases {sorted(missing_cases)[:3]} or seeds {sorted(missing_seeds)}")
    return sub.loc[list(case_ids), list(seeds)].to_numpy(dtype=float)
