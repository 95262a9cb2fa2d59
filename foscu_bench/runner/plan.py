"""The steps of a run, which of them are done (resume checks), and measured time estimates for the rest.

A step is done when its record exists with the current step version and everything it was computed from is
unchanged: a fit, its samples and its fidelity only while they come from the fit the generator's current code and
config would make (the fit-cache key: editing a generator and re-running the same command redoes its steps
instead of reporting the old generator's numbers), a sample step only while its synthetic set matches the
recorded SHA-256, a U-Net on synthetic data only while that set is the one it was trained on, fidelity only for
the run's extractor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from foscu_bench.store import Step, file_sha256
from foscu_bench.timings import estimate, machine_id, timing_key

STEP_VERSIONS = {"fitpart": 1, "fit": 1, "sample": 1, "unet": 3, "fidelity": 4}
"""Bump one when its step's computation changes: older step files are then redone on resume."""


@dataclass
class PlannedStep:
    step: Step
    done: bool
    estimate_seconds: float | None


def steps(ctx) -> list[Step]:
    """Per real-data level: real-only U-Nets; then per generator and control: its fit parts (``fit_parts``), fit,
    samples, U-Nets (real+synthetic; optionally exposure-matched and synthetic-only), fidelity."""
    config = ctx.config
    seeds = range(config.seeds)
    arms = ["real+synthetic"] + (["real+synthetic-exposure"] if config.exposure_matched else []) + (
        ["synthetic"] if config.synthetic_only else [])
    out = []
    for n, d in ctx.levels():
        out += [Step("unet", None, s, "real", n, d) for s in seeds]
        for name in ctx.generators:
            out += [Step("fitpart", name, None, None, n, d, part) for part in ctx.fit_parts(name)]
            out.append(Step("fit", name, None, None, n, d))
            out += [Step("sample", name, s, None, n, d) for s in seeds]
            out += [Step("unet", name, s, arm, n, d) for arm in arms for s in seeds]
            out.append(Step("fidelity", name, None, None, n, d))
    return out


def step_record(ctx, step: Step) -> dict | None:
    """The record of a finished, still valid step; None when the step must (re)run."""
    record = ctx.memo.get(("step_record", step)) or ctx.layout.read_step(step)  # the first: a Dask dependency
    if record is None or record.get("step_version") != STEP_VERSIONS[step.kind]:
        return None
    if step.generator and step.kind != "unet" and recorded_fit_key(record) != current_fit_key(ctx, step):
        return None  # made by another version of the generator (code, config) than the one installed now
    if step.kind == "fidelity" and record.get("extractor", {}).get("name") != ctx.config.extractor:
        return None
    if step.kind == "sample" and not _synthetic_intact(ctx, step, record):
        return None  # the synthetic set was deleted or changed: sample again
    if step.kind == "unet" and step.generator and "synthetic_sha256" in record:
        sample = step_record(ctx, Step("sample", step.generator, step.seed, None, step.n_real, step.draw))
        if sample is None or sample["sha256"] != record["synthetic_sha256"]:
            return None  # trained on a synthetic set that no longer exists
    return record


def current_fit_key(ctx, step: Step) -> str:
    """The fit-cache key of the fit behind ``step`` (the name of its cache entry) with the code installed now."""
    from foscu_bench.runner.fit_cache import fit_entry

    return fit_entry(ctx, step.generator, step.n_real, step.draw).directory.name


def recorded_fit_key(record: dict) -> str | None:
    """The fit key a fit, sample or fidelity record was made with (fit records before it was stored: the name of
    their cache entry; older sample and fidelity records have none and are redone)."""
    if "fit_key" in record:
        return record["fit_key"]
    return Path(record["cache_entry"]).name if "cache_entry" in record else None


def stamp_record(record: dict, step: Step, threads: int) -> dict:
    """What every stored step record carries besides its results: the step version and the CPU threads."""
    record["step_version"] = STEP_VERSIONS[step.kind]
    record["threads"] = threads
    return record


def _synthetic_intact(ctx, step: Step, record: dict) -> bool:
    path = ctx.layout.synthetic(step.generator, step.seed, step.n_real, step.draw)
    key = ("sha256", str(path), path.stat().st_mtime_ns if path.is_file() else None)
    if key not in ctx.memo:
        ctx.memo[key] = path.is_file() and file_sha256(path) == record.get("sha256")
    return bool(ctx.memo[key])


def plan(ctx, threads: int | None = None) -> list[PlannedStep]:
    """Every step, whether it is done, and its estimate; ``threads`` per step as the run will use (None: default)."""
    return [PlannedStep(s, step_record(ctx, s) is not None, estimate_seconds(ctx, s, threads)) for s in steps(ctx)]


def step_timing_key(ctx, step: Step) -> str:
    """What a step's time depends on: its kind, the profile content, the device and machine, and the generator
    (with the sample count for samples). U-Net arms of one profile share a key (same budget)."""
    parts = {"kind": step.kind, "profile": ctx.profile.to_dict(), "machine": machine_id(ctx.device.type),
             "n_real": ctx.n_train(step.n_real), "arm": step.arm}
    if step.kind in ("fitpart", "fit", "sample"):
        parts["generator"] = ctx.fit_source(step.generator) if step.kind == "fitpart" else step.generator
    if step.kind == "fitpart":
        parts["part"] = step.part
    if step.kind == "sample":
        parts["n"] = ctx.n_synthetic
    if step.kind == "fidelity":
        parts["extractor"] = ctx.config.extractor
    return timing_key(**parts)


def estimate_seconds(ctx, step: Step, threads: int | None = None) -> float | None:
    """Median of this machine's measured times for such a step; 0 for a fit already in the cache, and for a
    real-only U-Net whose record is in the U-Net cache (U-Nets on synthetic data are keyed by sets not sampled
    yet, so they are estimated in full). A fit taken from another generator's costs that fit's time, counted once:
    in its parts' steps or, where the other generator is in the run, in its steps."""
    if step.kind in ("fit", "fitpart"):
        from foscu_bench.runner.fit_cache import fit_entry

        source = ctx.fit_source(step.generator)
        if fit_entry(ctx, step.generator, step.n_real, step.draw).done or (
                fit_entry(ctx, source, step.n_real, step.draw).done):
            return 0.0
        if step.kind == "fit" and source != step.generator:
            own = ctx.fit_parts(step.generator) or ctx.fit_source_in_run(step.generator)
            return 0.0 if own else estimate(step_timing_key(ctx, Step("fit", source, None, None, step.n_real,
                                                                       step.draw)))
    if step.kind == "unet" and step.generator is None:
        from foscu_bench.runner.parallel import default_threads
        from foscu_bench.runner.unet_cache import cached_unet

        if cached_unet(ctx, step, None, threads or default_threads(ctx.device)) is not None:
            return 0.0
    return estimate(step_timing_key(ctx, step))
