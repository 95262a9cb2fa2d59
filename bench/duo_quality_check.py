"""Would a quality check lift Duo-Diffusion's image-label consistency? Best-of-K image candidates per label.

MAISI checks every generated CT (organ intensity ranges) and regenerates the ones that fail. The analogue for a
paired generator is consistency: draw K images for one generated label (K noise seeds through the ControlNet
stage) and keep the one that a segmenter *the generator may own* (trained on the fit's own training cases, never
on held-out data) finds most consistent with the label. Whether that helps is measured, not assumed: the chosen
images are judged by the held-out judge (a U-Net trained on held-out cases the generator never saw, as the
runner's consistency and the quality-gate bench do), beside diversity (MS-SSIM among the chosen images; a
selector could collapse onto easy images).

Usage: python bench/duo_quality_check.py --fitted DIR [--n 48] [--candidates 1 2 4 8]
                                         [--out bench/results/duo_quality_check_quick.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench_setup import training_split
from foscu_bench import generator as G
from foscu_bench.metrics.fidelity import mean_ms_ssim
from foscu_bench.metrics.segmentation import dice
from foscu_bench.segmentation import predict, train_segmentation
from foscu_bench.store import atomic_write_json

JUDGE_CASES = 32
"""Held-out cases the held-out judge trains on (as bench/quality_gates.py); the next ones give its ceiling."""


def judged(model, labels: list[np.ndarray], images: list[np.ndarray], settings) -> np.ndarray:
    """Liver Dice of ``model``'s segmentation of each image against the label it was generated for."""
    return np.asarray([dice(predict(model, image, settings), label) for image, label in zip(images, labels)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", type=Path, required=True, help="checkpoint directory of a fitted duo-diffusion")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n", type=int, default=48, help="generated labels")
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", type=Path, default=Path("bench/results/duo_quality_check_quick.json"))
    args = parser.parse_args()

    ds, split, train = training_split("phantom", args.profile)
    settings = ds.profile.segmentation
    gen = G.load("duo-diffusion", args.fitted)
    own_cases = [p for p in train if p.case_id in set(gen.train_case_ids)]
    held_out = ds.pairs(split.test)
    judge_cases, ceiling_cases = held_out[:JUDGE_CASES], held_out[JUDGE_CASES:JUDGE_CASES + args.n]
    started = time.perf_counter()
    own_judge = train_segmentation(own_cases, [], "real", settings, seed=0).model
    held_out_judge = train_segmentation(judge_cases, [], "real", settings, seed=0).model
    judge_seconds = time.perf_counter() - started
    ceiling = judged(held_out_judge, [p.label for p in ceiling_cases], [p.image for p in ceiling_cases], settings)

    started = time.perf_counter()
    labels = gen.generate_labels(args.n, seed=1)
    label_seconds = time.perf_counter() - started
    k_max = max(args.candidates)
    images, own, held, image_seconds = [], [], [], []
    for k in range(k_max):  # candidate k of every label: its own noise seeds, so K candidates nest in K + 1
        started = time.perf_counter()
        images.append(gen.images_for_labels(labels, 0, seeds=G.volume_seeds(args.n, 100 + k)))
        image_seconds.append(time.perf_counter() - started)
        own.append(judged(own_judge, labels, images[-1], settings))
        held.append(judged(held_out_judge, labels, images[-1], settings))
    own, held = np.stack(own), np.stack(held)  # candidates x labels

    rows = []
    for k in args.candidates:
        chosen = own[:k].argmax(0)
        picked = [images[c][i] for i, c in enumerate(chosen)]
        rows.append({"candidates": k,
                     "held_out_consistency": float(held[chosen, np.arange(args.n)].mean()),
                     "held_out_consistency_sd": float(held[chosen, np.arange(args.n)].std(ddof=1)),
                     "own_judge_consistency": float(own[chosen, np.arange(args.n)].mean()),
                     "ms_ssim_among": mean_ms_ssim(np.clip(np.stack(picked), 0, 1).astype(np.float32), None, 64, 0),
                     "seconds_per_volume": (label_seconds + sum(image_seconds[:k])) / args.n})
        print(json.dumps(rows[-1]), flush=True)
    result = {"fitted": str(args.fitted), "n_labels": args.n, "n_fit_cases": len(own_cases),
              "held_out_ceiling": {"mean": float(ceiling.mean()), "n": int(len(ceiling))},
              "judges": {"own": f"U-Net on the fit's {len(own_cases)} training cases, seed 0, profile settings",
                         "held_out": f"U-Net on {JUDGE_CASES} held-out test cases, seed 0, profile settings"},
              "judge_seconds": judge_seconds,
              # how well the generator's own judge ranks candidates as the held-out judge would
              "rank_agreement_spearman": float(np.mean([
                  _spearman(own[:, i], held[:, i]) for i in range(args.n)])) if k_max > 2 else None,
              "rows": rows}
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else 0.0


if __name__ == "__main__":
    main()
