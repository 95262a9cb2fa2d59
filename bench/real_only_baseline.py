"""Real-only U-Net Dice on a dataset over several seeds: the reference the augmented arms are compared with.

Usage: python bench/real_only_baseline.py [--dataset phantom] [--profile quick] [--seeds 5] [--label-map ...]
Prints per-seed mean test Dice / NSD / HD95 and mean +- sd over seeds, plus the image-blind atlas Dice.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from foscu_bench.metrics.segmentation import dice

from bench_setup import training_split
from foscu_bench.segmentation import evaluate, train_segmentation


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="phantom")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--label-map", default=None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args()
    ds, split, train = training_split(args.dataset, args.profile, args.label_map, args.split_seed)
    test = ds.pairs(split.test)
    atlas = np.mean([p.label > 0 for p in train], axis=0) > 0.5
    atlas_dice = np.mean([dice(atlas, p.label) for p in test])
    per_seed = []
    for seed in range(args.seeds):
        result = train_segmentation(list(train), [], "real", ds.profile.segmentation, seed=seed)
        rows = evaluate(result.model, test, ds.profile.segmentation)
        per_seed.append({k: float(np.mean([r[k] for r in rows])) for k in ("dice_liver", "nsd_liver", "hd95_liver")}
                        | {"train_seconds": result.seconds})
        print(json.dumps({"seed": seed, **per_seed[-1]}))
    dice = np.array([s["dice_liver"] for s in per_seed])
    print(json.dumps({"dataset": ds.name, "profile": args.profile, "n_train": len(train), "n_test": len(test),
                      "atlas_dice": float(atlas_dice), "dice_mean": float(dice.mean()),
                      "dice_sd_over_seeds": float(dice.std(ddof=1)) if len(dice) > 1 else 0.0,
                      "nsd_mean": float(np.mean([s["nsd_liver"] for s in per_seed])),
                      "hd95_mean": float(np.mean([s["hd95_liver"] for s in per_seed])),
                      "nsd_tolerance_mm": ds.profile.segmentation.nsd_tolerance_mm}))


if __name__ == "__main__":
    main()
