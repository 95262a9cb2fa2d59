"""The serial executor (the default): every pending step in order, in this process, then assembly."""

from __future__ import annotations

import sys
import time

from foscu_bench.runner.assemble import assemble
from foscu_bench.runner.executors import EXECUTORS
from foscu_bench.runner.manifest import build_manifest, now, write_manifest
from foscu_bench.runner.plan import STEP_VERSIONS, plan, step_timing_key
from foscu_bench.store import exclusive_lock
from foscu_bench.timings import record_time


def execute(ctx, argv: list[str] | None = None) -> dict:
    """Run every pending step, then assemble metrics.csv, stats.json, fidelity.json and the manifest.

    The run directory is locked while this process writes it; a second process is refused with one line.
    """
    from foscu_bench.provenance import peak_memory_mb

    ctx.directory.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(ctx.layout.lock, what=f"run directory {ctx.directory}"):
        started = time.perf_counter()
        manifest = build_manifest(ctx, status="running")
        manifest.setdefault("invocations", []).append({"started": now(), "argv": argv or sys.argv})
        write_manifest(ctx, manifest)
        pending = [p.step for p in plan(ctx) if not p.done]
        ctx.reporter.begin(len(pending))
        generators: dict[str, object] = {}
        for step in pending:
            step_started = time.perf_counter()
            record = EXECUTORS[step.kind](ctx, step, generators)
            record["step_version"] = STEP_VERSIONS[step.kind]
            ctx.layout.write_step(step, record)
            # a fit step's own wall time is ~0 when the fit came from the cache: record the fit's measured seconds
            seconds = record["fit"]["fit_seconds"] if step.kind == "fit" else time.perf_counter() - step_started
            record_time(step_timing_key(ctx, step), seconds)
            manifest["steps"][step.name] = {"status": "done", "seconds": record.get("seconds")}
            write_manifest(ctx, manifest)
            ctx.reporter.step_done()
        assemble(ctx)
        manifest = build_manifest(ctx, status="complete", previous=manifest)
        manifest["invocations"][-1].update(finished=now(), wall_seconds=time.perf_counter() - started,
                                           steps_run=len(pending), peak_memory_mb=peak_memory_mb())
        write_manifest(ctx, manifest)
    return manifest
