"""Cost of the fidelity step: training the offline extractor, embedding volumes, and one full fidelity report.

Usage: python bench/fidelity_speed.py [--profile quick] [--out bench/results/fidelity_speed_quick.json]
Reports extractor training seconds (cold cache), feature throughput in volumes/s, and the seconds of
``fidelity_report`` (FID with 200 bootstrap resamples, KID over 100 subsets, MMD, MS-SSIM) on the real volumes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_setup import training_split
from foscu_bench.metrics.features import get_extractor
from foscu_bench.metrics.fidelity import fidelity_report
from foscu_bench.store import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fidelity_speed_quick.json"))
    args = parser.parse_args()
    ds, split, train = training_split("phantom", args.profile)
    real = np.stack([p.image for p in ds.pairs()])
    train_images = np.stack([p.image for p in train])
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FOSCU_BENCH_CACHE"] = cache  # cold: the extractor is trained here
        started = time.perf_counter()
        extractor = get_extractor("foscu-ae3d", train_images=train_images, cache_key="bench", seed=0)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        extractor(real)
        embed_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report = fidelity_report(real[::-1].copy(), real, extractor, seed=0)
        report_seconds = time.perf_counter() - started
    result = {"profile": args.profile, "n_volumes": len(real), "extractor_train_seconds": train_seconds,
              "embed_volumes_per_second": len(real) / embed_seconds, "fidelity_report_seconds": report_seconds,
              "n_per_set": report["n_per_set"], "feature_dim": report["feature_dim"]}
    print(result)
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
