"""Dataset statistics for ``foscu-bench datasets show``: geometry, liver volumes, intensity contrast.

Volumes are measured on the native grid (before resampling), intensities on the preprocessed [0, 1] images,
so phantom and real data are compared after the same normalisation a model sees.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import ndimage

from foscu_bench.pair import Pair


def intensity_stats(pair: Pair) -> dict[str, float]:
    """Liver mean/sd, the mean of a 2-voxel shell of non-liver tissue around it, and their contrast-to-noise."""
    image, liver = pair.image[0], pair.label > 0
    shell = ndimage.binary_dilation(liver, iterations=2) & ~liver
    liver_mean, liver_sd = float(image[liver].mean()), float(image[liver].std())
    shell_mean = float(image[shell].mean()) if shell.any() else float("nan")
    return {"liver_mean": liver_mean, "liver_sd": liver_sd, "surround_mean": shell_mean,
            "cnr": abs(liver_mean - shell_mean) / max(liver_sd, 1e-6)}


def summarize(pairs: list[Pair]) -> dict:
    """Aggregate per-case facts into one JSON-able summary."""
    native_ml = np.array([p.meta.get("liver_ml_native", p.liver_volume_ml) for p in pairs])
    stats = [intensity_stats(p) for p in pairs]
    spacing = np.array([p.meta.get("native_spacing", p.spacing) for p in pairs], dtype=float)

    def describe(values: np.ndarray) -> dict[str, float]:
        return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()), "max": float(values.max())}

    return {
        "n_cases": len(pairs),
        "n_tumour_cases": int(sum(p.has_tumour for p in pairs)),
        "native_shapes": dict(Counter("x".join(map(str, p.meta.get("native_shape", p.label.shape))) for p in pairs)),
        "native_spacing_median_mm": [round(float(s), 3) for s in np.median(spacing, axis=0)],
        "native_orientations": dict(Counter(p.meta.get("native_orientation", "RAS") for p in pairs)),
        "grid_shape": list(pairs[0].label.shape),
        "grid_spacing_mm": list(pairs[0].spacing),
        "liver_ml": describe(native_ml),
        "liver_voxels_on_grid": describe(np.array([np.count_nonzero(p.label) for p in pairs], dtype=float)),
        "liver_kept_fraction_min": float(min(p.meta.get("liver_kept_fraction", 1.0) for p in pairs)),
        "liver_intensity": describe(np.array([s["liver_mean"] for s in stats])),
        "liver_intensity_sd": describe(np.array([s["liver_sd"] for s in stats])),
        "surround_intensity": describe(np.array([s["surround_mean"] for s in stats])),
        "liver_cnr": describe(np.array([s["cnr"] for s in stats])),
    }
