"""The memorisation check on its controls, without training U-Nets: copies of the training set must be flagged,
fresh simulator patients must not.

For each real-data level, the copy control (training images + 1% noise) and, with ``--oracle``, the phantom
oracle (new patients; ~3 s a patient at quick) are fitted on the level's training cases, sample the fidelity n,
and go through ``fidelity_report`` against the run's held-out pool with the shipped extractor, exactly as a run's
fidelity step does (a run's fidelity.json holds the oracle's check too).

    python bench/memorisation_controls.py --profile quick --real-cases 8,16,all --out bench/results/memorisation_controls_quick.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from foscu_bench.controls import CopyControl, PhantomOracle
from foscu_bench.metrics.features import DEFAULT_EXTRACTOR, get_extractor
from foscu_bench.metrics.fidelity import fidelity_report
from foscu_bench.runner import RunConfig, prepare
from foscu_bench.runner.config import parse_real_cases
from foscu_bench.store import atomic_write_json

KEYS = ("near_copies", "n_synthetic", "near_copy_fraction", "p_value", "distance_ratio", "median_distance",
        "median_held_out_distance", "threshold")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--real-cases", default="8,16,all")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--oracle", action="store_true", help="also the phantom oracle (slow: fresh patients)")
    args = parser.parse_args()
    ctx = prepare(RunConfig(generators=("copy-control",), profile=args.profile, controls=False,
                            real_cases=parse_real_cases(args.real_cases)), "/tmp/foscu-memorisation-bench")
    held_out = np.stack([p.image for p in ctx.pairs("held_out")])
    extractor = get_extractor(DEFAULT_EXTRACTOR)
    results = {}
    for n_real, draw in ctx.levels():
        train = ctx.pairs("train", n_real, draw)
        for generator in (CopyControl(), PhantomOracle()) if args.oracle else (CopyControl(),):
            started = time.perf_counter()
            generator.fit(ctx.training_set(n_real, draw), ctx.profile, seed=0)
            images = np.stack([p.image for p in generator.sample(len(held_out) // 2, seed=0)])
            report = fidelity_report(images, held_out, extractor, seed=0, train_images=np.stack([p.image for p in train]),
                                     train_ids=[p.case_id for p in train])
            entry = {k: report["memorisation"][k] for k in KEYS} | {
                "fid": report["generator"]["fid"], "floor_fid": report["real_vs_real"]["fid"],
                "precision": report["generator"]["precision"], "recall": report["generator"]["recall"],
                "seconds": time.perf_counter() - started}
            results[f"{generator.name}@{ctx.n_train(n_real)}"] = entry
            print(json.dumps({f"{generator.name}@{ctx.n_train(n_real)}": entry}), flush=True)
    if args.out:
        atomic_write_json(args.out, {"profile": args.profile, "extractor": extractor.provenance, "results": results})


if __name__ == "__main__":
    main()
