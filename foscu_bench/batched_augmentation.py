"""Batched tensor augmentation for the per-sample (GPU) training path.

The same random affine and intensity transforms as the MONAI chain of ``segmentation._augmentation`` (same
probabilities, ranges and order), but each sample's parameters are drawn where the sample is prepared (a loader
worker) and the transforms run on the whole batch on the training device, in a few kernels.

Why: MONAI applies them one sample at a time; one 96^3 affine costs 12 ms on an H200 and 40-75 ms on one CPU thread
of a loader worker, so at the paper profile the loader, not the GPU, set the U-Net's pace (26.7 ms a step for
11.4 ms of compute, 8 workers; bench/results/gpu_paper_profile_s10_h200.json). The affine matrices come from MONAI's
own ``create_rotate``/``create_scale`` and the resampling follows MONAI's ``Resample`` convention (centred voxel
grid, ``align_corners=False``, zero padding), so for the same parameters the output equals MONAI's ``Affine``
(tests/test_batched_augmentation.py checks it on a non-cubic volume).
"""

from __future__ import annotations

import numpy as np

# The augmentation both paths draw from (segmentation._augmentation builds MONAI's chain from these numbers).
AFFINE_PROB, ROTATE_RANGE, SCALE_RANGE = 0.3, 0.12, 0.1
SCALE_INTENSITY_PROB, SCALE_INTENSITY_FACTOR = 0.2, 0.1
SHIFT_INTENSITY_PROB, SHIFT_INTENSITY_OFFSET = 0.2, 0.05
CONTRAST_PROB, CONTRAST_GAMMA = 0.2, (0.8, 1.25)
NOISE_PROB, NOISE_STD = 0.15, 0.02

# Layout of one sample's parameter vector.
MATRIX = slice(0, 9)  # 3x3 sampling matrix in centred voxel coordinates (identity when no affine was drawn)
AFFINE_ON, SCALE, SHIFT, CONTRAST_ON, GAMMA, NOISE_ON, NOISE_SD, NOISE_SEED = range(9, 17)
N_PARAMETERS = 17


def draw_parameters(rng: np.random.Generator) -> np.ndarray:
    """One sample's augmentation: whether each transform applies, and its random values (MONAI's distributions:
    rotation angles U(-r, r) per axis, scale factors 1 + U(-s, s), intensity factor 1 + U(-f, f), offset U(-o, o),
    gamma U(g0, g1), noise sd U(0, sd))."""
    from monai.transforms.utils import create_rotate, create_scale

    p = np.zeros(N_PARAMETERS)
    p[MATRIX] = np.eye(3).ravel()
    if rng.uniform() < AFFINE_PROB:
        angles = rng.uniform(-ROTATE_RANGE, ROTATE_RANGE, size=3)
        scales = 1.0 + rng.uniform(-SCALE_RANGE, SCALE_RANGE, size=3)
        matrix = np.asarray(create_rotate(3, angles.tolist())) @ np.asarray(create_scale(3, scales.tolist()))
        p[MATRIX], p[AFFINE_ON] = matrix[:3, :3].ravel(), 1.0
    if rng.uniform() < SCALE_INTENSITY_PROB:
        p[SCALE] = rng.uniform(-SCALE_INTENSITY_FACTOR, SCALE_INTENSITY_FACTOR)
    if rng.uniform() < SHIFT_INTENSITY_PROB:
        p[SHIFT] = rng.uniform(-SHIFT_INTENSITY_OFFSET, SHIFT_INTENSITY_OFFSET)
    if rng.uniform() < CONTRAST_PROB:
        p[CONTRAST_ON], p[GAMMA] = 1.0, rng.uniform(*CONTRAST_GAMMA)
    if rng.uniform() < NOISE_PROB:
        p[NOISE_ON], p[NOISE_SD], p[NOISE_SEED] = 1.0, rng.uniform(0.0, NOISE_STD), rng.integers(2 ** 31)
    return p


def normalised_theta(matrices, spatial: tuple[int, ...]):
    """``F.affine_grid``'s theta for sampling matrices in MONAI's centred voxel coordinates: MONAI samples the input
    at ``A @ c`` and scales each axis by 2 / size (align_corners=False); torch orders the grid's axes last to first."""
    import torch

    sizes = torch.tensor(spatial[::-1], dtype=matrices.dtype, device=matrices.device)
    reverse = list(range(len(spatial)))[::-1]
    flipped = matrices[:, reverse][:, :, reverse]
    theta = flipped * (2.0 / sizes)[None, :, None] / (2.0 / sizes)[None, None, :]
    return torch.cat([theta, torch.zeros_like(theta[:, :, :1])], dim=2)


def apply_batch(images, labels, parameters):
    """Augment a batch (N, 1, *spatial) of image and label patches on their device with per-sample ``parameters``
    (N, N_PARAMETERS) from ``draw_parameters``: affine (bilinear image, nearest label, zero padding), then intensity
    scale, shift, contrast and Gaussian noise on the image, as MONAI's chain orders them."""
    import torch
    import torch.nn.functional as F

    params = torch.as_tensor(parameters, dtype=torch.float64)
    images, labels = images.float(), labels.float()
    on = params[:, AFFINE_ON] > 0
    if bool(on.any()):
        index = on.nonzero().flatten().to(images.device)
        theta = normalised_theta(params[on][:, MATRIX].reshape(-1, 3, 3), tuple(images.shape[2:])).float()
        grid = F.affine_grid(theta.to(images.device), [len(index), 1, *images.shape[2:]], align_corners=False)
        images, labels = images.clone(), labels.clone()
        images[index] = F.grid_sample(images[index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        labels[index] = F.grid_sample(labels[index], grid, mode="nearest", padding_mode="zeros", align_corners=False)
    per_sample = (-1,) + (1,) * (images.dim() - 1)
    factor = (1.0 + params[:, SCALE]).float().to(images.device).view(per_sample)
    images = images * factor + params[:, SHIFT].float().to(images.device).view(per_sample)
    for i in params[:, CONTRAST_ON].nonzero().flatten().tolist():
        low, high = images[i].min(), images[i].max()
        spread = high - low
        images[i] = ((images[i] - low) / (spread + 1e-7)) ** float(params[i, GAMMA]) * spread + low
    for i in params[:, NOISE_ON].nonzero().flatten().tolist():
        generator = torch.Generator(device=images.device).manual_seed(int(params[i, NOISE_SEED]))
        noise = torch.randn(images[i].shape, generator=generator, device=images.device)
        images[i] = images[i] + noise * float(params[i, NOISE_SD])
    return images, labels
