"""manifest.json: what a run is (config, profile, dataset, split, generators with their resolved configs and code
fingerprints), what produced it (versions, git, hardware) and how far it got (status and seconds per step)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from foscu_bench.comparability import PROTOCOL_VERSION
from foscu_bench.metrics.segmentation import METRIC_IMPLEMENTATION
from foscu_bench.metrics.spec import empty_mask_policy
from foscu_bench.precision import resolve_precision
from foscu_bench.runner.config import RUN_SCHEMA_VERSION
from foscu_bench.runner.plan import step_record, steps
from foscu_bench.store import Step, atomic_write_json


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _generators(ctx) -> dict:
    """Per generator: what it is, its resolved config and code fingerprint, fit and sampling costs per level."""
    out = {}
    for name, meta in ctx.metas.items():
        fits, per_volume = {}, {}
        for n, d in ctx.levels():
            level = (ctx.n_train(n), d)
            fit = step_record(ctx, Step("fit", name, None, None, n, d))
            if fit:
                fits[level] = fit
            samples = [r for r in (step_record(ctx, Step("sample", name, s, None, n, d))
                                   for s in range(ctx.config.seeds)) if r]
            if samples:
                per_volume[level] = float(np.mean([r["seconds_per_volume"] for r in samples]))
        last = fits[max(fits, key=lambda k: (k[0], -k[1]))] if fits else None  # the largest level, as results
        out[name] = {
            "kind": meta.kind, "target": meta.target, "citation": meta.citation, "reference": meta.reference,
            "conditioning": meta.conditioning,
            "config": last["fit"]["config"] if last else None,
            "settings": last["fit"].get("settings") if last else None,
            "code_fingerprint": last["fit"].get("code_fingerprint") if last else None,
            "n_parameters": last["fit"]["n_parameters"] if last else None,
            "fit_seconds": last["fit"]["fit_seconds"] if last else None,
            "fit_cache_key": Path(last["cache_entry"]).name if last else None,
            **({"fit_from": last["fit"]["fit_from"]} if last and "fit_from" in last["fit"] else {}),
            "sample_seconds_per_volume": float(np.mean(list(per_volume.values()))) if per_volume else None,
            "fit_seconds_by_level": {_level_name(k): v["fit"]["fit_seconds"] for k, v in fits.items()},
            "sample_seconds_per_volume_by_level": {_level_name(k): v for k, v in per_volume.items()}}
    return out


def _level_name(level: tuple[int, int]) -> str:
    return f"n-{level[0]}-draw-{level[1]}"


def _levels(ctx) -> list[dict]:
    return [{"n_real": ctx.n_train(n), "draw": d, "whole_split": n is None, "train": ctx.train_ids(n, d)}
            for n, d in ctx.levels()]


def build_manifest(ctx, status: str, previous: dict | None = None) -> dict:
    from foscu_bench.provenance import git_revision, hardware, kernel_class, versions

    path = ctx.layout.manifest
    previous = previous or (json.loads(path.read_text()) if path.is_file() else {})
    step_status, timings = {}, {}
    for s in steps(ctx):
        record = step_record(ctx, s)
        step_status[s.name] = {"status": "done" if record else "pending",
                               "seconds": record.get("seconds") if record else None}
        if record and record.get("seconds") is not None:
            timings[s.kind] = timings.get(s.kind, 0.0) + float(record["seconds"])
    settings = ctx.profile.segmentation
    return {
        "schema_version": RUN_SCHEMA_VERSION, "protocol_version": PROTOCOL_VERSION, "run_id": ctx.run_id,
        "status": status,
        "created": previous.get("created", now()),
        "config": asdict(ctx.config) | {"generators": list(ctx.generators),
                                        "asked_generators": list(ctx.config.generators),
                                        "n_synthetic": ctx.n_synthetic, "device_resolved": str(ctx.device)},
        "real_data_levels": _levels(ctx),
        "profile": ctx.profile.to_dict(),
        "dataset": ctx.dataset.describe() | {"fingerprint": ctx.fingerprint},
        "split": ctx.split.to_dict(),
        "segmentation": {"metric_implementation": METRIC_IMPLEMENTATION, "nsd_tolerance_mm": settings.nsd_tolerance_mm,
                         "empty_mask_policy": empty_mask_policy(),
                         "seed_controls": "U-Net init, data order, augmentation, generator sampling seed",
                         # the precision the U-Nets train in on this machine (``auto`` resolves by CPU): part of the
                         # instrument, so in the comparability key
                         "precision": resolve_precision(ctx.device, settings.precision), "members": settings.members,
                         # the kernels the U-Nets ran on (CPU vector ISA or GPU model): the same seed gives other
                         # numbers on another class, so runs from two classes form two groups instead of refusing
                         "kernels": previous.get("segmentation", {}).get("kernels", kernel_class(ctx.device))},
        "generators": _generators(ctx),
        "versions": previous.get("versions", versions()),
        "git": previous.get("git", git_revision()),
        "hardware": previous.get("hardware", hardware()),
        "timings_seconds": timings,
        "steps": step_status,
        "invocations": previous.get("invocations", []),
    }


def write_manifest(ctx, manifest: dict) -> None:
    manifest["updated"] = now()
    atomic_write_json(ctx.layout.manifest, manifest)
