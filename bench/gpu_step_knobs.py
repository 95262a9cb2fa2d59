"""What moves the paper-profile training steps toward the GPU's peak: memory format, cuDNN autotuning, batch size,
torch.compile, and where the U-Net's data augmentation spends its time. Random data (no phantom needed).

Usage (one GPU)::

    python bench/gpu_step_knobs.py --out bench/results/gpu_step_knobs.json

Each row: ms per step (forward + loss + backward + fused AdamW, bf16 autocast unless said), after warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from step_profile import _sync, timed  # bench/ is on sys.path when run as a script

ROWS: list[dict] = []


def log(row: dict) -> None:
    ROWS.append(row)
    print(json.dumps(row), flush=True)


def training_step(model, x, loss_of, precision: str = "bf16"):
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        loss_of(out).backward()
        optimiser.step()

    return step


def unet_rows(device) -> None:
    from monai.losses import DiceCELoss

    from foscu_bench.profiles import get_profile
    from foscu_bench.segmentation import build_unet

    settings = get_profile("paper").segmentation
    y = (torch.rand(settings.batch_size, 1, *settings.patch_size, device=device) * 3).floor()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    for benchmark in (False, True):
        torch.backends.cudnn.benchmark = benchmark
        for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last_3d", torch.channels_last_3d)):
            torch.manual_seed(0)
            model = build_unet(settings).to(device, memory_format=fmt)
            x = torch.rand(settings.batch_size, 1, *settings.patch_size, device=device).contiguous(memory_format=fmt)
            ms = timed(training_step(model, x, lambda out: loss_fn(out.float(), y)))
            log({"network": "segmentation_unet", "format": fmt_name, "cudnn_benchmark": benchmark, "ms": ms})
    torch.backends.cudnn.benchmark = True
    try:
        torch.manual_seed(0)
        model = build_unet(settings).to(device)
        x = torch.rand(settings.batch_size, 1, *settings.patch_size, device=device)
        compiled = torch.compile(model)
        start = time.perf_counter()
        step = training_step(compiled, x, lambda out: loss_fn(out.float(), y))
        step()
        _sync()
        compile_s = time.perf_counter() - start
        log({"network": "segmentation_unet", "format": "contiguous", "cudnn_benchmark": True, "compiled": True,
             "compile_s": compile_s, "ms": timed(step)})
    except Exception as error:
        log({"network": "segmentation_unet", "compiled": True, "error": repr(error)[:300]})


def autoencoder_rows(device) -> None:
    from foscu_bench.generators.duo_diffusion import networks
    from foscu_bench.generators.duo_diffusion.config import config_for

    config = config_for("paper")
    for benchmark in (False, True):
        torch.backends.cudnn.benchmark = benchmark
        for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last_3d", torch.channels_last_3d)):
            torch.manual_seed(0)
            ae = networks.build_autoencoder(config.image_autoencoder, 1).to(device, memory_format=fmt)
            x = torch.rand(2, 1, 128, 128, 128, device=device).contiguous(memory_format=fmt)
            ms = timed(training_step(ae, x, lambda out: (out[0].float() - x).abs().mean()), n=6)
            log({"network": "image_autoencoder", "format": fmt_name, "cudnn_benchmark": benchmark, "ms": ms})


def diffusion_rows(device) -> None:
    from foscu_bench.generators.duo_diffusion import networks
    from foscu_bench.generators.duo_diffusion.config import config_for

    config = config_for("paper")
    torch.backends.cudnn.benchmark = True
    for batch in (2, 8, 32):
        torch.manual_seed(0)
        unet = networks.build_diffusion_unet(config.diffusion, 4).to(device)
        x = torch.randn(batch, 4, 16, 16, 16, device=device)
        t = torch.randint(0, 1000, (batch,), device=device)

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.unet = unet

            def forward(self, z):
                return self.unet(z, t)

        ms = timed(training_step(Wrapped(), x, lambda out: out.float().pow(2).mean()))
        log({"network": "latent_diffusion_unet", "batch": batch, "ms": ms, "ms_per_sample": ms / batch})


def augmentation_rows(device) -> None:
    from monai.data import set_track_meta
    from monai.transforms import RandAffined, RandCropByPosNegLabeld

    from foscu_bench.profiles import get_profile
    from foscu_bench.segmentation import _augmentation

    settings = get_profile("paper").segmentation
    set_track_meta(False)
    image = torch.rand(1, 128, 128, 128)
    label = torch.zeros(1, 128, 128, 128)
    label[:, 30:90, 30:100, 40:90] = 1
    crop = RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=settings.patch_size,
                                  pos=2, neg=1, num_samples=1)
    affine = RandAffined(keys=["image", "label"], prob=1.0, rotate_range=(0.12,) * 3, scale_range=(0.1,) * 3,
                         mode=("bilinear", "nearest"), padding_mode="border")
    full = _augmentation(settings, (128, 128, 128), 0)
    for where in ("cpu", "cuda"):
        data = {"image": image.to(where), "label": label.to(where)}
        patch = {"image": image[:, :96, :96, :96].to(where), "label": label[:, :96, :96, :96].to(where)}
        for name, fn, arg in (("crop_pos_neg", crop, data), ("affine_always", affine, patch), ("full_chain", full, data)):
            log({"augmentation": name, "volumes_on": where, "ms": timed(lambda: fn(arg), n=10, warm=2)})
    set_track_meta(True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device("cuda")
    for section in (augmentation_rows, diffusion_rows, autoencoder_rows, unet_rows):
        try:
            section(device)
        except Exception as error:
            log({"section": section.__name__, "error": repr(error)[:300]})
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                        "rows": ROWS}, indent=1))


if __name__ == "__main__":
    main()
