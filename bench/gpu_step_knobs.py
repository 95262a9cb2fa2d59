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
from dataclasses import replace
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


def diffusion_compile_rows(device) -> None:
    """The paper latent U-Net at its training batch (16 x 4 x 16^3): launch-bound in eager mode (80 ms a step for
    1.4 TFLOP, bench/results/gpu_paper_profile_after_h200.json), so compare torch.compile's fused kernels and its
    CUDA-graph mode ("reduce-overhead") with eager, in fp32 and bf16."""
    from foscu_bench.generators.duo_diffusion import networks
    from foscu_bench.generators.duo_diffusion.config import config_for

    config = config_for("paper")
    batch = config.diffusion_batch_size
    torch.backends.cudnn.benchmark = False
    for precision, mode in (("fp32", None), ("fp32", "default"), ("bf16", "default"), ("fp32", "reduce-overhead")):
        try:
            torch.manual_seed(0)
            torch.compiler.reset()
            unet = networks.build_diffusion_unet(config.image_diffusion_size,
                                                 config.image_autoencoder.latent_channels).to(device)
            x = torch.randn(batch, config.image_autoencoder.latent_channels, 16, 16, 16, device=device)
            t = torch.randint(0, 1000, (batch,), device=device)
            forward = unet if mode is None else torch.compile(unet, mode=mode)
            optimiser = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=True)

            def step() -> None:
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    out = forward(x, t)
                out.float().pow(2).mean().backward()
                optimiser.step()

            start = time.perf_counter()
            step()
            step()
            _sync()
            log({"network": "latent_diffusion_unet", "batch": batch, "precision": precision, "compile": mode,
                 "first_two_steps_s": time.perf_counter() - start, "ms": timed(step, n=20)})
        except Exception as error:
            log({"network": "latent_diffusion_unet", "precision": precision, "compile": mode,
                 "error": repr(error)[:300]})
    torch.compiler.reset()


def unet_loss_sync_rows(device, iterations: int = 400, profile_name: str = "paper") -> None:
    """The runner's U-Net loop on paper-size random pairs with the real sample pipeline (per-sample streams, loader
    workers): the loss read back every step (as train_segmentation does, for its progress line) against every 16
    steps, which lets the CPU queue the next step's kernels while the GPU runs this one."""
    from monai.data import set_track_meta
    from monai.losses import DiceCELoss

    from foscu_bench.profiles import get_profile
    from foscu_bench.segmentation import _augmentation, _parallel_batches, build_unet, default_loader_workers
    from step_profile import random_pairs, steady_step_seconds

    profile = get_profile(profile_name)
    settings = replace(profile.segmentation, iterations=iterations)
    pairs = random_pairs(12, profile)
    workers = default_loader_workers(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    for sync_every in (1, 16):
        torch.manual_seed(0)
        model = build_unet(settings).to(device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, fused=True)
        batches = _parallel_batches(pairs, [], 0.0, _augmentation(settings, profile.shape, 0), 0, settings, workers)
        set_track_meta(False)
        stamps, pending = [], []
        try:
            for iteration, (images, labels, _) in zip(range(iterations), batches):
                x, y = images.to(device, non_blocking=True), labels.round().to(device, non_blocking=True)
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = loss_fn(model(x).float(), y)
                loss.backward()
                optimiser.step()
                pending.append(loss.detach())
                if len(pending) == sync_every:
                    torch.stack(pending).tolist()
                    pending.clear()
                    stamps.append(time.perf_counter())
        finally:
            set_track_meta(True)
            batches.close()
        log({"network": "segmentation_unet", "loop": "train_segmentation-like", "loss_read_every": sync_every,
             "loader_workers": workers, "iterations": iterations,
             "steady_ms": steady_step_seconds(stamps) * 1000 / sync_every})


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
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    args = parser.parse_args()
    device = torch.device("cuda")
    for section in (SECTIONS[name] for name in args.sections):
        try:
            section(device)
        except Exception as error:
            log({"section": section.__name__, "error": repr(error)[:300]})
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                        "rows": ROWS}, indent=1))


SECTIONS = {"augmentation": augmentation_rows, "diffusion": diffusion_rows, "autoencoder": autoencoder_rows,
            "unet": unet_rows, "diffusion_compile": diffusion_compile_rows, "unet_loss_sync": unet_loss_sync_rows}

if __name__ == "__main__":
    main()
