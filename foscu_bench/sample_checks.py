"""Sanity checks of generated pairs against real training pairs, usable for any generator.

- Liver volume distribution: two-sample Kolmogorov-Smirnov statistic and p-value (scipy).
- Liver connectivity: connected components (26-connectivity) per sample; the fraction of samples whose
  largest component holds >= 95% of the liver ("one dominant liver"), as real livers are one organ.
- Intensity realism per label: 1-Wasserstein distance between pooled voxel intensities of synthetic and real
  images inside background, liver and tumour.
- Memorisation: the highest Pearson correlation of each synthetic image with any training image.
- Tumours: presence fraction, tumour volume distribution (KS among tumour-bearing cases), lesions per case.
- Images: diversity among samples (mean MS-SSIM of random pairs; lower is more diverse) and sharpness (mean
  absolute finite difference, the edge energy an autoencoder's blur removes), each beside the real value.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage, stats

from foscu_bench.pair import Pair

DOMINANT_COMPONENT_FRACTION = 0.95


def liver_components(label: np.ndarray) -> tuple[int, float]:
    """Number of 26-connected liver components and the fraction of liver voxels in the largest one."""
    liver = label > 0
    components, n = ndimage.label(liver, structure=np.ones((3, 3, 3)))
    if n == 0:
        return 0, 0.0
    sizes = np.bincount(components.ravel())[1:]
    return int(n), float(sizes.max() / sizes.sum())


def max_training_correlation(images: Sequence[np.ndarray], training_images: Sequence[np.ndarray]) -> np.ndarray:
    """For each image, the highest Pearson correlation with any training image (memorisation check)."""
    def standardise(stack: np.ndarray) -> np.ndarray:
        flat = stack.reshape(len(stack), -1).astype(np.float64)
        flat = flat - flat.mean(axis=1, keepdims=True)
        return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)

    synth = standardise(np.stack([np.asarray(i).squeeze() for i in images]))
    train = standardise(np.stack([np.asarray(i).squeeze() for i in training_images]))
    return (synth @ train.T).max(axis=1)


def nearest_training_dice(labels: Sequence[np.ndarray], training_labels: Sequence[np.ndarray]) -> np.ndarray:
    """For each label, the liver Dice with the most similar training label (1 = a copy of a training label)."""
    a = np.stack([np.asarray(l) > 0 for l in labels]).reshape(len(labels), -1).astype(np.float64)
    b = np.stack([np.asarray(l) > 0 for l in training_labels]).reshape(len(training_labels), -1).astype(np.float64)
    return (2 * (a @ b.T) / np.maximum(a.sum(1)[:, None] + b.sum(1)[None, :], 1.0)).max(axis=1)


def memorisation_report(synthetic: Sequence[Pair], training: Sequence[Pair], held_out: Sequence[Pair]) -> dict:
    """How close samples come to the training cases, beside how close unseen real cases come: a generator that
    does not copy stays near the held-out values (labels: nearest-training Dice; images: highest correlation)."""
    train_labels, train_images = [p.label for p in training], [p.image for p in training]
    return {
        "nearest_training_dice_median": float(np.median(nearest_training_dice([p.label for p in synthetic], train_labels))),
        "nearest_training_dice_median_held_out": float(np.median(nearest_training_dice([p.label for p in held_out],
                                                                                       train_labels))),
        "training_correlation_median": float(np.median(max_training_correlation([p.image for p in synthetic],
                                                                                train_images))),
        "training_correlation_median_held_out": float(np.median(max_training_correlation([p.image for p in held_out],
                                                                                         train_images))),
    }


def tumour_volumes_ml(labels: Sequence[np.ndarray], voxel_ml: Sequence[float] | float) -> np.ndarray:
    """Tumour volume in ml of each label that has a tumour (``voxel_ml``: one value, or one per label)."""
    voxel_ml = np.broadcast_to(np.asarray(voxel_ml, dtype=float), (len(labels),))
    return np.array([float((np.asarray(l) == 2).sum()) * v for l, v in zip(labels, voxel_ml) if np.any(np.asarray(l) == 2)])


def lesions_per_tumour_case(labels: Sequence[np.ndarray]) -> float:
    """Mean number of 26-connected tumour components among labels with a tumour (NaN when none has one)."""
    counts = [ndimage.label(np.asarray(l) == 2, structure=np.ones((3, 3, 3)))[1] for l in labels if np.any(np.asarray(l) == 2)]
    return float(np.mean(counts)) if counts else float("nan")


def tumour_report(synthetic: Sequence[Pair], real: Sequence[Pair]) -> dict:
    """Tumour presence, volume (ml, among tumour-bearing cases) and lesion count, synthetic beside real."""
    def volumes(pairs: Sequence[Pair]) -> np.ndarray:
        return tumour_volumes_ml([p.label for p in pairs], [float(np.prod(p.spacing)) / 1000.0 for p in pairs])

    def lesions(pairs: Sequence[Pair]) -> float:
        return lesions_per_tumour_case([p.label for p in pairs])

    synth_ml, real_ml = volumes(synthetic), volumes(real)
    ks = stats.ks_2samp(synth_ml, real_ml) if len(synth_ml) >= 2 and len(real_ml) >= 2 else None
    return {
        "tumour_fraction_synthetic": float(np.mean([p.has_tumour for p in synthetic])),
        "tumour_fraction_real": float(np.mean([p.has_tumour for p in real])),
        "tumour_ml_synthetic_median": float(np.median(synth_ml)) if len(synth_ml) else float("nan"),
        "tumour_ml_real_median": float(np.median(real_ml)) if len(real_ml) else float("nan"),
        "tumour_volume_ks": float(ks.statistic) if ks else float("nan"),
        "tumour_volume_ks_p": float(ks.pvalue) if ks else float("nan"),
        "lesions_per_tumour_case_synthetic": lesions(synthetic),
        "lesions_per_tumour_case_real": lesions(real),
    }


def sharpness(images: Sequence[np.ndarray]) -> float:
    """Mean absolute finite difference over the three axes, averaged over images (blur lowers it)."""
    values = []
    for image in images:
        volume = np.asarray(image, dtype=np.float64).squeeze()
        values.append(np.mean([np.abs(np.diff(volume, axis=a)).mean() for a in range(volume.ndim)]))
    return float(np.mean(values))


def image_report(synthetic: Sequence[Pair], real: Sequence[Pair], n_pairs: int = 64, seed: int = 0) -> dict:
    """Diversity (MS-SSIM among samples, lower = more diverse) and sharpness, each beside the real value."""
    from foscu_bench.metrics.fidelity import mean_ms_ssim

    def stack(pairs: Sequence[Pair]) -> np.ndarray:
        return np.stack([np.clip(p.image, 0.0, 1.0) for p in pairs]).astype(np.float32)

    return {
        "ms_ssim_among_synthetic": mean_ms_ssim(stack(synthetic), None, n_pairs, seed),
        "ms_ssim_among_real": mean_ms_ssim(stack(real), None, n_pairs, seed),
        "sharpness_synthetic": sharpness([p.image for p in synthetic]),
        "sharpness_real": sharpness([p.image for p in real]),
    }


def sample_report(synthetic: Sequence[Pair], real: Sequence[Pair], max_voxels: int = 200_000, seed: int = 0) -> dict:
    """All checks in one JSON-able dict."""
    rng = np.random.default_rng(seed)
    synth_ml = np.array([p.liver_volume_ml for p in synthetic])
    real_ml = np.array([p.liver_volume_ml for p in real])
    ks = stats.ks_2samp(synth_ml, real_ml)
    components = [liver_components(p.label) for p in synthetic]
    intensity = {}
    for name, select in (("background", lambda l: l == 0), ("liver", lambda l: l == 1), ("tumour", lambda l: l == 2)):
        s = np.concatenate([p.image[0][select(p.label)] for p in synthetic])
        r = np.concatenate([p.image[0][select(p.label)] for p in real])
        if s.size and r.size:
            s = s if s.size <= max_voxels else rng.choice(s, max_voxels, replace=False)
            r = r if r.size <= max_voxels else rng.choice(r, max_voxels, replace=False)
            intensity[name] = float(stats.wasserstein_distance(s, r))
    correlation = max_training_correlation([p.image for p in synthetic], [p.image for p in real])
    return {
        "n_synthetic": len(synthetic), "n_real": len(real),
        "liver_ml_synthetic_mean": float(synth_ml.mean()), "liver_ml_real_mean": float(real_ml.mean()),
        "liver_volume_ks": float(ks.statistic), "liver_volume_ks_p": float(ks.pvalue),
        "liver_components_mean": float(np.mean([c[0] for c in components])),
        "one_dominant_liver_fraction": float(np.mean([c[1] >= DOMINANT_COMPONENT_FRACTION for c in components])),
        "single_liver_component_fraction": float(np.mean([c[0] == 1 for c in components])),
        "intensity_wasserstein": intensity,
        "max_training_correlation": float(correlation.max()),
        "median_training_correlation": float(np.median(correlation)),
        **tumour_report(synthetic, real),
        **image_report(synthetic, real, seed=seed),
    }


def image_label_consistency(pairs: Sequence[Pair], model, settings) -> np.ndarray:
    """Liver Dice between a real-data U-Net's segmentation of each generated image and its generating label.

    High values mean the image shows the anatomy its label claims (the property a paired generator must have);
    compare with the same U-Net's Dice on real held-out cases, the ceiling at this resolution.
    """
    from foscu_bench.metrics.segmentation import dice
    from foscu_bench.segmentation import predict_many

    predictions = predict_many(model, [pair.image for pair in pairs], settings)
    return np.asarray([dice(p, pair.label) for p, pair in zip(predictions, pairs)], dtype=float)


def tumour_consistency(pairs: Sequence[Pair], model, settings) -> np.ndarray:
    """Tumour Dice of a real-data U-Net on each generated image that carries a tumour label (its generating
    tumour as reference): whether generated lesions look like lesions to a segmenter trained on real ones."""
    from foscu_bench.metrics.segmentation import dice
    from foscu_bench.segmentation import predict_many

    with_tumour = [pair for pair in pairs if pair.has_tumour]
    predictions = predict_many(model, [pair.image for pair in with_tumour], settings)
    return np.asarray([dice(p == 2, pair.label == 2) for p, pair in zip(predictions, with_tumour)], dtype=float)
