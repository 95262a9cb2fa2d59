"""The Dask executor: each pending step is one Dask task whose dependencies are its steps' tasks.

``foscu-bench run ... --executor dask`` starts a ``distributed.LocalCluster`` of ``--workers`` worker processes (one
thread each), or connects to a running scheduler (``--scheduler tcp://...``, for example one started by
dask-jobqueue's ``SLURMCluster``). Dask does the scheduling, the retries of steps whose worker died and the data
movement of the (small) step records between tasks; nothing here schedules.

Single-writer design (why no cross-machine locks are needed for the run directory): a worker computes a step and
returns its record; only the driver (this process) writes step records, ``manifest.json`` and the assembled
results, under the run directory's lock. A worker writes only what its step owns, each file atomically (temporary
file + rename): a sample step its synthetic set, a fit its fit-cache entry, a U-Net its content-addressed cache
record. One run has exactly one task per such file, so no two workers of a run write the same path; a retried
step rewrites identical content. Only the fit cache is shared between *runs*: its per-entry ``flock`` holds
across machines where the shared filesystem supports it (NFSv4, Lustre mounted with ``-o flock``, GPFS); where
it does not, let one run at a time fill a cache (README, "Running on a cluster").

Numbers do not depend on the executor: every step is seeded and computes with the same number of CPU threads
(``threads``, set in the worker before each step), so metrics.csv, stats.json and fidelity.json are byte-identical
to the serial executor's (``tests/test_dask_executor.py``).
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import count
from typing import Callable, Iterator

from foscu_bench.errors import ConfigError
from foscu_bench.store import Step

PROGRESS_TOPIC = "foscu-bench-progress"
"""Dask event topic on which workers publish the progress of the step they compute."""

PROGRESS_INTERVAL_S = 0.5
"""At most this often a worker sends a task's progress (the final state is always sent)."""


@dataclass(frozen=True)
class WorkerPayload:
    """What a worker needs to open the run: the config, where runs and caches live, threads per step."""

    config: object
    out: str
    cache: str
    threads: int
    run_id: str
    code: str


