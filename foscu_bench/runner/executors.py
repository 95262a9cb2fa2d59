"""One executor per step kind: ``EXECUTORS[step.kind](ctx, step, generators) -> record``.

An executor computes one step and returns its record (JSON); it writes nothing but the files the step owns
(a sample step its synthetic set). The caller stores the record atomically, which is what marks the step done,
so any scheduler that respects the dependencies (fit -> sample -> U-Net; sample -> fidelity) can run them.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np

from foscu_bench.faults import kill_point
from foscu_bench.generator import sample_validated
from foscu_bench.hashing import json_hash
from foscu_bench.runner.fit_cache import downsample, fit_entry, fitted_generator
from foscu_bench.runner.plan import current_fit_key, step_record
from foscu_bench.store import Step, file_sha256, save_synthetic


def _generator(ctx, step: Step, generators: dict):
    """The fitted generator of the step's level, loaded once per executor process."""
    key = (step.generator, step.n_real, step.draw)
    if key not in generators:
        generators[key] = fitted_generator(ctx, step.generator, step.n_real, step.draw)
    return generators[key]


def run_fit(ctx, step: Step, generators: dict) -> dict:
    """Fit (or take from the fit cache) the level's generator; ``cache_hit`` marks a fit this step did not make,
    so its seconds are not recorded as a new measurement (nor a fit taken from another generator's)."""
    entry = fit_entry(ctx, step.generator, step.n_real, step.draw)
    cached = entry.done or ctx.fit_source(step.generator) != step.generator
    _generator(ctx, step, generators)
    fit = json.loads(entry.record.read_text())
    return {"fit": {k: v for k, v in fit.items() if k != "train_case_ids"}, "cache_entry": str(entry.directory),
            "fit_key": entry.directory.name, "seconds": fit["fit_seconds"], **({"cache_hit": True} if cached else {})}


def run_fit_part(ctx, step: Step, generators: dict) -> dict:
    """Train one part of the level's fit into its cache entry's work directory (nothing when the fit is cached); of
    the fit the generator takes (``RunContext.fit_source``), where it takes another's."""
    from foscu_bench.runner.fit_cache import fit_part_into

    owner = ctx.fit_source(step.generator)
    entry = fit_entry(ctx, owner, step.n_real, step.draw)
    seconds = None if entry.done else fit_part_into(ctx, owner, step.part, entry, step.n_real, step.draw)
    return {"part": step.part, "fit_key": entry.directory.name, "cache_entry": str(entry.directory),
            "seconds": seconds, **({"cache_hit": True} if seconds is None else {})}


def run_sample(ctx, step: Step, generators: dict) -> dict:
    generator = _generator(ctx, step, generators)
    with ctx.reporter.task(f"sample {step.generator} seed {step.seed}", ctx.n_synthetic) as update:
        started = time.perf_counter()
        pairs = sample_validated(generator, ctx.n_synthetic, step.seed, ctx.profile.shape, progress=update)
        seconds = time.perf_counter() - started
    path = ctx.layout.synthetic(step.generator, step.seed, step.n_real, step.draw)
    save_synthetic(path, pairs)
    return {"seconds": seconds, "seconds_per_volume": seconds / len(pairs), "n": len(pairs), "seed": step.seed,
            "fit_key": current_fit_key(ctx, step), "sha256": file_sha256(path), "liver_ml": [p.liver_volume_ml for p in pairs],
            "n_with_tumour": sum(p.has_tumour for p in pairs)}


def unet_settings(ctx, step: Step, n_real: int, n_synthetic: int):
    """The profile's U-Net settings; the exposure-matched arm trains 1 / (1 - synthetic share) times longer, so it
    sees each real case as often as the real-only arm (the default real+synthetic arm is compute-matched)."""
    from dataclasses import replace

    settings = ctx.profile.segmentation
    if step.arm != "real+synthetic-exposure":
        return settings
    share = ctx.config.synthetic_fraction
    share = n_synthetic / (n_real + n_synthetic) if share is None else share
    return replace(settings, iterations=int(round(settings.iterations / (1.0 - share))))


def run_unet(ctx, step: Step, generators: dict) -> dict:
    """Train and evaluate one U-Net, or take the record of an identical one from the cache (``unet_cache``)."""
    import torch

    from foscu_bench.runner.unet_cache import cached_unet, store_unet

    sample = (step_record(ctx, Step("sample", step.generator, step.seed, None, step.n_real, step.draw))
              if step.generator else None)
    synthetic_sha256 = sample["sha256"] if sample else None
    threads = torch.get_num_threads()
    cached = cached_unet(ctx, step, synthetic_sha256, threads)
    if cached is not None:
        return cached
    record = _train_unet(ctx, step)
    record["synthetic_sha256"] = synthetic_sha256
    store_unet(ctx, step, synthetic_sha256, threads, record)
    return record


