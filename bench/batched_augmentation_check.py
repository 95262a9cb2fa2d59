"""Does the per-sample path's batched augmentation (the GPU path) train U-Nets as good as MONAI's per-sample chain
(the CPU path)? Same real training cases, same seeds, both sample streams; test Dice per seed and the paired
difference with its seed-level t interval.

Usage: python bench/batched_augmentation_check.py --profile quick --real-cases 16 --seeds 4 --out FILE
(one thread per training, as the runner trains on CPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from bench_setup import training_split
from foscu_bench.segmentation import evaluate, train_segmentation
from foscu_bench.store import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--real-cases", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--test-cases", type=int, default=48)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds, split, train = training_split("phantom", args.profile, None, 0)
    train, test = list(train)[:args.real_cases], ds.pairs(split.test[:args.test_cases])
    rows = []
    for seed in range(args.seeds):
        for stream, workers in (("sequential", None), ("per-sample", 0)):
            start = time.perf_counter()
            result = train_segmentation(train, [], "real", ds.profile.segmentation, seed=seed, device="cpu",
                                        loader_workers=workers)
            scores = evaluate(result.model, test, ds.profile.segmentation)
            rows.append({"seed": seed, "sample_stream": result.sample_stream,
                         "dice_liver": float(np.mean([r["dice_liver"] for r in scores])),
                         "loss_last100": float(np.mean(result.losses[-100:])),
                         "train_seconds": result.seconds, "seconds": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
            atomic_write_json(args.out, {"profile": args.profile, "real_cases": len(train), "test_cases": len(test),
                                         "rows": rows})
    by = {s: np.array([r["dice_liver"] for r in rows if r["sample_stream"] == s]) for s in ("sequential", "per-sample")}
    diff = (by["per-sample"] - by["sequential"]) * 100
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
    summary = {"mean_dice": {s: float(v.mean()) for s, v in by.items()},
               "seed_sd_points": {s: float(v.std(ddof=1) * 100) for s, v in by.items()},
               "paired_difference_points": float(diff.mean()), "ci95": [float(diff.mean() - half),
                                                                        float(diff.mean() + half)]}
    print(json.dumps(summary))
    atomic_write_json(args.out, {"profile": args.profile, "real_cases": len(train), "test_cases": len(test),
                                 "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
