"""Fit one generator on the phantom's training split and save it (for quality gates and sampling benches).

Usage: python bench/fit_generator.py NAME [--profile quick] [--out DIR] [--checkpoint-dir DIR] [--scheduler rflow]
                                      [--cases-from CHECKPOINT_DIR] [--set KEY=VALUE ...]
``--cases-from`` fits on the training cases another saved generator was fitted on (a real-data level of a run,
e.g. the nested 16-case subset), ``--set`` passes generator settings (Duo-Diffusion: label_deformed_copies=0).
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
    parser.add_argument("--cases-from", type=Path, default=None, help="fit on this saved generator's training cases")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="generator settings (JSON values)")
    args = parser.parse_args()
    ds, split, train = training_split("phantom", args.profile)
    if args.cases_from is not None:
        from foscu_bench.checkpoint import load_checkpoint
        from foscu_bench.data.splits import TrainingSet

        cases = set(load_checkpoint(args.cases_from)[1]["train_case_ids"])
        train = TrainingSet([p for p in train if p.case_id in cases], split)
    options = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
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
    print(json.dumps({"generator": args.name, "profile": args.profile, "settings": options, "n_cases": len(train),
                      "fit_seconds": round(total, 1), "stage_seconds": stages}))


if __name__ == "__main__":
    main()
