"""Seconds per generated volume against sampler steps, with image-label consistency at each setting.

Usage: python bench/sampling_speed.py --fitted /tmp/fitted/duo-diffusion [--name duo-diffusion] [--profile quick]
                                      [--settings ddpm:1000 ddim:50 ddim:20 ddim:10] [--n 6]
Lets a user trade speed against quality: each setting samples ``--n`` pairs (seed 2) and reports wall time per
volume and the liver Dice of a real-only U-Net on the generated images against their labels.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_setup import reference_unet, training_split
from foscu_bench import generator as G
from foscu_bench.sample_checks import image_label_consistency
from foscu_bench.store import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", type=Path, required=True)
    parser.add_argument("--name", default="duo-diffusion")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--settings", nargs="+", default=["ddpm:1000", "ddim:50", "ddim:20", "ddim:10"])
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/sampling_speed_quick.json"))
    args = parser.parse_args()
    ds, _, train = training_split("phantom", args.profile)
    settings = ds.profile.segmentation
    unet = reference_unet(ds, train)
    gen = G.load(args.name, args.fitted)
    rows = []
    for item in args.settings:
        sampler, _, steps = item.partition(":")
        start = time.perf_counter()
        pairs = [p for p in gen.sample(args.n, seed=2, sampler=sampler, steps=int(steps))]
        seconds = (time.perf_counter() - start) / args.n
        dice = image_label_consistency(pairs, unet, settings)
        rows.append({"sampler": sampler, "steps": int(steps), "seconds_per_volume": seconds,
                     "consistency_dice_mean": float(dice.mean()), "consistency_dice_sd": float(dice.std(ddof=1))})
        print(json.dumps(rows[-1]), flush=True)
    atomic_write_json(args.out, {"generator": args.name, "profile": args.profile, "n": args.n, "rows": rows})


if __name__ == "__main__":
    main()
