"""Real-case equivalent: hand-computed interpolation in log N, censoring instead of extrapolation, bootstrap CI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foscu_bench.equivalence import equivalent_cases, real_case_equivalents
from foscu_bench.results import with_replicates

LEVELS = np.array([4, 8, 16, 32])
CURVE = np.array([0.70, 0.74, 0.77, 0.79])


def test_interpolates_in_log_n_and_censors_outside_the_measured_range():
    assert equivalent_cases(LEVELS, CURVE, 0.74) == pytest.approx(8.0)
    # halfway between 0.74 and 0.77 in Dice is halfway between 8 and 16 in log N: sqrt(8 * 16)
    assert equivalent_cases(LEVELS, CURVE, 0.755) == pytest.approx(np.sqrt(8 * 16))
    assert equivalent_cases(LEVELS, CURVE, 0.80) == np.inf and equivalent_cases(LEVELS, CURVE, 0.69) == -np.inf
    # a noisy, non-monotone curve is made monotone first: more real data never counts as worse
    # running max [0.70, 0.76, 0.76, 0.79]: 0.765 lies 1/6 of the way from 16 (0.76) to 32 (0.79)
    assert equivalent_cases(LEVELS, np.array([0.70, 0.76, 0.75, 0.79]), 0.765) == pytest.approx(16 * 2 ** (1 / 6))


def _frame(gain_cases: float, n_cases: int = 60, n_seeds: int = 4, seed: int = 0) -> pd.DataFrame:
    """Synthetic per-case rows: real-only follows CURVE; the augmented arm at level N scores what real-only would
    score at N * gain (log-linear in between), plus case and seed noise."""
    rng = np.random.default_rng(seed)
    case_effect = rng.normal(0, 0.03, n_cases)
    rows = []
    for n, mean in zip(LEVELS, CURVE):
        target = np.interp(np.log(n * gain_cases), np.log(LEVELS), CURVE)
        if n * gain_cases > LEVELS[-1]:  # better than real-only can be shown to get
            target = CURVE[-1] + 0.02
        for s in range(n_seeds):
            shift = rng.normal(0, 0.002, 2)
            for c in range(n_cases):
                for generator, arm, value in (("real-only", "real", mean), ("gen", "real+synthetic", target)):
                    rows.append({"generator": generator, "arm": arm, "n_real": int(n), "draw": 0, "seed": s,
                                 "case_id": f"c{c:03d}", "dice_liver": value + case_effect[c]
                                 + shift[int(generator == "gen")] + rng.normal(0, 0.003)})
    return with_replicates(pd.DataFrame(rows))


def test_recovers_a_known_worth_with_a_ci_that_covers_it():
    result = real_case_equivalents(_frame(1.5), n_boot=400)["gen"]
    for level in ("4", "8", "16"):
        entry = result[level]
        truth = 1.5 * int(level)
        assert entry["equivalent"] == pytest.approx(truth, rel=0.15)
        assert entry["ci_low"] <= truth <= entry["ci_high"]
        assert entry["gain_cases"] == pytest.approx(entry["equivalent"] - int(level))
    assert result["32"]["equivalent"] == ">32"  # beyond the largest level: censored, not extrapolated
    assert result["32"]["gain_cases"] is None


def test_a_useless_generator_is_worth_its_own_level():
    result = real_case_equivalents(_frame(1.0), n_boot=400)["gen"]
    assert result["8"]["equivalent"] == pytest.approx(8, rel=0.15)
    assert result["8"]["ci_low"] <= 8 <= result["8"]["ci_high"]
