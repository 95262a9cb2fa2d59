"""Quality gates of generators on the phantom: label realism, image-label consistency, a sample figure.

Usage: python bench/quality_gates.py --fitted duo-diffusion=/tmp/fitted/duo-diffusion cond-gan=DIR ...
                                     [--profile quick] [--n 16] [--out bench/results/quality_quick.json]
For each saved generator: sample ``--n`` pairs (seed 1); liver-volume KS vs the real training labels, fraction of
samples with one dominant liver component, per-label intensity distances, and image-label consistency (liver
Dice of a real-only U-Net on the generated images against their generating labels). The real test cases give the
ceiling. Writes a tri-planar figure of 4 samples (tumour and non-tumour) per generator into paper_figures/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from bench_setup import reference_unet, training_split
from foscu_bench import generator as G
from foscu_bench.preview import pick_preview_cases, save_preview
from foscu_bench.sample_checks import image_label_consistency, sample_report
from foscu_bench.store import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", nargs="+", required=True, help="NAME=DIR of saved generators")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality_quick.json"))
    parser.add_argument("--figures", type=Path, default=Path("paper_figures"))
    args = parser.parse_args()
    ds, split, train = training_split("phantom", args.profile)
    test = ds.pairs(split.test)
    settings = ds.profile.segmentation
    unet = reference_unet(ds, train)
    ceiling = image_label_consistency(test, unet, settings)
    results = {"real_test_ceiling": {"dice_mean": float(ceiling.mean()), "dice_sd": float(ceiling.std(ddof=1)),
                                     "n": len(test)}}
    print(json.dumps(results), flush=True)
    for item in args.fitted:
        name, _, directory = item.partition("=")
        gen = G.load(name, Path(directory))
        start = time.perf_counter()
        pairs = G.sample_validated(gen, args.n, seed=1, shape=ds.profile.shape)
        seconds = (time.perf_counter() - start) / args.n
        consistency = image_label_consistency(pairs, unet, settings)
        report = sample_report(pairs, list(train))
        figure = save_preview(pick_preview_cases(pairs, 4), args.figures / f"samples_{name}_{args.profile}.png",
                              title=f"{name}: generated image with its label ({args.profile} profile)")
        results[name] = {"consistency_dice_mean": float(consistency.mean()),
                         "consistency_dice_sd": float(consistency.std(ddof=1)),
                         "sample_seconds_per_volume": seconds, "figure": str(figure), **report}
        print(json.dumps({name: {k: results[name][k] for k in ("consistency_dice_mean", "liver_volume_ks",
                                                                "one_dominant_liver_fraction", "sample_seconds_per_volume",
                                                                "max_training_correlation")}}), flush=True)
    atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
