"""Group figures draw only what the group's runs can show."""

from __future__ import annotations

from types import SimpleNamespace

from foscu_bench.figures import fig_dice_vs_n_synthetic


def _group(sizes: list[int | None]):
    runs = [SimpleNamespace(run_id=f"run-{i}", manifest={"config": {"n_synthetic": n, "generators": ["gen"]}})
            for i, n in enumerate(sizes)]
    labels = {(run.run_id, "gen"): f"gen@{run.run_id}" for run in runs}
    stats = {"generators": {f"gen@{run.run_id}": {"delta_dice_mean": 0.01 * i, "ci_low": 0.0, "ci_high": 0.02 * i}
                            for i, run in enumerate(runs)}}
    return SimpleNamespace(runs=runs, labels=labels, stats=stats, name="phantom / tiny", key_id="abc")


def test_dice_against_the_synthetic_set_size_needs_two_sizes(tmp_path):
    assert fig_dice_vs_n_synthetic(_group([None, None]), tmp_path) == []
    assert fig_dice_vs_n_synthetic(_group([16]), tmp_path) == []
    written = fig_dice_vs_n_synthetic(_group([16, 64]), tmp_path)
    assert sorted(p.name for p in written) == ["dice_vs_n_synthetic_abc.pdf", "dice_vs_n_synthetic_abc.png"]
    assert all(p.stat().st_size > 2000 for p in written)
