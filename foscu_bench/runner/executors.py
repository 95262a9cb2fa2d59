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

from foscu_bench.generator import sample_validated
from foscu_bench.hashing import json_hash
from foscu_bench.runner.fit_cache import downsample, fit_entry, fitted_generator
from foscu_bench.runner.plan import step_record
from foscu_bench.store import Step, file_sha256, save_synthetic


def _generator(ctx, name: str, generators: dict):
    """The fitted generator, loaded once per executor process."""
    if name not in generators:
        generators[name] = fitted_generator(ctx, name)
    return generators[name]


def run_fit(ctx, step: Step, generators: dict) -> dict:
    _generator(ctx, step.generator, generators)
    entry = fit_entry(ctx, step.generator)
    fit = json.loads(entry.record.read_text())
    return {"fit": {k: v for k, v in fit.items() if k != "train_case_ids"}, "cache_entry": str(entry.directory),
            "seconds": fit["fit_seconds"]}


def run_sample(ctx, step: Step, generators: dict) -> dict:
    generator = _generator(ctx, step.generator, generators)
    with ctx.reporter.task(f"sample {step.generator} seed {step.seed}", ctx.n_synthetic) as update:
        started = time.perf_counter()
        pairs = sample_validated(generator, ctx.n_synthetic, step.seed, ctx.profile.shape, progress=update)
        seconds = time.perf_counter() - started
    path = ctx.layout.synthetic(step.generator, step.seed)
    save_synthetic(path, pairs)
    return {"seconds": seconds, "seconds_per_volume": seconds / len(pairs), "n": len(pairs), "seed": step.seed,
            "sha256": file_sha256(path), "liver_ml": [p.liver_volume_ml for p in pairs],
            "n_with_tumour": sum(p.has_tumour for p in pairs)}


def run_unet(ctx, step: Step, generators: dict) -> dict:
    from foscu_bench.segmentation import evaluate, train_segmentation

    settings = ctx.profile.segmentation
    synthetic = ctx.synthetic_pairs(step.generator, step.seed) if step.generator else []
    label = f"U-Net {step.generator or 'real-only'}{' (synthetic only)' if step.arm == 'synthetic' else ''} " \
            f"seed {step.seed}"
    with ctx.reporter.task(label, settings.iterations) as update:
        result = train_segmentation(ctx.pairs("train") if step.arm != "synthetic" else [], synthetic, step.arm,
                                    settings, seed=step.seed, device=str(ctx.device),
                                    progress=lambda it, loss: update(it, info=f"loss {loss:.3f}"))
        started = time.perf_counter()
        rows = evaluate(result.model, ctx.pairs("test"), settings)
        eval_seconds = time.perf_counter() - started
    generator = step.generator or "real-only"
    rows = [{"generator": generator, "arm": step.arm, "seed": step.seed, **row} for row in rows]
    sample = step_record(ctx, Step("sample", step.generator, step.seed)) if step.generator else None
    return {"rows": rows, "synthetic_sha256": sample["sha256"] if sample else None,
            "losses": downsample(result.losses), "train_seconds": result.seconds, "eval_seconds": eval_seconds,
            "seconds": result.seconds + eval_seconds, "iterations": result.iterations, "n_real": result.n_real,
            "n_synthetic": result.n_synthetic, "device": result.device}


def run_fidelity(ctx, step: Step, generators: dict) -> dict:
    """FID/KID/MMD/MS-SSIM of the generator's synthetic volumes against the real volumes, with the floor."""
    from foscu_bench.metrics.fidelity import fidelity_report

    started = time.perf_counter()
    real = np.stack([p.image for p in ctx.pairs("all")])
    needed = len(real) // 2
    synthetic: list[np.ndarray] = []
    for seed in range(ctx.config.seeds):  # seeds in order until the matched n is reached
        synthetic += [p.image for p in ctx.synthetic_pairs(step.generator, seed)]
        if len(synthetic) >= needed:
            break
    extractor = feature_extractor(ctx)
    with ctx.reporter.task(f"fidelity {step.generator} ({extractor.name})", None):
        report = fidelity_report(np.stack(synthetic), real, extractor, seed=ctx.config.split_seed)
    return {"generator": step.generator, "extractor": {"name": extractor.name, **extractor.provenance},
            "report": report, "seconds": time.perf_counter() - started}


def feature_extractor(ctx):
    """The run's fidelity feature extractor (the offline default is trained on the training split and cached)."""
    from foscu_bench.metrics.features import get_extractor

    if "extractor" not in ctx.memo:
        train = np.stack([p.image for p in ctx.pairs("train")])
        ctx.memo["extractor"] = get_extractor(
            ctx.config.extractor, weights=ctx.config.extractor_weights, train_images=train,
            cache_key=json_hash({"dataset": ctx.fingerprint, "train": list(ctx.split.train)}),
            seed=ctx.config.fit_seed, device=str(ctx.device))
    return ctx.memo["extractor"]


EXECUTORS: dict[str, Callable[..., dict]] = {"fit": run_fit, "sample": run_sample, "unet": run_unet,
                                              "fidelity": run_fidelity}
