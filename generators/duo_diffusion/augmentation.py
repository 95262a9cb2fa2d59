"""Deformed copies of the training pairs: what Duo-Diffusion's stages train on besides the real cases.

Why: at 16 real cases the latent models of a full training budget reproduce their training cases (median Dice
of a generated label with its nearest training label 0.89, against 0.70 for an unseen real liver;
bench/results/quality_quick.json). Adding, for every real pair, a few copies under one smooth affine + elastic
deformation (the same draw for image and label, so each copy is still a consistent pair) gives every stage a
continuum of plausible anatomy around each case instead of 16 points to memorise (data augmentation for small-data
diffusion training, as in Karras et al. 2022, here without the augmentation conditioning: the deformations are
anatomically plausible, so their leaking into samples is the point).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from foscu_bench.conditioning import deformation_transform


def deform_pair(image: np.ndarray, label: np.ndarray, seed: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """One deformed copy of (image, label): trilinear for the image, nearest for the label, one random draw.

    Retries (up to 5 draws) when the deformation pushed the liver out of the field of view."""
    import torch

    for attempt in range(5):
        chain = deformation_transform(label.shape, ["image", "label"], ["bilinear", "nearest"],
                                      seed * 7919 + attempt, strength)
        out = chain({"image": torch.from_numpy(image[None].astype(np.float32)),
                     "label": torch.from_numpy(label[None].astype(np.float32))})
        deformed_label = np.rint(np.asarray(out["label"])[0]).astype(np.uint8)
        if deformed_label.any():
            return np.clip(np.asarray(out["image"])[0], 0.0, 1.0).astype(np.float32), deformed_label
    return image.copy(), label.copy()


def with_deformed_copies(images: np.ndarray, labels: np.ndarray, copies: int, strength: float,
                         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The real pairs followed by ``copies`` deformed copies of each (copy k of case i from seed (seed, i, k))."""
    if copies <= 0:
        return images, labels
    extra_images, extra_labels = [], []
    for i, (image, label) in enumerate(zip(images, labels)):
        for k in range(copies):
            draw = int(np.random.SeedSequence([int(seed), i, k]).generate_state(1)[0] % 2 ** 31)
            deformed_image, deformed_label = deform_pair(image, label, draw, strength)
            extra_images.append(deformed_image)
            extra_labels.append(deformed_label)
    return (np.concatenate([images, np.stack(extra_images)]).astype(np.float32),
            np.concatenate([labels, np.stack(extra_labels)]).astype(np.uint8))


def smallest_tumour_component(labels: np.ndarray) -> int:
    """Voxels of the smallest tumour (26-connected component of label 2) in ``labels``; 0 when there is none."""
    smallest = 0
    for label in labels:
        components, n = ndimage.label(label == 2, structure=np.ones((3, 3, 3)))
        if n:
            size = int(np.bincount(components.ravel())[1:].min())
            smallest = size if smallest == 0 else min(smallest, size)
    return smallest
