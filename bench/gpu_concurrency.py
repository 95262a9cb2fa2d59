"""Should the runner put more than one step on a GPU at a time? U-Net trainings side by side on one device.

The paper U-Net's bf16 step computes at 5-7% of the GPU's measured peak (bench/step_profile.py): its kernels are
small 3D convolutions that leave most of the chip idle, so one training at a time wastes the device. This bench
trains ``K`` paper-profile U-Nets at once, each in its own spawned process with ``cores // K`` threads and
``cores // K`` loader workers (the runner gives a step one loader fewer, at most 8:
``runner.parallel.step_loader_workers``), on timing stand-in pairs, and reports each one's steady step time and the aggregate steps
per second against ``K = 1``.

``--beside-stage`` asks the question the paper-run estimate leaves open: does a Duo-Diffusion stage (its
autoencoders run at 34-36% of an H100's fp32 peak, several times the U-Net's share) slow down beside two U-Net
trainings as much as a U-Net does, and do the U-Nets slow down more beside it? Per stage it trains the stage alone,
then the stage in one process beside two U-Nets (the runner's three steps a GPU, cores and loaders shared as the
runner shares them); the U-Nets stop once the stage is done. It reports each stage's step time alone and beside,
and the U-Nets' step time inside the stage's window against a U-Net alone.

Usage (on a GPU machine; CPU works for a smoke check at ``--profile tiny``)::

    python bench/gpu_concurrency.py --out bench/results/gpu_concurrency_h100.json
    python bench/gpu_concurrency.py --beside-stage image_autoencoder controlnet --out bench/results/gpu_stage_concurrency.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from step_profile import stage_call, random_pairs, stage_data, steady_step_seconds  # noqa: E402

from foscu_bench.cores import available_cores  # noqa: E402
from foscu_bench.runner.parallel import GPU_STEPS_AT_ONCE, step_loader_workers  # noqa: E402
from foscu_bench.store import atomic_write_json  # noqa: E402


WAIT_S = 900
"""Seconds a process waits for the others (a barrier, a result) before the bench fails instead of hanging."""


class _Stop(Exception):
    """Raised from a U-Net's progress callback once the measured stage is done."""


def train_one(profile_name: str, iterations: int, loader_workers: int | None, threads: int, seed: int, barrier,
              queue, stop=None, warm=None) -> None:
    """One U-Net training in this process; puts its steady step seconds, its window and its step stamps on
    ``queue``. ``loader_workers`` None: the runner's share for a step with ``threads`` threads
    (``runner.parallel.step_loader_workers``). With ``stop`` (an event) it ends at the first step after the event is set; with ``warm`` (a barrier)
    it waits there after its fifth step, so that a stage beside it starts once its loaders are running (a paper
    U-Net's loaders take longer to start on a GPU than a stage takes to finish)."""
    from foscu_bench.precision import resolve_precision
    from foscu_bench.profiles import get_profile
    from foscu_bench.segmentation import train_segmentation

    torch.set_num_threads(threads)
    profile = get_profile(profile_name)
    pairs = random_pairs(8, profile)
    settings = replace(profile.segmentation, iterations=iterations)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if loader_workers is None:
        loader_workers = step_loader_workers(torch.device(device)) or 0
    stamps: list[float] = []

    def progress(_it, _loss) -> None:
        stamps.append(time.perf_counter())  # system-wide monotonic clock: comparable across the processes
        if warm is not None and len(stamps) == 5:
            warm.wait(timeout=WAIT_S)
        if stop is not None and stop.is_set():
            raise _Stop

    barrier.wait()  # every process starts its training together, after its imports
    try:
        train_segmentation(pairs, [], "real", settings, seed=seed, device=device, loader_workers=loader_workers,
                           progress=progress)
    except _Stop:
        pass
    queue.put({"role": "unet", "seed": seed, "precision": resolve_precision(torch.device(device), settings.precision),
               "loader_workers": loader_workers, "steady_seconds_per_step": steady_step_seconds(stamps),
               "first_step": stamps[0], "last_step": stamps[-1], "iterations": len(stamps), "stamps": stamps})


def train_stage(profile_name: str, stage: str, iterations: int, threads: int, barrier, queue, stop, warm) -> None:
    """One Duo-Diffusion stage's training (its ``auto`` precision, fresh networks) in this process, started once
    the U-Nets beside it are stepping (``warm``); sets ``stop`` when done and puts its step stamps on ``queue``."""
    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.training import stage_precision
    from foscu_bench.profiles import get_profile

    torch.set_num_threads(threads)
    profile = get_profile(profile_name)
    data = stage_data(profile, random_pairs(8, profile))
    config = config_for(profile.name, iterations={stage: iterations})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    barrier.wait(timeout=WAIT_S)
    warm.wait(timeout=WAIT_S)
    try:
        _, stamps = stage_call(stage, config, data, device)
    finally:
        stop.set()
    queue.put({"role": "stage", "stage": stage, "precision": stage_precision(config, device, stage),
               "iterations": iterations, "stamps": stamps})


def median_gap(stamps: list[float], start: float = -np.inf, end: float = np.inf, skip: int = 4) -> float:
    """Median seconds between consecutive steps after the first ``skip``, counting only steps inside [start, end]."""
    inside = [b - a for a, b in zip(stamps[skip:], stamps[skip + 1:]) if a >= start and b <= end]
    return float(np.median(inside)) if inside else float("nan")


