"""Tri-planar previews (axial, coronal, sagittal through the liver's centre) with label contours.

Displayed in radiological convention (patient's right on the image's left, anterior up on axial views),
with pixel aspect from the voxel spacing, so a radiologist can judge anatomy at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from foscu_bench.pair import Pair
from foscu_bench.store import atomic_path

LIVER_COLOUR, TUMOUR_COLOUR = "#ffd400", "#ff2d2d"


def _centre(label: np.ndarray) -> tuple[int, int, int]:
    if label.any():
        return tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))  # type: ignore[return-value]
    return tuple(s // 2 for s in label.shape)  # type: ignore[return-value]


def triplanar_views(image: np.ndarray, label: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """Slices (image, label, horizontal axis, vertical axis) for axial, coronal, sagittal; arrays (X, Y, Z)."""
    cx, cy, cz = _centre(label)
    flip_x = slice(None, None, -1)  # radiological: patient right (high x) on the left
    return [(image[flip_x, :, cz].T, label[flip_x, :, cz].T, 0, 1),
            (image[flip_x, cy, :].T, label[flip_x, cy, :].T, 0, 2),
            (image[cx, ::-1, :].T, label[cx, ::-1, :].T, 1, 2)]


def draw_triplanar(axes: Sequence, image: np.ndarray, label: np.ndarray, spacing: Sequence[float],
                   title: str = "") -> None:
    """Draw one case on three matplotlib axes."""
    vmax = float(np.percentile(image, 99.5)) or 1.0
    for ax, (img, lab, h, v) in zip(axes, triplanar_views(image, label)):
        ax.imshow(img, cmap="gray", origin="lower", vmin=0, vmax=vmax, aspect=spacing[v] / spacing[h],
                  interpolation="nearest")
        if (lab == 1).any() or (lab == 2).any():
            ax.contour(lab >= 1, levels=[0.5], colors=[LIVER_COLOUR], linewidths=0.8)
        if (lab == 2).any():
            ax.contour(lab == 2, levels=[0.5], colors=[TUMOUR_COLOUR], linewidths=0.8)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0].set_ylabel(title, fontsize=8)
    for ax, name in zip(axes, ("axial", "coronal", "sagittal")):
        ax.set_title(name, fontsize=8)


def save_preview(pairs: Sequence[Pair], out: str | Path, title: str = "", dpi: int = 110) -> Path:
    """Write a tri-planar preview PNG of ``pairs`` (one row each) atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 3, figsize=(9, 2.9 * len(pairs)), squeeze=False)
    for row, pair in zip(axes, pairs):
        tumour = " · tumour" if pair.has_tumour else ""
        draw_triplanar(row, pair.image[0], pair.label, pair.spacing,
                       f"{pair.case_id}\n{pair.liver_volume_ml:.0f} ml{tumour}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out, suffix=out.suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format=(out.suffix.lstrip(".") or "png"))
    plt.close(fig)
    return out


def pick_preview_cases(pairs: Sequence[Pair], n: int = 4) -> list[Pair]:
    """Up to ``n`` cases, alternating tumour and non-tumour cases when both exist."""
    tumour = [p for p in pairs if p.has_tumour]
    clean = [p for p in pairs if not p.has_tumour]
    chosen: list[Pair] = []
    while len(chosen) < n and (tumour or clean):
        for group in (clean, tumour):
            if group and len(chosen) < n:
                chosen.append(group.pop(0))
    return chosen
