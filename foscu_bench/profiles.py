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
class SegmentationSettings:
    """The 3D U-Net and its training budget; every arm of a run gets exactly these (fair comparison)."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    num_res_units: int
    iterations: int
    batch_size: int
    patch_size: tuple[int, int, int]
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    foreground_ratio: float = 0.67
    """Fraction of training patches centred on foreground (nnU-Net uses 1/3 forced foreground; our volumes
    are small, so 2/3 keeps every batch informative). Irrelevant when the patch is the whole volume."""
    sw_overlap: float = 0.5
    precision: str = "auto"
    """``auto``: bf16 autocast where the device has bf16 units (CUDA; CPUs with AVX512-BF16 or AMX), else fp32;
    ``fp32`` forces full precision. The resolved precision is recorded with every U-Net (it changes numbers)."""
    members: int = 1
    """U-Nets per (arm, seed), trained with seeds ``seed + MEMBER_SEED_OFFSET * m`` and predicting with their mean
    softmax, as nnU-Net ensembles its folds. The seed term of a delta is which basin one training ends in (weight
    averages do not remove it: bench/results/seed_noise/); an ensemble averages over basins, so 5 seeds see smaller
    effects. Part of the instrument: every arm gets the same members."""
    nsd_tolerance_mm: float = 2.0
    """NSD tolerance. 2 mm is the clinical default at the paper grid; on coarse grids a tolerance below one voxel
    would only count exactly coincident surfaces, so tiny/quick use about one voxel."""


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
    phantom_split_fractions: tuple[float, float, float] | None = None
    """Fractions for the phantom datasets, where cases are free: a large held-out test set gives the power to see
    effects of the paper's size (None: ``split_fractions``)."""
    intensity_percentiles: tuple[float, float] = (0.5, 99.5)
    """Image intensities are mapped linearly from these percentiles to [0, 1] and clipped."""
    segmentation: SegmentationSettings = SegmentationSettings(
        channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2, iterations=500, batch_size=2,
        patch_size=(32, 32, 32))
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Processing voxel size in mm: the fixed field of view divided by the grid."""
        return tuple(round(f / n, 6) for f, n in zip(FIELD_OF_VIEW_MM, self.shape))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spacing"] = list(self.spacing)
        return data

    def content(self) -> dict[str, Any]:
        """Everything that defines the profile, as JSON values: equal content, comparable results."""
        import json

        return json.loads(json.dumps(self.to_dict()))


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        shape=(16, 16, 16),
        phantom_spacing=(12.0, 9.0, 20.0),
        n_phantom_cases=12,
        segmentation=SegmentationSettings(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, iterations=400,
                                          batch_size=4, patch_size=(16, 16, 16), learning_rate=5e-3,
                                          nsd_tolerance_mm=20.0),
    ),
    "quick": Profile(
        name="quick",
        shape=(32, 32, 32),
        phantom_spacing=(6.0, 4.5, 10.0),
        # 32 / 16 / 352 (train / validation / test): the design MDE of the default run at 5 seeds was 0.77 points
        # with 112 test cases (bench/results/default_run_s12, ensembles); its variance components forecast 0.67 at
        # 240 and 0.64 at 352 test cases (the seed term, which only seeds or members shrink, is then the floor).
        # Evaluation is the only cost of a test case (about 33 ms a case per U-Net ensemble, batched).
        n_phantom_cases=400,
        phantom_split_fractions=(0.08, 0.04, 0.88),
        # budget = where real-only training has plateaued on the VALIDATION split (bench/calibrate_budget.py, 2 seeds,
        # bench/results/budget_quick_*.json). Validation Dice, 32 real cases, poly decay over each budget:
        #   lr 2e-3: 1000 0.779, 2000 0.789, 4000 0.792      lr 5e-3: 1000 0.797, 2000 0.802
        #   lr 1e-2: 1000 0.805, 2000 0.804 (plateau)         lr 2e-2:  500 0.786, 1000 0.803
        # so lr 1e-2 (nnU-Net's initial rate) with 1000 iterations: real-only has plateaued, at the old CPU cost.
        # Two members of one residual unit each per (arm, seed) (bench/results/seed_noise/, 16 real cases, 6 seeds):
        # real-only Dice 79.50 vs 79.45 for one U-Net of two units, seed sd of real-only 0.10 vs 0.38 and of the
        # negative control's delta 0.09 vs 0.67, at 1.7x the U-Net compute; a single U-Net's 5-seed MDE (1.12 pts
        # pooled over the controls, 0.77 from the oracle) cannot reach the paper's +0.67 (#13).
        segmentation=SegmentationSettings(channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1,
                                          iterations=1000, batch_size=2, patch_size=(32, 32, 32),
                                          learning_rate=1e-2, nsd_tolerance_mm=10.0, members=2,
                                          # fp32 on every CPU: bf16 autocast gave the quick U-Net no speed (41 vs 42
                                          # ms a step, bench/results/step_profile_quick_cpu_s8.json) and made its
                                          # numbers depend on whether a CPU has bf16 units
                                          precision="fp32"),
    ),
    "paper": Profile(
        name="paper",
        shape=(128, 128, 128),
        phantom_spacing=(2.0, 2.0, 4.0),
        n_phantom_cases=200,
        segmentation=SegmentationSettings(channels=(32, 64, 128, 256, 320), strides=(2, 2, 2, 2), num_res_units=2,
                                          iterations=10000, batch_size=2, patch_size=(96, 96, 96),
                                          learning_rate=1e-3),
    ),
}


def get_profile(name: str) -> Profile:
    """Return the named profile, or raise a ConfigError that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
