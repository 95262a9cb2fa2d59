"""Paired statistics of an augmented arm against real-only, computed from per-case rows only.

Design (see ANCHORS.md, "Seeds vs cases"). Test cases and training runs (seeds; with the real-data axis, the
(draw, seed) replicates) are *both* random: a seed is one U-Net training shared by every test case, so its
effect is crossed with the cases. The primary test is the t-test of the crossed random-effects model
d[c, s] = mu + b_c + g_s + e_cs (two-way ANOVA mean squares, Satterthwaite degrees of freedom), so
seed-to-seed variation of the delta enters the p-value, the confidence interval and the minimum detectable
effect. A Wilcoxon signed-rank test over cases (seed-averaged), which treats the trainings as fixed, is kept as
a secondary test, with a two-level bootstrap CI. Seed ``s`` of every arm shares the U-Net initialisation, data
order and augmentation stream, so seeds are paired between arms.

All functions take arrays shaped (n_cases, n_seeds) of a metric for arm A (augmented) and arm B (real-only),
rows and columns aligned (same case, same seed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

DEFAULT_BOOTSTRAP = 10_000


@dataclass(frozen=True)
class CrossedEffects:
    """Mean difference under the crossed random-effects model d[c, s] = mu + b_c + g_s + e_cs."""

    estimate: float
    se: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    var_case: float
    var_seed: float
    var_residual: float


def crossed_random_effects(diff, level: float = 0.95) -> CrossedEffects:
    """t-test of the grand mean with cases and seeds as crossed random effects (two-way ANOVA, no replication).

    Var(mean) = (MS_case + MS_seed - MS_error) / (C S) (unbiased), floored at the variance the case and
    seed means alone imply; degrees of freedom by Satterthwaite. With one seed the seed effect is not
    identifiable and this is the paired t-test over cases; with one case, the t-test over seeds.
    """
    d = _as_matrix(diff)
    c, s = d.shape
    mean = float(d.mean())
    if c < 2 and s < 2:
        return CrossedEffects(mean, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0, 0, 0)
    case_means, seed_means = d.mean(axis=1), d.mean(axis=0)
    ms_case = s * float(np.var(case_means, ddof=1)) if c > 1 else 0.0
    ms_seed = c * float(np.var(seed_means, ddof=1)) if s > 1 else 0.0
    if c > 1 and s > 1:
        residual = d - case_means[:, None] - seed_means[None, :] + mean
        ms_error = float((residual ** 2).sum() / ((c - 1) * (s - 1)))
        numerator = max(ms_case + ms_seed - ms_error, ms_case / s if s else 0.0, ms_seed / c if c else 0.0, 1e-300)
        terms = [(ms_case, c - 1), (ms_seed, s - 1), (ms_error, (c - 1) * (s - 1))]
        df = (ms_case + ms_seed - ms_error) ** 2 / sum(ms ** 2 / k for ms, k in terms)
        df = float(np.clip(df, 1.0, c * s - 1))
        var_case, var_seed = max((ms_case - ms_error) / s, 0.0), max((ms_seed - ms_error) / c, 0.0)
    else:  # one seed: paired t over cases; one case: t over seeds
        ms_error = 0.0
        numerator = max(ms_case if c > 1 else ms_seed, 1e-300)
        df = float((c - 1) if c > 1 else (s - 1))
        var_case, var_seed = (ms_case / s, 0.0) if c > 1 else (0.0, ms_seed / c)
    se = float(np.sqrt(numerator / (c * s)))
    if se <= 1e-150:
        p = 1.0 if abs(mean) < 1e-15 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, df))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return CrossedEffects(mean, se, df, p, mean - half, mean + half, var_case, var_seed, ms_error)


def crossed_mde(var_case: float, var_seed: float, var_residual: float, n_cases: int, n_seeds: int,
                alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of an n_cases x n_seeds crossed design from its variance components.

    SE^2 = var_case / C + var_seed / S + var_residual / (C S); the noncentral t uses the Satterthwaite df of
    that design's mean squares. More cases shrink the case term, more seeds (trainings) the seed term.
    """
    c, s = n_cases, n_seeds
    se = float(np.sqrt(var_case / c + var_seed / max(s, 1) + var_residual / (c * max(s, 1))))
    if se <= 0 or not np.isfinite(se):
        return 0.0 if se == 0 else float("nan")
    ms_case, ms_seed, ms_error = s * var_case + var_residual, c * var_seed + var_residual, var_residual
    terms = [(ms_case, c - 1), (ms_seed, s - 1), (ms_error, (c - 1) * (s - 1))]
    denominator = sum(ms ** 2 / k for ms, k in terms if k > 0)
    df = float(np.clip((ms_case + ms_seed - ms_error) ** 2 / denominator, 1.0, c * s - 1)) if denominator else c - 1.0
    return _mde_from_se(se, df, alpha, power)


