"""Pieces every baseline shares: checkpointing through ``foscu_bench.checkpoint``, pair construction, and the
random deformation of real training labels that the label-conditioned baselines condition on.

The label-conditioned baselines (synthseg, cond-ddpm, cond-gan) cannot invent new anatomy: at sampling time
they condition on *deformed real training labels*. That is the gap Duo-Diffusion's label generator closes,
and the benchmark measures what it is worth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from foscu_bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from foscu_bench.data.splits import require_training_set
from foscu_bench.errors import FoscuError
from foscu_bench.pair import Pair
from foscu_bench.profiles import Profile, get_profile


class NotFittedError(FoscuError):
    """sample/save was called before fit/load."""


def synthetic_case_id(name: str, seed: int, index: int) -> str:
    return f"{name}-s{seed}-{index:05d}"


def make_pair(image: np.ndarray, label: np.ndarray, profile: Profile, case_id: str, **meta: Any) -> Pair:
    """A valid ``Pair`` from generator output: image clipped to [0, 1] float32 (1 x X x Y x Z), label uint8."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    image = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)
    return Pair(image=image, label=np.asarray(label, dtype=np.uint8), spacing=profile.spacing, case_id=case_id,
                patient_id=case_id, meta=meta)


def label_channels(label: np.ndarray) -> np.ndarray:
    """Liver and tumour masks as float32 channels (2 x X x Y x Z): the conditioning input of learned baselines."""
    label = np.asarray(label)
    return np.stack([(label >= 1), (label == 2)]).astype(np.float32)


def deformation_transform(shape: tuple[int, int, int], keys: list[str], modes: list[str], seed: int,
                          strength: float = 1.0):
    """MONAI random affine + elastic deformation sized to the grid (the same draw for every key)."""
    from monai.transforms import Compose, Rand3DElasticd, RandAffined

    small = min(shape)
    chain = Compose([
        RandAffined(keys=keys, prob=1.0, rotate_range=(0.15 * strength,) * 3, scale_range=(0.1 * strength,) * 3,
                    translate_range=(0.06 * small * strength,) * 3, mode=modes, padding_mode="zeros"),
        Rand3DElasticd(keys=keys, prob=1.0, sigma_range=(small / 8, small / 6),
                       magnitude_range=(small / 16 * strength, small / 8 * strength), mode=modes,
                       padding_mode="zeros"),
    ])
    chain.set_random_state(seed=seed)
    return chain


def deform_label(label: np.ndarray, seed: int, strength: float = 1.0) -> np.ndarray:
    """A new plausible label from a real one: smooth affine + elastic deformation, nearest interpolation.

    Retries (up to 5 draws) if the deformation pushed the liver out of the field of view.
    """
    import torch

    for attempt in range(5):
        chain = deformation_transform(label.shape, ["label"], ["nearest"], seed * 7919 + attempt, strength)
        out = chain({"label": torch.from_numpy(label[None].astype(np.float32))})["label"]
        deformed = np.rint(np.asarray(out)[0]).astype(np.uint8)
        if deformed.any():
            return deformed
    return label.copy()


