"""Where does real-only U-Net training plateau? Decided on the validation split, never the test split.

Trains real-only U-Nets at increasing iteration budgets (same seeds) on the training split (or a nested subset
of ``--real-cases`` cases, as the runner draws them) and scores liver Dice on the *validation* cases. The
plateau is the smallest budget whose mean validation Dice is within ``--tolerance`` Dice points of the best.

    python bench/calibrate_budget.py --profile quick --budgets 250,500,1000,2000 --seeds 2 [--real-cases 8]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench_setup import training_split
from foscu_bench.segmentation import evaluate, train_segmentation
from foscu_bench.store import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="phantom")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--budgets", default="250,500,1000,2000")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--real-cases", type=int, default=None, help="Nested subset size (default: all).")
    parser.add_argument("--tolerance", type=float, default=0.5, help="Dice points from the best budget.")
    parser.add_argument("--learning-rate", type=float, default=None, help="Override the profile's learning rate.")
    parser.add_argument("--batch-size", type=int, default=None, help="Override the profile's batch size.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    ds, split, train = training_split(args.dataset, args.profile)
    real = list(train)
    if args.real_cases:
        from foscu_bench.runner.context import SUBSET_STREAM

        order = np.random.default_rng(np.random.SeedSequence([0, SUBSET_STREAM, 0])).permutation(len(real))
        real = [real[i] for i in order[:args.real_cases]]
    validation = ds.pairs(split.val)
    budgets = [int(b) for b in args.budgets.split(",")]
    results = []
    for budget in budgets:
        settings = replace(ds.profile.segmentation, iterations=budget)
        if args.learning_rate:
            settings = replace(settings, learning_rate=args.learning_rate)
        if args.batch_size:
            settings = replace(settings, batch_size=args.batch_size)
        dice, seconds = [], []
        for seed in range(args.seeds):
            started = time.perf_counter()
            model = train_segmentation(real, [], "real", settings, seed=seed).model
            seconds.append(time.perf_counter() - started)
            dice.append(float(np.mean([r["dice_liver"] for r in evaluate(model, validation, settings)])))
        results.append({"iterations": budget, "val_dice_mean": float(np.mean(dice)), "val_dice_per_seed": dice,
                        "train_seconds_mean": float(np.mean(seconds)),
                        "passes_per_real_case": budget * settings.batch_size / len(real)})
        print(json.dumps(results[-1]), flush=True)
    best = max(r["val_dice_mean"] for r in results)
    plateau = next(r["iterations"] for r in results if r["val_dice_mean"] >= best - args.tolerance / 100)
    report = {"dataset": args.dataset, "profile": args.profile, "n_real": len(real), "n_val": len(validation),
              "learning_rate": settings.learning_rate, "batch_size": settings.batch_size,
              "seeds": args.seeds, "tolerance_points": args.tolerance, "plateau_iterations": plateau,
              "results": results}
    suffix = "".join(f"_{k}{v}" for k, v in (("lr", args.learning_rate), ("bs", args.batch_size)) if v)
    name = f"budget_{args.profile}_n{len(real)}{suffix}.json"
    atomic_write_json(args.out / name, report)
    print(json.dumps({"plateau_iterations": plateau, "best_val_dice": best, "written": str(args.out / name)}))


if __name__ == "__main__":
    main()
