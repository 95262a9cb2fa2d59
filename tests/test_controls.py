"""Controls: the positive control is fresh phantom patients (disjoint, refused on real data), the negative control
pairs real images with other cases' labels; a run on the real-data axis reports calibration and real-case worth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foscu_bench import generator as G
from foscu_bench.cli import main
from foscu_bench.data.dataset import open_dataset
from foscu_bench.data.splits import TrainingSet, split_dataset
from foscu_bench.errors import ConfigError
from foscu_bench.profiles import get_profile
from foscu_bench.sample_checks import max_training_correlation

TINY = get_profile("tiny")


@pytest.fixture(scope="module")
def phantom():
    ds = open_dataset("phantom", profile="tiny")
    return ds, TrainingSet.from_dataset(ds, split_dataset(ds, seed=0))


def test_oracle_draws_new_patients_disjoint_from_every_dataset_case(phantom, monkeypatch):
    ds, train = phantom
    oracle = G.create("phantom-oracle")
    oracle.fit(train, TINY, seed=0)
    pairs = G.sample_validated(oracle, 4, seed=3, shape=TINY.shape)
    every_case = ds.pairs()
    assert not {p.case_id for p in pairs} & set(ds.case_ids)
    dataset_seeds = {tuple(p.meta["source"]["phantom_seed"]) for p in every_case}
    assert all(tuple(p.meta["oracle_seed"][1:]) not in dataset_seeds and len(p.meta["oracle_seed"]) == 3 for p in pairs)
    # new patients, not copies: below the re-noised-copy correlation of the generator tests (0.97)
    assert max_training_correlation([p.image for p in pairs], [p.image for p in every_case]).max() < 0.97
    # the same simulator: liver volumes in the dataset's range, same grid
    volumes = [p.liver_volume_ml for p in every_case]
    assert all(0.6 * min(volumes) < p.liver_volume_ml < 1.4 * max(volumes) for p in pairs)
    import foscu_bench.data.phantom as phantom_module

    def no_simulation(*_args, **_kwargs):
        raise AssertionError("an oracle patient made twice: it is cached like a dataset case")

    monkeypatch.setattr(phantom_module, "generate_case", no_simulation)
    again = G.sample_validated(oracle, 4, seed=3, shape=TINY.shape)  # same patients, from the preprocessed cache
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) for a, b in zip(pairs, again))


def test_oracle_refuses_a_real_dataset(nnunet_dir):
    ds = open_dataset(nnunet_dir, profile="tiny")
    train = TrainingSet.from_dataset(ds, split_dataset(ds, seed=0))
    with pytest.raises(ConfigError, match="phantom datasets only.*liver_"):
        G.create("phantom-oracle").fit(train, TINY, seed=0)


def test_mismatched_labels_pair_real_images_with_another_cases_label(phantom):
    _, train = phantom
    control = G.create("mismatched-labels")
    control.fit(train, TINY, seed=0)
    by_id = {p.case_id: p for p in train}
    for pair in G.sample_validated(control, 8, seed=1, shape=TINY.shape):
        image_case, label_case = pair.meta["image_case"], pair.meta["label_case"]
        assert image_case != label_case
        np.testing.assert_array_equal(pair.image, by_id[image_case].image)
        np.testing.assert_array_equal(pair.label, by_id[label_case].label)


def test_real_data_levels_are_nested_seeded_subsets(tmp_path):
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.fit_cache import fit_cache_key

    ctx = prepare(RunConfig(generators=("classic-aug",), seeds=1, profile="tiny", real_cases=(2, 4, None),
                            real_draws=2), tmp_path)
    all_ids = list(ctx.split.train)
    assert ctx.levels() == [(2, 0), (2, 1), (4, 0), (4, 1), (None, 0)]
    for draw in (0, 1):
        small, large = ctx.train_ids(2, draw), ctx.train_ids(4, draw)
        assert set(small) < set(large) < set(all_ids) and large[:2] == small
    assert ctx.train_ids(4, 0) != ctx.train_ids(4, 1)
    assert prepare(ctx.config, tmp_path).train_ids(4, 1) == ctx.train_ids(4, 1)  # seeded
    assert fit_cache_key(ctx, "classic-aug", 2, 0)["train"] == ctx.train_ids(2, 0)
    assert fit_cache_key(ctx, "classic-aug")["train"] == all_ids
    assert ctx.generators == ("classic-aug", "phantom-oracle", "mismatched-labels")


def test_default_real_data_level_is_the_calibrated_one():
    """The quick phantom's default run uses the level where the positive control was detected at >= 2x the
    minimum detectable effect (16 of 32 training cases); everywhere else the whole training split."""
    from foscu_bench.runner.config import default_real_cases, parse_real_cases

    assert parse_real_cases(default_real_cases("phantom", "quick")) == (16,)
    assert default_real_cases("phantom", "tiny") == default_real_cases("/data/chaos", "quick") == "all"


def test_controls_default_to_the_negative_one_on_real_data(nnunet_dir, tmp_path):
    from foscu_bench.runner import RunConfig, prepare

    ctx = prepare(RunConfig(generators=("classic-aug",), seeds=1, profile="tiny", dataset=str(nnunet_dir)), tmp_path)
    assert ctx.generators == ("classic-aug", "mismatched-labels")
    off = prepare(RunConfig(generators=("classic-aug",), seeds=1, profile="tiny", controls=False), tmp_path)
    assert off.generators == ("classic-aug",)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """A tiny run over two real-data levels with both controls (classic-aug, 2 seeds)."""
    out = tmp_path_factory.mktemp("grid")
    main(["run", "--generator", "classic-aug", "--seeds", "2", "--profile", "tiny", "--real-cases", "3,all",
          "--out", str(out)])
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def test_grid_run_reports_levels_controls_and_worth(grid_run, capsys):
    import pandas as pd

    metrics = pd.read_csv(grid_run / "metrics.csv")
    manifest = json.loads((grid_run / "manifest.json").read_text())
    stats = json.loads((grid_run / "stats.json").read_text())
    n_all = len(manifest["split"]["train"])
    assert sorted(metrics["n_real"].unique()) == [3, n_all] and stats["levels"] == [3, n_all]
    assert set(metrics["generator"]) == {"real-only", "classic-aug", "phantom-oracle", "mismatched-labels"}
    assert stats["holm_families"][f"generators/real+synthetic/dice_liver/n-{n_all}"] == ["classic-aug"]
    assert stats["holm_families"][f"controls/real+synthetic/dice_liver/n-{n_all}"] == ["mismatched-labels",
                                                                                      "phantom-oracle"]
    calibration = stats["calibration"][str(n_all)]
    assert calibration["positive"]["delta_dice_mean"] == stats["generators"]["phantom-oracle"]["delta_dice_mean"]
    assert {"positive_detected", "negative_detected", "passed"} <= set(calibration)
    design = stats["design"][str(n_all)]
    assert design["n_arms"] == 3 and design["n_seeds"] == 2
    controls = calibration["design"]  # the verdict's design: pooled over the two controls, not the generator
    assert controls["n_arms"] == 2 and calibration["design_mde"] == controls["mde"] != design["mde"]
    # the bar is the larger of the oracle's MDE and the controls' design MDE
    bar = 2 * max(calibration["positive"]["mde"], controls["mde"])
    assert calibration["positive_at_least_2x_mde"] == (calibration["positive"]["delta_dice_mean"] >= bar)
    worth = stats["real_case_equivalent"]["phantom-oracle"]["3"]
    assert worth["n_real"] == 3 and worth["equivalent"] is not None
    levels = {(entry["n_real"], entry["whole_split"]) for entry in manifest["real_data_levels"]}
    assert levels == {(3, False), (n_all, True)}
    small = next(e for e in manifest["real_data_levels"] if e["n_real"] == 3)["train"]
    fit = json.loads((grid_run / "steps" / "fit--classic-aug--n-3-draw-0.json").read_text())
    from pathlib import Path

    assert json.loads((Path(fit["cache_entry"]) / "fit.json").read_text())["train_case_ids"] == small
    assert (grid_run / "synthetic" / "classic-aug" / "n-3-draw-0" / "seed-1.npz").is_file()
    from foscu_bench.store import load_synthetic

    sources = {p.meta["source_case"] for p in load_synthetic(grid_run / "synthetic" / "classic-aug" / "n-3-draw-0"
                                                             / "seed-0.npz")}
    assert sources <= set(small)  # the generator of a level saw only that level's cases


def test_grid_leaderboard_has_rows_per_level_with_controls_apart(grid_run, tmp_path):
    from foscu_bench.cli import calibration_line
    from foscu_bench.leaderboard import leaderboard_rows, render

    rows = leaderboard_rows(grid_run)
    assert [(r["n_real"], r["kind"]) for r in rows][:4] == [(3, "rule-based"), (3, "control"), (3, "control"),
                                                            (3, "reference")]
    assert {r["rank"] for r in rows if r["kind"] == "control"} == {None}
    text = render(rows, "md")
    assert "phantom-oracle (control)" in text and "| ctl |" in text
    assert "Minimum detectable effect of the design" in text and "real cases" in text
    assert all(row["var_seed"] is not None for row in rows if row["kind"] != "reference")
    stats = json.loads((grid_run / "stats.json").read_text())
    line = calibration_line(stats)
    assert line.startswith("calibration at ") and "positive control" in line and "minimum detectable effect" in line
    assert "design minimum detectable effect" in line and "the 2 controls)" in line
    for level in stats["levels"]:  # a grid run prints one line per level: a level can pass where another fails
        assert calibration_line(stats, level).startswith(f"calibration at {level} real cases: positive control")
    assert calibration_line(stats, 999) == "calibration at 999 real cases: no controls at this level"
    main(["figures", "--runs", str(grid_run), "--out", str(tmp_path)])
    assert list(tmp_path.glob("dice_vs_real_cases_*.png"))
