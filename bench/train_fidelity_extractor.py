"""Remake the shipped fidelity extractor (``foscu_bench/metrics/weights/foscu-ae3d-corpus``) from its recipe.

A separate phantom corpus (own random stream, half T1 / half T2, quick grid) is generated and a plain 3D
autoencoder is trained on it with a fixed seed on the CPU; the checkpoint directory (safetensors + config with the
recipe, losses and timings) is written atomically. Deterministic on one machine: same recipe, same bytes.

    python bench/train_fidelity_extractor.py [--out DIR] [--workers 2] [--cases 512] [--iterations 4000]
"""

from __future__ import annotations

import argparse
import json

from foscu_bench.metrics.corpus import RECIPE, SHIPPED, train_corpus_extractor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SHIPPED))
    parser.add_argument("--workers", type=int, default=2, help="processes that generate the corpus")
    parser.add_argument("--cases", type=int, default=RECIPE["n_cases"])
    parser.add_argument("--iterations", type=int, default=RECIPE["iterations"])
    parser.add_argument("--corpus-file", default=None, help="keep the generated corpus here (.npz) and reuse it")
    args = parser.parse_args()
    config = train_corpus_extractor(args.out, workers=args.workers, corpus_file=args.corpus_file,
                                    n_cases=args.cases, iterations=args.iterations)
    print(json.dumps(config, indent=1))


if __name__ == "__main__":
    main()
