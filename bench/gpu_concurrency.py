"""Should the runner put more than one step on a GPU at a time? U-Net trainings side by side on one device.

The paper U-Net's bf16 step computes at 5-7% of the GPU's measured peak (bench/step_profile.py): its kernels are
small 3D convolutions that leave most of the chip idle, so one training at a time wastes the device. This bench
trains ``K`` paper-profile U-Nets at once, each in its own spawned process with ``cores // K`` threads and
``cores // K`` loader workers (the runner gives a step one loader fewer, at most 8:
``runner.parallel.step_loader_workers``), on timing stand-in pairs, and reports each one's steady step time and the aggregate steps
per second against ``K = 1``.

Usage (on a GPU machine; CPU works for a smoke check at ``--profile tiny``)::

    python bench/gpu_concurrency.py --out bench/results/gpu_concurrency_h100.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from step_profile import random_pairs, steady_step_seconds  # noqa: E402

from foscu_bench.cores import available_cores  # noqa: E402
from foscu_bench.store import atomic_write_json  # noqa: E402


def train_one(profile_name: str, iterations: int, loader_workers: int, threads: int, seed: int, barrier,
              queue) -> None:
    """One U-Net training in this process; puts its steady step seconds and its window on ``queue``."""
    from foscu_bench.profiles import get_profile
    from foscu_bench.segmentation import train_segmentation

    torch.set_num_threads(threads)
    profile = get_profile(profile_name)
    pairs = random_pairs(8, profile)
    settings = replace(profile.segmentation, iterations=iterations)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    barrier.wait()  # every process starts its training together, after its imports
    stamps: list[float] = []
    result = train_segmentation(pairs, [], "real", settings, seed=seed, device=device, loader_workers=loader_workers,
                                progress=lambda _it, _loss: stamps.append(time.time()))
    queue.put({"seed": seed, "precision": result.precision, "loader_workers": result.loader_workers,
               "steady_seconds_per_step": steady_step_seconds(stamps), "first_step": stamps[0],
               "last_step": stamps[-1], "iterations": iterations})


def concurrent_trainings(profile_name: str, k: int, iterations: int) -> dict:
    """``k`` trainings at once; aggregate throughput over the window in which all of them were stepping."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    cores = available_cores()
    loader_workers = max(1, cores // k) if torch.cuda.is_available() else 0
    threads = max(1, cores // k)
    barrier = context.Barrier(k)
    processes = [context.Process(target=train_one, args=(profile_name, iterations, loader_workers, threads, seed,
                                                         barrier, queue)) for seed in range(k)]
    for process in processes:
        process.start()
    rows = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    steady = [r["steady_seconds_per_step"] for r in rows]
    return {"concurrent": k, "loader_workers_each": loader_workers, "threads_each": threads,
            "steady_seconds_per_step_each": steady,
            "aggregate_steps_per_second": sum(1 / s for s in steady),
            "wall_seconds": max(r["last_step"] for r in rows) - min(r["first_step"] for r in rows),
            "precision": rows[0]["precision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--iterations", type=int, default=240)
    parser.add_argument("--concurrent", type=int, nargs="*", default=[1, 2, 3, 4])
    args = parser.parse_args()
    report = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "profile": args.profile, "cores": available_cores(), "rows": []}
    for k in args.concurrent:
        row = concurrent_trainings(args.profile, k, args.iterations)
        base = report["rows"][0]["aggregate_steps_per_second"] if report["rows"] else row["aggregate_steps_per_second"]
        row["speedup_vs_first"] = row["aggregate_steps_per_second"] / base
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
