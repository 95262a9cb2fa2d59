"""Statistics reproduce scipy/numpy references, hold their nominal error rates, and size the design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from foscu_bench.stats import (bootstrap_ci, compare_paired, design_mde, holm, metric_matrix,
                               minimum_detectable_effect, rank_biserial, variance_components)

FIXED_A = np.array([[0.91, 0.90, 0.92], [0.85, 0.86, 0.84], [0.88, 0.90, 0.89], [0.93, 0.92, 0.94],
                    [0.80, 0.83, 0.82], [0.87, 0.86, 0.88], [0.90, 0.91, 0.89], [0.84, 0.85, 0.86]])
FIXED_B = FIXED_A - np.array([[0.010, 0.000, 0.020], [0.000, 0.010, -0.010], [0.020, 0.010, 0.015],
                              [0.005, 0.000, 0.010], [-0.010, 0.020, 0.000], [0.010, 0.005, 0.000],
                              [0.015, 0.010, 0.020], [0.000, -0.005, 0.010]])


def test_compare_paired_matches_scipy_and_numpy():
    result = compare_paired(FIXED_A, FIXED_B, n_boot=2000)
    case_diff = (FIXED_A - FIXED_B).mean(axis=1)
    assert result.delta_mean == pytest.approx(case_diff.mean(), abs=1e-12)
    assert result.p_value == pytest.approx(stats.wilcoxon(case_diff).pvalue, rel=1e-12)
    assert result.p_seed_ttest == pytest.approx(stats.ttest_rel(FIXED_A.mean(0), FIXED_B.mean(0)).pvalue, rel=1e-12)
    assert result.effect_size_dz == pytest.approx(case_diff.mean() / case_diff.std(ddof=1), rel=1e-12)
    assert result.ci_low < result.delta_mean < result.ci_high
    assert (result.n_cases, result.n_seeds) == (8, 3)
    # 7 positive per-case differences and one exact zero (dropped, zero_method="wilcox"):
    # exact two-sided Wilcoxon p = 2 / 2^7
    assert np.sum(case_diff > 1e-12) == 7 and np.sum(np.abs(case_diff) < 1e-12) == 1
    assert result.p_value == pytest.approx(2 / 2 ** 7)
    assert result.rank_biserial == pytest.approx(1.0)


def test_rank_biserial_hand_example():
    # |d| ranks: 1 -> 1, -2 -> 2, 3 -> 3, 4 -> 4 ; (1 + 3 + 4 - 2) / 10
    assert rank_biserial(np.array([1.0, -2.0, 3.0, 4.0])) == pytest.approx(0.6)


def test_holm_against_hand_computed_values():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5]), [0.5])
    np.testing.assert_allclose(holm([0.2, 0.9]), [0.4, 0.9])  # monotone and capped at 1


def test_bootstrap_single_seed_equals_case_bootstrap():
    diff = np.array([0.01, 0.02, -0.01, 0.03, 0.00, 0.015])
    low, high = bootstrap_ci(diff[:, None], n_boot=4000, seed=1)
    rng = np.random.default_rng(1)
    means = diff[rng.integers(0, diff.size, size=(4000, diff.size))].mean(axis=1)
    assert (low, high) == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)))


def test_false_positive_rate_is_nominal_under_no_difference():
    """1000 simulated experiments with no true effect: the primary test rejects ~5% of the time."""
    rng = np.random.default_rng(42)
    n_rep, n_cases, n_seeds = 1000, 20, 3
    case_effect = rng.normal(0.85, 0.05, size=(n_rep, n_cases, 1))  # case difficulty, shared by both arms
    a = case_effect + rng.normal(0, 0.02, size=(n_rep, n_cases, n_seeds))
    b = case_effect + rng.normal(0, 0.02, size=(n_rep, n_cases, n_seeds))
    diffs = (a - b).mean(axis=2)
    p = stats.wilcoxon(diffs, axis=1).pvalue
    rate = float(np.mean(p < 0.05))
    assert 0.03 <= rate <= 0.07, rate
    # and the bootstrap CI covers the true zero ~95% of the time (checked on a subset, it is slower)
    covered = [lo <= 0 <= hi for lo, hi in (bootstrap_ci(a[i] - b[i], n_boot=1000, seed=i) for i in range(200))]
    assert 0.90 <= np.mean(covered) <= 0.99


def test_mde_is_exact_noncentral_t_and_matches_simulated_power():
    sd, n = 0.02, 15
    mde = minimum_detectable_effect(sd, n)
    # large-n limit: (z_.975 + z_.8) * sd / sqrt(n)
    assert minimum_detectable_effect(sd, 10_000) == pytest.approx(2.8016 * sd / 100, rel=2e-3)
    assert mde > 2.8016 * sd / np.sqrt(n)  # t is wider than z at n = 15
    rng = np.random.default_rng(0)
    samples = rng.normal(mde, sd, size=(4000, n))
    power = np.mean(stats.ttest_1samp(samples, 0, axis=1).pvalue < 0.05)
    assert power == pytest.approx(0.8, abs=0.025)


def test_mde_shrinks_with_seeds_and_cases():
    rng = np.random.default_rng(3)
    true_case = rng.normal(0, 0.01, size=(30, 1))
    diff = true_case + rng.normal(0, 0.03, size=(30, 4))  # seed noise larger than the case effect
    between, within = variance_components(diff)
    assert within > between >= 0
    mdes = {(c, s): design_mde(diff, n_cases=c, n_seeds=s) for c in (10, 30, 100) for s in (1, 3, 10)}
    for s in (1, 3, 10):
        assert mdes[(10, s)] > mdes[(30, s)] > mdes[(100, s)]
    for c in (10, 30, 100):
        assert mdes[(c, 1)] > mdes[(c, 3)] > mdes[(c, 10)]
    # the paper's +0.67 Dice points need far more than a small design when seed noise is ~3 points
    assert mdes[(10, 1)] > 0.0067


def test_metric_matrix_from_rows_and_misalignment():
    rows = pd.DataFrame([{"arm": arm, "seed": s, "case_id": c, "dice_liver": 0.8 + 0.01 * s + (arm == "x") * 0.01}
                         for arm in ("real", "x") for s in (0, 1) for c in ("a", "b", "c")])
    m = metric_matrix(rows, "arm", "x", "dice_liver", ["a", "b", "c"], [0, 1])
    assert m.shape == (3, 2) and m[0, 1] == pytest.approx(0.82)
    with pytest.raises(ValueError, match="lacks"):
        metric_matrix(rows, "arm", "x", "dice_liver", ["a", "z"], [0, 1])
    with pytest.raises(ValueError, match="aligned"):
        compare_paired(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        compare_paired(np.full((3, 2), np.nan), np.ones((3, 2)))
