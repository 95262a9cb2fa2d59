"""``cond-ddpm``: a 3D image-space DDPM conditioned on the label by channel concatenation (Med-DDPM).

Dorjsembe et al. (IEEE JBHI 2024) condition a 3D DDPM on a semantic label map by concatenating it to the noisy
image at every denoising step. Here: MONAI ``DiffusionModelUNet`` on [x_t, liver mask, tumour mask] predicts
the velocity (v-prediction; epsilon-prediction sampled pure noise within the CPU budget), trained with the linear-beta ``DDPMScheduler`` over 1000 steps on images scaled to [-1, 1];
sampling uses ``DDIMScheduler`` (deterministic, eta = 0) with ``sampling_steps`` steps (50 by default) on the
same noise schedule. Conditioning at sampling time: deformed real training labels.
Working in image space (no autoencoder) is what separates it from Duo-Diffusion's latent models.
"""

from __future__ import annotations

import numpy as np

from foscu_bench.baselines.common import LabelConditionedNetwork
from foscu_bench.conditioning import label_channels

SIZES = {
    "tiny": {"channels": (16, 32, 32), "num_res_blocks": 1, "norm_num_groups": 8, "iterations": 600, "batch_size": 4,
             "sample_batch": 8},
    "quick": {"channels": (16, 32, 64), "num_res_blocks": 1, "norm_num_groups": 8, "iterations": 1500,
              "batch_size": 2, "sample_batch": 8},  # one DDIM loop for 8 volumes: per-call overheads dominate 32^3
    "paper": {"channels": (64, 128, 256, 256), "num_res_blocks": 2, "norm_num_groups": 32, "iterations": 100000,
              "batch_size": 2},
}
TRAIN_TIMESTEPS = 1000
SCHEDULE = {"schedule": "linear_beta", "beta_start": 1e-4, "beta_end": 2e-2}


class ConditionalDDPM(LabelConditionedNetwork):
    name = "cond-ddpm"
    SIZES = SIZES

    def __init__(self, sampling_steps: int = 50, learning_rate: float = 1e-3, iterations: int | None = None,
                 prediction_type: str = "v_prediction") -> None:
        super().__init__()
        self.prediction_type = prediction_type
        self.sampling_steps, self.learning_rate, self.iterations = int(sampling_steps), float(learning_rate), iterations
        self.losses: list[float] = []

    def _build(self, profile):
        from monai.networks.nets import DiffusionModelUNet

        size = self.SIZES[profile.name]
        n_levels = len(size["channels"])
        return DiffusionModelUNet(spatial_dims=3, in_channels=3, out_channels=1, channels=size["channels"],
                                  num_res_blocks=size["num_res_blocks"], attention_levels=(False,) * n_levels,
                                  norm_num_groups=size["norm_num_groups"])

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        import torch
        from monai.networks.schedulers import DDPMScheduler

        train, images, labels, size, iterations, dev, rng = self._fit_setup(train, profile, seed, device)
        generator = torch.Generator().manual_seed(seed)
        net = self._build(profile).to(dev)
        scheduler = DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, prediction_type=self.prediction_type, **SCHEDULE)
        optimiser = torch.optim.AdamW(net.parameters(), lr=self.learning_rate)
        x0_all = torch.from_numpy(images[:, None] * 2 - 1)
        cond_all = torch.from_numpy(np.stack([label_channels(l) for l in labels]))
        net.train()
        for _ in range(iterations):
            idx = torch.from_numpy(rng.integers(len(images), size=size["batch_size"]))
            x0, cond = x0_all[idx].to(dev), cond_all[idx].to(dev)
            noise = torch.randn(x0.shape, generator=generator).to(dev)
            t = torch.randint(0, TRAIN_TIMESTEPS, (x0.shape[0],), generator=generator).to(dev)
            noisy = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=t)
            optimiser.zero_grad(set_to_none=True)
            target = noise if self.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
            loss = torch.nn.functional.mse_loss(net(torch.cat([noisy, cond], dim=1), timesteps=t), target)
            loss.backward()
            optimiser.step()
            self.losses.append(loss.item())
            if progress is not None:
                progress("diffusion", len(self.losses), iterations, self.losses[-1])
        self._finish_fit(net, labels, train, profile, seed, dev)

    def generate(self, label: np.ndarray, seed: int, steps: int | None = None) -> np.ndarray:
        """Image in [0, 1] for one label by DDIM (eta = 0) from seeded Gaussian noise."""
        return self.generate_batch([label], [seed], steps)[0]

    def generate_batch(self, labels: list[np.ndarray], seeds: list[int], steps: int | None = None) -> list[np.ndarray]:
        """Images in [0, 1] for several labels in one DDIM loop; volume i starts from the noise of ``seeds[i]``."""
        import torch
        from monai.networks.schedulers import DDIMScheduler

        dev = next(self.network.parameters()).device
        scheduler = DDIMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, prediction_type=self.prediction_type, **SCHEDULE)
        scheduler.set_timesteps(steps or self.sampling_steps)
        cond = torch.from_numpy(np.stack([label_channels(label) for label in labels])).to(dev)
        x = torch.cat([torch.randn((1, 1, *labels[0].shape), generator=torch.Generator().manual_seed(int(s)))
                       for s in seeds]).to(dev)
        with torch.no_grad():
            for t in scheduler.timesteps:
                out = self.network(torch.cat([x, cond], dim=1), timesteps=torch.full((len(x),), int(t), device=dev))
                x, _ = scheduler.step(out, int(t), x)
        return list(((x[:, 0].cpu().numpy() + 1) / 2).clip(0, 1))

    def _images_for(self, labels: list[np.ndarray], rngs: list[np.random.Generator]) -> list[np.ndarray]:
        return self.generate_batch(labels, [int(rng.integers(2 ** 31)) for rng in rngs])

    def loss_curves(self) -> dict[str, list[float]]:
        return {"diffusion": list(self.losses)}

    def settings(self) -> dict:
        return {"sampling_steps": self.sampling_steps, "learning_rate": self.learning_rate,
                "iterations": self.iterations, "prediction_type": self.prediction_type}
