"""Label conditioning shared by generators: label channels and random deformation of real training labels.

The label-conditioned generators (synthseg, cond-ddpm, cond-gan, Duo-Diffusion's real-labels ablation) cannot
invent new anatomy: at sampling time they condition on *deformed real training labels*. That is the gap
Duo-Diffusion's label generator closes, and the benchmark measures what it is worth.
"""

from __future__ import annotations

import numpy as np


def label_channels(label: np.ndarray) -> np.ndarray:
    """Liver and tumour masks as float32 channels (2 x X x Y x Z): the conditioning input of learned generators."""
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
