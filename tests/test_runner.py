"""The benchmark runner end to end at the tiny profile: results, resumption, locking, leaderboard (kill -9 at named
points: test_crash_safety.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foscu_bench.cli import main

from conftest import RUN_ARGS, _run_dir

RESULT_FILES = ("metrics.csv", "stats.json", "fidelity.json")
VOLATILE_MANIFEST_KEYS = ("updated", "created", "invocations")


def _stable_manifest(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {k: v for k, v in manifest.items() if k not in VOLATILE_MANIFEST_KEYS}


def test_tiny_run_writes_the_result_schema(finished_run):
    run_dir, _ = finished_run
    metrics = pd.read_csv(run_dir / "metrics.csv")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    n_test = len(manifest["split"]["test"])
    assert list(metrics.columns[:9]) == ["generator", "arm", "n_real", "draw", "seed", "case_id", "dice_liver",
                                         "nsd_liver", "hd95_liver"]
    assert len(metrics) == 2 * 2 * n_test  # (real-only, real+classic-aug) x 2 seeds x test cases
    assert set(metrics["case_id"]) == set(manifest["split"]["test"])
    assert not set(metrics["case_id"]) & set(manifest["split"]["train"])
    real = metrics[metrics["generator"] == "real-only"]
    assert real["dice_liver"].mean() > 0.55  # a tiny U-Net really learned the liver
    stats = json.loads((run_dir / "stats.json").read_text())
    entry = stats["generators"]["classic-aug"]
    for key in ("delta_dice_mean", "ci_low", "ci_high", "p_value", "p_holm", "test"):
        assert key in entry
    aug = metrics[metrics["generator"] == "classic-aug"]
    expected = (aug.groupby("case_id")["dice_liver"].mean() - real.groupby("case_id")["dice_liver"].mean()).mean()
    assert entry["delta_dice_mean"] == pytest.approx(expected, abs=1e-12)
    assert entry["ci_low"] <= entry["delta_dice_mean"] <= entry["ci_high"]
    assert manifest["status"] == "complete"
    assert all(s["status"] == "done" for s in manifest["steps"].values())
    assert len(manifest["dataset"]["fingerprint"]) >= 16 and manifest["versions"]["torch"].startswith("2.")
    assert manifest["git"]["commit"] is None or len(manifest["git"]["commit"]) == 40  # None outside a checkout
    assert manifest["protocol_version"] == 2
    assert manifest["generators"]["classic-aug"]["sample_seconds_per_volume"] > 0
    assert manifest["segmentation"]["nsd_tolerance_mm"] == 20.0
    synthetic = np.load(run_dir / "synthetic" / "classic-aug" / "seed-1.npz")
    assert synthetic["images"].shape == (manifest["config"]["n_synthetic"], 1, 16, 16, 16)


def test_second_invocation_trains_nothing_and_reproduces_files(finished_run, monkeypatch, tmp_path):
    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    before = {name: (run_dir / name).read_bytes() for name in RESULT_FILES}
    manifest_before = _stable_manifest(run_dir)
    import foscu_bench.segmentation as segmentation

    monkeypatch.setattr(segmentation, "train_segmentation",
                        lambda *a, **k: pytest.fail("a finished run must not train again"))
    main([*RUN_ARGS, "--out", str(run_dir.parent)])
    assert {name: (run_dir / name).read_bytes() for name in RESULT_FILES} == before
    assert _stable_manifest(run_dir) == manifest_before
    invocations = json.loads((run_dir / "manifest.json").read_text())["invocations"]
    assert [i["steps_run"] for i in invocations] == [8, 0]


def test_workers_never_change_a_number(finished_run, tmp_path, monkeypatch):
    """The shared run used one worker per core (spawned processes, steps out of order); one worker in this
    process gives the same files byte for byte: every step has the same seed and the same thread count."""
    run_dir, cache = finished_run
    invocation = json.loads((run_dir / "manifest.json").read_text())["invocations"][0]
    assert invocation["threads_per_step"] == 1
    if invocation["workers"] < 2:
        pytest.skip("a single-core machine ran the shared run serially already")
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))  # a cold cache: every U-Net trains again
    main([*RUN_ARGS, "--out", str(tmp_path / "runs"), "--workers", "1"])
    serial_dir = tmp_path / "runs" / run_dir.name
    assert json.loads((serial_dir / "manifest.json").read_text())["invocations"][0]["workers"] == 1
    for name in RESULT_FILES:
        assert (serial_dir / name).read_bytes() == (run_dir / name).read_bytes(), name


def test_parallel_scheduler_respects_dependencies():
    from foscu_bench.runner.parallel import KIND_PRIORITY, dependencies
    from foscu_bench.store import Step

    assert dependencies(Step("unet", None, 0, "real"), seeds=3) == []
    assert dependencies(Step("sample", "g", 1, None, 8, 1), seeds=3) == [Step("fit", "g", None, None, 8, 1)]
    assert dependencies(Step("unet", "g", 2, "real+synthetic", 8), seeds=3) == [Step("sample", "g", 2, None, 8)]
    assert dependencies(Step("fidelity", "g"), seeds=2) == [Step("sample", "g", 0), Step("sample", "g", 1)]
    assert KIND_PRIORITY["fit"] == KIND_PRIORITY["fitpart"] == min(KIND_PRIORITY.values())  # longest chains first
    assert dependencies(Step("fit", "g", None, None, 8), 3, ("a", "b")) == [
        Step("fitpart", "g", None, None, 8, part="a"), Step("fitpart", "g", None, None, 8, part="b")]


def test_the_consistency_judge_never_saw_a_case_any_generator_trained_on(monkeypatch):
    """The judge trains on half A of the fidelity pool and its ceiling is half B (the fidelity reference): no
    training case of any level in either; trained once, then loaded from the cache by any later context; the
    fidelity steps wait for no U-Net."""
    import torch

    from foscu_bench import segmentation
    from foscu_bench.metrics.fidelity import split_halves
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.consistency import consistency_segmenter, judge_halves
    from foscu_bench.runner.parallel import step_dependencies
    from foscu_bench.store import Step

    torch.set_num_threads(1)
    config = RunConfig(generators=("classic-aug",), seeds=1, profile="tiny", controls=False, real_cases=(2, None))
    ctx = prepare(config, "unused-runs")
    judge, ceiling = judge_halves(ctx)
    judge_ids, ceiling_ids = {p.case_id for p in judge}, [p.case_id for p in ceiling]
    trained_on = {c for n in (2, None) for c in ctx.train_ids(n, 0)}
    assert judge_ids and ceiling_ids and not judge_ids & set(ceiling_ids)
    assert not (judge_ids | set(ceiling_ids)) & trained_on
    _, half_b = split_halves(len(ctx.held_out_ids()), ctx.config.split_seed)
    assert ceiling_ids == [ctx.held_out_ids()[i] for i in half_b]
    assert all(s.kind == "sample" for s in step_dependencies(ctx, Step("fidelity", "classic-aug")))
    trainings = []
    real_train = segmentation.train_segmentation
    monkeypatch.setattr(segmentation, "train_segmentation",
                        lambda real, *a, **k: trainings.append(sorted(p.case_id for p in real)) or real_train(real, *a, **k))
    model, provenance = consistency_segmenter(ctx)
    assert trainings == [sorted(judge_ids)] and provenance["n_cases"] == len(judge_ids)
    again, _ = consistency_segmenter(prepare(config, "unused-runs"))  # a new context: from the cache, no training
    assert len(trainings) == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_fit_parts_are_steps_of_their_own_before_the_fit(monkeypatch):
    """A generator's independent fit parts (Duo-Diffusion's label chain) are planned as steps the fit depends on,
    stored under their own names, trained into the fit's cache entry, and counted in the fit's seconds."""
    from foscu_bench import generator as G
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.executors import EXECUTORS
    from foscu_bench.runner.fit_cache import fit_entry
    from foscu_bench.runner.parallel import step_dependencies
    from foscu_bench.runner.plan import steps
    from foscu_bench.store import Step

    meta = G.get_meta(_split_fit_metas(monkeypatch)[0])
    ctx = prepare(RunConfig(generators=(meta.name,), seeds=1, profile="tiny", controls=False), "unused-runs")
    planned = [s for s in steps(ctx) if s.generator == meta.name]
    part, fit = planned[:2]
    assert (part.kind, part.part, fit.kind) == ("fitpart", "half", "fit")
    assert step_dependencies(ctx, fit) == [part]
    assert Step.from_name(part.filename) == part and part.name == "fitpart/split-classic-aug/half"
    record = EXECUTORS["fitpart"](ctx, part, {})
    assert record["seconds"] is not None and "cache_hit" not in record
    assert (fit_entry(ctx, meta.name).work / "half.done").is_file()
    fitted = EXECUTORS["fit"](ctx, fit, {})
    assert set(fitted["fit"]["fit_part_seconds"]) == {"half"}
    assert fitted["seconds"] >= fitted["fit"]["fit_part_seconds"]["half"]
    assert EXECUTORS["fitpart"](ctx, part, {})["cache_hit"]  # the fit is cached: its parts have nothing to do


def _split_fit_metas(monkeypatch):
    """split-classic-aug (a fit with one part) and takes-split-fit, which takes its fit (``fit_from``)."""
    from foscu_bench import generator as G

    common = dict(kind="rule-based", citation="test double", reference="", conditioning="real training pairs",
                  description="classic-aug whose fit has one part")
    source = G.GeneratorMeta(name="split-classic-aug", target="split_fit_generator:SplitFitAugmentation", **common)
    taker = G.GeneratorMeta(name="takes-split-fit", target="split_fit_generator:TakesSplitFit",
                            extra={"fit_from": source.name}, **common)
    for meta in (source, taker):
        monkeypatch.setitem(G._BUILTIN, meta.name, meta)
    return source.name, taker.name


def test_a_generator_taking_anothers_fit_shares_it_and_never_fits(monkeypatch, tmp_path):
    """The real-labels ablation takes duo-diffusion's fit: alone in a run, its fit's parts train into the source's
    cache entry and its fit derives from that entry; beside the source, its fit waits for the source's and trains
    nothing. The networks are the source's, the key holds the source's, the record names it; the registry says so
    for the ablation."""
    from foscu_bench.generator import get_meta, load
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.executors import EXECUTORS
    from foscu_bench.runner.fit_cache import fit_cache_key, fit_entry
    from foscu_bench.runner.manifest import build_manifest
    from foscu_bench.runner.parallel import step_dependencies
    from foscu_bench.runner.plan import stamp_record, steps
    from foscu_bench.store import Step

    assert get_meta("duo-diffusion-real-labels").extra["fit_from"] == "duo-diffusion"
    source, taker = _split_fit_metas(monkeypatch)
    fresh = dict(seeds=1, profile="tiny", controls=False, fit_seed=71)  # fit entries no other test made
    alone = prepare(RunConfig(generators=(taker,), **fresh), tmp_path / "runs")
    part, fit = [s for s in steps(alone) if s.kind in ("fitpart", "fit")]
    assert (part.generator, part.part, fit.generator) == (taker, "half", taker)
    assert step_dependencies(alone, fit) == [part]
    assert EXECUTORS["fitpart"](alone, part, {})["seconds"] is not None
    assert (fit_entry(alone, source).work / "half.done").is_file() and not fit_entry(alone, taker).work.exists()
    record = EXECUTORS["fit"](alone, fit, {})
    assert record["cache_hit"] and record["fit"]["fit_from"] == {"generator": source,
                                                                 "fit_key": fit_entry(alone, source).directory.name}
    assert fit_cache_key(alone, taker)["fit_from"] == fit_entry(alone, source).directory.name
    alone.layout.write_step(fit, stamp_record(record, fit, threads=1))
    assert build_manifest(alone, "running")["generators"][taker]["fit_from"]["generator"] == source
    generators: dict = {}
    EXECUTORS["sample"](alone, Step("sample", taker, 0), generators)
    (taken,) = generators.values()
    assert type(taken).__name__ == "TakesSplitFit" and taken.train_case_ids == alone.train_ids()
    fitted_source = load(source, fit_entry(alone, source).checkpoint)
    assert np.array_equal(taken.images, fitted_source.images) and np.array_equal(taken.labels, fitted_source.labels)

    both = prepare(RunConfig(generators=(source, taker), **fresh), "unused-runs")
    planned = [s for s in steps(both) if s.kind in ("fitpart", "fit")]
    assert [(s.kind, s.generator) for s in planned] == [("fitpart", source), ("fit", source), ("fit", taker)]
    assert step_dependencies(both, planned[2]) == [Step("fit", source)]


def test_a_fit_taken_by_an_unrelated_class_is_refused(monkeypatch):
    """Taking another generator's fit is for ablations of that generator: a class that does not derive from the
    source's, or one that resolves another config, is refused with both names before anything is fitted."""
    import split_fit_generator

    from foscu_bench import generator as G
    from foscu_bench.errors import ConfigError
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.fit_cache import fit_entry, fitted_generator

    source, _ = _split_fit_metas(monkeypatch)
    stranger = G.GeneratorMeta(name="stranger", kind="rule-based", target="foscu_bench.baselines.synthseg:SynthSeg",
                               citation="test double", reference="", conditioning="labels", description="unrelated",
                               extra={"fit_from": source})
    monkeypatch.setitem(G._BUILTIN, stranger.name, stranger)
    ctx = prepare(RunConfig(generators=(stranger.name,), seeds=1, profile="tiny", controls=False, fit_seed=72),
                  "unused-runs")
    with pytest.raises(ConfigError, match="'stranger' takes the fit of 'split-classic-aug'.* does not derive"):
        fitted_generator(ctx, stranger.name)
    assert not fit_entry(ctx, stranger.name).done
    _, taker = _split_fit_metas(monkeypatch)
    monkeypatch.setattr(split_fit_generator.TakesSplitFit, "config", lambda self, profile=None: {"sigma": 2.0})
    ctx = prepare(RunConfig(generators=(taker,), seeds=1, profile="tiny", controls=False, fit_seed=72), "unused-runs")
    with pytest.raises(ConfigError, match="configs differ in sigma"):
        fitted_generator(ctx, taker)