def pooled_design(comparisons: list[dict], n_cases: int, n_seeds: int, target: float | None = None,
                  max_seeds: int = 100) -> dict:
    """The design's minimum detectable effect from variance components pooled over the arms of one design.

    Every arm of a run level shares the test cases, the seeds and the real-only arm, but each arm's seed variance
    is estimated from n_seeds - 1 degrees of freedom (4 at 5 seeds: a 95% range of 0.35x to 1.7x the true sd),
    so one arm's MDE, the positive control's included, can be far from the design's. The mean of the arms'
    components estimates the typical arm's. With ``target``, also the fewest seeds whose MDE is at most it.
    """
    keys = ("var_case", "var_seed", "var_residual")
    usable = [c for c in comparisons if all(np.isfinite(c.get(k, np.nan)) for k in keys)]
    if not usable:
        return {}
    pooled = {k: float(np.mean([c[k] for c in usable])) for k in keys}
    def mde_at(seeds: int) -> float:
        return crossed_mde(pooled["var_case"], pooled["var_seed"], pooled["var_residual"], n_cases, seeds)

    out = {**pooled, "n_arms": len(usable), "n_cases": int(n_cases), "n_seeds": int(n_seeds), "mde": mde_at(n_seeds)}
    if target is not None:
        out["target"] = float(target)
        out["seeds_for_target"] = next((s for s in range(2, max_seeds + 1) if mde_at(s) <= target), None)
    return out


def _mde_from_se(se: float, df: float, alpha: float, power: float) -> float:
    t_crit = stats.t.ppf(1 - alpha / 2, df)

    def achieved(delta: float) -> float:
        nc = delta / se
        value = float(stats.nct.sf(t_crit, df, nc) + stats.nct.cdf(-t_crit, df, nc))
        if not np.isfinite(value):
            value = float(stats.norm.sf(t_crit - nc) + stats.norm.cdf(-t_crit - nc))
        return value - power

    upper = 3 * (t_crit + stats.norm.ppf(power)) * se
    return float(optimize.brentq(achieved, 0.0, upper, xtol=1e-12 * se))


@dataclass(frozen=True)
class PairedComparison:
    n_cases: int
    n_seeds: int
    delta_mean: float
    """Mean over cases and seeds of A - B."""
    ci_low: float
    ci_high: float
    """95% CI of delta_mean from the crossed random-effects model (cases and seeds random)."""
    p_value: float
    """Two-sided t-test of the crossed random-effects model (primary)."""
    se: float
    df: float
    var_case: float
    var_seed: float
    """Seed-to-seed (training-to-training) variance of the delta, shared by all cases."""
    var_residual: float
    p_wilcoxon: float
    """Wilcoxon signed-rank over per-case seed-averaged differences (secondary; trainings treated as fixed)."""
    ci_bootstrap_low: float
    ci_bootstrap_high: float
    """Two-level percentile bootstrap CI (cases and paired seeds resampled), secondary."""
    p_seed_ttest: float
    """Two-sided paired t-test on per-seed means over cases (secondary; NaN with one seed)."""
    effect_size_dz: float
    """Cohen's d_z: mean / sd of the per-case differences."""
    rank_biserial: float
    """Matched-pairs rank-biserial correlation (the Wilcoxon test's effect size), in [-1, 1]."""
    mde: float
    """Minimum detectable effect (two-sided alpha 0.05, power 0.8) of this design, seeds as random effects."""
    test: str = "crossed random effects t-test (cases x seeds, Satterthwaite df)"

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
        # (n_boot, n_cases): the same per-row means as one bootstrap at a time, gathered a block of bootstraps at
        # once (a few MB each) instead of a Python loop of n_boot steps
        block = max(1, 2 ** 21 // (n_cases * n_seeds))
        seed_means = np.concatenate([diff[:, seeds[i:i + block]].mean(axis=2).T for i in range(0, n_boot, block)])
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
    mixed = crossed_random_effects(diff)
    return PairedComparison(
        n_cases=a.shape[0], n_seeds=a.shape[1], delta_mean=float(case_diff.mean()), ci_low=mixed.ci_low,
        ci_high=mixed.ci_high, p_value=mixed.p_value, se=mixed.se, df=mixed.df, var_case=mixed.var_case,
        var_seed=mixed.var_seed, var_residual=mixed.var_residual, p_wilcoxon=wilcoxon_p(case_diff),
        ci_bootstrap_low=low, ci_bootstrap_high=high, p_seed_ttest=p_seed,
        effect_size_dz=float(case_diff.mean() / sd) if sd and np.isfinite(sd) else float("nan"),
        rank_biserial=rank_biserial(case_diff),
        mde=crossed_mde(mixed.var_case, mixed.var_seed, mixed.var_residual, a.shape[0], a.shape[1]))


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


def metric_matrix(rows, arm_key: str, arm: str, metric: str, case_ids, seeds, seed_column: str = "seed") -> np.ndarray:
    """(n_cases, n_seeds) matrix of ``metric`` for one arm from per-case rows (pandas DataFrame); the columns are
    the values of ``seed_column`` (a training run: the seed, or a (draw, seed) replicate)."""
    sub = rows[rows[arm_key] == arm].pivot_table(index="case_id", columns=seed_column, values=metric,
                                                 aggfunc="first")
    missing_cases = set(case_ids) - set(sub.index)
    missing_seeds = set(seeds) - set(sub.columns)
    if missing_cases or missing_seeds:
        raise ValueError(f"{arm_key}={arm!r} lacks cases {sorted(missing_cases)[:3]} or seeds {sorted(missing_seeds)}")
    return sub.loc[list(case_ids), list(seeds)].to_numpy(dtype=float)
