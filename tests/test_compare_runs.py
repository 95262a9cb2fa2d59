"""bench/compare_runs.py: the paired difference of one generator's arm between two runs on the same split."""

import numpy as np
import pandas as pd
import pytest

from conftest import bench_module
from foscu_bench.stats import compare_paired


def _write_run(directory, real_only: np.ndarray, augmented: np.ndarray, generator: str = "duo-diffusion") -> None:
    rows = []
    for arm, generator, values in (("real", "real-only", real_only), ("real+synthetic", generator, augmented)):
        for case in range(values.shape[0]):
            for seed in range(values.shape[1]):
                rows.append({"generator": generator, "arm": arm, "n_real": 16, "draw": 0, "seed": seed,
                             "case_id": f"case_{case:03d}", "dice_liver": values[case, seed]})
    directory.mkdir()
    pd.DataFrame(rows).sample(frac=1.0, random_state=0).to_csv(directory / "metrics.csv", index=False)


def test_compare_runs_aligns_cases_and_seeds_and_refuses_runs_with_different_real_only_arms(tmp_path):
    compare_runs = bench_module("compare_runs").compare_runs
    rng = np.random.default_rng(0)
    real_only = rng.uniform(0.7, 0.9, size=(30, 3))
    old = real_only - 0.03 + rng.normal(0, 0.01, size=real_only.shape)
    new = old + 0.01 + rng.normal(0, 0.01, size=real_only.shape)
    _write_run(tmp_path / "new", real_only, new)
    _write_run(tmp_path / "old", real_only, old)
    report = compare_runs(tmp_path / "new", tmp_path / "old", "duo-diffusion", "real+synthetic", "dice_liver")
    expected = compare_paired(new, old)  # rows written shuffled: the script must realign them
    assert report["delta_mean"] == pytest.approx(expected.delta_mean, abs=1e-12)
    assert (report["ci_low"], report["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), abs=1e-12)
    assert report["per_seed_difference"]["1"] == pytest.approx((new[:, 1] - old[:, 1]).mean())
    _write_run(tmp_path / "other_split", real_only + 0.01, old)
    with pytest.raises(SystemExit, match="real-only arms .* differ"):
        compare_runs(tmp_path / "new", tmp_path / "other_split", "duo-diffusion", "real+synthetic", "dice_liver")
    _write_run(tmp_path / "ablation", real_only, old, generator="duo-diffusion-real-labels")
    across = compare_runs(tmp_path / "new", tmp_path / "ablation", "duo-diffusion", "real+synthetic", "dice_liver",
                          old_generator="duo-diffusion-real-labels")
    assert across["delta_mean"] == pytest.approx(expected.delta_mean, abs=1e-12)
    assert across["old_generator"] == "duo-diffusion-real-labels"
