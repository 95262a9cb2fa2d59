"""Does the label autoencoder lose tumours? Train variants of it (latent grid; batch Dice and class weights of its
Dice + CE loss) on the first 16 training labels (+4 deformed copies each, as the fit trains it; quick config
otherwise, one thread) and score their reconstructions of 48 held-out labels (the test cases after the held-out
judge's, which no generator saw): liver Dice, tumour kept, tumour volume ratio, tumour Dice, lesions.

The 2x loss rows were first measured at commit 338141c through DuoConfig knobs (taken out again with the 16^3 label
stage they came with, which lost downstream); the bench now sets the same loss arguments itself.

Usage: python bench/duo_label_autoencoder_tumours.py [VARIANT ...] [--out bench/results/duo_label_autoencoder_tumours_quick.json]
Results of other variants already in --out are kept.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from scipy import ndimage

from bench_setup import JUDGE_CASES, training_split
from foscu_bench.generators.duo_diffusion import networks
from foscu_bench.generators.duo_diffusion.augmentation import with_deformed_copies
from foscu_bench.generators.duo_diffusion.config import AutoencoderSize, config_for
from foscu_bench.generators.duo_diffusion.generator import one_hot
from foscu_bench.generators.duo_diffusion.training import train_autoencoder
from foscu_bench.metrics.segmentation import dice
from foscu_bench.store import atomic_write_json

N_TRAIN, N_HELD_OUT = 16, 48
QUICK, TWO_X = AutoencoderSize((16, 32, 64), 3), AutoencoderSize((16, 32), 3)
# name -> (label autoencoder size, DiceCELoss arguments beyond the fit's softmax=True, include_background=True)
VARIANTS: dict[str, tuple[AutoencoderSize, dict]] = {
    "4x (16,32,64) x3 [quick]": (QUICK, {}),
    "2x (16,32) x3": (TWO_X, {}),
    "2x (16,32) x3, batch Dice": (TWO_X, {"batch": True}),
    "2x (16,32) x3, tumour weight 4": (TWO_X, {"weight": (1.0, 1.0, 4.0)}),
    "2x (16,32) x3, batch Dice, liver weight 2, tumour weight 4": (TWO_X, {"batch": True, "weight": (1.0, 2.0, 4.0)}),
    "2x (16,32) x3, batch Dice, tumour weight 4": (TWO_X, {"batch": True, "weight": (1.0, 1.0, 4.0)}),
    "4x (16,32,64) x3, batch Dice, tumour weight 4": (QUICK, {"batch": True, "weight": (1.0, 1.0, 4.0)}),
    "4x (16,32,64) x3, batch Dice, tumour weight 8": (QUICK, {"batch": True, "weight": (1.0, 1.0, 8.0)}),
}


def label_loss(arguments: dict):
    """The fit's label loss with other arguments: train_autoencoder builds ``monai.losses.DiceCELoss`` when called,
    so the bench swaps the class for the call (the generator's code and fingerprint stay as they are)."""
    import monai.losses

    if "weight" in arguments:
        arguments = {**arguments, "weight": torch.tensor(arguments["weight"])}
    return mock.patch.object(monai.losses, "DiceCELoss", functools.partial(monai.losses.DiceCELoss, **arguments))


def lesions(mask: np.ndarray) -> int:
    """26-connected components (as ``sample_checks.lesions_per_tumour_case`` counts them; 0 for no tumour)."""
    return ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]


def reconstruction_report(autoencoder, labels: list[np.ndarray]) -> dict:
    """Liver Dice over every label; tumour kept, volume ratio, Dice and lesions over the labels with a tumour."""
    rows = {"liver_dice": [], "tumour_kept": [], "tumour_ratio": [], "tumour_dice": [], "lesions_real": [],
            "lesions_recon": []}
    with torch.no_grad():
        reconstructions = np.concatenate([autoencoder(one_hot(np.stack(labels[i:i + 8])))[0].argmax(1).numpy()
                                          for i in range(0, len(labels), 8)])
    for recon, label in zip(reconstructions, labels):
        rows["liver_dice"].append(dice(recon > 0, label > 0))
        tumour, recon_tumour = label == 2, recon == 2
        if tumour.any():
            rows["tumour_kept"].append(bool(recon_tumour.any()))
            rows["tumour_ratio"].append(recon_tumour.sum() / tumour.sum())
            rows["tumour_dice"].append(dice(recon_tumour, tumour))
            rows["lesions_real"].append(lesions(tumour))
            rows["lesions_recon"].append(lesions(recon_tumour))
    return {**{k: float(np.mean(v)) for k, v in rows.items()}, "n_tumour_cases": len(rows["tumour_kept"]),
            "tumour_ratio_median": float(np.median(rows["tumour_ratio"]))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="*", help=f"default: all of {list(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=Path("bench/results/duo_label_autoencoder_tumours_quick.json"))
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    torch.set_num_threads(1)
    ds, split, train = training_split("phantom", "quick")
    pairs = list(train)[:N_TRAIN]
    config = config_for("quick")
    _, labels = with_deformed_copies(np.stack([p.image[0] for p in pairs]), np.stack([p.label for p in pairs]),
                                     config.label_deformed_copies, config.deformation_strength, 0)
    held_out = [p.label for p in ds.pairs(split.test)[JUDGE_CASES:JUDGE_CASES + N_HELD_OUT]]
    training_labels = one_hot(labels)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.variants or list(VARIANTS):
        torch.manual_seed(0)
        size, loss_arguments = VARIANTS[name]
        autoencoder = networks.build_autoencoder(size, networks.LABEL_CHANNELS)
        started = time.perf_counter()
        with label_loss(loss_arguments):
            train_autoencoder("label_autoencoder", autoencoder, training_labels, config, 0, torch.device("cpu"))
        results[name] = {"seconds": time.perf_counter() - started,
                         **reconstruction_report(autoencoder.eval(), held_out)}
        print(json.dumps({name: results[name]}), flush=True)
        atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
