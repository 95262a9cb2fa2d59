"""The executor loop: every pending step, in this process (``workers=1``) or in worker processes, then assembly.

Whoever computes a step, this process alone writes the run directory: each finished step's record (atomically,
which is what marks it done), the measured time and the manifest. So a run may be killed at any point, and the
scheduler (serial or ``parallel``) never changes a number: every step is seeded and trains with the same number
of CPU threads (``threads``, recorded) whatever the number of workers.
"""

from __future__ import annotations

import sys
import time

from foscu_bench.errors import ConfigError
from foscu_bench.runner.assemble import assemble
from foscu_bench.runner.executors import EXECUTORS
from foscu_bench.runner.fit_cache import fit_own_seconds
from foscu_bench.runner.manifest import build_manifest, now, write_manifest
from foscu_bench.runner.plan import plan, stamp_record, step_timing_key
from foscu_bench.store import Step, exclusive_lock, remove_stale_temporaries
from foscu_bench.timings import record_time, remove_stale_writes


EXECUTOR_NAMES = ("local", "dask")
"""``local``: this process (one worker) or a process pool (``runner.parallel``); ``dask``: ``runner.dask_executor``."""


def execute(ctx, argv: list[str] | None = None, workers: int = 1, threads: int | None = None,
            executor: str = "local", scheduler: str | None = None) -> dict:
    """Run every pending step, then assemble metrics.csv, stats.json, fidelity.json and the manifest.

    ``executor="local"``: ``workers`` > 1 runs independent steps in that many processes (``runner.parallel``);
    ``executor="dask"``: every step a Dask task, on a LocalCluster of ``workers`` processes or on the cluster of
    ``scheduler``. ``threads`` is the CPU threads each step computes with (None: ``default_threads``). The run
    directory is locked while this process writes it; a second process is refused with one line.
    """
    from foscu_bench.provenance import peak_memory_mb
    from foscu_bench.runner.parallel import default_threads, run_parallel

    if executor not in EXECUTOR_NAMES:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTOR_NAMES)}")
    if scheduler is not None and executor != "dask":
        raise ConfigError("--scheduler names a Dask scheduler: use it with --executor dask")
    threads = default_threads(ctx.device) if threads is None else threads
    ctx.directory.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(ctx.layout.lock, what=f"run directory {ctx.directory}"):
        remove_stale_temporaries(ctx.directory)  # left by a killed earlier invocation; we are the only writer
        remove_stale_writes()
        started = time.perf_counter()
        manifest = build_manifest(ctx, status="running")
        manifest.setdefault("invocations", []).append({"started": now(), "argv": argv or sys.argv,
                                                       "executor": executor, "workers": workers,
                                                       "threads_per_step": threads})
        write_manifest(ctx, manifest)
        pending = [p.step for p in plan(ctx) if not p.done]
        ctx.reporter.begin(len(pending))

        def finished(step: Step, record: dict, seconds: float) -> None:
            ctx.layout.write_step(step, stamp_record(record, step, threads))
            # a step taken from a cache took ~0 s: record a new fit's measured seconds, nothing for cached steps
            if not record.get("cache_hit"):
                record_time(step_timing_key(ctx, step),
                            fit_own_seconds(record["fit"]) if step.kind == "fit" else seconds)
            manifest["steps"][step.name] = {"status": "done", "seconds": record.get("seconds")}
            write_manifest(ctx, manifest)
            ctx.reporter.step_done()

        if executor == "dask" and pending:
            from foscu_bench.runner.dask_executor import run_dask

            manifest["invocations"][-1].update(run_dask(ctx, pending, threads, finished, scheduler, workers))
        elif workers > 1 and len(pending) > 1:
            run_parallel(ctx, pending, workers, threads, finished)
        else:
            run_serial(ctx, pending, threads, finished)
        assemble(ctx)
        manifest = build_manifest(ctx, status="complete", previous=manifest)
        manifest["invocations"][-1].update(finished=now(), wall_seconds=time.perf_counter() - started,
                                           steps_run=len(pending), peak_memory_mb=peak_memory_mb(),
                                           peak_memory_mb_largest_worker=peak_memory_mb("children"))
        write_manifest(ctx, manifest)
    return manifest


def run_serial(ctx, pending: list[Step], threads: int, finished) -> None:
    """Every step in order in this process, with ``threads`` CPU threads (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generators: dict[str, object] = {}
        for step in pending:
            started = time.perf_counter()
            record = EXECUTORS[step.kind](ctx, step, generators)
            finished(step, record, time.perf_counter() - started)
    finally:
        torch.set_num_threads(before)
