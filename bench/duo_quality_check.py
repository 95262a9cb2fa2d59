"""Would a quality check lift Duo-Diffusion's image-label consistency? Best-of-K image candidates per label.

MAISI checks every generated CT (organ intensity ranges) and regenerates the ones that fail. The analogue for a
paired generator is consistency: draw K images for one generated label (K noise seeds through the ControlNet
stage) and keep the one that a segmenter *the generator may own* (trained on the fit's own training cases, never
on held-out data) finds most consistent with the label. Whether that helps is measured, not assumed: the chosen
images are judged by the held-out judge (a U-Net trained on held-out cases the generator never saw, as the
runner's consistency and the quality-gate bench do), beside diversity (MS-SSIM among the chosen images; a
selector could collapse onto easy images).

Usage: python bench/duo_quality_check.py --fitted DIR [--n 32] [--candidates 1 2 4]
                                         [--out bench/results/duo_quality_check_quick.json]
       python bench/duo_quality_check.py --fitted DIR --run RUN_DIR --select 4 [--unet-seeds 5]

With ``--run`` (a finished run whose Duo-Diffusion arm came from that fit): the downstream test. For every seed, the
run's own synthetic set is candidate 0 (so ``--select 1`` reproduces the run's Duo-Diffusion U-Nets), K - 1 more
images are drawn for the same labels, the generator's own judge keeps the best per label, and a U-Net is trained on
real + selected pairs exactly as the runner trains that arm (same seed, settings, test cases). The new rows join
the run's metrics.csv for the crossed random-effects comparison against the run's real-only arm.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from bench_setup import JUDGE_CASES, held_out_judge, training_split
from foscu_bench import generator as G
from foscu_bench.metrics.fidelity import mean_ms_ssim
from foscu_bench.metrics.segmentation import dice
from foscu_bench.segmentation import predict, train_segmentation
from foscu_bench.store import atomic_write_json


def judged(model, labels: list[np.ndarray], images: list[np.ndarray], settings) -> np.ndarray:
    """Liver Dice of ``model``'s segmentation of each image against the label it was generated for."""
    return np.asarray([dice(predict(model, image, settings), label) for image, label in zip(images, labels)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", type=Path, required=True, help="checkpoint directory of a fitted duo-diffusion")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n", type=int, default=32, help="generated labels")
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=Path("bench/results/duo_quality_check_quick.json"))
    parser.add_argument("--run", type=Path, default=None, help="a finished run whose Duo-Diffusion arm is this fit")
    parser.add_argument("--select", type=int, default=4, help="with --run: candidates per label")
    parser.add_argument("--unet-seeds", type=int, default=5)
    args = parser.parse_args()
    if args.run is not None:
        result = downstream(args)
        document = json.loads(args.out.read_text()) if args.out.is_file() else {}
        document[f"downstream_best_of_{args.select}"] = result
        atomic_write_json(args.out, document)
        print(json.dumps(result, default=float), flush=True)
        return

    ds, split, train = training_split("phantom", args.profile)
    settings = ds.profile.segmentation
    gen = G.load("duo-diffusion", args.fitted)
    own_cases = [p for p in train if p.case_id in set(gen.train_case_ids)]
    started = time.perf_counter()
    judge_settings = dataclasses.replace(settings, members=1)  # one U-Net each: the bench compares K, not judges
    own_judge = train_segmentation(own_cases, [], "real", judge_settings, seed=0).model
    held_out_unet, rest = held_out_judge(ds, split, judge_settings)
    ceiling_cases = rest[:args.n]
    judge_seconds = time.perf_counter() - started
    ceiling = judged(held_out_unet, [p.label for p in ceiling_cases], [p.image for p in ceiling_cases], settings)

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
        held.append(judged(held_out_unet, labels, images[-1], settings))
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
              "judge_members": 1,
              "judge_seconds": judge_seconds,
              # how well the generator's own judge ranks candidates as the held-out judge would
              "rank_agreement_spearman": float(np.mean([
                  _spearman(own[:, i], held[:, i]) for i in range(args.n)])) if k_max > 2 else None,
              "rows": rows}
    document = json.loads(args.out.read_text()) if args.out.is_file() else {}
    atomic_write_json(args.out, {**document, **result})
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)