def run_dask(ctx, pending: list[Step], threads: int, finished: Callable[[Step, dict, float], None],
             scheduler: str | None = None, workers: int = 1) -> dict:
    """Run ``pending`` as a Dask graph; ``finished(step, record, seconds)`` here as each step ends.

    Without ``scheduler`` a LocalCluster of ``workers`` processes is started (and stopped at the end); with one,
    the run waits for ``workers`` workers of that cluster. On a step's error the steps not finished are cancelled
    and the error raised: finished steps are stored, so a rerun resumes. Returns what the manifest records about
    the cluster.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ModuleNotFoundError:
        raise ConfigError("--executor dask needs Dask's distributed package: pip install 'foscu-bench[dask]'") from None

    from foscu_bench.data.cache import cache_root
    from foscu_bench.runner.parallel import KIND_PRIORITY, step_dependencies

    on_gpu = ctx.device.type == "cuda"
    with ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                resources={"GPU": 1} if on_gpu else None, silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
            _wait_for_workers(client, workers, ctx.reporter)
        code = package_fingerprint()
        check_workers(client, on_gpu, code)
        forward = stack.enter_context(_forwarded_progress(ctx.reporter, ctx.run_id))
        client.subscribe_topic(PROGRESS_TOPIC, forward)
        stack.callback(client.unsubscribe_topic, PROGRESS_TOPIC)

        payload = WorkerPayload(config=ctx.config, out=str(ctx.directory.parent), cache=str(cache_root()),
                                threads=threads, run_id=ctx.run_id, code=code)
        invocation = uuid.uuid4().hex[:8]  # a key of an earlier, killed driver may linger on a shared scheduler
        futures: dict[Step, object] = {}
        for step in pending:  # plan order: every step after the steps it depends on
            deps = [futures[d] for d in step_dependencies(ctx, step) if d in futures]
            futures[step] = client.submit(compute_step, payload, step, *deps,
                                          key=f"{ctx.run_id}/{step.name}/{invocation}",
                                          pure=False, priority=-KIND_PRIORITY[step.kind],
                                          resources={"GPU": 1} if on_gpu else None)
        steps = {future.key: step for step, future in futures.items()}
        error: BaseException | None = None
        for future in as_completed(list(futures.values())):
            if future.status != "finished":  # an error (or a cancellation): stop, a rerun resumes
                error = future.exception() if future.status == "error" else RuntimeError(
                    f"Dask step {future.key} was {future.status}")
                client.cancel([f for f in futures.values() if not f.done()])
                break
            _, record, seconds = future.result()
            finished(steps[future.key], record, seconds)
        workers_info = client.scheduler_info()["workers"]
        described = {"executor": "dask", "scheduler": scheduler or "LocalCluster",
                     "dask_workers": len(workers_info), "dask_version": _dask_version()}
    if error is not None:
        raise error
    return described


def _wait_for_workers(client, n: int, reporter) -> None:
    """Block until the cluster has ``n`` workers (batch jobs may queue for hours), showing how many are up."""
    with reporter.task(f"waiting for {n} Dask worker(s)", n) as update:
        while (up := len(client.scheduler_info()["workers"])) < n:
            update(up)
            time.sleep(1.0)


def check_workers(client, on_gpu: bool, code: str) -> None:
    """Refuse a cluster whose workers would compute different numbers or several steps in one process."""
    info = client.scheduler_info()["workers"]
    if not info:
        raise ConfigError("the Dask cluster has no workers")
    if on_gpu and not any(w.get("resources", {}).get("GPU") for w in info.values()):
        raise ConfigError("a GPU run needs Dask workers that declare a GPU resource (dask worker --resources GPU=1); "
                          "none does, so GPU steps would never start")
    if not on_gpu:
        crowded = sorted(addr for addr, w in info.items() if w.get("nthreads", 1) != 1)
        if crowded:
            raise ConfigError(f"Dask workers {crowded[:3]} run several threads; a CPU step sets its process's thread "
                              f"count and must have the process to itself: start workers with --nthreads 1 "
                              f"(SLURMCluster: processes equal to cores)")
    fingerprints = client.run(package_fingerprint)
    foreign = sorted(addr for addr, fp in fingerprints.items() if fp != code)
    if foreign:
        raise ConfigError(f"Dask workers {foreign[:3]} run other foscu-bench code than this process "
                          f"(package fingerprint differs from {code}); install the same revision on every node")


def package_fingerprint() -> str:
    """SHA-256 over every source file of foscu_bench, its generators and baselines: workers must run this code."""
    import hashlib
    from pathlib import Path

    import foscu_bench
    import foscu_bench.baselines
    import foscu_bench.generators

    digest = hashlib.sha256()
    for package in (foscu_bench, foscu_bench.generators, foscu_bench.baselines):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}".encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _dask_version() -> str:
    import distributed

    return distributed.__version__


# -- the worker side ---------------------------------------------------------------------------------------
_RUNS: dict[tuple[str, str], tuple[object, dict]] = {}
"""Per worker process: each run (output folder, run id) prepared once, with its loaded generators."""


@functools.lru_cache(maxsize=1)
def _process_code() -> str:
    return package_fingerprint()


def compute_step(payload: WorkerPayload, step: Step, *dependencies: tuple[Step, dict, float]):
    """One step in a Dask worker: open the run once per worker, then compute and return the stamped record.

    The records of the steps this one depends on arrive as arguments (the driver may not have stored them yet)
    and are what ``plan.step_record`` sees for them in this worker.
    """
    import torch

    from foscu_bench.runner.executors import EXECUTORS
    from foscu_bench.runner.plan import stamp_record

    if _process_code() != payload.code:  # a worker that joined the cluster after the driver's check
        raise ConfigError(f"this Dask worker runs other foscu-bench code than the driver ({payload.code})")
    os.environ["FOSCU_BENCH_CACHE"] = payload.cache
    ctx, generators = _worker_run(payload)
    for dep_step, record, _ in dependencies:
        ctx.memo[("step_record", dep_step)] = record
    torch.set_num_threads(payload.threads)
    started = time.perf_counter()
    record = EXECUTORS[step.kind](ctx, step, generators)
    return step, stamp_record(record, step, payload.threads), time.perf_counter() - started


def _worker_run(payload: WorkerPayload):
    from foscu_bench.runner.context import prepare

    key = (payload.out, payload.run_id)
    if key not in _RUNS:
        ctx = prepare(payload.config, payload.out, WorkerEventReporter(payload.run_id))
        if ctx.run_id != payload.run_id:
            raise ConfigError(f"this worker resolves the run as {ctx.run_id}, the driver as {payload.run_id}: "
                              f"different data or code on this node")
        _RUNS[key] = (ctx, {})
    return _RUNS[key]


class WorkerEventReporter:
    """A reporter for code running in a Dask worker: task progress goes to the driver as Dask events."""

    _ids = count()

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def begin(self, n_steps: int) -> None:
        pass

    def step_done(self) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator:
        from distributed import get_worker

        worker = get_worker()
        task_id = f"{worker.address}#{next(self._ids)}"
        send = lambda kind, **fields: worker.log_event(PROGRESS_TOPIC, {  # noqa: E731
            "run": self.run_id, "task": task_id, "kind": kind, **fields})
        send("open", description=f"{description} [{worker.name}]", total=total)
        last = [0.0]

        def update(completed: int, total: int | None = None, info: str = "") -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                send("update", completed=completed, total=total, info=info)

        try:
            yield update
        finally:
            send("close")


@contextmanager
def _forwarded_progress(reporter, run_id: str):
    """A Dask event handler that mirrors workers' tasks in the driver's reporter (rich bars with ETA)."""
    tasks: dict[str, tuple[object, Callable]] = {}

    def forward(event) -> None:
        _, message = event
        if not isinstance(message, dict) or message.get("run") != run_id:
            return
        task_id, kind = message["task"], message["kind"]
        if kind == "open":
            manager = reporter.task(message["description"], message.get("total"))
            tasks[task_id] = (manager, manager.__enter__())
        elif kind == "update" and task_id in tasks:
            tasks[task_id][1](message["completed"], message.get("total"), message.get("info", ""))
        elif kind == "close" and task_id in tasks:
            tasks.pop(task_id)[0].__exit__(None, None, None)

    try:
        yield forward
    finally:
        for manager, _ in tasks.values():  # tasks of workers that died mid-step
            manager.__exit__(None, None, None)
