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
from foscu_bench.runner.config import RUN_SCHEMA_VERSION
from foscu_bench.runner.plan import step_record, steps
from foscu_bench.store import Step, atomic_write_json


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _generators(ctx) -> dict:
    out = {}
    for name, meta in ctx.metas.items():
        fit = step_record(ctx, Step("fit", name))
        samples = [r for r in (step_record(ctx, Step("sample", name, s)) for s in range(ctx.config.seeds)) if r]
        out[name] = {
            "kind": meta.kind, "target": meta.target, "citation": meta.citation, "reference": meta.reference,
            "conditioning": meta.conditioning,
            "config": fit["fit"]["config"] if fit else None,
            "settings": fit["fit"].get("settings") if fit else None,
            "code_fingerprint": fit["fit"].get("code_fingerprint") if fit else None,
            "n_parameters": fit["fit"]["n_parameters"] if fit else None,
            "fit_seconds": fit["fit"]["fit_seconds"] if fit else None,
            "fit_cache_key": Path(fit["cache_entry"]).name if fit else None,
            "sample_seconds_per_volume": (float(np.mean([r["seconds_per_volume"] for r in samples]))
                                          if samples else None)}
    return out


def build_manifest(ctx, status: str, previous: dict | None = None) -> dict:
    from foscu_bench.provenance import git_revision, hardware, versions

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
        "config": asdict(ctx.config) | {"generators": list(ctx.config.generators), "n_synthetic": ctx.n_synthetic,
                                        "device_resolved": str(ctx.device)},
        "profile": ctx.profile.to_dict(),
        "dataset": ctx.dataset.describe() | {"fingerprint": ctx.fingerprint},
        "split": ctx.split.to_dict(),
        "segmentation": {"metric_implementation": METRIC_IMPLEMENTATION, "nsd_tolerance_mm": settings.nsd_tolerance_mm,
                         "empty_mask_policy": empty_mask_policy(),
                         "seed_controls": "U-Net init, data order, augmentation, generator sampling seed"},
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
