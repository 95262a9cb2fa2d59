"""Resumable training loops for the five Duo-Diffusion stages.

Each iteration draws its batch and noise from random streams derived from (seed, stage, iteration), so a
stage resumed from its last checkpoint continues exactly as an uninterrupted run would. Checkpoints
(``<checkpoint_dir>/<stage>/``) hold the modules and AdamW state as safetensors plus the iteration and the
loss log as JSON, written atomically every ``config.checkpoint_every`` iterations and at the end.

Losses:
- label autoencoder: Dice + cross-entropy on the decoded one-hot logits + KL;
- image autoencoder: L1 + gradient-difference loss + KL (+ optional patch-adversarial). A pretrained
  perceptual network (LPIPS / MedicalNet) cannot be downloaded here; the gradient-difference loss
  (Mathieu et al., ICLR 2016) penalises blurred edges, the main failure a perceptual loss prevents;
- diffusion U-Nets and ControlNet: MSE to the scheduler's target (v, epsilon or rectified-flow velocity).

The three latent networks keep an exponential moving average of their weights (``DuoConfig.ema_decay``, with the
usual warm-up so short runs are not dominated by the initial weights); the average replaces the trained weights at
the end of the stage, so sampling and the ControlNet's frozen U-Net use it (Ho et al. 2020; Rombach et al. 2022).
Measured at quick (bench/results/quality_quick.json): without it, the label model's samples swing between
checkpoints, with too many small tumours and too little spread of liver volume.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from foscu_bench.checkpoint import load_checkpoint, save_checkpoint
from foscu_bench.generators.duo_diffusion.config import STAGES, DuoConfig
from foscu_bench.generators.duo_diffusion.sampling import training_scheduler, training_target, training_timesteps

Progress = Callable[[str, int, int, float], None]


def stage_rng(seed: int, stage: str, iteration: int) -> tuple[np.random.Generator, torch.Generator]:
    key = [int(seed), STAGES.index(stage), int(iteration)]
    torch_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
    torch.manual_seed(torch_seed)  # for library code that draws from the global generator (RFlow timesteps)
    return np.random.default_rng(key), torch.Generator().manual_seed(torch_seed)


def stage_precision(config: DuoConfig, device, stage: str) -> str:
    """``fp32`` or ``bf16`` for one stage (see ``DuoConfig.precision``)."""
    from foscu_bench.precision import resolve_precision

    if config.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {config.precision!r}")
    device = torch.device(device)
    precision = resolve_precision(device, config.precision)
    if config.precision == "auto" and not stage.endswith("autoencoder"):
        return "fp32"
    return precision


def autocast(config: DuoConfig, device, stage: str):
    """bf16 autocast for the forward pass where ``stage_precision`` says so; a no-op otherwise."""
    from contextlib import nullcontext

    if stage_precision(config, device, stage) == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


def kl_loss(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over latent voxels, averaged over the batch (MONAI tutorials)."""
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-8) - 1)
    return kl.flatten(1).sum(1).mean()


def gradient_difference_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    loss = 0.0
    for dim in (2, 3, 4):
        loss = loss + (prediction.diff(dim=dim).abs() - target.diff(dim=dim).abs()).abs().mean()
    return loss / 3


def latent_scale_report(latents: torch.Tensor) -> dict:
    """Per-volume mean and standard deviation of scaled latents: the diffusion models assume every training
    volume's latent has roughly unit scale, not only the pooled set (one global factor hides outlier volumes)."""
    flat = latents.detach().float().flatten(1)
    std, mean = flat.std(dim=1), flat.mean(dim=1)
    return {"pooled_std": float(flat.std()), "volume_std_min": float(std.min()), "volume_std_max": float(std.max()),
            "volume_mean_abs_max": float(mean.abs().max()), "n": int(len(flat))}


