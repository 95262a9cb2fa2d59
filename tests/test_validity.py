"""Metric validity: rank correlation of a fidelity metric with the Dice delta, in two scopes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foscu_bench.validity import SCOPES, all_scopes, metric_validity, validity_markdown, verdict


def _rows(values: dict[str, list[tuple[float, float]]], kinds: dict[str, str]) -> list[dict]:
    """Leaderboard-like rows: (metric value, delta) per generator and level, plus a real-only reference row."""
    rows = [{"generator": "real-only", "kind": "reference", "delta_dice_mean": None, "kid_mean": None}]
    for generator, points in values.items():
        for level, (kid, delta) in zip((8, 16, 32), points):
            rows.append({"generator": generator, "kind": kinds.get(generator, "learned"), "n_real": level,
                         "kid_mean": kid, "delta_dice_mean": delta})
    return rows


def _kid(entries: list[dict], scope: str) -> dict:
    return next(e for e in entries if e["metric"] == "kid_mean" and e["scope"] == scope)


def test_spearman_matches_an_independent_rank_correlation():
    rng = np.random.default_rng(3)
    values = {f"g{i}": [(float(rng.normal()), float(rng.normal())) for _ in range(3)] for i in range(5)}
    entry = _kid(metric_validity(_rows(values, {}), n_boot=50), "generators and controls")
    frame = pd.DataFrame([p for points in values.values() for p in points], columns=["kid", "delta"])
    ranks = frame.rank()
    assert entry["spearman"] == pytest.approx(float(np.corrcoef(ranks["kid"], ranks["delta"])[0, 1]))
    assert entry["n_rows"] == 15 and entry["n_generators"] == 5
    assert entry["ci_low"] <= entry["spearman"] <= entry["ci_high"]


def test_resampled_spearman_equals_scipy_on_each_resample_with_ties_and_constants():
    """The bootstrap ranks all resamples at once; each must equal scipy's spearmanr of that resample with its
    repeated rows (ties within and across generators), and NaN where the metric is constant in it."""
    from scipy.stats import spearmanr

    from foscu_bench.validity import _resampled_spearman

    rng = np.random.default_rng(5)
    owner = np.repeat(np.arange(6), [3, 2, 3, 1, 3, 2])
    x = rng.integers(0, 4, size=len(owner)).astype(float)  # few distinct values: many ties
    x[owner == 3] = 7.0
    y = np.round(rng.normal(size=len(owner)), 1)
    picks = rng.integers(6, size=(300, 6))
    picks[0] = 3  # one resample of a single generator: constant metric
    times = (picks[:, :, None] == np.arange(6)).sum(axis=1)[:, owner].astype(float)
    fast = _resampled_spearman(x, y, times)
    for b in range(len(picks)):
        rows = np.concatenate([np.flatnonzero(owner == g) for g in picks[b]])
        if np.ptp(x[rows]) == 0 or np.ptp(y[rows]) == 0:
            assert np.isnan(fast[b])
        else:
            assert fast[b] == pytest.approx(spearmanr(x[rows], y[rows]).statistic, abs=1e-12)
    assert np.isnan(fast[0])


def test_a_relation_carried_by_the_controls_alone_does_not_rank_generators():
    """Generators: KID unrelated to the delta; the negative control: worst KID and worst delta; the oracle: best."""
    generators = {"a": [(0.10, -1.0), (0.30, -2.0), (0.20, -3.0)], "b": [(0.20, -1.5), (0.10, -2.5), (0.30, -1.2)],
                  "c": [(0.30, -2.2), (0.20, -1.1), (0.10, -2.8)], "d": [(0.25, -2.1), (0.15, -1.8), (0.12, -2.4)]}
    controls = {"negative": [(0.90, -5.0), (0.95, -5.5), (0.85, -4.8)],
                "oracle": [(0.01, 4.0), (0.02, 3.0), (0.015, 1.5)]}
    rows = _rows({**generators, **controls}, {"negative": "control", "oracle": "control"})
    entries = all_scopes(rows)
    with_controls, alone = _kid(entries, "generators and controls"), _kid(entries, "generators")
    assert with_controls["spearman"] < -0.5 and with_controls["n_generators"] == 6
    assert alone["n_generators"] == 4 and alone["n_rows"] == 12
    assert abs(alone["spearman"]) < 0.3 and verdict(alone) == "no detectable relation"
    assert {e["scope"] for e in entries} == set(SCOPES)


def test_too_few_generators_gives_no_number():
    rows = _rows({"a": [(0.1, -1.0), (0.2, -2.0), (0.3, -3.0)], "b": [(0.2, -1.0), (0.1, 0.0), (0.3, -2.0)]}, {})
    entry = _kid(metric_validity(rows), "generators and controls")
    assert entry["spearman"] is None and verdict(entry) == "too few rows"


def test_markdown_has_one_line_per_metric_and_a_column_block_per_scope():
    rng = np.random.default_rng(0)
    values = {f"g{i}": [(float(rng.normal()), float(rng.normal())) for _ in range(3)] for i in range(4)}
    table = validity_markdown(all_scopes(_rows(values, {"g3": "control"})))
    lines = table.splitlines()
    assert len(lines) == 2 + 10  # header, rule, one line per metric of VALIDITY_METRICS
    assert "generators and controls" in lines[0] and lines[0].count("reading") == 2
    kid_line = next(line for line in lines if line.startswith("| KID"))
    assert "12 / 4" in kid_line and "9 / 3" in kid_line


def test_resamples_in_which_the_metric_is_constant_count_as_no_relation():
    """A metric that is zero for most generators (the near-copy fraction) must not look informative from the few
    rows where it is not: resamples that draw only the zero generators carry no ranking, so they count as rho = 0
    instead of being dropped (dropping them conditions the CI on the non-zero rows)."""
    rng = np.random.default_rng(1)
    values = {f"g{i}": [(0.0, float(rng.normal(0, 0.5))) for _ in range(3)] for i in range(5)}
    values["g5"] = [(0.07, -3.0), (0.0, -2.5), (0.0, -2.8)]  # non-zero once, where the delta is worst
    entry = _kid(metric_validity(_rows(values, {}), n_boot=400), "generators and controls")
    assert entry["spearman"] < 0
    # (5/6)^6 = 33% of the resamples leave g5 out: they sit at 0, so the CI reaches 0 and nothing is claimed
    assert entry["ci_high"] >= 0 and verdict(entry) == "no detectable relation"
