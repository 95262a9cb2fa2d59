"""Schedulers and the denoising loop shared by both stages (optionally ControlNet-guided).

Two training families: DDPM-trained models (``ddpm``/``ddim`` samplers; epsilon or v prediction on a
scaled-linear beta schedule, as in MONAI's LDM tutorials) and rectified flow (``rflow``, as in MAISI: the
model predicts the velocity x0 - noise). A DDPM-trained model can be sampled with DDPM (all 1000 steps) or
DDIM (any number of steps); an rflow model with RFlow steps.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from foscu_bench.errors import ConfigError
from foscu_bench.generators.duo_diffusion.config import DuoConfig

SAMPLERS = ("ddpm", "ddim", "rflow")
BETAS = {"schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}


def family(scheduler: str) -> str:
    if scheduler not in SAMPLERS:
        raise ConfigError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SAMPLERS)}")
    return "rflow" if scheduler == "rflow" else "ddpm"


def training_scheduler(config: DuoConfig, latent_numel: int):
    from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

    if family(config.scheduler) == "rflow":
        return RFlowScheduler(num_train_timesteps=config.train_timesteps, use_discrete_timesteps=True,
                              sample_method="logit-normal", use_timestep_transform=True,
                              base_img_size_numel=latent_numel, spatial_dim=3)
    return DDPMScheduler(num_train_timesteps=config.train_timesteps, prediction_type=config.prediction_type, **BETAS)


def training_target(config: DuoConfig, scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    if family(config.scheduler) == "rflow":
        return x0 - noise
    if config.prediction_type == "epsilon":
        return noise
    return scheduler.get_velocity(x0, noise, t)


def training_timesteps(config: DuoConfig, scheduler, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if family(config.scheduler) == "rflow":
        return scheduler.sample_timesteps(x0)
    return torch.randint(0, config.train_timesteps, (x0.shape[0],), generator=generator).to(x0.device)


def sampling_scheduler(config: DuoConfig, sampler: str, steps: int, latent_numel: int, device):
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    if family(sampler) != family(config.scheduler):
        raise ConfigError(f"a model trained with {config.scheduler!r} cannot be sampled with {sampler!r}")
    if sampler == "rflow":
        scheduler = training_scheduler(config, latent_numel)
        scheduler.set_timesteps(steps, device=device, input_img_size_numel=latent_numel)
    elif sampler == "ddim":
        scheduler = DDIMScheduler(num_train_timesteps=config.train_timesteps, prediction_type=config.prediction_type,
                                  clip_sample=False, **BETAS)
        scheduler.set_timesteps(steps)
    else:
        scheduler = DDPMScheduler(num_train_timesteps=config.train_timesteps, prediction_type=config.prediction_type,
                                  clip_sample=False, **BETAS)
        scheduler.set_timesteps(config.train_timesteps)
    return scheduler


class _Precomputed(torch.nn.Module):
    """Stands in for ControlNet's conditioning embedding with a tensor computed once per volume."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, _control: torch.Tensor) -> torch.Tensor:
        return self.value


@contextmanager
def cached_control_embedding(controlnet, control: torch.Tensor):
    """The control (a full-resolution label) is the same at every denoising step, but MONAI's ControlNet embeds it
    on each call; embedding it once removes the full-resolution convolutions from the sampling loop."""
    original = controlnet.controlnet_cond_embedding
    controlnet.controlnet_cond_embedding = _Precomputed(original(control))
    try:
        yield
    finally:
        controlnet.controlnet_cond_embedding = original


@torch.no_grad()
def denoise(unet, config: DuoConfig, shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator],
            device, sampler: str | None = None, steps: int | None = None, controlnet=None,
            control: torch.Tensor | None = None) -> torch.Tensor:
    """Run the reverse process from seeded Gaussian noise; returns latents of ``shape``.

    With one generator per volume (a list as long as the batch), volume i starts from its own generator's noise,
    so a volume does not depend on what else is in its batch (up to the last bits of batched arithmetic); the
    stochastic DDPM sampler draws its step noise from the first generator.
    """
    sampler = sampler or config.scheduler
    steps = steps or config.sampling_steps
    latent_numel = int(torch.tensor(shape[2:]).prod())
    scheduler = sampling_scheduler(config, sampler, steps, latent_numel, device)
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        x = torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator]).to(device)
        generator = generator[0]
    else:
        x = torch.randn(shape, generator=generator).to(device)
    timesteps = list(scheduler.timesteps)
    with cached_control_embedding(controlnet, control) if controlnet is not None else nullcontext():
        for i, t in enumerate(timesteps):
            x = _step(unet, scheduler, sampler, x, t, timesteps, i, shape, device, generator, controlnet, control)
    return x


def _step(unet, scheduler, sampler: str, x: torch.Tensor, t, timesteps: list, i: int, shape: tuple[int, ...], device,
          generator: torch.Generator, controlnet, control: torch.Tensor | None) -> torch.Tensor:
    """One reverse step: predict with the (optionally ControlNet-guided) U-Net, then let the scheduler move x."""
    tt = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
    if controlnet is not None:
        down, mid = controlnet(x=x, timesteps=tt, controlnet_cond=control)
        out = unet(x, tt, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    else:
        out = unet(x, tt)
    if sampler == "rflow":
        next_t = timesteps[i + 1] if i + 1 < len(timesteps) else None
        return scheduler.step(out, t, x, next_t)[0]
    if sampler == "ddpm":
        return scheduler.step(out, int(t), x, generator=generator)[0]
    return scheduler.step(out, int(t), x)[0]
