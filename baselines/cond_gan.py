"""``cond-gan``: 3D label-to-image conditional GAN in the pix2pix style (Isola et al., CVPR 2017).

- Generator: MONAI residual ``UNet`` from [liver mask, tumour mask, smooth noise] to the image (sigmoid output).
  pix2pix relies on dropout as its only noise, which is known to be mostly ignored; a low-frequency random
  field as an extra input channel lets the generator vary global appearance for one label map.
- Discriminator: MONAI ``PatchDiscriminator`` on [label channels, image] (conditional, patch-level realism).
- Loss: least-squares GAN (Mao et al. 2017, more stable than the log loss at small batch sizes) +
  lambda_L1 * L1 to the real image, lambda_L1 = 100 as in pix2pix.
Conditioning at sampling time: deformed real training labels (this baseline cannot invent anatomy).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from foscu_bench.baselines.common import LabelConditionedNetwork
from foscu_bench.conditioning import label_channels

SIZES = {
    "tiny": {"g_channels": (8, 16, 32), "g_strides": (2, 2), "d_channels": 8, "d_layers": 2, "iterations": 150,
             "batch_size": 2},
    "quick": {"g_channels": (16, 32, 64), "g_strides": (2, 2), "d_channels": 16, "d_layers": 2,
              "iterations": 1000, "batch_size": 2},
    "paper": {"g_channels": (32, 64, 128, 256, 320), "g_strides": (2, 2, 2, 2), "d_channels": 32, "d_layers": 3,
              "iterations": 20000, "batch_size": 2},
}


def smooth_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance low-frequency noise: 4^3 Gaussian control points, trilinearly upsampled."""
    from scipy import ndimage

    coarse = rng.standard_normal((4, 4, 4))
    field = ndimage.zoom(coarse, np.array(shape) / 4, order=1)[tuple(slice(0, s) for s in shape)]
    return ((field - field.mean()) / max(float(field.std()), 1e-6)).astype(np.float32)


class ConditionalGAN(LabelConditionedNetwork):
    name = "cond-gan"
    SIZES = SIZES

    def __init__(self, l1_weight: float = 100.0, learning_rate: float = 2e-4, iterations: int | None = None) -> None:
        super().__init__()
        self.l1_weight, self.learning_rate, self.iterations = float(l1_weight), float(learning_rate), iterations
        self.losses: list[dict] = []

    def _build(self, profile):
        from monai.networks.nets import UNet

        size = self.SIZES[profile.name]
        return UNet(spatial_dims=3, in_channels=3, out_channels=1, channels=size["g_channels"],
                    strides=size["g_strides"], num_res_units=1, norm="instance", dropout=0.1)

    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        import torch
        from monai.networks.nets import PatchDiscriminator

        train, images, labels, size, iterations, dev, rng = self._fit_setup(train, profile, seed, device)
        gen = self._build(profile).to(dev)
        disc = PatchDiscriminator(spatial_dims=3, num_layers_d=size["d_layers"], channels=size["d_channels"],
                                  in_channels=3, out_channels=1, norm="INSTANCE").to(dev)
        opt_g = torch.optim.Adam(gen.parameters(), lr=self.learning_rate, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=self.learning_rate, betas=(0.5, 0.999))
        cond_all = torch.from_numpy(np.stack([label_channels(l) for l in labels]))
        image_all = torch.from_numpy(images[:, None])
        for it in range(iterations):
            idx = rng.integers(len(images), size=size["batch_size"])
            cond = cond_all[idx].to(dev)
            real = image_all[idx].to(dev)
            noise = torch.from_numpy(np.stack([smooth_noise(profile.shape, rng)[None] for _ in idx])).to(dev)
            fake = torch.sigmoid(gen(torch.cat([cond, noise], dim=1)))
            # discriminator: real -> 1, fake -> 0 (least squares)
            opt_d.zero_grad(set_to_none=True)
            d_real = disc(torch.cat([cond, real], dim=1))[-1]
            d_fake = disc(torch.cat([cond, fake.detach()], dim=1))[-1]
            loss_d = 0.5 * (((d_real - 1) ** 2).mean() + (d_fake ** 2).mean())
            loss_d.backward()
            opt_d.step()
            # generator: fool the discriminator + stay close to the real image
            opt_g.zero_grad(set_to_none=True)
            adversarial = ((disc(torch.cat([cond, fake], dim=1))[-1] - 1) ** 2).mean()
            l1 = (fake - real).abs().mean()
            (adversarial + self.l1_weight * l1).backward()
            opt_g.step()
            self.losses.append({"d": loss_d.item(), "g_adv": adversarial.item(), "l1": l1.item()})
            if progress is not None:
                progress("adversarial", it + 1, iterations, l1.item())
        self._finish_fit(gen, labels, train, profile, seed, dev)

    @contextmanager
    def _sampling_mode(self):
        """pix2pix keeps dropout active at test time; instance norm has no running statistics to disturb."""
        self.network.train()
        try:
            yield
        finally:
            self.network.eval()

    def _image_for(self, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch

        dev = next(self.network.parameters()).device
        x = np.concatenate([label_channels(label), smooth_noise(label.shape, rng)[None]])[None]
        with torch.no_grad():
            return torch.sigmoid(self.network(torch.from_numpy(x).to(dev)))[0].cpu().numpy()

    def loss_curves(self) -> dict[str, list[float]]:
        return {key: [step[key] for step in self.losses] for key in ("l1", "g_adv", "d")}

    def settings(self) -> dict:
        return {"l1_weight": self.l1_weight, "learning_rate": self.learning_rate, "iterations": self.iterations}
