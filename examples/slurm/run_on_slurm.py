"""Run a foscu-bench grid on a Slurm cluster: a SLURMCluster of GPU jobs (examples/slurm/jobqueue.yaml) and the
benchmark's Dask executor on it. Run this on a login node, from a folder on shared storage:

    export FOSCU_BENCH_CACHE=/shared/foscu-cache
    python examples/slurm/run_on_slurm.py --jobs 4 -- --generator duo-diffusion --seeds 5 --profile paper \\
        --real-cases 8,16,all --out /shared/foscu-runs

The same can be done by hand: start the cluster in one process, then
``foscu-bench run ... --scheduler <cluster.scheduler_address>``.
"""

from __future__ import annotations

import argparse

from dask_jobqueue import SLURMCluster

from foscu_bench.cli import main


def parse() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="Slurm GPU jobs (= Dask workers) to start")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="arguments of `foscu-bench run` after --")
    args = parser.parse_args()
    return args, [a for a in args.run_args if a != "--"]


if __name__ == "__main__":
    args, run_args = parse()
    with SLURMCluster() as cluster:  # reads the jobqueue.slurm section of the Dask config
        cluster.scale(jobs=args.jobs)
        main(["run", *run_args, "--scheduler", cluster.scheduler_address, "--workers", str(args.jobs)])
