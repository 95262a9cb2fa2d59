"""Sizes and budgets of Duo-Diffusion per profile (everything that changes results is here and in manifests).

Autoencoders downsample by 2 ** (len(channels) - 1): tiny 16^3 -> 8^3, quick 32^3 -> 8^3 (labels) and 16^3
(images), paper 128^3 -> 16^3 latents. The quick sizes are chosen for 2 CPU cores (DESIGN.md: the autoencoder is the CPU bottleneck, so its
channels are small); the paper sizes follow MONAI's 3D LDM tutorials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

STAGES = ("label_autoencoder", "label_diffusion", "image_autoencoder", "image_diffusion", "controlnet")


@dataclass(frozen=True)
class AutoencoderSize:
    channels: tuple[int, ...]
    latent_channels: int
    num_res_blocks: int = 1
    norm_num_groups: int = 8

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class DiffusionSize:
    channels: tuple[int, ...]
    num_res_blocks: int = 1
    norm_num_groups: int = 8
    attention_levels: tuple[bool, ...] | None = None

    @property
    def attention(self) -> tuple[bool, ...]:
        return self.attention_levels or (False,) * len(self.channels)


@dataclass(frozen=True)
class DuoConfig:
    label_autoencoder: AutoencoderSize
    image_autoencoder: AutoencoderSize
    diffusion: DiffusionSize
    iterations: dict[str, int]
    image_diffusion: DiffusionSize | None = None
    """Latent U-Net and ControlNet of the image stage (None: ``diffusion``, the label stage's). At quick the image
    latent has twice the label latent's resolution, so its U-Net gets a narrower first level and one level more."""
    batch_size: int = 2
    diffusion_batch_size: int | None = None
    """Batch of the latent diffusion and ControlNet stages (None: ``batch_size``). Their latents are small (16^3 at
    paper), so on a GPU a step of 32 costs about what a step of 2 does (70 vs 77 ms on an H200,
    bench/results/gpu_step_knobs_h200.json): larger batches and fewer iterations see as many samples in less time."""
    autoencoder_patch: tuple[int, int, int] | None = None
    """Random crop the autoencoders train on (None: whole volumes). They are fully convolutional, so they encode
    whole volumes afterwards; MAISI trains its VAE on patches too. At paper, 64^3 crops of the 128^3 grid."""
    learning_rate: float = 1e-3
    autoencoder_learning_rate: float = 1e-3
    kl_weight: float = 1e-6
    gradient_weight: float = 0.5
    """Weight of the gradient-difference loss that replaces the (unavailable offline) perceptual loss."""
    adversarial_weight: float = 0.0
    """Patch-adversarial (least-squares) loss on the image autoencoder (0 = off)."""
    scheduler: str = "dpm++"
    """Default sampler: ``dpm++`` (DPM-Solver++(2M)), ``ddim`` or ``ddpm`` (1000 steps) sample the same DDPM-trained
    model; ``rflow`` trains a rectified-flow model instead (MAISI-style). DPM-Solver++ with 10 steps is 55x faster
    than DDPM-1000 per volume end to end at quick with the same image-label consistency (0.747 vs 0.748, 24
    volumes); the rflow model trained on the same budget was 4 points less consistent
    (bench/results/sampling_speed_quick.json)."""
    sampling_steps: int = 10
    control_guidance: float = 1.0
    """Classifier-free guidance of the image stage toward its label map. The image diffusion model is trained
    without the label and the ControlNet adds the label to it, so the plain U-Net is the unconditional model and
    ``uncond + w (controlled - uncond)`` sharpens p(image | label) for w > 1, at one more U-Net pass per step;
    1 = the plain ControlNet. Measured at quick (session-9 fit, 16 real cases, 32 samples, held-out judge;
    bench/results/duo_control_guidance_quick.json): consistency 0.733 / 0.728 / 0.717 / 0.685 / 0.608 at
    w = 1 / 1.5 / 2 / 3 / 5, while diversity among samples moves toward the real value (MS-SSIM 0.391 -> 0.304,
    real 0.317): guidance adds contrast inside the liver outline, not agreement with it. So the default is 1."""
    prediction_type: str = "v_prediction"
    train_timesteps: int = 1000
    label_deformed_copies: int = 0
    """Deformed copies of every real training label added to the label stages' training set (augmentation.py)."""
    image_deformed_copies: int = 0
    """Deformed copies of every real training pair added to the image stages' training set (augmentation.py)."""
    deformation_strength: float = 1.0
    """Strength of those deformations (``conditioning.deformation_transform``; 1 = the deformation the
    label-conditioned baselines and the real-labels ablation draw their conditioning with)."""
    ema_decay: float = 0.999
    """Exponential moving average of the latent networks' weights (0 = off); see training.py."""
    min_component_fraction: float = 0.1
    """Generated liver components smaller than this fraction of the largest are removed (see postprocess)."""
    checkpoint_every: int = 200
    sample_batch: int = 8
    """Volumes denoised and decoded together when sampling (per-call overheads dominate one small volume)."""
    precision: str = "auto"
    """Training precision (losses, weights and optimiser state stay fp32): ``fp32``; ``bf16`` autocast in every
    stage; ``auto``: bf16 for the two autoencoders where the device computes it natively, fp32 for the latent
    stages. The autoencoders are compute-bound (1.7x faster in bf16 on a bf16 CPU; on an H200 bf16 = TF32 at 64^3
    patches). The latent stages gain nothing: on CPU oneDNN's bf16 convolution backward returns NaN at the 2^3
    bottleneck of the quick latent U-Net (torch 2.13: NaN gradients within 8 steps on random latents); on an H200
    their 16^3 latents are launch-bound and bf16 was slower (image diffusion 109 vs 79 ms a step,
    bench/results/gpu_paper_profile_after_h200.json)."""

    @property
    def image_diffusion_size(self) -> DiffusionSize:
        return self.image_diffusion or self.diffusion

    def with_iterations(self, **overrides: int) -> "DuoConfig":
        return replace(self, iterations={**self.iterations, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def _iterations(ae: int, ldm: int, cn: int) -> dict[str, int]:
    return {"label_autoencoder": ae, "label_diffusion": ldm, "image_autoencoder": ae, "image_diffusion": ldm,
            "controlnet": cn}


CONFIGS: dict[str, DuoConfig] = {
    "tiny": DuoConfig(label_autoencoder=AutoencoderSize((8, 16), 2, norm_num_groups=4),
                      image_autoencoder=AutoencoderSize((8, 16), 2, norm_num_groups=4),
                      diffusion=DiffusionSize((16, 32), norm_num_groups=8),
                      iterations=_iterations(200, 300, 200), batch_size=4, label_deformed_copies=1,
                      image_deformed_copies=1),
    # quick latent stages: batch 4 x 3000 (ControlNet 4 x 2250) iterations, 3x (3x) the samples of the first
    # version's 2 x 2000 (2 x 1500), whose losses were still falling and whose label samples had a third of the
    # real spread of liver volume (bench/results/duo_label_model_ablation_quick.json); a batch of 4 costs 1.4x a
    # batch of 2 on one CPU thread. The image latent has 8 channels: autoencoder reconstructions of held-out cases
    # are 1.8 Dice points more consistent with their labels than with 3, at the same cost; a patch-adversarial
    # weight of 0.01 sharpens them (edge energy 0.81-0.92 of the input's vs 0.79) for 0.7 points of that
    # consistency and 11% more autoencoder time; 0.05 cost 6 points (bench/results/duo_autoencoder_variants_quick.json).
    # At 16 real cases these budgets make the latent models reproduce training cases on the real pairs alone
    # (quality_quick.json, after16): every stage trains on them plus 4 deformed copies of each.
    # The image autoencoder compresses 2x (32^3 -> 16^3 x 4), not 4x (8^3 x 8): on an 8^3 grid a liver boundary is
    # a latent voxel or two and the decoder alone lost 6.2 of the real images' 0.806 held-out consistency; 16^3 x 4
    # loses 2.2, while 16 or 32 channels on the 8^3 grid lose as much as 8 (0.747 / 0.746 vs 0.744;
    # bench/results/duo_autoencoder_compression_quick.json). Its latent U-Net (16, 32, 64, 64) keeps the 2^3
    # bottleneck and the parameter count of the 8^3 one, at 2.1x its step time (434 vs 210 ms a batch of 4 on one
    # AVX2 thread; the ControlNet step is unchanged, 528 vs 523 ms: its full-resolution conditioning embedding
    # loses a stride-2 level).
    "quick": DuoConfig(label_autoencoder=AutoencoderSize((16, 32, 64), 3),
                       image_autoencoder=AutoencoderSize((16, 32), 4),
                       diffusion=DiffusionSize((32, 64, 64), norm_num_groups=16),
                       image_diffusion=DiffusionSize((16, 32, 64, 64), norm_num_groups=16),
                       iterations=_iterations(1000, 3000, 2250), batch_size=2, diffusion_batch_size=4,
                       adversarial_weight=0.01, label_deformed_copies=4, image_deformed_copies=4),
    "paper": DuoConfig(label_autoencoder=AutoencoderSize((32, 64, 64, 128), 4, num_res_blocks=2, norm_num_groups=32),
                       image_autoencoder=AutoencoderSize((32, 64, 64, 128), 4, num_res_blocks=2, norm_num_groups=32),
                       diffusion=DiffusionSize((64, 128, 256), num_res_blocks=2, norm_num_groups=32,
                                               attention_levels=(False, True, True)),
                       # diffusion stages: batch 16 x 5000 (ControlNet 16 x 3750) iterations = the samples of 2 x 40000
                       # (2 x 30000); autoencoders on 64^3 crops. Chosen for GPU throughput (gpu_step_knobs_h200.json)
                       iterations=_iterations(20000, 5000, 3750), batch_size=2, diffusion_batch_size=16,
                       autoencoder_patch=(64, 64, 64), sample_batch=2, learning_rate=1e-4,
                       autoencoder_learning_rate=1e-4, adversarial_weight=0.01),
}


def config_for(profile_name: str, **overrides) -> DuoConfig:
    base = CONFIGS[profile_name]
    iterations = overrides.pop("iterations", None)
    config = replace(base, **overrides) if overrides else base
    return config.with_iterations(**iterations) if iterations else config

