"""U-Net steps cached across runs by the content of everything they are computed from.

A grid split into several runs (one per generator, a calibration run, a rerun with another generator) would
otherwise train the same real-only U-Nets, and the same control U-Nets, in every run. The key holds what the
trained network and its test rows depend on: the profile's content, arm, seed, dataset fingerprint, the level's
training cases, the test cases, the synthetic set's SHA-256 (for arms with synthetic data) and share, device kind,
kernel class (AVX2 and AVX-512 CPUs give different fp32 numbers for the same seed), CPU threads, the U-Net step
version and a fingerprint of the training and evaluation code. The value is the step record (per-case rows,
losses, timings), not the network: the run needs nothing else.
"""

from __future__ import annotations

import json

from foscu_bench.generator import modules_fingerprint
from foscu_bench.hashing import json_hash
from foscu_bench.store import Step, atomic_write_json

UNET_CACHE_VERSION = 1
CODE_MODULES = ["foscu_bench.segmentation"]
"""Training, sliding-window prediction and the per-case metrics it imports (the AST closure adds those)."""


def unet_cache_key(ctx, step: Step, synthetic_sha256: str | None, threads: int) -> dict:
    from foscu_bench.provenance import kernel_class
    from foscu_bench.runner.plan import STEP_VERSIONS

    key = ("unet_code",)
    if key not in ctx.memo:
        ctx.memo[key] = modules_fingerprint(CODE_MODULES)
    return {"profile": ctx.profile.to_dict(), "arm": step.arm, "seed": step.seed, "dataset": ctx.fingerprint,
            "train": ctx.train_ids(step.n_real, step.draw) if step.arm != "synthetic" else [],
            "test": list(ctx.split.test), "synthetic_sha256": synthetic_sha256,
            "synthetic_fraction": ctx.config.synthetic_fraction if synthetic_sha256 else None,
            "device": ctx.device.type, "kernels": kernel_class(ctx.device), "threads": threads,
            "step_version": STEP_VERSIONS["unet"], "code": ctx.memo[key], "cache_version": UNET_CACHE_VERSION}


def _path(key: dict):
    from foscu_bench.data.cache import cache_root

    return cache_root() / "unets" / f"{json_hash(key)}.json"


def cached_unet(ctx, step: Step, synthetic_sha256: str | None, threads: int) -> dict | None:
    """The stored record of an identical U-Net step, relabelled for this run's step; None when there is none."""
    path = _path(unet_cache_key(ctx, step, synthetic_sha256, threads))
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    generator = step.generator or "real-only"
    record["rows"] = [{**row, "generator": generator, "arm": step.arm, "draw": step.draw} for row in record["rows"]]
    return {**record, "cache_hit": True}


def store_unet(ctx, step: Step, synthetic_sha256: str | None, threads: int, record: dict) -> None:
    atomic_write_json(_path(unet_cache_key(ctx, step, synthetic_sha256, threads)), record)
