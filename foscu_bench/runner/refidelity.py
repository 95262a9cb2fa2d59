"""Recompute a finished run's fidelity under the current protocol, without touching its U-Net results.

Fidelity is its own concern: a new extractor, a new reference or a new metric must not retrain a single U-Net.
The run's configuration is read back from its manifest (the directory name must still match it: same dataset
fingerprint, same identity), every fidelity step that is missing or out of date is computed (the generators come
from the fit cache, or are fitted again, deterministically), and fidelity.json is rewritten. Runs committed
without their synthetic volumes (``leaderboards/runs``) sample the fidelity volumes anew under
``FIDELITY_TOP_UP_SEED``; the record says how many (``sampled_for_fidelity``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import fields
from pathlib import Path

from foscu_bench.errors import ConfigError
from foscu_bench.runner.config import RunConfig


def config_from_manifest(manifest: dict, **overrides) -> RunConfig:
    """The ``RunConfig`` a manifest was made from (``generators`` = the asked ones; controls come back by flag)."""
    stored = dict(manifest["config"])
    stored["generators"] = stored.get("asked_generators", stored["generators"])
    names = {f.name for f in fields(RunConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in names}
    return RunConfig(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


def recompute_fidelity(run_dir: str | Path, extractor: str | None = None, extractor_weights: str | None = None,
                       reporter=None) -> dict:
    """Compute the run's out-of-date fidelity steps, rewrite fidelity.json; returns the new document."""
    import torch

    from foscu_bench.metrics.features import DEFAULT_EXTRACTOR
    from foscu_bench.results import _read_json
    from foscu_bench.runner.assemble import fidelity_document
    from foscu_bench.runner.context import prepare
    from foscu_bench.runner.executors import run_fidelity
    from foscu_bench.runner.manifest import now, write_manifest
    from foscu_bench.runner.plan import stamp_record, step_record, steps
    from foscu_bench.store import RunLayout, atomic_write_json, exclusive_lock, remove_stale_temporaries

    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    if not layout.manifest.is_file():
        raise ConfigError(f"{run_dir}: no manifest.json, not a foscu-bench run directory")
    manifest = _read_json(layout.manifest)
    # the current protocol's extractor unless one is named: the run's own may be the one being replaced
    config = config_from_manifest(manifest, extractor=extractor or DEFAULT_EXTRACTOR,
                                  extractor_weights=extractor_weights)
    ctx = prepare(config, run_dir.parent, reporter)
    if ctx.directory.resolve() != run_dir.resolve():
        raise ConfigError(f"{run_dir}: its manifest now identifies run {ctx.run_id} (dataset or run identity "
                          f"changed since it was made); recompute fidelity only for a run of the current data")
    started = time.perf_counter()
    with exclusive_lock(ctx.layout.lock, what=f"run directory {ctx.directory}"):
        remove_stale_temporaries(ctx.directory)
        pending = [s for s in steps(ctx) if s.kind == "fidelity" and step_record(ctx, s) is None]
        generators: dict = {}
        for step in pending:
            step_started = time.perf_counter()
            record = run_fidelity(ctx, step, generators)
            ctx.layout.write_step(step, stamp_record(record, step, torch.get_num_threads()))
            manifest["steps"][step.name] = {"status": "done", "seconds": time.perf_counter() - step_started}
        document = fidelity_document(ctx)
        atomic_write_json(ctx.layout.fidelity, document)
        manifest["config"]["extractor"] = config.extractor
        manifest["config"]["extractor_weights"] = config.extractor_weights
        manifest.setdefault("invocations", []).append({
            "started": now(), "argv": sys.argv, "fidelity_only": True, "steps_run": len(pending),
            "wall_seconds": time.perf_counter() - started})
        write_manifest(ctx, manifest)
    return document