def test_unets_are_cached_across_runs_by_content(finished_run, tmp_path, monkeypatch):
    """Another run on the same data (another generator) takes its real-only U-Nets from the cache: identical
    rows, no training of the real arm; its synthetic arm trains (its synthetic set is new)."""
    import pandas as pd

    import foscu_bench.segmentation as segmentation

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    trained = []
    real_train = segmentation.train_segmentation

    def spy(real, synthetic, arm, *args, **kwargs):
        trained.append(arm)
        return real_train(real, synthetic, arm, *args, **kwargs)

    monkeypatch.setattr(segmentation, "train_segmentation", spy)
    main(["run", "--generator", "synthseg", "--seeds", "2", "--profile", "tiny", "--quiet", "--no-controls",
          "--out", str(tmp_path), "--workers", "1"])
    assert trained == ["real+synthetic", "real+synthetic"]
    (other,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = {d.name: pd.read_csv(d / "metrics.csv") for d in (run_dir, other)}
    real = {name: frame[frame.generator == "real-only"].reset_index(drop=True) for name, frame in rows.items()}
    pd.testing.assert_frame_equal(*real.values())
    from foscu_bench.store import RunLayout, Step

    assert RunLayout(other).read_step(Step("unet", None, 0, "real"))["cache_hit"]


def test_plan_prices_cached_unets_at_the_runs_threads(finished_run, tmp_path, monkeypatch, capsys):
    """--plan counts a cached real-only U-Net as free only for the thread count it was trained with (the run's
    --threads, default 1 on CPU): a U-Net at 2 threads is another computation."""
    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    estimates = {}
    for threads in ("1", "2"):
        main(["run", "--generator", "synthseg", "--seeds", "2", "--profile", "tiny", "--no-controls", "--plan",
              "--json", "--out", str(tmp_path), "--threads", threads])
        steps = json.loads(capsys.readouterr().out)["steps"]
        estimates[threads] = {s["step"]: s["estimate_seconds"] for s in steps
                              if s["step"].startswith("unet/real-only")}
    assert estimates["1"] and set(estimates["1"].values()) == {0.0}
    assert all(value != 0.0 for value in estimates["2"].values())


def test_unet_cache_key_holds_what_changes_a_unet(finished_run, monkeypatch):
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.unet_cache import unet_cache_key
    from foscu_bench.store import Step

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    ctx = prepare(RunConfig(generators=("classic-aug",), seeds=2, profile="tiny", controls=False), run_dir.parent)
    real = Step("unet", None, 0, "real")
    base = unet_cache_key(ctx, real, None, 1)
    assert base == unet_cache_key(ctx, real, None, 1)
    assert base != unet_cache_key(ctx, real, None, 2)  # oneDNN sums depend on the thread count
    assert base != unet_cache_key(ctx, Step("unet", None, 1, "real"), None, 1)
    synthetic = Step("unet", "g", 0, "real+synthetic")
    assert unet_cache_key(ctx, synthetic, "aa", 1) != unet_cache_key(ctx, synthetic, "bb", 1)
    assert unet_cache_key(ctx, real, None, 1)["train"] == ctx.train_ids()
    # an AVX-512 CPU gives other fp32 numbers than an AVX2 one for the same seed: its records are not reused here
    monkeypatch.setattr("foscu_bench.provenance.kernel_class", lambda device: "cpu:ANOTHER-ISA")
    assert base != unet_cache_key(ctx, real, None, 1)


def test_a_run_being_written_is_locked(finished_run, monkeypatch):
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.store import LockedError, exclusive_lock

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    run = prepare(RunConfig(generators=("classic-aug",), seeds=2, profile="tiny", controls=False), run_dir.parent)
    assert run.directory == run_dir
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from foscu_bench.store import exclusive_lock\n"
        f"with exclusive_lock({str(run_dir / '.lock')!r}):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match="in use by another foscu-bench process"):
            run.execute()
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(run_dir / ".lock"):  # released when its holder died
        pass


def test_plan_reports_done_steps(finished_run, monkeypatch, capsys):
    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    main(["run", "--generator", "classic-aug", "--seeds", "3", "--profile", "tiny", "--out", str(run_dir.parent),
          "--plan", "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["steps"]) == 3 + 3 * (1 + 3 + 3 + 1)  # real-only, then classic-aug and both controls
    assert all(not s["done"] for s in plan["steps"])  # another seed count is another run
    assert plan["estimated_seconds"] > 0


@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "json"])
def test_leaderboard_formats(finished_run, fmt, tmp_path, capsys):
    run_dir, _ = finished_run
    stats = json.loads((run_dir / "stats.json").read_text())["generators"]["classic-aug"]
    out = tmp_path / f"board.{fmt}"
    main(["leaderboard", "--runs", str(run_dir.parent), "--format", fmt, "--output", str(out)])
    text = out.read_text()
    assert "classic-aug" in text and "real-only" in text
    if fmt == "json":
        rows = json.loads(text)["rows"]
        assert rows[0]["generator"] == "classic-aug" and rows[0]["rank"] == 1
        assert rows[0]["delta_dice_mean"] == pytest.approx(stats["delta_dice_mean"], abs=1e-12)
        assert rows[0]["p_holm"] == pytest.approx(stats["p_holm"])
    elif fmt == "csv":
        frame = pd.read_csv(out)
        assert frame.loc[0, "delta_dice_mean"] == pytest.approx(stats["delta_dice_mean"], rel=1e-8)
    elif fmt == "latex":
        assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
        assert f"{100 * stats['delta_dice_mean']:+.2f}".replace("-", "$-$") in text
    else:
        assert text.splitlines()[0].startswith("| # | generator | real cases | Δ Dice")
        assert f"{100 * stats['delta_dice_mean']:+.2f}" in text


def test_leaderboard_without_runs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "--runs", str(tmp_path)])
    assert exc.value.code == 2
    assert "no completed runs" in capsys.readouterr().err