def _train_unet(ctx, step: Step) -> dict:
    from foscu_bench.runner.parallel import step_loader_workers
    from foscu_bench.segmentation import evaluate, train_segmentation

    real = ctx.pairs("train", step.n_real, step.draw) if step.arm != "synthetic" else []
    synthetic = ctx.synthetic_pairs(step.generator, step.seed, step.n_real, step.draw) if step.generator else []
    settings = unet_settings(ctx, step, len(real), len(synthetic))
    arm = "real+synthetic" if step.arm == "real+synthetic-exposure" else step.arm
    label = f"U-Net {step.generator or 'real-only'} ({step.arm}, {ctx.n_train(step.n_real)} real) seed {step.seed}"
    with ctx.reporter.task(label, settings.iterations * settings.members) as update:
        result = train_segmentation(real, synthetic, arm, settings, seed=step.seed, device=str(ctx.device),
                                    synthetic_fraction=ctx.config.synthetic_fraction,
                                    loader_workers=step_loader_workers(ctx.device),
                                    progress=lambda it, loss: _unet_progress(update, it, loss))
        started = time.perf_counter()
        rows = evaluate(result.model, ctx.pairs("test"), ctx.profile.segmentation)
        eval_seconds = time.perf_counter() - started
    generator = step.generator or "real-only"
    rows = [{"generator": generator, "arm": step.arm, "n_real": ctx.n_train(step.n_real), "draw": step.draw,
             "seed": step.seed, **row} for row in rows]
    return {"rows": rows, "losses": downsample(result.losses), "train_seconds": result.seconds,
            "eval_seconds": eval_seconds, "seconds": result.seconds + eval_seconds, "iterations": result.iterations,
            "n_real": result.n_real, "n_synthetic": result.n_synthetic, "real_exposures": result.real_exposures,
            "device": result.device, "precision": result.precision, "sample_stream": result.sample_stream,
            "loader_workers": result.loader_workers}


def _unet_progress(update, iteration: int, loss: float) -> None:
    kill_point("unet.iteration")  # crash-safety tests: a process killed in the middle of a U-Net training
    update(iteration, info=f"loss {loss:.3f}")


FIDELITY_TOP_UP_SEED = 1_000_003
"""Seed of the volumes a generator samples for fidelity alone: no training seed (0 .. seeds-1) ever uses it."""


def run_fidelity(ctx, step: Step, generators: dict) -> dict:
    """FID/FD-infinity/KID/PRDC/MS-SSIM, memorisation and image-label consistency of a generator's synthetic
    volumes against held-out real volumes, beside the held-out-vs-held-out floor at the same n."""
    from foscu_bench.metrics.fidelity import fidelity_report
    from foscu_bench.runner.consistency import consistency_report

    started = time.perf_counter()
    held_out = np.stack([p.image for p in ctx.pairs("held_out")])
    needed = len(held_out) // 2
    synthetic = []
    for seed in range(ctx.config.seeds):  # seeds in order until the matched n is reached
        if ctx.layout.synthetic(step.generator, seed, step.n_real, step.draw).is_file():  # absent in committed runs
            synthetic += ctx.synthetic_pairs(step.generator, seed, step.n_real, step.draw)
        if len(synthetic) >= needed:
            break
    top_up = max(0, needed - len(synthetic))
    if top_up:  # fewer stored volumes than fidelity needs: the generator samples the rest for fidelity only
        generator = _generator(ctx, step, generators)
        synthetic += sample_validated(generator, top_up, FIDELITY_TOP_UP_SEED, ctx.profile.shape)
    synthetic = synthetic[:needed]
    train = ctx.pairs("train", step.n_real, step.draw)
    extractor = feature_extractor(ctx, step.n_real, step.draw)
    with ctx.reporter.task(f"fidelity {step.generator} ({extractor.name})", None):
        report = fidelity_report(np.stack([p.image for p in synthetic]), held_out, extractor,
                                 seed=ctx.config.split_seed, train_images=np.stack([p.image for p in train]),
                                 train_ids=[p.case_id for p in train])
        kill_point("fidelity.report")  # crash-safety tests: killed with the metrics computed, not stored
        report["consistency"] = consistency_report(ctx, synthetic)
    return {"generator": step.generator, "fit_key": current_fit_key(ctx, step),
            "extractor": {"name": extractor.name, **extractor.provenance}, "report": report, "sampled_for_fidelity": top_up, "held_out_ids": ctx.held_out_ids(),
            "seconds": time.perf_counter() - started}


def feature_extractor(ctx, n_real: int | None = None, draw: int = 0):
    """The run's fidelity feature extractor: the shipped corpus extractor by default (learned from no case of the
    run); the ``foscu-ae3d`` alternative is trained on the level's training cases only, and cached."""
    from foscu_bench.metrics.features import EXTRACTORS, get_extractor

    spec = EXTRACTORS.get(ctx.config.extractor)
    key = ("extractor", n_real, draw) if spec is not None and spec.needs_training_data else ("extractor",)
    if key not in ctx.memo:
        train = (np.stack([p.image for p in ctx.pairs("train", n_real, draw)])
                 if spec is not None and spec.needs_training_data else None)
        ctx.memo[key] = get_extractor(
            ctx.config.extractor, weights=ctx.config.extractor_weights, train_images=train,
            cache_key=json_hash({"dataset": ctx.fingerprint, "train": ctx.train_ids(n_real, draw)}),
            seed=ctx.config.fit_seed, device=str(ctx.device))
    return ctx.memo[key]


EXECUTORS: dict[str, Callable[..., dict]] = {"fitpart": run_fit_part, "fit": run_fit, "sample": run_sample,
                                              "unet": run_unet, "fidelity": run_fidelity}
