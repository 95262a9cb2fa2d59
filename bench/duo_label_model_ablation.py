"""What makes Duo-Diffusion's generated labels match the training labels? Train the label diffusion model anew.

Usage: python bench/duo_label_model_ablation.py --fitted CHECKPOINT_DIR "ema=0.999" "ema=0" "ema=0.999;its=1000;batch=2"
       [--n 32] [--out bench/results/duo_label_model_ablation_quick.json]
On the fitted generator's label autoencoder and training cases, each variant (``;``-separated ``ema=<decay>``,
``its=<iterations>``, ``batch=<batch>``; the rest as the generator's config) trains the label latent diffusion
model from scratch on one thread, samples ``--n`` labels with the default sampler (same noise for every variant)
and compares them, and the fitted model's samples, with the training labels: liver volume (mean, sd, KS), surface
fraction (voxels on the liver surface / liver voxels: how irregular the shapes are), tumour presence, tumour
volume, lesion count, and the median Dice of each label with its nearest training label (memorisation; held-out
real labels give the value a model that does not copy should stay near). The label autoencoder's reconstructions of the training labels are the reference a
perfect latent model reaches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, stats

from bench_setup import training_split
from foscu_bench import generator as G
from foscu_bench.generators.duo_diffusion import networks
from foscu_bench.generators.duo_diffusion.generator import one_hot, postprocess_label
from foscu_bench.generators.duo_diffusion.sampling import denoise
from foscu_bench.generators.duo_diffusion.training import train_diffusion
from foscu_bench.sample_checks import lesions_per_tumour_case, nearest_training_dice, tumour_volumes_ml
from foscu_bench.store import atomic_write_json


def label_statistics(labels: np.ndarray, reference_ml: np.ndarray | None, voxel_ml: float,
                     training: np.ndarray | None = None) -> dict:
    liver = labels > 0
    ml = liver.sum((1, 2, 3)) * voxel_ml
    surface = [float((m & ~ndimage.binary_erosion(m)).sum() / max(m.sum(), 1)) for m in liver]
    tumour_ml = tumour_volumes_ml(labels, voxel_ml)
    out = {"liver_ml_mean": float(ml.mean()), "liver_ml_sd": float(ml.std(ddof=1)),
           "surface_fraction": float(np.mean(surface)), "tumour_fraction": float((labels == 2).any((1, 2, 3)).mean()),
           "tumour_ml_median": float(np.median(tumour_ml)) if len(tumour_ml) else float("nan"),
           "lesions_per_tumour_case": lesions_per_tumour_case(labels), "n": int(len(labels))}
    if training is not None:
        out["nearest_training_dice_median"] = float(np.median(nearest_training_dice(labels, training)))
    if reference_ml is not None:
        test = stats.ks_2samp(ml, reference_ml)
        out.update(liver_volume_ks=float(test.statistic), liver_volume_ks_p=float(test.pvalue))
    return out


def sample_labels(unet, config, scale: float, autoencoder, latent_shape, n: int) -> np.ndarray:
    """``n`` post-processed labels from the same seeded noise for every model (default sampler)."""
    generators = [torch.Generator().manual_seed(1000 + i) for i in range(n)]
    with torch.no_grad():
        z = denoise(unet, config, (n, *latent_shape), generators, torch.device("cpu"))
        decoded = autoencoder.decode(z / scale).argmax(1).numpy().astype(np.uint8)
    return np.stack([postprocess_label(d, config.min_component_fraction) for d in decoded])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", type=Path, required=True, help="checkpoint of a fitted duo-diffusion")
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench/results/duo_label_model_ablation_quick.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds, split, train = training_split("phantom", args.profile)
    gen = G.load("duo-diffusion", args.fitted)
    real = [p for p in train if p.case_id in set(gen.train_case_ids)]
    voxel_ml = float(np.prod(real[0].spacing)) / 1000.0
    labels = np.stack([p.label for p in real])
    real_ml = (labels > 0).sum((1, 2, 3)) * voxel_ml
    autoencoder, config = gen.modules["label_autoencoder"], gen.duo_config
    with torch.no_grad():
        latents = torch.cat([autoencoder.encode(one_hot(labels[i:i + 4]))[0] for i in range(0, len(labels), 4)])
        reconstructed = torch.cat([autoencoder.decode(latents[i:i + 4]) for i in range(0, len(latents), 4)])
    held_out = np.stack([p.label for p in ds.pairs(split.test)[:args.n]])
    results = {"training_labels": label_statistics(labels, None, voxel_ml),
               "held_out_labels": label_statistics(held_out, real_ml, voxel_ml, labels),
               "autoencoder_reconstruction": label_statistics(reconstructed.argmax(1).numpy(), real_ml, voxel_ml)}
    latents = latents * gen.scale["label"]
    results["fitted"] = label_statistics(sample_labels(gen.modules["label_unet"], config, gen.scale["label"], autoencoder,
                                                       latents.shape[1:], args.n), real_ml, voxel_ml, labels)
    print(json.dumps(results), flush=True)
    for variant in args.variants:
        settings = dict(item.split("=") for item in variant.split(";") if item)
        variant_config = dataclasses.replace(
            config, ema_decay=float(settings.get("ema", config.ema_decay)),
            diffusion_batch_size=int(settings.get("batch", config.diffusion_batch_size or config.batch_size)),
            iterations={**config.iterations, "label_diffusion": int(settings.get("its", config.iterations["label_diffusion"]))})
        torch.manual_seed(0)
        unet = networks.build_diffusion_unet(config.diffusion, config.label_autoencoder.latent_channels)
        start = time.perf_counter()
        log = train_diffusion("label_diffusion", unet, latents, variant_config, 0, torch.device("cpu"))
        seconds = time.perf_counter() - start
        sampled = sample_labels(unet, variant_config, gen.scale["label"], autoencoder, latents.shape[1:], args.n)
        results[variant] = {"seconds": seconds, "final_loss": float(np.mean(log["losses"][-200:])),
                            **label_statistics(sampled, real_ml, voxel_ml, labels)}
        print(json.dumps({variant: results[variant]}), flush=True)
    atomic_write_json(args.out, {"fitted": str(args.fitted), "n_train": len(real), "results": results})


if __name__ == "__main__":
    main()