# --- checkpoints ------------------------------------------------------------------------------------------
def _save_stage(directory: Path, modules: dict, optimisers: dict, iteration: int, log: dict) -> None:
    tensors, groups = {}, {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    for name, optimiser in optimisers.items():
        state = optimiser.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensors[f"optim.{name}.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        groups[name] = state["param_groups"]
    save_checkpoint(directory, tensors, {"iteration": iteration, "param_groups": groups, "log": log})


def _load_stage(directory: Path, modules: dict, optimisers: dict) -> tuple[int, dict]:
    if not (directory / "config.json").is_file():
        return 0, {"losses": [], "seconds": 0.0}
    arrays, config = load_checkpoint(directory)
    for name, module in modules.items():
        module.load_state_dict({k[len(name) + 1:]: torch.from_numpy(v.copy()) for k, v in arrays.items()
                                if k.startswith(name + ".")})
    for name, optimiser in optimisers.items():
        state: dict = {}
        prefix = f"optim.{name}."
        for key, value in arrays.items():
            if key.startswith(prefix):
                index, field = key[len(prefix):].split(".", 1)
                state.setdefault(int(index), {})[field] = torch.from_numpy(value.copy())
        optimiser.load_state_dict({"state": state, "param_groups": config["param_groups"][name]})
    return int(config["iteration"]), config["log"]


def ema_decay(config: DuoConfig, iteration: int) -> float:
    """Decay after ``iteration`` optimiser steps: ``config.ema_decay`` with the warm-up (1 + t) / (10 + t)."""
    return min(config.ema_decay, (1 + iteration) / (10 + iteration))


@torch.no_grad()
def update_ema(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for kept, live in zip(average.parameters(), model.parameters()):
        kept.lerp_(live, 1.0 - decay)
    for kept, live in zip(average.buffers(), model.buffers()):
        kept.copy_(live)


def _run(stage: str, modules: dict, optimisers: dict, step: Callable[[np.random.Generator, torch.Generator], float],
         iterations: int, config: DuoConfig, seed: int, checkpoint_dir: Path | None,
         progress: Progress | None, averaged: str | None = None) -> dict:
    """The loop every stage shares: resume, step with derived randomness, log, checkpoint.

    With ``averaged`` (a key of ``modules``), an EMA copy of that module is kept (and checkpointed) beside it and
    copied into it when the stage ends."""
    if averaged is not None and config.ema_decay > 0:
        modules = {**modules, f"{averaged}_ema": copy.deepcopy(modules[averaged]).requires_grad_(False)}
    directory = checkpoint_dir / stage if checkpoint_dir is not None else None
    start_iteration, log = _load_stage(directory, modules, optimisers) if directory else (0, {"losses": [], "seconds": 0.0})
    for module in modules.values():
        module.train()
    started = time.perf_counter()
    for iteration in range(start_iteration, iterations):
        rng, generator = stage_rng(seed, stage, iteration)
        loss = step(rng, generator)
        if f"{averaged}_ema" in modules:
            update_ema(modules[f"{averaged}_ema"], modules[averaged], ema_decay(config, iteration))
        if not np.isfinite(loss):
            raise FloatingPointError(f"Duo-Diffusion stage {stage!r} diverged: loss {loss} at iteration {iteration + 1} "
                                     f"(precision setting {config.precision}); the last good checkpoint is kept, lower the "
                                     f"learning rate or train in fp32")
        log["losses"].append(loss)
        if progress is not None:
            progress(stage, iteration + 1, iterations, log["losses"][-1])
        last = iteration + 1 == iterations
        if directory is not None and ((iteration + 1) % config.checkpoint_every == 0 or last):
            log["seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            _save_stage(directory, modules, optimisers, iteration + 1, log)
    if directory is None or start_iteration >= iterations:
        log["seconds"] += time.perf_counter() - started
    if f"{averaged}_ema" in modules:
        modules[averaged].load_state_dict(modules[f"{averaged}_ema"].state_dict())
    for module in modules.values():
        module.eval()
    return log


# --- stages -------------------------------------------------------------------------------------------
def train_autoencoder(stage: str, autoencoder, data: torch.Tensor, config: DuoConfig, seed: int, device,
                      checkpoint_dir: Path | None = None, progress: Progress | None = None,
                      discriminator=None) -> dict:
    """Label stage: ``data`` is one-hot (N x 3 x ...); image stage: intensities in [0, 1] (N x 1 x ...)."""
    from monai.losses import DiceCELoss

    is_label = stage == "label_autoencoder"
    optimiser = torch.optim.AdamW(autoencoder.parameters(), lr=config.autoencoder_learning_rate, fused=True)
    modules, optimisers = {"autoencoder": autoencoder}, {"autoencoder": optimiser}
    use_adversarial = not is_label and config.adversarial_weight > 0 and discriminator is not None
    if use_adversarial:
        optimiser_d = torch.optim.AdamW(discriminator.parameters(), lr=config.autoencoder_learning_rate, fused=True)
        modules["discriminator"], optimisers["discriminator"] = discriminator, optimiser_d
    dice_ce = DiceCELoss(softmax=True, include_background=True)

    def step(rng: np.random.Generator, generator: torch.Generator) -> float:
        x = random_patches(data, rng.integers(len(data), size=config.batch_size), config.autoencoder_patch, rng).to(device)
        with autocast(config, device, stage):
            reconstruction, z_mu, z_sigma = autoencoder(x)
        reconstruction, z_mu, z_sigma = reconstruction.float(), z_mu.float(), z_sigma.float()
        if is_label:
            loss = dice_ce(reconstruction, x)
        else:
            loss = (reconstruction - x).abs().mean() + config.gradient_weight * gradient_difference_loss(reconstruction, x)
        loss = loss + config.kl_weight * kl_loss(z_mu, z_sigma)
        if use_adversarial:
            loss = loss + config.adversarial_weight * ((discriminator(reconstruction)[-1] - 1) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if use_adversarial:
            optimiser_d.zero_grad(set_to_none=True)
            loss_d = 0.5 * (((discriminator(x)[-1] - 1) ** 2).mean()
                            + (discriminator(reconstruction.detach())[-1] ** 2).mean())
            loss_d.backward()
            optimiser_d.step()
        return loss.item()

    log = _run(stage, modules, optimisers, step, config.iterations[stage], config, seed, checkpoint_dir, progress)
    return {**log, "precision": stage_precision(config, device, stage)}


def random_patches(data: torch.Tensor, index: np.ndarray, patch: tuple[int, int, int] | None,
                   rng: np.random.Generator) -> torch.Tensor:
    """``data[index]``, each item cropped to ``patch`` at its own random corner (whole volumes when None)."""
    if patch is None:
        return data[torch.from_numpy(index)]
    spatial = data.shape[2:]
    if any(p > s for p, s in zip(patch, spatial)):
        raise ValueError(f"autoencoder patch {tuple(patch)} is larger than the volumes {tuple(spatial)}")
    crops = []
    for i in index:
        corner = [int(rng.integers(s - p + 1)) for s, p in zip(spatial, patch)]
        crops.append(data[int(i), :, corner[0]:corner[0] + patch[0], corner[1]:corner[1] + patch[1],
                          corner[2]:corner[2] + patch[2]])
    return torch.stack(crops)


def diffusion_batch(config: DuoConfig) -> int:
    return config.diffusion_batch_size or config.batch_size


def train_diffusion(stage: str, unet, latents: torch.Tensor, config: DuoConfig, seed: int, device,
                    checkpoint_dir: Path | None = None, progress: Progress | None = None) -> dict:
    """Unconditional latent diffusion on (already scaled) latents."""
    scheduler = training_scheduler(config, int(np.prod(latents.shape[2:])))
    optimiser = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, fused=True)

    def step(rng: np.random.Generator, generator: torch.Generator) -> float:
        x0 = latents[torch.from_numpy(rng.integers(len(latents), size=diffusion_batch(config)))].to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = training_timesteps(config, scheduler, x0, generator)
        noisy = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=t)
        with autocast(config, device, stage):
            prediction = unet(noisy, t)
        loss = torch.nn.functional.mse_loss(prediction.float(), training_target(config, scheduler, x0, noise, t))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss.item()

    log = _run(stage, {"unet": unet}, {"unet": optimiser}, step, config.iterations[stage], config, seed,
               checkpoint_dir, progress, averaged="unet")
    return {**log, "precision": stage_precision(config, device, stage)}


def train_controlnet(controlnet, unet, latents: torch.Tensor, controls: torch.Tensor, config: DuoConfig, seed: int,
                     device, checkpoint_dir: Path | None = None, progress: Progress | None = None) -> dict:
    """ControlNet on a frozen image diffusion U-Net; ``controls`` are full-resolution label masks."""
    stage = "controlnet"
    scheduler = training_scheduler(config, int(np.prod(latents.shape[2:])))
    for parameter in unet.parameters():
        parameter.requires_grad_(False)
    unet.eval()
    optimiser = torch.optim.AdamW(controlnet.parameters(), lr=config.learning_rate, fused=True)

    def step(rng: np.random.Generator, generator: torch.Generator) -> float:
        index = torch.from_numpy(rng.integers(len(latents), size=diffusion_batch(config)))
        x0, control = latents[index].to(device), controls[index].to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = training_timesteps(config, scheduler, x0, generator)
        noisy = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=t)
        with autocast(config, device, stage):
            down, mid = controlnet(x=noisy, timesteps=t, controlnet_cond=control)
            prediction = unet(noisy, t, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        loss = torch.nn.functional.mse_loss(prediction.float(), training_target(config, scheduler, x0, noise, t))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss.item()

    log = _run(stage, {"controlnet": controlnet}, {"controlnet": optimiser}, step, config.iterations[stage], config,
               seed, checkpoint_dir, progress, averaged="controlnet")
    unet.eval()
    return {**log, "precision": stage_precision(config, device, stage)}


def write_loss_log(path: Path, logs: dict[str, dict]) -> None:
    from foscu_bench.store import atomic_write_text

    atomic_write_text(path, json.dumps(logs, indent=1, sort_keys=True) + "\n")
