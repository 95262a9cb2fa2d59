"""Fit and sample wall time of each generator at a profile, with the sample sanity checks and a preview.

Usage: python bench/baseline_timing.py [--profile quick] [--generators classic-aug synthseg cond-gan cond-ddpm]
                                       [--n 8] [--out bench/results] [--previews paper_figures/baselines]
Fits on the phantom's training split (seed 0), samples ``--n`` pairs, writes
``<out>/generators_<profile>.json`` and one tri-planar preview PNG per generator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_setup import training_split
from foscu_bench import generator as G
from foscu_bench.preview import save_preview
from foscu_bench.sample_checks import sample_report
from foscu_bench.store import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="phantom")
    parser.add_argument("--generators", nargs="+", default=["classic-aug", "synthseg", "cond-gan", "cond-ddpm"])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--previews", type=Path, default=Path("paper_figures/baselines"))
    args = parser.parse_args()
    ds, _, train = training_split(args.dataset, args.profile)
    results = {}
    for name in args.generators:
        gen = G.create(name)
        start = time.perf_counter()
        gen.fit(train, ds.profile, seed=0, device="cpu")
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        pairs = G.sample_validated(gen, args.n, seed=1, shape=ds.profile.shape)
        sample_seconds = (time.perf_counter() - start) / args.n
        report = sample_report(pairs, list(train))
        preview = save_preview(pairs[:4], args.previews / f"{name}_{args.profile}.png",
                               title=f"{name} samples ({args.profile} profile; contours = generated/conditioning label)")
        results[name] = {"fit_seconds": fit_seconds, "sample_seconds_per_volume": sample_seconds,
                         "n_train": len(train), "preview": str(preview), **report}
        print(json.dumps({name: {k: results[name][k] for k in ("fit_seconds", "sample_seconds_per_volume",
                                                                "liver_volume_ks", "one_dominant_liver_fraction",
                                                                "max_training_correlation")}}), flush=True)
    atomic_write_json(args.out / f"generators_{args.profile}.json", results)


if __name__ == "__main__":
    main()
