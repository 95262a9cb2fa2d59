"""Where a fitted Duo-Diffusion loses image contrast: its image autoencoder's reconstructions against real cases.

Usage: python bench/duo_image_contrast.py CHECKPOINT_DIR --real-cases N [--test 16] [--out FILE.json]

Session 21 found samples of the 8-case fit dimmer than real (image SD 0.207 vs 0.249, 99th percentile 0.78 vs
0.94) and FID 133 against 52 at 16 cases. This script reconstructs the level's training cases and the first
``--test`` test cases through the fit's image autoencoder (posterior mean, as the latent diffusion model is trained
on it) and reports per-volume image SD and 99th percentile, real and reconstructed, with the mean absolute error.
Only the image autoencoder's weights are read, so fits of other label-stage versions load too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from foscu_bench.checkpoint import load_checkpoint, load_module_state
from foscu_bench.generators.duo_diffusion import networks
from foscu_bench.generators.duo_diffusion.config import config_for
from foscu_bench.runner import RunConfig, prepare
from foscu_bench.store import atomic_write_json


def image_autoencoder(checkpoint: Path, profile: str) -> tuple[torch.nn.Module, list[str]]:
    """The fit's image autoencoder and the case ids it was fitted on."""
    arrays, config = load_checkpoint(checkpoint)
    module = networks.build_autoencoder(config_for(profile).image_autoencoder, 1)
    load_module_state(module, arrays, "image_autoencoder")
    return module.eval(), list(config["train_case_ids"])


def volume_stats(volumes: np.ndarray) -> dict:
    """Mean over volumes of each volume's SD and 99th percentile."""
    return {"sd": float(np.mean([v.std() for v in volumes])),
            "p99": float(np.mean([np.percentile(v, 99) for v in volumes]))}


@torch.no_grad()
def reconstruction_report(autoencoder: torch.nn.Module, pairs: list, batch: int = 4) -> dict:
    images = np.stack([np.asarray(p.image, dtype=np.float32).reshape(np.asarray(p.label).shape) for p in pairs])
    tensor = torch.from_numpy(images)[:, None]
    rebuilt = torch.cat([autoencoder.reconstruct(tensor[i:i + batch]) for i in range(0, len(tensor), batch)])
    rebuilt = rebuilt[:, 0].numpy()
    return {"n": len(pairs), "real": volume_stats(images), "reconstructed": volume_stats(rebuilt),
            "mae": float(np.abs(rebuilt - images).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--real-cases", type=int, required=True, help="the level the fit was made at")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ctx = prepare(RunConfig(generators=("duo-diffusion",), profile=args.profile, real_cases=(args.real_cases,),
                            controls=False), "runs")
    autoencoder, fitted_on = image_autoencoder(args.checkpoint, args.profile)
    if sorted(fitted_on) != sorted(ctx.train_ids(args.real_cases, 0)):
        raise SystemExit(f"{args.checkpoint}: fitted on other cases than the {args.real_cases}-case level")
    report = {"checkpoint": str(args.checkpoint), "real_cases": args.real_cases,
              "train": reconstruction_report(autoencoder, ctx.pairs("train", args.real_cases, 0)),
              "test": reconstruction_report(autoencoder, ctx.pairs("test")[:args.test])}
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
