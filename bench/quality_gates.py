"""Quality gates of fitted generators on the phantom: label realism, tumours, image-label consistency, images.

Usage: python bench/quality_gates.py --fitted duo-diffusion=CHECKPOINT_DIR [NAME=DIR ...]
                                     [--profile quick] [--n 32] [--sampler dpm++ --steps 10]
                                     [--out bench/results/quality_quick.json] [--tag before]
For each saved generator: sample ``--n`` pairs (seed 1) and compare them with the real cases it was fitted on
(its ``train_case_ids``): liver volume (KS), connectivity, tumour presence / volume / lesion count, intensity
distances, diversity (MS-SSIM among samples) and sharpness; image-label consistency (liver Dice of a real-only
U-Net on the generated images against their generating labels) and tumour Dice (the same U-Net's tumour class on
generated tumours). The judge trains on 32 held-out cases by default (``--judge training``: on the training
split, which inflates consistency of samples that copy training cases); the remaining held-out cases give both
ceilings. Memorisation: each sample's nearest training label
(Dice) and image (correlation), beside the same for held-out real cases. Duo-Diffusion also reports where label volume is lost
(label-autoencoder reconstruction of its training labels, post-processing) and the per-volume scale of its
training latents. Writes a figure of real and generated pairs, interleaved, per generator into paper_figures/.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench_setup import JUDGE_CASES, held_out_judge, reference_unet, training_split
from foscu_bench import generator as G
from foscu_bench.preview import pick_preview_cases, save_preview
from foscu_bench.sample_checks import image_label_consistency, memorisation_report, sample_report, tumour_consistency
from foscu_bench.store import atomic_write_json


def summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()) if len(values) else float("nan"),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"), "n": int(len(values))}


def duo_diagnostics(gen, real) -> dict:
    """Where Duo-Diffusion's label volume goes, and whether its latents are scaled alike per volume."""
    import torch

    from foscu_bench.generators.duo_diffusion.generator import one_hot
    from foscu_bench.generators.duo_diffusion.training import latent_scale_report

    labels = np.stack([p.label for p in real])
    out = {}
    with torch.no_grad():
        if "label_autoencoder" in gen.modules:
            ae = gen.modules["label_autoencoder"]
            onehot = one_hot(labels)
            z = torch.cat([ae.encode(onehot[i:i + 4])[0] for i in range(0, len(onehot), 4)])
            decoded = torch.cat([ae.decode(z[i:i + 4]) for i in range(0, len(z), 4)]).argmax(1).numpy()
            ratio = (decoded > 0).sum((1, 2, 3)) / np.maximum((labels > 0).sum((1, 2, 3)), 1)
            out["label_reconstruction_volume_ratio"] = summary(ratio)
            out["label_reconstruction_tumour_kept"] = float(np.mean([(d == 2).any() for d, l in zip(decoded, labels)
                                                                     if (l == 2).any()]))
            out["label_latent_scale"] = latent_scale_report(z * gen.scale["label"])
        ae = gen.modules["image_autoencoder"]
        images = torch.from_numpy(np.stack([p.image for p in real]))
        z = torch.cat([ae.encode(images[i:i + 4])[0] for i in range(0, len(images), 4)])
        out["image_latent_scale"] = latent_scale_report(z * gen.scale["image"])
        recon = torch.cat([ae.decode(z[i:i + 4]) for i in range(0, len(z), 4)]).numpy()
        out["image_reconstruction_l1"] = float(np.abs(recon - images.numpy()).mean())
    return out