def test_fidelity_json_carries_the_floor_beside_each_generator(finished_run):
    run_dir, _ = finished_run
    fidelity = json.loads((run_dir / "fidelity.json").read_text())
    entry, floor = fidelity["generators"]["classic-aug"], fidelity["real_vs_real"]
    for key in ("fid", "fd_infinity", "kid", "kid_se", "mmd", "precision", "recall", "density", "coverage",
                "ms_ssim", "n_real", "n_synthetic", "extractor", "excess_over_floor", "memorisation", "consistency"):
        assert entry[key] is not None, key
    assert floor["fid"] is not None and floor["kid"] is not None
    assert entry["n_real"] == entry["n_synthetic"] == floor["n_real"] == fidelity["n_per_set"] == 8  # tiny
    assert fidelity["extractor"]["name"] == "foscu-ae3d-corpus" and fidelity["extractor"]["weights_sha256"]
    # the reference holds held-out cases only: none of the run's training cases, none of the dataset's own ids twice
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert not set(fidelity["held_out_ids"]) & set(manifest["split"]["train"])
    assert len(fidelity["held_out_ids"]) == 16 and set(manifest["split"]["test"]) <= set(fidelity["held_out_ids"])
    consistency = entry["consistency"]
    assert 0 < consistency["synthetic"]["mean"] <= 1 and consistency["real_ceiling"]["n"] == 8
    assert len(entry["replicates"]["fid"]) == len(floor["replicates"]["fid"]) == fidelity["bootstrap"]