def draw_deformed_label(labels: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Pick a real training label and deform it: the conditioning of every label-conditioned generator.

    Draws the index first, then the deformation seed, from ``rng`` (this order fixes the samples of a seed).
    """
    index = int(rng.integers(len(labels)))
    return index, deform_label(labels[index], int(rng.integers(2 ** 31)))


class BaseGenerator:
    """Save/load through the verified safetensors checkpoint; subclasses fill ``_tensors`` / ``_restore``."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.profile: Profile | None = None
        self.fit_seed: int | None = None
        self.train_case_ids: list[str] = []
        self.device = "cpu"

    # -- subclass hooks -----------------------------------------------------------------------------
    def _config(self) -> dict:
        return {}

    def _tensors(self) -> dict[str, Any]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray], config: dict) -> None:
        raise NotImplementedError

    @classmethod
    def count_parameters(cls, profile: Profile) -> int:
        """Parameters of the network used at sampling time (0 for rule-based generators)."""
        build = getattr(cls(), "_build", None)
        return 0 if build is None else int(sum(p.numel() for p in build(profile).parameters()))

    def loss_curves(self) -> dict[str, list[float]]:
        """Training losses per stage, for the loss-curve figure (empty for rule-based generators)."""
        return {}

    # -- shared ---------------------------------------------------------------------------------------
    def _require_fitted(self) -> Profile:
        if self.profile is None:
            raise NotFittedError(f"generator {self.name!r} must be fitted (or loaded) before sampling or saving")
        return self.profile

    def _remember_fit(self, train, profile: Profile, seed: int) -> None:
        self.profile, self.fit_seed = profile, int(seed)
        self.train_case_ids = list(train.case_ids)

    def save(self, directory: Path) -> None:
        profile = self._require_fitted()
        config = {"generator": self.name, "profile": profile.name, "fit_seed": self.fit_seed,
                  "train_case_ids": self.train_case_ids, "generator_config": self._config()}
        save_checkpoint(directory, self._tensors(), config)

    @classmethod
    def load(cls, directory: Path, device="cpu"):
        arrays, config = load_checkpoint(directory)
        if config.get("generator") != cls.name:
            raise CheckpointError(f"{directory}: checkpoint of generator {config.get('generator')!r}, "
                                  f"not {cls.name!r}")
        generator = cls(**config.get("generator_config", {}))
        generator.profile = get_profile(config["profile"])
        generator.fit_seed = config["fit_seed"]
        generator.train_case_ids = list(config["train_case_ids"])
        generator.device = str(device)
        generator._restore(arrays, config)
        return generator

    def sample(self, n: int, seed: int) -> Iterator[Pair]:  # pragma: no cover - overridden
        raise NotImplementedError


def training_arrays(train) -> tuple[np.ndarray, np.ndarray]:
    """Stacked training images (N x X x Y x Z float32) and labels (N x X x Y x Z uint8)."""
    return (np.stack([p.image[0] for p in train]).astype(np.float32),
            np.stack([p.label for p in train]).astype(np.uint8))


class LabelConditionedNetwork(BaseGenerator):
    """A learned label-to-image network sampled on deformed real training labels (cond-gan, cond-ddpm).

    Subclasses provide ``_build(profile)`` (the sampling-time network), ``fit`` (which ends with
    ``_finish_fit``) and ``_image_for(label, rng)``; checkpointing and the sampling loop live here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.network = None
        self.labels: np.ndarray | None = None

    def _build(self, profile: Profile):  # pragma: no cover - overridden
        raise NotImplementedError

    def _image_for(self, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _sampling_mode(self):
        """Context in which the network samples (eval mode by default)."""
        from contextlib import nullcontext

        return nullcontext()

    def _fit_setup(self, train, profile: Profile, seed: int, device, sizes: dict):
        """The start every learned fit shares: refuse non-training data, stack arrays, pick sizes, seed."""
        import torch

        train = require_training_set(train)
        images, labels = training_arrays(train)
        size = sizes[profile.name]
        iterations = getattr(self, "iterations", None) or size["iterations"]
        dev = torch.device(device)
        torch.manual_seed(seed)
        return train, images, labels, size, iterations, dev, np.random.default_rng(seed)

    def _finish_fit(self, network, labels: np.ndarray, train, profile: Profile, seed: int, device) -> None:
        self.network = network.eval()
        self.labels = labels
        self.device = str(device)
        self._remember_fit(train, profile, seed)

    def sample(self, n: int, seed: int) -> Iterator[Pair]:
        import torch

        profile = self._require_fitted()
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        with self._sampling_mode():
            for i in range(n):
                index, label = draw_deformed_label(self.labels, rng)
                image = self._image_for(label, rng)
                yield make_pair(image, label, profile, synthetic_case_id(self.name, seed, i),
                                source_case=self.train_case_ids[index])

    def _tensors(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        state["labels"] = self.labels
        return state

    def _restore(self, arrays: dict[str, np.ndarray], config: dict) -> None:
        import torch

        from foscu_bench.checkpoint import load_module_state

        network = self._build(self.profile)
        load_module_state(network, arrays, "network")
        self.network = network.to(torch.device(self.device)).eval()
        self.labels = arrays["labels"]
