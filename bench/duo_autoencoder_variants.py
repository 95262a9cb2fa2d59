"""Which image autoencoder should Duo-Diffusion use? Reconstruction quality of variants, judged like samples.

Usage: python bench/duo_autoencoder_variants.py --fitted CHECKPOINT_DIR "latent=8" "adv=0.05" "latent=8;adv=0.01"
       [--judge held-out] [--out bench/results/duo_autoencoder_variants_quick.json]
Each variant (``;``-separated ``latent=<channels>``, ``adv=<adversarial weight>``, ``grad=<gradient weight>``,
``its=<iterations>``, ``ch=<channels per level, comma-separated>``: one level fewer halves the compression factor)
trains the image autoencoder from scratch on the fitted generator's training cases and their deformed copies (as
the fit trains it) with the generator's settings otherwise, on one thread. For the fitted autoencoder and each
variant, on the training cases and on 48 held-out test cases: L1 of the reconstruction, sharpness relative to the
input (1 = as sharp), MS-SSIM among reconstructions, and image-label consistency of the reconstructions (liver
Dice of the judge U-Net against the true labels): the consistency a perfect latent model could reach through this
decoder. ``--judge held-out`` (as ``bench/quality_gates.py``): the judge trains on 32 held-out cases and the next
48 are the held-out set; ``training``: the judge is the real-only U-Net of the training split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench_setup import held_out_judge, reference_unet, training_split
from foscu_bench import generator as G
from foscu_bench.generators.duo_diffusion import networks
from foscu_bench.generators.duo_diffusion.augmentation import with_deformed_copies
from foscu_bench.generators.duo_diffusion.training import train_autoencoder
from foscu_bench.metrics.fidelity import mean_ms_ssim
from foscu_bench.sample_checks import image_label_consistency, sharpness
from foscu_bench.store import atomic_write_json


def reconstruction_report(autoencoder, pairs, judge, settings) -> dict:
    images = torch.from_numpy(np.stack([p.image for p in pairs]))
    with torch.no_grad():
        recon = torch.cat([autoencoder(images[i:i + 4])[0] for i in range(0, len(images), 4)]).float().numpy()
    consistency = image_label_consistency([dataclasses.replace(p, image=r) for p, r in zip(pairs, recon)], judge,
                                          settings)
    return {"l1": float(np.abs(recon - images.numpy()).mean()),
            "sharpness_ratio": sharpness(list(recon)) / sharpness(list(images.numpy())),
            "ms_ssim_among": mean_ms_ssim(np.clip(recon, 0, 1).astype(np.float32), None, 64, 0),
            "consistency": float(consistency.mean()), "n": len(pairs)}


def variant_config(config, variant: str):
    settings = dict(item.split("=") for item in variant.split(";") if item)
    unknown = set(settings) - {"latent", "adv", "grad", "its", "ch"}
    if unknown:
        raise SystemExit(f"unknown variant keys {sorted(unknown)} in {variant!r}")
    channels = (tuple(int(c) for c in settings["ch"].split(",")) if "ch" in settings
                else config.image_autoencoder.channels)
    size = dataclasses.replace(config.image_autoencoder, channels=channels,
                               latent_channels=int(settings.get("latent", config.image_autoencoder.latent_channels)))
    iterations = int(settings.get("its", config.iterations["image_autoencoder"]))
    return dataclasses.replace(config, image_autoencoder=size,
                               adversarial_weight=float(settings.get("adv", config.adversarial_weight)),
                               gradient_weight=float(settings.get("grad", config.gradient_weight)),
                               iterations={**config.iterations, "image_autoencoder": iterations})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", type=Path, required=True, help="checkpoint of a fitted duo-diffusion")
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", type=Path, default=Path("bench/results/duo_autoencoder_variants_quick.json"))
    parser.add_argument("--judge", choices=["held-out", "training"], default="training")
    parser.add_argument("--merge", action="store_true", help="keep the variants already in --out (same fit, judge)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds, split, train = training_split("phantom", args.profile)
    settings = ds.profile.segmentation
    if args.judge == "held-out":
        judge, test = held_out_judge(ds, split)
    else:
        judge, test = reference_unet(ds, train), ds.pairs(split.test)
    gen = G.load("duo-diffusion", args.fitted)
    real = [p for p in train if p.case_id in set(gen.train_case_ids)]
    held_out = test[:48]

    def report(autoencoder) -> dict:
        return {"train": reconstruction_report(autoencoder, real, judge, settings),
                "held_out": reconstruction_report(autoencoder, held_out, judge, settings)}

    # the ceiling: the judge on the real images themselves (a lossless autoencoder)
    results = {"real_images": {which: {"consistency": float(image_label_consistency(pairs, judge, settings).mean()),
                                       "n": len(pairs)} for which, pairs in (("train", real), ("held_out", held_out))},
               "fitted": {"config": gen.duo_config.to_dict()["image_autoencoder"],
                          "adversarial_weight": gen.duo_config.adversarial_weight,
                          **report(gen.modules["image_autoencoder"])}}
    print(json.dumps(results), flush=True)
    fitted = gen.duo_config
    images, _ = with_deformed_copies(np.stack([p.image[0] for p in real]), np.stack([p.label for p in real]),
                                     fitted.image_deformed_copies, fitted.deformation_strength, 0)
    images = torch.from_numpy(images[:, None])
    for variant in args.variants:
        config = variant_config(fitted, variant)
        torch.manual_seed(0)
        autoencoder = networks.build_autoencoder(config.image_autoencoder, 1)
        discriminator = networks.build_discriminator() if config.adversarial_weight > 0 else None
        start = time.perf_counter()
        log = train_autoencoder("image_autoencoder", autoencoder, images, config, 0, torch.device("cpu"),
                                discriminator=discriminator)
        results[variant] = {"seconds": time.perf_counter() - start,
                            "final_loss": float(np.mean(log["losses"][-100:])), **report(autoencoder.eval())}
        print(json.dumps({variant: results[variant]}), flush=True)
    identity = {"n_train": len(real), "judge": args.judge, "fitted_from": str(args.fitted)}
    document = {**identity, "deformed_copies": fitted.image_deformed_copies, "variants": results}
    if args.merge and args.out.is_file():  # variants measured in earlier calls with the same fit and judge
        earlier = json.loads(args.out.read_text())
        if {k: earlier.get(k) for k in identity} != identity:
            raise SystemExit(f"{args.out}: its variants come from another fit or judge; not merged")
        document["variants"] = {**earlier["variants"], **results}
    atomic_write_json(args.out, document)


if __name__ == "__main__":
    main()