def _selected_set(task: tuple) -> list:
    """One seed's selected synthetic pairs: the run's set as candidate 0, ``k - 1`` more images per label."""
    import torch

    from foscu_bench.generator import make_pair

    gen, judge, pairs, seed, k, settings, profile = task
    torch.set_num_threads(1)
    labels = [p.label for p in pairs]
    candidates = [[p.image for p in pairs]]
    for extra in range(1, k):  # seeds no sampling stream of the run draws (they live above 2**31 / 2 by offset)
        candidates.append([make_pair(image, label, profile, "c").image for image, label in zip(
            gen.images_for_labels(labels, 0, seeds=G.volume_seeds(len(labels), 7_000_000 + 1000 * seed + extra)),
            labels)])
    scores = np.stack([judged(judge, labels, images, settings) for images in candidates])
    chosen = scores.argmax(0)
    return [dataclasses.replace(p, image=candidates[c][i]) for i, (p, c) in enumerate(zip(pairs, chosen))]


def _unet_rows(task: tuple) -> list[dict]:
    import torch

    from foscu_bench.segmentation import evaluate

    real, synthetic, settings, seed, fraction, test, name, n_real = task
    torch.set_num_threads(1)
    result = train_segmentation(real, synthetic, "real+synthetic", settings, seed=seed, device="cpu",
                                synthetic_fraction=fraction)
    return [{"generator": name, "arm": "real+synthetic", "n_real": n_real, "draw": 0, "seed": seed, **row}
            for row in evaluate(result.model, test, settings)]


def downstream(args) -> dict:
    """Train the real+synthetic U-Nets of a run's Duo-Diffusion arm on best-of-``select`` sets; compare."""
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    from foscu_bench.results import compute_stats, load_run
    from foscu_bench.runner.context import prepare
    from foscu_bench.runner.refidelity import config_from_manifest

    run = load_run(args.run)
    ctx = prepare(config_from_manifest(run.manifest), args.run.parent)
    level = run.manifest["real_data_levels"][0]
    n_real = level["n_real"]
    gen = G.load("duo-diffusion", args.fitted)
    settings = ctx.profile.segmentation
    real, test = ctx.pairs("train", n_real, 0), ctx.pairs("test")
    assert sorted(p.case_id for p in real) == sorted(gen.train_case_ids), "the fit is not the run's fit"
    started = time.perf_counter()
    judge = train_segmentation(real, [], "real", dataclasses.replace(settings, members=1), seed=0).model
    seeds = list(range(args.unet_seeds))
    sets = [_selected_set((gen, judge, ctx.synthetic_pairs("duo-diffusion", s, n_real, 0), s, args.select, settings,
                           ctx.profile)) for s in seeds]
    select_seconds = time.perf_counter() - started
    name = f"duo-diffusion-best-of-{args.select}"
    with ProcessPoolExecutor(2) as pool:
        rows = [r for rs in pool.map(_unet_rows, [(real, sets[s], settings, s, ctx.config.synthetic_fraction, test,
                                                   name, n_real) for s in seeds]) for r in rs]
    frame = pd.concat([run.metrics[run.metrics["seed"].isin(seeds)], pd.DataFrame(rows)], ignore_index=True)
    kinds = {g: v.get("kind", "generator") for g, v in run.manifest["generators"].items()}
    stats = compute_stats(frame, kinds)
    out = {}
    for g in (name, "duo-diffusion", "phantom-oracle", "mismatched-labels"):
        block = stats["generators"].get(g, {})
        out[g] = {k: block.get(k) for k in ("delta_dice_mean", "ci_low", "ci_high", "p_value", "mde")}
    # the selection against the run's own Duo arm, paired by seed and case
    duo = frame[(frame["generator"] == "duo-diffusion")].set_index(["seed", "case_id"])["dice_liver"]
    best = frame[(frame["generator"] == name)].set_index(["seed", "case_id"])["dice_liver"]
    per_seed = (best - duo.loc[best.index]).groupby(level=0).mean()
    out["selected_minus_duo_per_seed_points"] = [round(100 * float(v), 3) for v in per_seed]
    out["select_seconds"] = select_seconds
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else 0.0


if __name__ == "__main__":
    main()