def test_figures_are_written_as_png_and_pdf(finished_run, tmp_path, monkeypatch):
    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    from foscu_bench.comparability import group_runs
    from foscu_bench.results import load_run

    main(["figures", "--runs", str(run_dir.parent), "--out", str(tmp_path)])
    key = group_runs([load_run(run_dir)])[0].key_id
    per_run = {f"{kind}_{run_dir.name}" for kind in ("fig1_generated", "fig4_label_real_synthetic", "fidelity",
                                                      "loss_curves")}
    per_group = {f"dice_distributions_{key}"}
    # one generator at one level: too few rows for the metric-validity figure; one synthetic-set size: no figure
    # of Dice against it (tests/test_figures.py draws one from two runs)
    assert {p.stem for p in tmp_path.glob("*.png")} == per_run | per_group
    for png in tmp_path.glob("*.png"):
        assert png.stat().st_size > 5000 and png.with_suffix(".pdf").stat().st_size > 2000


def test_a_lost_synthetic_set_is_resampled_with_the_unets_trained_on_it(finished_run, tmp_path, monkeypatch):
    import shutil

    from foscu_bench.runner import RunConfig, prepare

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / "synthetic" / "classic-aug" / "seed-1.npz").unlink()
    run = prepare(RunConfig(generators=("classic-aug",), seeds=2, profile="tiny", controls=False), copy.parent)
    pending = {p.step.name for p in run.plan() if not p.done}
    assert pending == {"sample/classic-aug/seed-1", "unet/classic-aug/seed-1"}


