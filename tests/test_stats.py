"""Statistics reproduce scipy/numpy references, hold their nominal error rates, and size the design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from foscu_bench.stats import (bootstrap_ci, compare_paired, crossed_mde, crossed_random_effects, holm,
                               metric_matrix, minimum_detectable_effect, rank_biserial)

FIXED_A = np.array([[0.91, 0.90, 0.92], [0.85, 0.86, 0.84], [0.88, 0.90, 0.89], [0.93, 0.92, 0.94],
                    [0.80, 0.83, 0.82], [0.87, 0.86, 0.88], [0.90, 0.91, 0.89], [0.84, 0.85, 0.86]])
FIXED_B = FIXED_A - np.array([[0.010, 0.000, 0.020], [0.000, 0.010, -0.010], [0.020, 0.010, 0.015],
                              [0.005, 0.000, 0.010], [-0.010, 0.020, 0.000], [0.010, 0.005, 0.000],
                              [0.015, 0.010, 0.020], [0.000, -0.005, 0.010]])


def test_compare_paired_matches_scipy_and_numpy():
    result = compare_paired(FIXED_A, FIXED_B, n_boot=2000)
    case_diff = (FIXED_A - FIXED_B).mean(axis=1)
    assert result.delta_mean == pytest.approx(case_diff.mean(), abs=1e-12)
    assert result.p_wilcoxon == pytest.approx(stats.wilcoxon(case_diff).pvalue, rel=1e-12)
    assert result.p_seed_ttest == pytest.approx(stats.ttest_rel(FIXED_A.mean(0), FIXED_B.mean(0)).pvalue, rel=1e-12)
    assert result.effect_size_dz == pytest.approx(case_diff.mean() / case_diff.std(ddof=1), rel=1e-12)
    assert result.ci_low < result.delta_mean < result.ci_high
    assert result.ci_bootstrap_low < result.delta_mean < result.ci_bootstrap_high
    assert (result.n_cases, result.n_seeds) == (8, 3)
    # 7 positive per-case differences and one exact zero (dropped, zero_method="wilcox"):
    # exact two-sided Wilcoxon p = 2 / 2^7
    assert np.sum(case_diff > 1e-12) == 7 and np.sum(np.abs(case_diff) < 1e-12) == 1
    assert result.p_wilcoxon == pytest.approx(2 / 2 ** 7)
    assert result.p_value == crossed_random_effects(FIXED_A - FIXED_B).p_value
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


def _anova_reference(d: np.ndarray) -> tuple[float, float, float]:
    """Independent crossed-effects t-test: sums of squares from the total decomposition, then the quasi-F SE."""
    c, s = d.shape
    grand = d.mean()
    ss_case = s * ((d.mean(axis=1) - grand) ** 2).sum()
    ss_seed = c * ((d.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((d - grand) ** 2).sum() - ss_case - ss_seed
    ms = np.array([ss_case / (c - 1), ss_seed / (s - 1), ss_error / ((c - 1) * (s - 1))])
    k = np.array([c - 1, s - 1, (c - 1) * (s - 1)])
    combined = ms[0] + ms[1] - ms[2]
    se = np.sqrt(combined / (c * s))
    df = combined ** 2 / (ms ** 2 / k).sum()
    return float(se), float(df), float(2 * stats.t.sf(abs(grand) / se, df))


def test_crossed_effects_match_an_independent_anova_and_reduce_to_the_paired_t():
    rng = np.random.default_rng(5)
    d = rng.normal(0.01, 0.02, (12, 1)) + rng.normal(0, 0.01, (1, 5)) + rng.normal(0, 0.01, (12, 5))
    result = crossed_random_effects(d)
    se, df, p = _anova_reference(d)
    assert (result.se, result.df, result.p_value) == pytest.approx((se, df, p), rel=1e-10)
    assert result.ci_low < d.mean() < result.ci_high
    one_seed = d[:, :1]
    assert crossed_random_effects(one_seed).p_value == pytest.approx(stats.ttest_1samp(one_seed[:, 0], 0).pvalue,
                                                                     rel=1e-10)


def test_seed_effects_enter_the_test_and_hold_the_nominal_rate():
    """No true effect, but each training run shifts every case (a shared seed effect): the crossed test rejects
    ~5% of the time, while a Wilcoxon over seed-averaged cases, which treats trainings as fixed, does not."""
    rng = np.random.default_rng(42)
    n_rep, n_cases, n_seeds = 1000, 40, 5
    case = rng.normal(0, 0.01, (n_rep, n_cases, 1))
    seed = rng.normal(0, 0.006, (n_rep, 1, n_seeds))  # run-to-run shift of the delta
    d = case + seed + rng.normal(0, 0.01, (n_rep, n_cases, n_seeds))
    crossed = np.array([crossed_random_effects(x).p_value for x in d])
    wilcoxon = stats.wilcoxon(d.mean(axis=2), axis=1).pvalue
    assert 0.03 <= np.mean(crossed < 0.05) <= 0.075, np.mean(crossed < 0.05)
    assert np.mean(wilcoxon < 0.05) > 0.25  # the fixed-trainings test is anti-conservative here
    covered = np.mean([(r.ci_low <= 0 <= r.ci_high) for r in map(crossed_random_effects, d[:400])])
    assert 0.92 <= covered <= 0.98


def test_crossed_mde_gives_the_power_it_promises_and_shrinks_with_the_design():
    var_case, var_seed, var_res = 0.01 ** 2, 0.006 ** 2, 0.01 ** 2
    n_cases, n_seeds = 40, 5
    mde = crossed_mde(var_case, var_seed, var_res, n_cases, n_seeds)
    rng = np.random.default_rng(1)
    d = (mde + rng.normal(0, 0.01, (1500, n_cases, 1)) + rng.normal(0, 0.006, (1500, 1, n_seeds))
         + rng.normal(0, 0.01, (1500, n_cases, n_seeds)))
    power = np.mean([crossed_random_effects(x).p_value < 0.05 for x in d])
    assert power == pytest.approx(0.8, abs=0.05)
    mdes = {(c, s): crossed_mde(var_case, var_seed, var_res, c, s) for c in (14, 40, 112) for s in (3, 5, 10, 20)}
    for s in (10, 20):
        assert mdes[(14, s)] > mdes[(40, s)] > mdes[(112, s)]
    for c in (14, 40, 112):
        assert mdes[(c, 3)] > mdes[(c, 5)] > mdes[(c, 10)] > mdes[(c, 20)]
    # with 3 trainings the seed term and its 2 degrees of freedom dominate: more test cases do not help
    assert mdes[(112, 3)] > mdes[(14, 3)] * 0.95
    # with a run-to-run sd of 0.6 points, more test cases alone cannot push the MDE below the seed term
    assert crossed_mde(var_case, var_seed, var_res, 10 ** 6, 5) > 2.8 * 0.006 / np.sqrt(5)


def test_pooled_design_recovers_the_seed_variance_one_arm_misses():
    """Eight arms sharing one design (112 cases x 5 seeds, true seed sd 0.7 pts): single arms estimate the seed
    variance from 4 degrees of freedom and some come out near zero (an MDE far too small); the pool of all arms is
    close to the truth, and the seed count it asks for does reach the target."""
    from foscu_bench.stats import pooled_design

    rng = np.random.default_rng(7)
    n_cases, n_seeds, n_arms = 112, 5, 8
    truth = {"var_case": 0.013 ** 2, "var_seed": 0.007 ** 2, "var_residual": 0.022 ** 2}
    arms = []
    for _ in range(n_arms):
        d = (rng.normal(0, 0.013, (n_cases, 1)) + rng.normal(0, 0.007, (1, n_seeds))
             + rng.normal(0, 0.022, (n_cases, n_seeds)))
        r = crossed_random_effects(d)
        arms.append({"var_case": r.var_case, "var_seed": r.var_seed, "var_residual": r.var_residual})
    true_mde = crossed_mde(*truth.values(), n_cases, n_seeds)
    design = pooled_design(arms, n_cases, n_seeds, target=0.0067)
    assert design["n_arms"] == n_arms and design["mde"] == pytest.approx(true_mde, rel=0.25)
    single = [crossed_mde(a["var_case"], a["var_seed"], a["var_residual"], n_cases, n_seeds) for a in arms]
    assert max(single) / min(single) > 1.4  # one arm's MDE is a noisy estimate of the design's
    seeds = design["seeds_for_target"]
    pooled = (design["var_case"], design["var_seed"], design["var_residual"])
    assert crossed_mde(*pooled, n_cases, seeds) <= 0.0067 < crossed_mde(*pooled, n_cases, seeds - 1)
    assert pooled_design(arms, n_cases, n_seeds, target=1e-9, max_seeds=20)["seeds_for_target"] is None
    assert pooled_design([], n_cases, n_seeds) == {}


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


def test_a_case_counts_only_where_its_metric_is_defined_for_every_replicate_of_both_arms():
    """A surface metric can be undefined for one training of a case (an empty prediction): that case leaves the
    paired comparison of that metric, for every replicate, while Dice keeps all cases."""
    import pandas as pd

    from foscu_bench.results import _comparison, with_replicates

    rng = np.random.default_rng(0)
    rows = []
    for generator, arm, shift in (("real-only", "real", 0.0), ("gen", "real+synthetic", 0.02)):
        for seed in range(3):
            for case in range(6):
                rows.append({"generator": generator, "arm": arm, "n_real": 8, "draw": 0, "seed": seed,
                             "case_id": f"c{case}", "dice_liver": 0.8 + shift + 0.01 * rng.normal(),
                             "hd95_liver": 5.0 - shift + rng.normal()})
    frame = with_replicates(pd.DataFrame(rows))
    undefined = (frame["generator"] == "gen") & (frame["seed"] == 1) & (frame["case_id"] == "c2")
    frame.loc[undefined, "hd95_liver"] = np.nan
    frame.loc[(frame["generator"] == "real-only") & (frame["case_id"] == "c4"), "hd95_liver"] = np.nan
    assert _comparison(frame, "gen", "real+synthetic", "dice_liver")["n_cases"] == 6
    hd95 = _comparison(frame, "gen", "real+synthetic", "hd95_liver")
    kept = frame[~frame["case_id"].isin(["c2", "c4"])]
    assert hd95["n_cases"] == 4 and hd95 == _comparison(kept, "gen", "real+synthetic", "hd95_liver")
