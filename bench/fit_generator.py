"""Fit one generator on the phantom's training split and save it (for quality gates and sampling benches).

Usage: python bench/fit_generator.py NAME [--profile quick] [--out DIR] [--checkpoint-dir DIR] [--scheduler rflow]
Prints per-stage wall times (Duo-Diffusion) and the total fit time; the saved generator loads with
``foscu_bench.generator.load(NAME, DIR)``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_setup import training_split
from foscu_bench import generator as G


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--precision", default=None, help="Duo-Diffusion only: fp32 or bf16")
    parser.add_argument("--scheduler", default=None, help="Duo-Diffusion only: ddim (DDPM-trained) or rflow")
    args = parser.parse_args()
    ds, _, train = training_split("phantom", args.profile)
    options = {}
    if args.precision:
        options["precision"] = args.precision
    if args.scheduler:
        options["scheduler"] = args.scheduler
    gen = G.create(args.name, **options)
    start = time.perf_counter()
    gen.fit(train, ds.profile, seed=0, device="cpu", work_dir=args.checkpoint_dir)
    total = time.perf_counter() - start
    gen.save(args.out)
    stages = {k: round(v["seconds"], 1) for k, v in getattr(gen, "logs", {}).items()}
    print(json.dumps({"generator": args.name, "profile": args.profile, "fit_seconds": round(total, 1),
                      "stage_seconds": stages}))


if __name__ == "__main__":
    main()
