"""``duo-diffusion``: labels from a label LDM, then images from a ControlNet-guided image LDM (FOSCU, Han et al.).

``fit`` trains five stages on the training split only: label autoencoder -> label diffusion; image autoencoder
-> image diffusion -> ControlNet (control = the real training label). ``sample`` generates labels, post-processes
them, and renders each image *conditioned on its label*. ``duo-diffusion-real-labels`` is the ablation that skips
stage 1 and conditions stage 2 on deformed real training labels, like the label-conditioned baselines; the
difference between the two measures what generating new anatomy is worth.

The label stages train on the real training labels plus ``label_deformed_copies`` deformed copies of each, the
image stages on the real pairs plus ``image_deformed_copies`` deformed copies (augmentation.py: at a full budget
and 16 real cases the latent models otherwise reproduce their training cases).

Label post-processing (documented choice): the decoded one-hot is arg-maxed; liver components (26-connected,
liver + tumour) smaller than ``min_component_fraction`` of the largest are removed; tumour voxels outside the kept
liver components become background; tumours (26-connected components of the tumour class) smaller than the
smallest tumour of the real training labels become liver (the label autoencoder leaves 1-3 voxel specks of the
tumour class that no training label has: 12 of 27 generated tumour components at quick, 16 cases; no training
tumour at all -> no generated tumour). Samples whose liver vanished entirely are redrawn (up to 10 times).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from scipy import ndimage

from foscu_bench.checkpoint import load_module_state
from foscu_bench.conditioning import draw_deformed_label, label_channels
from foscu_bench.data.splits import require_training_set
from foscu_bench.generators.duo_diffusion import networks
from foscu_bench.generators.duo_diffusion.augmentation import smallest_tumour_component, with_deformed_copies
from foscu_bench.generators.duo_diffusion.config import DuoConfig, config_for
from foscu_bench.generators.duo_diffusion.sampling import denoise
from foscu_bench.generators.duo_diffusion.training import (train_autoencoder, train_controlnet, train_diffusion,
                                                           write_loss_log)
from foscu_bench.generator import (GeneratorBase, make_pair, synthetic_case_id, training_arrays, volume_seeds,
                                   volume_streams)
from foscu_bench.pair import Pair


def one_hot(labels: np.ndarray) -> torch.Tensor:
    """N x X x Y x Z uint8 -> N x 3 x X x Y x Z float32."""
    return torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), 3).permute(0, 4, 1, 2, 3).float()


def postprocess_label(label: np.ndarray, min_component_fraction: float, min_tumour_voxels: int = 0) -> np.ndarray:
    """Keep the dominant liver components, drop tumour outside them and tumours below ``min_tumour_voxels``."""
    organ = label > 0
    components, n = ndimage.label(organ, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros_like(label)
    sizes = np.bincount(components.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_component_fraction * sizes.max()) + 1
    kept = np.isin(components, keep)
    out = np.zeros_like(label)
    out[kept] = 1
    out[kept & (label == 2)] = 2
    if min_tumour_voxels > 1:
        tumours, n_tumours = ndimage.label(out == 2, structure=np.ones((3, 3, 3)))
        small = np.flatnonzero(np.bincount(tumours.ravel())[1:] < min_tumour_voxels) + 1
        out[np.isin(tumours, small)] = 1
    return out


class DuoDiffusion(GeneratorBase):
    name = "duo-diffusion"
    generates_labels = True
    fit_parts = ("labels", "images")

    def __init__(self, scheduler: str | None = None, sampling_steps: int | None = None,
                 iterations: dict | None = None, checkpoint_every: int | None = None,
                 precision: str | None = None, label_deformed_copies: int | None = None,
                 image_deformed_copies: int | None = None, deformation_strength: float | None = None) -> None:
        super().__init__()
        self.overrides = {k: v for k, v in {"scheduler": scheduler, "sampling_steps": sampling_steps,
                                            "iterations": iterations, "checkpoint_every": checkpoint_every,
                                            "precision": precision, "label_deformed_copies": label_deformed_copies,
                                            "image_deformed_copies": image_deformed_copies,
                                            "deformation_strength": deformation_strength}.items()
                          if v is not None}
        self.duo_config: DuoConfig | None = None
        self.modules: dict = {}
        self.scale: dict[str, float] = {}
        self.labels: np.ndarray | None = None
        self.min_tumour_voxels = 0
        self.logs: dict = {}

    # -- construction ----------------------------------------------------------------------------------
    def _build_all(self, config: DuoConfig) -> dict:
        modules = {
            "image_autoencoder": networks.build_autoencoder(config.image_autoencoder, 1),
            "image_unet": networks.build_diffusion_unet(config.image_diffusion_size,
                                                        config.image_autoencoder.latent_channels),
            "controlnet": networks.build_controlnet(config.image_diffusion_size, config.image_autoencoder.latent_channels,
                                                    config.image_autoencoder),
        }
        if self.generates_labels:
            modules["label_autoencoder"] = networks.build_autoencoder(config.label_autoencoder, networks.LABEL_CHANNELS)
            modules["label_unet"] = networks.build_diffusion_unet(config.diffusion, config.label_autoencoder.latent_channels)
        return modules

    def _networks(self, profile) -> list:
        return list(self._build_all(config_for(profile.name, **self.overrides)).values())

    def settings(self) -> dict:
        return {key: self.overrides.get(key)
                for key in ("scheduler", "sampling_steps", "iterations", "checkpoint_every", "precision",
                            "label_deformed_copies", "image_deformed_copies", "deformation_strength")}

    def config(self, profile=None) -> dict:
        """Every size, budget and loss weight at ``profile`` (``DuoConfig`` with the overrides applied)."""
        return config_for(self._profile_for(profile).name, **self.overrides).to_dict()

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, train, profile, seed: int, device="cpu", *, progress=None, work_dir=None) -> None:
        """Five stages; with ``work_dir`` each stage checkpoints there and a killed fit resumes mid-stage."""
        config, dev, modules, arrays = self._start_fit(train, profile, seed, device)
        ckpt = Path(work_dir) if work_dir else None
        if self.generates_labels:
            self._fit_labels(modules, *arrays, config, seed, dev, ckpt, progress)
        self._fit_images(modules, *arrays, config, seed, dev, ckpt, progress)
        modules.pop("discriminator", None)
        if ckpt is not None:
            write_loss_log(ckpt / "losses.json", self.logs)
        self.modules = {k: v.eval() for k, v in modules.items()}
        self.labels = real_labels = arrays[1]
        smallest = smallest_tumour_component(real_labels)
        self.min_tumour_voxels = smallest if smallest else int(real_labels[0].size) + 1
        self.device = str(dev)
        self._remember_fit(train, profile, seed)

    def fit_part(self, part: str, train, profile, seed: int, device="cpu", *, work_dir: Path, progress=None) -> None:
        """The label stages (part ``labels``) or the image stages (``images``) alone, checkpointed in ``work_dir``:
        ``fit`` with the same arguments then resumes both from their last checkpoints. The two chains need nothing
        from one another until sampling, so a runner trains them in parallel steps, with the numbers of one fit."""
        if part not in self.fit_parts:
            super().fit_part(part, train, profile, seed, device, work_dir=work_dir, progress=progress)
        config, dev, modules, arrays = self._start_fit(train, profile, seed, device)
        chain = self._fit_labels if part == "labels" else self._fit_images
        chain(modules, *arrays, config, seed, dev, Path(work_dir), progress)

    def _start_fit(self, train, profile, seed: int, device) -> tuple:
        """Config, device, every network initialised from ``seed`` (always all of them, the patch discriminator
        included, before any training, so each chain starts from the same weights whether it trains alone or after
        the other), and the training arrays."""
        train = require_training_set(train)
        dev = torch.device(device)
        config = config_for(profile.name, **self.overrides)
        self.duo_config = config
        torch.manual_seed(seed)
        modules = {k: v.to(dev) for k, v in self._build_all(config).items()}
        if config.adversarial_weight > 0:
            modules["discriminator"] = networks.build_discriminator().to(dev)
        return config, dev, modules, training_arrays(train)

    def _fit_labels(self, modules: dict, real_images, real_labels, config: DuoConfig, seed: int, dev,
                    ckpt: Path | None, progress) -> None:
        """Label autoencoder, then the label latent diffusion model on its posterior means."""
        _, labels = with_deformed_copies(real_images, real_labels, config.label_deformed_copies,
                                         config.deformation_strength, seed)
        onehot = one_hot(labels)
        self.logs["label_autoencoder"] = train_autoencoder("label_autoencoder", modules["label_autoencoder"], onehot,
                                                           config, seed, dev, ckpt, progress)
        latents, self.scale["label"] = self._encode(modules["label_autoencoder"], onehot, dev)
        self.logs["label_diffusion"] = train_diffusion("label_diffusion", modules["label_unet"], latents, config,
                                                       seed, dev, ckpt, progress)

    def _fit_images(self, modules: dict, real_images, real_labels, config: DuoConfig, seed: int, dev,
                    ckpt: Path | None, progress) -> None:
        """Image autoencoder (with its patch discriminator), the image latent diffusion model, then the ControlNet
        that conditions it on the training labels."""
        images, labels = with_deformed_copies(real_images, real_labels, config.image_deformed_copies,
                                              config.deformation_strength, seed)
        image_tensor = torch.from_numpy(images[:, None])
        self.logs["image_autoencoder"] = train_autoencoder("image_autoencoder", modules["image_autoencoder"], image_tensor,
                                                           config, seed, dev, ckpt, progress, modules.get("discriminator"))
        latents, self.scale["image"] = self._encode(modules["image_autoencoder"], image_tensor, dev)
        self.logs["image_diffusion"] = train_diffusion("image_diffusion", modules["image_unet"], latents, config, seed,
                                                       dev, ckpt, progress)
        networks.init_controlnet_from_unet(modules["controlnet"], modules["image_unet"])
        controls = torch.from_numpy(np.stack([label_channels(l) for l in labels]))
        self.logs["controlnet"] = train_controlnet(modules["controlnet"], modules["image_unet"], latents, controls, config,
                                                   seed, dev, ckpt, progress)

    @staticmethod
    @torch.no_grad()
    def _encode(autoencoder, data: torch.Tensor, device) -> tuple[torch.Tensor, float]:
        """Posterior means of the training set and the scale factor 1 / std (Rombach et al. 2022)."""
        autoencoder.eval()
        latents = torch.cat([autoencoder.encode(data[i:i + 4].to(device))[0] for i in range(0, len(data), 4)])
        scale = float(1.0 / latents.std().clamp_min(1e-6))
        return (latents * scale).cpu(), scale

    # -- sampling --------------------------------------------------------------------------------------
    def _latent_shape(self, which: str, n: int) -> tuple[int, ...]:
        size = self.duo_config.label_autoencoder if which == "label" else self.duo_config.image_autoencoder
        return (n, size.latent_channels, *(s // size.factor for s in self.profile.shape))

    @torch.no_grad()
    def generate_labels(self, n: int, seed: int, sampler: str | None = None, steps: int | None = None,
                        seeds: list[int] | None = None) -> list[np.ndarray]:
        """Stage 1: ``n`` new label volumes, post-processed (see module docstring), in one batched denoising loop.

        Volume i starts from the noise of its own seed (``seeds``, default derived from ``seed``); a volume whose
        liver comes out empty is redrawn from its generator's next noise.
        """
        self._require_fitted()
        dev = torch.device(self.device)
        seeds = volume_seeds(n, seed) if seeds is None else [int(s) for s in seeds]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        out: list[np.ndarray | None] = [None] * n
        pending = list(range(n))
        for _ in range(10):
            if not pending:
                break
            z = denoise(self.modules["label_unet"], self.duo_config, self._latent_shape("label", len(pending)),
                        [generators[i] for i in pending], dev, sampler, steps)
            volumes = self.modules["label_autoencoder"].decode(z / self.scale["label"]).argmax(1).cpu().numpy()
            for i, volume in zip(pending, volumes):
                label = postprocess_label(volume.astype(np.uint8), self.duo_config.min_component_fraction,
                                          self.min_tumour_voxels)
                out[i] = label if label.any() else None
            pending = [i for i in pending if out[i] is None]
        if pending:
            raise RuntimeError(f"{self.name}: the label model produced empty livers 10 times for {len(pending)} "
                               f"of {n} volumes")
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def images_for_labels(self, labels: list[np.ndarray], seed: int, sampler: str | None = None,
                          steps: int | None = None, seeds: list[int] | None = None) -> list[np.ndarray]:
        """Stage 2: one image per given label (the control), in [0, 1], all in one batched denoising loop; image i
        starts from the noise of ``seeds[i]`` (default derived from ``seed``)."""
        self._require_fitted()
        dev = torch.device(self.device)
        seeds = volume_seeds(len(labels), seed) if seeds is None else [int(s) for s in seeds]
        control = torch.from_numpy(np.stack([label_channels(label) for label in labels])).to(dev)
        z = denoise(self.modules["image_unet"], self.duo_config, self._latent_shape("image", len(labels)),
                    [torch.Generator().manual_seed(s) for s in seeds], dev, sampler, steps,
                    controlnet=self.modules["controlnet"], control=control)
        return list(self.modules["image_autoencoder"].decode(z / self.scale["image"]).cpu().numpy())

    def _labels_for(self, rngs: list[np.random.Generator], sampler: str | None,
                    steps: int | None) -> tuple[list[np.ndarray], list[str]]:
        seeds = [int(r.integers(2 ** 31)) for r in rngs]
        return self.generate_labels(len(rngs), 0, sampler, steps, seeds=seeds), ["generated"] * len(rngs)

    def sample(self, n: int, seed: int, sampler: str | None = None, steps: int | None = None) -> Iterator[Pair]:
        """``sample_batch`` volumes at a time: their labels (both stages use ``sampler``/``steps``), then their images.
        Volume i draws from its own random stream (the i-th seed of ``seed``), so the batch size changes nothing
        but the last bits of batched arithmetic."""
        profile = self._require_fitted()
        for start, rngs in volume_streams(n, seed, self.duo_config.sample_batch):
            labels, sources = self._labels_for(rngs, sampler, steps)
            images = self.images_for_labels(labels, 0, sampler, steps, seeds=[int(r.integers(2 ** 31)) for r in rngs])
            for i, (image, label, source) in enumerate(zip(images, labels, sources), start):
                yield make_pair(image, label, profile, synthetic_case_id(self.name, seed, i), label_source=source,
                                sampler=sampler or self.duo_config.scheduler,
                                steps=steps or self.duo_config.sampling_steps)

    def training_seconds(self) -> float | None:
        """The stages' own clocks (kept in their checkpoints, so a resumed or split fit counts every attempt)."""
        return float(sum(log.get("seconds", 0.0) for log in self.logs.values())) if self.logs else None

    def loss_curves(self) -> dict[str, list[float]]:
        return {stage: list(log["losses"]) for stage, log in self.logs.items()}

    # -- checkpoint --------------------------------------------------------------------------------------

    def _tensors(self) -> dict:
        tensors = {f"{name}.{k}": v for name, module in self.modules.items() for k, v in module.state_dict().items()}
        tensors["scale_factors"] = np.array([self.scale.get("label", 0.0), self.scale["image"]], dtype=np.float64)
        tensors["labels"] = self.labels
        tensors["min_tumour_voxels"] = np.array([self.min_tumour_voxels], dtype=np.int64)
        return tensors

    def _restore(self, arrays, config) -> None:
        self.duo_config = config_for(self.profile.name, **self.overrides)
        self.modules = self._build_all(self.duo_config)
        for name, module in self.modules.items():
            load_module_state(module, arrays, name)
            module.to(torch.device(self.device)).eval()
        label_scale, image_scale = arrays["scale_factors"].tolist()
        self.scale = {"image": image_scale, **({"label": label_scale} if self.generates_labels else {})}
        self.labels = arrays["labels"]
        self.min_tumour_voxels = int(arrays["min_tumour_voxels"][0])


class DuoDiffusionRealLabels(DuoDiffusion):
    """Ablation: stage 2 only, conditioned on deformed real training labels (no label generator)."""

    name = "duo-diffusion-real-labels"
    generates_labels = False
    fit_parts = ()

    def _labels_for(self, rngs: list[np.random.Generator], sampler: str | None,
                    steps: int | None) -> tuple[list[np.ndarray], list[str]]:
        draws = [draw_deformed_label(self.labels, rng) for rng in rngs]
        return [label for _, label in draws], [f"deformed:{self.train_case_ids[i]}" for i, _ in draws]