def consistency_budget(gen, held_out, unet, settings, n: int = 32) -> dict:
    """Where Duo-Diffusion's consistency gap opens: the judge on held-out real images (the ceiling), on their image
    autoencoder reconstructions (what decoding alone costs), and on images the ControlNet generates for their real
    labels (what the image stage costs without the label generator); generated labels are the main result."""
    import torch

    pairs = held_out[:n]
    ae = gen.modules["image_autoencoder"]
    with torch.no_grad():
        images = torch.from_numpy(np.stack([p.image for p in pairs]))
        recon = torch.cat([ae.decode(ae.encode(images[i:i + 4])[0]) for i in range(0, len(images), 4)]).numpy()
    generated = gen.images_for_labels([p.label for p in pairs], seed=1)

    def judged(images) -> dict:  # the held-out labels, with ``images`` in place of their own
        return summary(image_label_consistency(
            [replace(p, image=np.clip(i, 0.0, 1.0).astype(p.image.dtype)) for p, i in zip(pairs, images)],
            unet, settings))

    return {"n": len(pairs), "real_images": summary(image_label_consistency(pairs, unet, settings)),
            "autoencoder_reconstructions": judged(recon), "generated_for_real_labels": judged(generated)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fitted", nargs="+", required=True, help="NAME=DIR of saved generators")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--sampler", default=None, help="sampler of learned generators (default: theirs)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, nargs="+", default=None,
                        help="Duo-Diffusion: sample once per classifier-free guidance weight of the image stage "
                             "(DuoConfig.control_guidance; keys get -wW)")
    parser.add_argument("--tag", default="", help="suffix of the result keys and figure names (e.g. before)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality_quick.json"))
    parser.add_argument("--figures", type=Path, default=Path("paper_figures"))
    parser.add_argument("--judge", choices=["held-out", "training"], default="held-out",
                        help="train the consistency judge on held-out cases (default: a generator that reproduces "
                             "its training cases gains nothing from the judge having seen them) or on the training split")
    args = parser.parse_args()
    ds, split, train = training_split("phantom", args.profile)
    settings = ds.profile.segmentation
    if args.judge == "held-out":
        # judge: a real-only U-Net on the first JUDGE_CASES held-out cases; ceiling: the other held-out cases
        unet, test = held_out_judge(ds, split)
        judge = f"real-only U-Net on {JUDGE_CASES} held-out cases (no generator saw them), seed 0"
        ceiling_key = "real_test_ceiling_held_out_judge"
    else:
        test = ds.pairs(split.test)
        unet = reference_unet(ds, train)
        judge = f"real-only U-Net on the {len(train)} training cases, seed 0"
        ceiling_key = "real_test_ceiling"
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[ceiling_key] = {"consistency": summary(image_label_consistency(test, unet, settings)),
                            "tumour_dice": summary(tumour_consistency(test, unet, settings)), "judge": judge,
                            "n_cases": len(test)}
    print(json.dumps(results[ceiling_key]), flush=True)
    for item, guidance in [(item, w) for item in args.fitted for w in (args.guidance or [None])]:
        name, _, directory = item.partition("=")
        gen = G.load(name, Path(directory))
        if guidance is not None:
            gen.duo_config = replace(gen.duo_config, control_guidance=guidance)
        real = [p for p in train if p.case_id in set(gen.train_case_ids)]
        kwargs = {"sampler": args.sampler, "steps": args.steps} if args.sampler or args.steps else {}
        start = time.perf_counter()
        pairs = [p for p in gen.sample(args.n, seed=1, **kwargs)] if kwargs else \
            G.sample_validated(gen, args.n, seed=1, shape=ds.profile.shape)
        seconds = (time.perf_counter() - start) / args.n
        key = f"{name}{'-' + args.tag if args.tag else ''}{f'-w{guidance:g}' if guidance is not None else ''}"
        figure_pairs = [p for pair in zip(pick_preview_cases(real, 3), pick_preview_cases(pairs, 3)) for p in pair]
        figure = save_preview(figure_pairs, args.figures / f"samples_{key}_{args.profile}.png",
                              title=f"{key}: real training pair, then generated pair ({args.profile} profile)")
        results[key] = {"consistency": summary(image_label_consistency(pairs, unet, settings)),
                        "tumour_dice": summary(tumour_consistency(pairs, unet, settings)),
                        "judge": judge, "n_real_cases_fitted": len(real), "sampler": args.sampler, "steps": args.steps,
                        "control_guidance": getattr(getattr(gen, "duo_config", None), "control_guidance", None),
                        "sample_seconds_per_volume": seconds, "figure": str(figure), **sample_report(pairs, real),
                        **memorisation_report(pairs, real, test[:len(pairs)])}
        if name.startswith("duo-diffusion"):
            results[key]["diagnostics"] = duo_diagnostics(gen, real)
            if args.judge == "held-out":
                results[key]["consistency_budget"] = consistency_budget(gen, test, unet, settings)
        print(json.dumps({key: results[key]}, default=float), flush=True)
        atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
