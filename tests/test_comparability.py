"""Leaderboard and figures pool runs only under one comparability key, with one real-only arm and one Holm family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from foscu_bench.comparability import comparability_key, group_runs
from foscu_bench.errors import ConfigError
from foscu_bench.leaderboard import leaderboard_rows, render
from foscu_bench.results import load_run, read_metrics
from foscu_bench.stats import holm


def _copy_as(run_dir: Path, out: Path, run_id: str, rename: str | None = None, edit=None) -> Path:
    """A copy of a finished run under a new id, optionally with its generator renamed or its rows edited."""
    copy = out / run_id
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("synthetic", "steps"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["run_id"] = run_id
    metrics = read_metrics(copy / "metrics.csv")
    if rename:
        manifest["generators"] = {rename: manifest["generators"]["classic-aug"]}
        manifest["config"]["generators"] = [rename]
        metrics.loc[metrics["generator"] == "classic-aug", "generator"] = rename
        fidelity = json.loads((copy / "fidelity.json").read_text())
        fidelity["generators"] = {rename: fidelity["generators"]["classic-aug"]}
        (copy / "fidelity.json").write_text(json.dumps(fidelity))
    if edit:
        edit(manifest, metrics)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    metrics.to_csv(copy / "metrics.csv", index=False)
    return copy


def test_a_group_of_one_run_has_the_runs_own_statistics(finished_run):
    run_dir, _ = finished_run
    (group,) = group_runs([load_run(run_dir)])
    assert group.stats == json.loads((run_dir / "stats.json").read_text())
    n_train = len(json.loads((run_dir / "manifest.json").read_text())["split"]["train"])
    assert group.stats["holm_families"][f"generators/real+synthetic/dice_liver/n-{n_train}"] == ["classic-aug"]
    row = leaderboard_rows(run_dir)[0]
    assert row["p_holm"] == group.stats["generators"]["classic-aug"]["p_holm"] and row["holm_family_size"] == 1


def test_runs_with_one_key_share_one_real_only_arm_and_one_holm_family(finished_run, tmp_path):
    run_dir, _ = finished_run
    out = tmp_path / "runs"
    _copy_as(run_dir, out, "run-a")
    _copy_as(run_dir, out, "run-b", rename="other-gen",
             edit=lambda m, f: f.__setitem__("dice_liver", f["dice_liver"].where(f["generator"] == "real-only",
                                                                                 f["dice_liver"] - 0.01)))
    runs = [load_run(p) for p in sorted(out.iterdir())]
    assert comparability_key(runs[0]) == comparability_key(runs[1])
    (group,) = group_runs(runs)
    real = group.frame[group.frame["generator"] == "real-only"]
    assert len(real) == len(runs[0].metrics[runs[0].metrics["generator"] == "real-only"])  # once, not twice
    family = group.stats["holm_families"][f"generators/real+synthetic/dice_liver/n-{group.stats['levels'][-1]}"]
    assert family == ["classic-aug", "other-gen"]
    p = [group.stats["generators"][g]["p_value"] for g in family]
    assert [group.stats["generators"][g]["p_holm"] for g in family] == pytest.approx(list(holm(p)))
    rows = leaderboard_rows(out)
    assert [r["generator"] for r in rows] == ["classic-aug", "other-gen", "real-only"]
    assert {r["holm_family_size"] for r in rows[:2]} == {2}
    assert "Holm family: the 2 generator(s) of this group" in render(rows, "md")


def test_runs_whose_real_only_arms_differ_are_refused(finished_run, tmp_path):
    run_dir, _ = finished_run
    out = tmp_path / "runs"
    _copy_as(run_dir, out, "run-a")
    _copy_as(run_dir, out, "run-b", rename="other-gen",
             edit=lambda m, f: f.__setitem__("dice_liver", f["dice_liver"] + 0.001))
    with pytest.raises(ConfigError, match="real-only arms differ"):
        leaderboard_rows(out)


def test_the_instrument_is_in_the_key(finished_run):
    """The U-Nets' precision as resolved on the run's machine, the kernels they ran on (CPU vector ISA) and the
    fidelity version separate groups; a run made before any of them was recorded keeps the key it had."""
    import torch

    run = load_run(finished_run[0])
    assert run.manifest["segmentation"]["precision"] in ("fp32", "bf16") and run.fidelity["fidelity_version"] == 2
    assert run.manifest["segmentation"]["kernels"] == f"cpu:{torch.backends.cpu.get_cpu_capability()}"
    assert run.manifest["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    key = comparability_key(run)
    assert key["unet_precision"] == run.manifest["segmentation"]["precision"] and key["fidelity"] == 2
    assert key["kernels"] == run.manifest["segmentation"]["kernels"]
    other = "bf16" if key["unet_precision"] == "fp32" else "fp32"
    run.manifest["segmentation"]["precision"] = other
    assert comparability_key(run)["unet_precision"] == other
    run.manifest["segmentation"]["kernels"] = "cpu:AVX512" if key["kernels"] != "cpu:AVX512" else "cpu:AVX2"
    assert comparability_key(run)["kernels"] != key["kernels"]
    del run.manifest["segmentation"]["precision"], run.fidelity["fidelity_version"], run.manifest["segmentation"]["kernels"]
    assert comparability_key(run) == {k: v for k, v in key.items()
                                      if k not in ("unet_precision", "fidelity", "kernels")}


def test_runs_with_different_keys_are_never_pooled(finished_run, tmp_path):
    run_dir, _ = finished_run
    out = tmp_path / "runs"
    _copy_as(run_dir, out, "run-a")
    _copy_as(run_dir, out, "run-b", rename="other-gen",
             edit=lambda m, f: m["profile"]["segmentation"].__setitem__("iterations", 1))
    groups = group_runs([load_run(p) for p in sorted(out.iterdir())])
    assert len(groups) == 2 and all(len(g.runs) == 1 for g in groups)
    rows = leaderboard_rows(out)
    assert sum(r["generator"] == "real-only" for r in rows) == 2  # one reference row per group
    assert all(r["holm_family_size"] == 1 for r in rows if r["generator"] != "real-only")
    assert len({r["comparability_key"] for r in rows}) == 2
    assert render(rows, "latex").count(r"\begin{table}") == 2


def test_a_generator_in_several_runs_is_one_row_set_where_they_agree(finished_run, tmp_path):
    """Controls every run repeats, or a grid split by level: identical rows merge into one generator (one Holm
    family member); rows that disagree on a shared (arm, level, seed, case) stay apart, suffixed with run ids."""
    run_dir, _ = finished_run
    same = tmp_path / "same"
    _copy_as(run_dir, same, "run-a")
    _copy_as(run_dir, same, "run-b")
    (group,) = group_runs([load_run(p) for p in sorted(same.iterdir())])
    single = load_run(run_dir).metrics
    assert len(group.frame) == len(single) and set(group.frame["generator"]) == {"real-only", "classic-aug"}
    assert group.stats["generators"]["classic-aug"]["p_value"] == pytest.approx(
        json.loads((run_dir / "stats.json").read_text())["generators"]["classic-aug"]["p_value"])
    differ = tmp_path / "differ"
    _copy_as(run_dir, differ, "run-a")
    _copy_as(run_dir, differ, "run-b", edit=lambda m, f: f.__setitem__(
        "dice_liver", f["dice_liver"].where(f["generator"] == "real-only", f["dice_liver"] - 0.01)))
    (group,) = group_runs([load_run(p) for p in sorted(differ.iterdir())])
    assert set(group.frame["generator"]) == {"real-only", "classic-aug@run-a", "classic-aug@run-b"}


def test_a_newer_code_version_of_a_generator_retires_its_older_rows(finished_run, tmp_path):
    """A generator re-run after a code change: the group shows the rows of the most recently created run's version
    only (not two labelled rows sets), and names the retired run; equal versions still merge or stay apart."""
    run_dir, _ = finished_run

    def newer(manifest, frame):
        manifest["generators"]["classic-aug"]["code_fingerprint"] = "0123456789abcdef"
        manifest["created"] = "2999-01-01T00:00:00+00:00"
        frame["dice_liver"] = frame["dice_liver"].where(frame["generator"] == "real-only", frame["dice_liver"] - 0.01)

    out = tmp_path / "runs"
    _copy_as(run_dir, out, "run-old")
    _copy_as(run_dir, out, "run-new", edit=newer)
    (group,) = group_runs([load_run(p) for p in sorted(out.iterdir())])
    assert set(group.frame["generator"]) == {"real-only", "classic-aug"}
    new_rows = load_run(out / "run-new").metrics
    augmented = group.frame[group.frame["generator"] == "classic-aug"]
    assert augmented["dice_liver"].sum() == pytest.approx(new_rows.loc[new_rows["generator"] == "classic-aug",
                                                                       "dice_liver"].sum())
    old_code = load_run(out / "run-old").manifest["generators"]["classic-aug"]["code_fingerprint"]
    assert group.retired == [{"generator": "classic-aug", "run_id": "run-old", "code_fingerprint": old_code,
                              "superseded_by": "0123456789abcdef"}]
    retired: list[dict] = []
    rows = leaderboard_rows(out, retired=retired)
    assert [r["run_id"] for r in rows if r["generator"] == "classic-aug"] == ["run-new"] and retired == group.retired
