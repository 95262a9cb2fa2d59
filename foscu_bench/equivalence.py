"""Real-case equivalent: how many real training cases an augmented arm is worth.

For a generator at real-data level N, the equivalent is the number of real cases at which the real-only learning
curve reaches the augmented arm's Dice, interpolated linearly in log N between the measured levels. The curve is
made monotone first (running maximum: more real data never counts as worse). Beyond the measured range the value
is censored, never extrapolated: ``"<N_min"`` (worse than real-only at the smallest level) or ``">N_max"``.

Uncertainty: a bootstrap that resamples test cases (shared by every arm and level, as they are the same cases)
and, per level, the replicates ((draw, seed) trainings, paired between an arm and real-only), recomputing the
curve and the equivalent each time; the CI is the percentile interval in log space, censored bounds stay
censored. On the phantom the positive control is the calibration: N real plus M oracle cases should be worth
about N + M.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from foscu_bench.metrics.spec import PRIMARY
from foscu_bench.results import REFERENCE

DEFAULT_BOOTSTRAP = 2000


def equivalent_cases(levels: np.ndarray, curve: np.ndarray, target: float) -> float:
    """N at which the (monotone) real-only curve reaches ``target``; -inf below the range, +inf above it."""
    curve = np.maximum.accumulate(np.asarray(curve, dtype=float))
    if target < curve[0]:
        return -np.inf
    if target > curve[-1]:
        return np.inf
    index = int(np.searchsorted(curve, target, side="left"))
    if index == 0:
        return float(levels[0])
    low, high = curve[index - 1], curve[index]
    weight = 0.0 if high == low else (target - low) / (high - low)
    log_n = np.log(levels[index - 1]) + weight * (np.log(levels[index]) - np.log(levels[index - 1]))
    return float(np.exp(log_n))


def _label(value: float, levels: np.ndarray) -> float | str:
    if value == -np.inf:
        return f"<{int(levels[0])}"
    if value == np.inf:
        return f">{int(levels[-1])}"
    return float(value)


def _matrices(frame: pd.DataFrame, generator: str, arm: str, metric: str, levels, cases) -> dict:
    """Per level: (cases x replicates) matrices of the arm and of real-only, replicate columns aligned."""
    out = {}
    for n in levels:
        level = frame[frame["n_real"] == n]
        pivot = lambda sub: sub.pivot_table(index="case_id", columns="replicate", values=metric, aggfunc="first")
        ref = pivot(level[(level["generator"] == REFERENCE) & (level["arm"] == "real")])
        test = pivot(level[(level["generator"] == generator) & (level["arm"] == arm)])
        replicates = sorted(set(ref.columns) & set(test.columns)) if not test.empty else sorted(ref.columns)
        out[n] = (ref.loc[cases, replicates].to_numpy(float),
                  None if test.empty else test.loc[cases, replicates].to_numpy(float))
    return out


def real_case_equivalents(frame: pd.DataFrame, metric: str = PRIMARY, arm: str = "real+synthetic",
                          n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """{generator: {level: {"n_real", "equivalent", "ci_low", "ci_high", "gain_cases", ...}}} for every generator
    of a frame with a ``replicate`` column and at least two real-data levels."""
    levels = np.array(sorted(int(n) for n in frame["n_real"].unique()))
    if len(levels) < 2:
        return {}
    reference = frame[(frame["generator"] == REFERENCE) & (frame["arm"] == "real")]
    complete = reference.groupby("case_id")[metric].apply(lambda v: v.notna().all())
    cases = sorted(complete[complete].index)
    counts = reference.groupby("case_id")["n_real"].nunique()
    cases = [c for c in cases if counts.get(c, 0) == len(levels)]
    rng = np.random.default_rng(seed)
    out: dict = {}
    for generator in sorted(g for g in frame["generator"].unique() if g != REFERENCE):
        if frame[(frame["generator"] == generator) & (frame["arm"] == arm)].empty:
            continue
        mats = _matrices(frame, generator, arm, metric, levels, cases)
        curve = np.array([mats[n][0].mean() for n in levels])
        boot_cases = rng.integers(0, len(cases), size=(n_boot, len(cases)))
        boot_reps = {n: rng.integers(0, mats[n][0].shape[1], size=(n_boot, mats[n][0].shape[1])) for n in levels}
        boot_curves = np.stack([
            np.stack([mats[n][0][boot_cases[b]][:, boot_reps[n][b]].mean() for n in levels]) for b in range(n_boot)])
        per_level = {}
        for i, n in enumerate(levels):
            test = mats[n][1]
            if test is None or np.isnan(test).any():
                continue
            target = float(test.mean())
            point = equivalent_cases(levels, curve, target)
            boot = np.array([equivalent_cases(levels, boot_curves[b], test[boot_cases[b]][:, boot_reps[n][b]].mean())
                             for b in range(n_boot)])
            finite_log = np.where(np.isfinite(boot), np.log(np.where(np.isfinite(boot), boot, 1.0)), boot)
            low, high = np.quantile(finite_log, [0.025, 0.975], method="inverted_cdf")  # no inf - inf
            as_n = lambda v: float(np.exp(v)) if np.isfinite(v) else v
            per_level[str(int(n))] = {
                "n_real": int(n), "augmented_dice": target, "real_only_dice": float(curve[i]),
                "equivalent": _label(point, levels), "ci_low": _label(as_n(low), levels),
                "ci_high": _label(as_n(high), levels),
                "gain_cases": float(point - n) if np.isfinite(point) else None,
                "fraction_censored_above": float(np.mean(boot == np.inf)),
                "fraction_censored_below": float(np.mean(boot == -np.inf))}
        out[generator] = per_level
    return out
