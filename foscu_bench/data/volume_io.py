"""Reading volumes from disk with errors a user can act on (the path and the problem, in one line)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foscu_bench.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class RawCase:
    """A case as read from its source, before preprocessing: source label values, native grid."""

    case_id: str
    patient_id: str
    image: np.ndarray  # float32 (X, Y, Z)
    label: np.ndarray  # integer source values (X, Y, Z)
    affine: np.ndarray  # 4x4 voxel -> RAS world (mm)
    image_path: Path
    label_path: Path
    meta: dict = field(default_factory=dict)


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI volume fully (so truncation is detected now, not mid-training)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except (EOFError, OSError, zlib.error, ImageFileError, ValueError) as exc:
        raise DataError(path, f"cannot read as NIfTI ({type(exc).__name__}: {exc}); "
                              "the file is truncated, corrupt or not a NIfTI file") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(path, f"expected a 3D volume, got shape {data.shape}")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(path, "the voxel-to-world affine is singular or not finite")
    return data, affine


def check_image(path: Path, image: np.ndarray) -> np.ndarray:
    """Images must be finite; returns float32."""
    image = np.asarray(image, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(image)))
    if bad:
        raise DataError(path, f"{bad} voxels are NaN or infinite")
    if float(image.max()) == float(image.min()):
        raise DataError(path, f"the image is constant ({float(image.max())}): nothing to segment")
    return image


def check_label_values(path: Path, label: np.ndarray) -> np.ndarray:
    """Labels must be integer-valued (a float label with fractions is an interpolated image, not a label)."""
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)):
            raise DataError(path, "label has NaN or infinite voxels")
        if not np.all(label == np.round(label)):
            raise DataError(path, "label has non-integer values: is this an image saved as a label?")
        label = label.astype(np.int64)
    if label.dtype.kind not in "iub":
        raise DataError(path, f"label has unsupported dtype {label.dtype}")
    if label.size and int(label.min()) < 0:
        raise DataError(path, f"label has negative values (min {int(label.min())})")
    return label.astype(np.int32)


def check_same_grid(image_path: Path, image: np.ndarray, image_affine: np.ndarray,
                    label_path: Path, label: np.ndarray, label_affine: np.ndarray) -> None:
    """Image and label must share shape and affine (tolerance: 1e-3 of a voxel, like nnU-Net's check)."""
    if image.shape != label.shape:
        raise DataError(label_path, f"label shape {label.shape} differs from image shape {image.shape} ({image_path})")
    spacing = np.linalg.norm(image_affine[:3, :3], axis=0)
    tolerance = 1e-3 * float(spacing.max()) + 1e-5
    if not np.allclose(image_affine, label_affine, atol=tolerance):
        raise DataError(label_path, f"label affine differs from image affine ({image_path}): "
                                    f"max difference {np.abs(image_affine - label_affine).max():.4g} mm")


def load_nifti_pair(case_id: str, patient_id: str, image_path: Path, label_path: Path) -> RawCase:
    """Read and check one NIfTI image/label pair."""
    image, image_affine = read_nifti(image_path)
    label, label_affine = read_nifti(label_path)
    image = check_image(image_path, image)
    label = check_label_values(label_path, label)
    check_same_grid(image_path, image, image_affine, label_path, label, label_affine)
    return RawCase(case_id=case_id, patient_id=patient_id, image=image, label=label, affine=image_affine,
                   image_path=Path(image_path), label_path=Path(label_path))
