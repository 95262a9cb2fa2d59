"""The parallel scheduler: independent steps in worker processes, dependencies respected.

Why processes and not threads: at the quick profile a U-Net training step is too small to use more than one core
well (measured on a 2-core machine, bench/unet_step_speed.py: 71 ms a step on 2 threads, 80 ms on 1), so two
single-threaded trainings side by side do about twice the work of one two-threaded training. Workers are spawned
(a fork after torch has started its thread pools is unsafe), each prepares the run once and keeps its fitted
generators and loaded pairs for the steps it gets. Workers compute and return records; only the calling process
writes the run directory.

Dependencies: a fit needs its parts (a generator's independent parts, ``Generator.fit_parts``, train in steps of
their own, beside each other and the rest of the run); a sample step needs its level's fit; a U-Net on synthetic data needs its sample; fidelity needs
every sample of its level. Among ready steps the longest chains start first (fits, then samples, fidelity, and
U-Nets last), so a long generator fit overlaps the real-only U-Nets instead of following them.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from typing import Callable

from foscu_bench.cores import available_cores
from foscu_bench.store import Step

KIND_PRIORITY = {"fitpart": 0, "fit": 0, "sample": 1, "fidelity": 2, "unet": 3}


def _on_gpu(device) -> bool:
    return getattr(device, "type", str(device)) == "cuda"


GPU_STEPS_AT_ONCE = 3
"""Steps that share one GPU. The paper U-Net's bf16 step uses 5-7% of an H100's or H200's measured peak (small 3D
convolutions leave most of the chip idle), so one step at a time wastes the device: three U-Net trainings side by
side stepped 1.74-1.97x as many steps a second as one alone on an H200, two 1.52x (bench/gpu_concurrency.py,
bench/results/gpu_concurrency_s16_h200.json, ..._s17_h200.json). A Duo-Diffusion stage beside two U-Nets runs
1.75x (image autoencoder) to 1.88x (ControlNet) slower than alone and the U-Nets beside it 2.0-2.1x, still ~1.5x
the throughput of one step at a time (bench/results/gpu_stage_concurrency_s17_h200.json). Steps never share a
process or a random stream, so the number changes no result."""

GPU_MEMORY_PER_STEP_GIB = 24
"""Device memory one step may need at the paper profile: the ControlNet stage, the largest, peaked at 18 GiB
(fp32, bench/results/gpu_paper_profile_s16_h100.json); a GPU with less than this per step runs fewer at once."""


def gpu_steps_at_once(device) -> int:
    """How many steps share this GPU: ``GPU_STEPS_AT_ONCE``, fewer where its memory would not hold them."""
    import torch

    total_gib = torch.cuda.get_device_properties(device).total_memory / 2 ** 30
    return max(1, min(GPU_STEPS_AT_ONCE, int(total_gib // GPU_MEMORY_PER_STEP_GIB)))


def default_threads(device) -> int:
    """CPU threads per step: 1 on CPU (the fastest use of cores for these networks is one step per core, and a
    fixed count keeps numbers independent of how many workers run); on a GPU machine, whose CPU only feeds the
    device, the cores shared among the steps on the GPU (they also size each step's sample loaders)."""
    return max(1, available_cores() // gpu_steps_at_once(device)) if _on_gpu(device) else 1


def step_loader_workers(device) -> int | None:
    """Sample-preparing processes of one U-Net step: on a GPU, up to 8 from the step's share of the cores (its torch
    threads, ``default_threads``), leaving one to training, so the steps that share a GPU do not oversubscribe the
    CPU; None on CPU, where training keeps its one sequential sample stream (``segmentation.per_sample_streams``).
    Decided here and not in ``segmentation``, whose code is in the key of every cached U-Net."""
    import torch

    return max(1, min(8, torch.get_num_threads() - 1)) if _on_gpu(device) else None


def default_workers(device, threads: int) -> int:
    """As many single-step workers as the cores hold on CPU; ``gpu_steps_at_once`` on a GPU."""
    return gpu_steps_at_once(device) if _on_gpu(device) else max(1, available_cores() // max(1, threads))


def dependencies(step: Step, seeds: int, fit_parts: tuple[str, ...] = (), fit_source: str | None = None) -> list[Step]:
    """The steps whose results ``step`` reads (``fit_parts``: those of the step's generator; ``fit_source``: the
    generator of the run whose fit a fit takes, ``RunContext.fit_source``)."""
    level = dict(n_real=step.n_real, draw=step.draw)
    if step.kind == "fit":
        return [Step("fitpart", step.generator, None, None, part=part, **level) for part in fit_parts] + (
            [Step("fit", fit_source, None, None, **level)] if fit_source else [])
    if step.kind == "sample":
        return [Step("fit", step.generator, None, None, **level)]
    if step.kind == "unet" and step.generator:
        return [Step("sample", step.generator, step.seed, None, **level)]
    if step.kind == "fidelity":
        return [Step("sample", step.generator, s, None, **level) for s in range(seeds)]
    return []


def step_dependencies(ctx, step: Step) -> list[Step]:
    """``dependencies`` in a run: its seeds, a fit's parts, and the fit it takes where that generator is in the run
    (the generator class is asked only for fits)."""
    if step.kind != "fit":
        return dependencies(step, ctx.config.seeds)
    return dependencies(step, ctx.config.seeds, ctx.fit_parts(step.generator), ctx.fit_source_in_run(step.generator))


def run_parallel(ctx, pending: list[Step], workers: int, threads: int,
                 finished: Callable[[Step, dict, float], None]) -> None:
    """Run ``pending`` on ``workers`` spawned processes; ``finished(step, record, seconds)`` in this process as
    each step ends. On an error the running steps are let finish (and stored), nothing new starts, and the first
    error is raised: a rerun resumes after the last stored step."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waiting = {step: set(step_dependencies(ctx, step)) & set(pending) for step in pending}
    order = {step: i for i, step in enumerate(pending)}
    error: BaseException | None = None
    with ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(
            max_workers=min(workers, len(pending)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(ctx.config, str(ctx.directory.parent), threads)))
        running: dict = {}
        labels: dict = {}
        while waiting or running:
            ready = sorted((s for s, deps in waiting.items() if not deps),
                           key=lambda s: (KIND_PRIORITY[s.kind], order[s]))
            while error is None and ready and len(running) < workers:
                step = ready.pop(0)
                del waiting[step]
                running[pool.submit(_run_step, step)] = step
                labels[step] = ExitStack()
                labels[step].enter_context(ctx.reporter.task(f"{step.name} (worker)", None))
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                labels.pop(step).close()
                try:
                    record, seconds = future.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after the running steps are stored
                    error = error or exc
                    continue
                finished(step, record, seconds)
                for deps in waiting.values():
                    deps.discard(step)
    if error is not None:
        raise error


_WORKER: dict = {}


def _die_with_parent() -> None:
    """Have Linux SIGKILL this worker when the process that started it dies (a ``kill -9``ed driver would
    otherwise leave its pool's workers waiting forever on a dead queue, holding their memory)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the driver died before the line above
        os._exit(1)


def _init_worker(config, out: str, threads: int) -> None:
    import torch

    from foscu_bench.runner.context import prepare

    _die_with_parent()

    torch.set_num_threads(threads)
    _WORKER.update(ctx=prepare(config, out), generators={})


def _run_step(step: Step) -> tuple[dict, float]:
    from foscu_bench.runner.executors import EXECUTORS

    started = time.perf_counter()
    record = EXECUTORS[step.kind](_WORKER["ctx"], step, _WORKER["generators"])
    return record, time.perf_counter() - started
