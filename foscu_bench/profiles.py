"""Profiles: one frozen object that fixes every size that changes results (grid, case counts, budgets).

A profile is to a run what nnU-Net's plans file is to a training: it is stored in every manifest, and two
runs are comparable only when their profiles are equal. Volumes are RAS-oriented arrays indexed
``(x, y, z)`` = (left->right, posterior->anterior, inferior->superior); spacing is in mm in the same order.

The processing grid covers a fixed abdominal field of view of 384 x 288 x 240 mm (body width, depth and
the cranio-caudal extent from lung bases to the lower kidney poles). The phantom is *acquired* on its own
anisotropic grid (``phantom_spacing``: thick axial slices, as in clinical abdominal MRI) and then goes
through the same resampling as real data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from foscu_bench.errors import ConfigError

FIELD_OF_VIEW_MM: tuple[float, float, float] = (384.0, 288.0, 240.0)


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets for one scale of experiment (``tiny`` for tests, ``quick`` for CPUs, ``paper`` for GPUs)."""

    name: str
    shape: tuple[int, int, int]
    """Processing grid every pair is resampled and cropped/padded to."""
    phantom_spacing: tuple[float, float, float]
    """Acquisition grid of the phantom in mm: thick slices along z, like a clinical axial MRI."""
    n_phantom_cases: int
    """Cases in the embedded phantom dataset at this profile."""
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)
    """Patient-level train / validation / test fractions."""
    intensity_percentiles: tuple[float, float] = (0.5, 99.5)
    """Image intensities are mapped linearly from these percentiles to [0, 1] and clipped."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Processing voxel size in mm: the fixed field of view divided by the grid."""
        return tuple(round(f / n, 6) for f, n in zip(FIELD_OF_VIEW_MM, self.shape))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spacing"] = list(self.spacing)
        return data


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        shape=(16, 16, 16),
        phantom_spacing=(12.0, 9.0, 20.0),
        n_phantom_cases=12,
    ),
    "quick": Profile(
        name="quick",
        shape=(32, 32, 32),
        phantom_spacing=(6.0, 4.5, 10.0),
        n_phantom_cases=48,
    ),
    "paper": Profile(
        name="paper",
        shape=(128, 128, 128),
        phantom_spacing=(2.0, 2.0, 4.0),
        n_phantom_cases=200,
    ),
}


def get_profile(name: str) -> Profile:
    """Return the named profile, or raise a ConfigError that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