def test_small_synthetic_dose_samples_the_rest_for_fidelity(tmp_path, monkeypatch):
    """--synthetic 2 x 2 seeds holds fewer volumes than the fidelity comparison needs (half the real cases): the
    generator samples the rest under a seed no training set uses, instead of the run failing at fidelity."""
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))
    main(["run", "--generator", "classic-aug", "--seeds", "2", "--profile", "tiny", "--quiet", "--no-controls",
          "--synthetic", "2", "--out", str(tmp_path / "runs"), "--workers", "1"])
    run_dir = _run_dir(tmp_path / "runs")
    (record,) = [json.loads(p.read_text()) for p in (run_dir / "steps").glob("fidelity--*.json")]
    fidelity = json.loads((run_dir / "fidelity.json").read_text())
    needed = fidelity["n_per_set"]
    assert record["sampled_for_fidelity"] == needed - 4 > 0
    assert fidelity["generators"]["classic-aug"]["n_synthetic"] == needed


def test_fidelity_is_recomputed_for_a_finished_run_without_touching_its_unets(finished_run, tmp_path, monkeypatch):
    """A run committed without volumes or step records (leaderboards/runs) gets its fidelity.json recomputed:
    the generator comes from the fit cache, samples its fidelity volumes anew, metrics and stats stay as they were."""
    import shutil

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    copy = tmp_path / "runs" / run_dir.name
    copy.mkdir(parents=True)
    for name in ("manifest.json", "metrics.csv", "stats.json", "fidelity.json"):
        shutil.copy(run_dir / name, copy / name)
    before = {name: (copy / name).read_bytes() for name in ("metrics.csv", "stats.json")}
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["extractor"] = "foscu-ae3d"  # made with the old default: the recompute uses the current one
    (copy / "manifest.json").write_text(json.dumps(manifest))
    main(["fidelity", str(copy)])
    fidelity = json.loads((copy / "fidelity.json").read_text())
    original = json.loads((run_dir / "fidelity.json").read_text())
    entry = fidelity["generators"]["classic-aug"]
    assert entry["n_synthetic"] == original["generators"]["classic-aug"]["n_synthetic"]
    assert fidelity["extractor"]["name"] == "foscu-ae3d-corpus"
    record = json.loads(next((copy / "steps").glob("fidelity--classic-aug*.json")).read_text())
    assert record["sampled_for_fidelity"] == fidelity["n_per_set"]  # no stored volumes: all sampled anew
    assert fidelity["real_vs_real"] == original["real_vs_real"]  # same held-out reference, same floor
    assert {name: (copy / name).read_bytes() for name in before} == before
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["config"]["extractor"] == "foscu-ae3d-corpus"
    assert manifest["invocations"][-1]["fidelity_only"] and manifest["invocations"][-1]["steps_run"] == 1


def test_a_changed_generator_redoes_its_steps_not_the_real_only_ones(finished_run, tmp_path, monkeypatch):
    """Re-running the same command after the generator's code or config changed must not report the old
    generator's numbers: its fit, samples, U-Nets and fidelity are pending again; real-only U-Nets stay done."""
    import shutil

    from foscu_bench.runner import RunConfig, fit_cache, prepare

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    config = RunConfig(generators=("classic-aug",), seeds=2, profile="tiny", controls=False)
    assert all(p.done for p in prepare(config, copy.parent).plan())
    original = fit_cache.generator_provenance

    def edited(ctx, name):
        provenance = dict(original(ctx, name))
        if name == "classic-aug":
            provenance["code_fingerprint"] = "edited-source"
        return provenance

    monkeypatch.setattr(fit_cache, "generator_provenance", edited)
    pending = {p.step.name for p in prepare(config, copy.parent).plan() if not p.done}
    assert pending == {"fit/classic-aug", "sample/classic-aug/seed-0", "sample/classic-aug/seed-1",
                       "unet/classic-aug/seed-0", "unet/classic-aug/seed-1", "fidelity/classic-aug"}
