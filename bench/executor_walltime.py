"""Wall time of one run under each executor, from a cold cache each time: local with 1 worker, local with N worker
processes, Dask LocalCluster with N workers. Checks that the result files are byte-identical across executors.

Usage::

    python bench/executor_walltime.py [--profile tiny] [--generator classic-aug] [--seeds 2] [--workers 2]
                                      [--out bench/results/executor_walltime_tiny.json]

On a machine with as many cores as workers, the local pool and Dask should take about the same time: both run
one single-threaded step per core; Dask adds its scheduler, worker start-up (imports in each worker process) and
event traffic. Prints this machine's fp32 matmul / conv3d peaks beside the times (machines differ by up to 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_FILES = ("metrics.csv", "stats.json", "fidelity.json")


def timed_run(args: argparse.Namespace, extra: list[str], root: Path) -> tuple[float, Path, dict]:
    """One run in a fresh process with a fresh cache; wall time includes start-up (imports, cluster)."""
    out, cache = root / "runs", root / "cache"
    command = [sys.executable, "-m", "foscu_bench", "run", "--generator", args.generator, "--seeds",
               str(args.seeds), "--profile", args.profile, "--no-controls", "--quiet", "--out", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, "FOSCU_BENCH_CACHE": str(cache)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    invocation = json.loads((run_dir / "manifest.json").read_text())["invocations"][-1]
    return seconds, run_dir, invocation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--generator", default="classic-aug")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from segmentation_throughput import measured_peaks

    from foscu_bench.cores import available_cores

    peaks = measured_peaks(torch.device("cpu"), "fp32")
    variants = {"local, 1 worker": ["--workers", "1"],
                f"local, {args.workers} workers": ["--workers", str(args.workers)],
                f"dask LocalCluster, {args.workers} workers": ["--executor", "dask", "--workers", str(args.workers)]}
    rows, files = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(variants.items()):
            seconds, run_dir, invocation = timed_run(args, extra, Path(tmp) / str(i))
            files[name] = {f: (run_dir / f).read_bytes() for f in RESULT_FILES}
            rows.append({"executor": name, "wall_seconds_process": round(seconds, 1),
                         "wall_seconds_run": round(invocation["wall_seconds"], 1),
                         "steps": invocation["steps_run"],
                         "peak_memory_mb": round(invocation.get("peak_memory_mb") or 0),
                         "peak_memory_mb_largest_worker": round(invocation.get("peak_memory_mb_largest_worker") or 0)})
            print(f"{name:32s} {seconds:6.1f} s (run {invocation['wall_seconds']:.1f} s, {invocation['steps_run']} "
                  f"steps)", flush=True)
    reference = next(iter(files.values()))
    identical = all(v == reference for v in files.values())
    result = {"profile": args.profile, "generator": args.generator, "seeds": args.seeds, "cores": available_cores(),
              "peaks_gflops_fp32": peaks, "rows": rows, "result_files_identical": identical}
    print(f"peaks fp32 (GFLOP/s): {json.dumps(peaks)}; result files identical across executors: {identical}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