def run_together(context, queue, targets: list[tuple]) -> list[dict]:
    """One spawned process per ``(function, args)`` in ``targets``; what each put on ``queue``, once all ended (a
    process that died raises after ``WAIT_S`` instead of hanging the bench)."""
    processes = [context.Process(target=target, args=args) for target, args in targets]
    for process in processes:
        process.start()
    rows = [queue.get(timeout=WAIT_S) for _ in processes]
    for process in processes:
        process.join()
    return rows


def stage_beside_unets(profile_name: str, stage: str, iterations: int, unets: int) -> dict:
    """The stage alone when ``unets`` is 0, else beside ``unets`` U-Net trainings that start with it and stop
    after it: its median step time inside the window in which every U-Net was stepping, and the U-Nets' there.
    Cores and sample loaders are shared as the runner shares them among the steps on one GPU."""
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    k = unets + 1
    threads = max(1, available_cores() // k)
    barrier, warm = context.Barrier(k), context.Barrier(k)
    rows = run_together(context, queue, [(train_stage, (profile_name, stage, iterations, threads, barrier, queue,
                                                        stop, warm))]
                        + [(train_one, (profile_name, 10 ** 6, None, threads, seed, barrier, queue, stop, warm))
                           for seed in range(unets)])
    stage_row = next(r for r in rows if r["role"] == "stage")
    unet_rows = [r for r in rows if r["role"] == "unet"]
    start = max([stage_row["stamps"][0]] + [r["stamps"][min(4, len(r["stamps"]) - 1)] for r in unet_rows])
    end = stage_row["stamps"][-1]
    return {"stage": stage, "precision": stage_row["precision"], "unets_beside": unets, "threads_each": threads,
            "loader_workers_each_unet": unet_rows[0]["loader_workers"] if unet_rows else None,
            "stage_iterations": iterations, "stage_seconds_per_step": median_gap(stage_row["stamps"], start, end),
            "window_seconds": end - start,
            "unet_seconds_per_step_each": [median_gap(r["stamps"], start, end) for r in unet_rows]}


def concurrent_trainings(profile_name: str, k: int, iterations: int) -> dict:
    """``k`` trainings at once; aggregate throughput over the window in which all of them were stepping."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    cores = available_cores()
    loader_workers = max(1, cores // k) if torch.cuda.is_available() else 0
    threads = max(1, cores // k)
    barrier = context.Barrier(k)
    rows = run_together(context, queue, [(train_one, (profile_name, iterations, loader_workers, threads, seed,
                                                      barrier, queue)) for seed in range(k)])
    steady = [r["steady_seconds_per_step"] for r in rows]
    return {"concurrent": k, "loader_workers_each": loader_workers, "threads_each": threads,
            "steady_seconds_per_step_each": steady,
            "aggregate_steps_per_second": sum(1 / s for s in steady),
            "wall_seconds": max(r["last_step"] for r in rows) - min(r["first_step"] for r in rows),
            "precision": rows[0]["precision"]}


STAGE_ITERATIONS = {"label_autoencoder": 200, "image_autoencoder": 200, "label_diffusion": 100,
                    "image_diffusion": 100, "controlnet": 40}
"""About 8-10 s of each paper stage alone on an H100 (bench/results/gpu_paper_profile_s16_h100.json)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--iterations", type=int, default=240)
    parser.add_argument("--concurrent", type=int, nargs="*", default=[1, 2, 3, 4])
    parser.add_argument("--beside-stage", nargs="*", default=None, choices=list(STAGE_ITERATIONS),
                        help="instead of U-Nets side by side: each of these Duo stages alone and beside the U-Nets "
                             "that share a GPU with it in the runner (GPU_STEPS_AT_ONCE - 1)")
    parser.add_argument("--stage-iterations-scale", type=float, default=1.0)
    parser.add_argument("--beside-only", action="store_true",
                        help="skip each stage's run alone (its time alone then comes from an earlier report)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="later stages are skipped past this")
    args = parser.parse_args()
    started = time.perf_counter()
    report = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "profile": args.profile, "cores": available_cores(), "rows": []}
    if args.beside_stage is not None:
        for stage in args.beside_stage:
            if time.perf_counter() - started > args.budget_s:
                report["rows"].append({"stage": stage, "skipped": "time budget"})
                continue
            iterations = max(8, int(STAGE_ITERATIONS[stage] * args.stage_iterations_scale))
            alone = None if args.beside_only else stage_beside_unets(args.profile, stage, iterations, 0)
            beside = stage_beside_unets(args.profile, stage, iterations, GPU_STEPS_AT_ONCE - 1)
            if alone:
                beside["stage_slowdown"] = beside["stage_seconds_per_step"] / alone["stage_seconds_per_step"]
            for row in filter(None, (alone, beside)):
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
            atomic_write_json(args.out, report)
        return
    for k in args.concurrent:
        row = concurrent_trainings(args.profile, k, args.iterations)
        base = report["rows"][0]["aggregate_steps_per_second"] if report["rows"] else row["aggregate_steps_per_second"]
        row["speedup_vs_first"] = row["aggregate_steps_per_second"] / base
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
