"""CHAOS challenge MR (Kavur et al., MedIA 2021) in its original layout: DICOM series + PNG ground truth.

Layout (``Train_Sets/MR`` or its parent)::

    MR/<patient>/T2SPIR/DICOM_anon/*.dcm          MR/<patient>/T2SPIR/Ground/*.png
    MR/<patient>/T1DUAL/DICOM_anon/InPhase/*.dcm  MR/<patient>/T1DUAL/Ground/*.png   (OutPhase likewise)

PNG masks encode organs by grey level: liver 63 (55-70), right kidney 126 (110-135), left kidney 189
(175-200), spleen 252 (240-255). They become 1, 2, 3, 4, the convention of the nnU-Net-converted CHAOS
(so ``liver=1`` is the default label map). Each PNG is matched to its DICOM slice by file stem when the
stems agree, otherwise by sorted file order. The volume's geometry comes from the DICOM headers
(ImageOrientationPatient, ImagePositionPatient, PixelSpacing), converted from DICOM's LPS to RAS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foscu_bench.data.label_map import LabelMap
from foscu_bench.data.sources import CaseRecord, SourceKind, hash_files, register_source_kind
from foscu_bench.data.volume_io import RawCase, check_image
from foscu_bench.errors import ConfigError, DataError

SEQUENCES = {"T2SPIR": ("T2SPIR", "DICOM_anon"), "T1DUAL-in": ("T1DUAL", "DICOM_anon/InPhase"),
             "T1DUAL-out": ("T1DUAL", "DICOM_anon/OutPhase")}
PNG_CLASSES = ((55, 70, 1), (110, 135, 2), (175, 200, 3), (240, 255, 4))
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _mr_root(path: Path) -> Path | None:
    for candidate in (path, path / "MR", path / "Train_Sets" / "MR"):
        if candidate.is_dir() and any((p / "T2SPIR").is_dir() or (p / "T1DUAL").is_dir()
                                      for p in candidate.iterdir() if p.is_dir()):
            return candidate
    return None


def read_dicom_series(files: list[Path]) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Read a single-frame DICOM series; returns (volume (cols, rows, slices), RAS affine, files in slice order)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices = []
    for path in files:
        try:
            ds = pydicom.dcmread(str(path))
            pixels = ds.pixel_array.astype(np.float32)
            orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
            position = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
            spacing = np.asarray(ds.PixelSpacing, dtype=np.float64)
        except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
            raise DataError(path, f"cannot read as DICOM ({type(exc).__name__}: {exc})") from None
        except AttributeError as exc:
            raise DataError(path, f"DICOM lacks geometry ({exc}); need ImageOrientationPatient, "
                                  "ImagePositionPatient and PixelSpacing") from None
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        slices.append((path, pixels * slope + intercept, orientation, position, spacing,
                       float(getattr(ds, "SliceThickness", 0) or 0)))
    if not slices:
        raise DataError(files[0].parent if files else Path("."), "no DICOM files")
    orientation, spacing = slices[0][2], slices[0][4]
    for path, pixels, other_orientation, _, other_spacing, _ in slices[1:]:
        if pixels.shape != slices[0][1].shape or not np.allclose(other_orientation, orientation, atol=1e-4) \
                or not np.allclose(other_spacing, spacing, atol=1e-4):
            raise DataError(path, "slice does not match the series (size, orientation or pixel spacing differs)")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda s: float(s[3] @ normal))
    positions = np.array([s[3] for s in slices])
    if len(slices) > 1:
        gaps = np.diff(positions @ normal)
        if np.any(gaps < 1e-3):
            raise DataError(slices[0][0].parent, "two DICOM slices share a position: mixed series in one folder?")
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
    else:
        step = normal * (slices[0][5] or 1.0)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * spacing[1]  # column index i moves along the row direction
    affine_lps[:3, 1] = col_dir * spacing[0]  # row index j moves along the column direction
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]
    volume = np.stack([s[1].T for s in slices], axis=-1)  # (rows, cols) -> (cols, rows)
    return volume, LPS_TO_RAS @ affine_lps, [s[0] for s in slices]


def read_png_mask(path: Path) -> np.ndarray:
    """Read a CHAOS ground-truth PNG and map its grey levels to class ids 0-4."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"cannot read PNG mask ({exc})") from None
    out = np.zeros(grey.shape, dtype=np.int32)
    for low, high, value in PNG_CLASSES:
        out[(grey >= low) & (grey <= high)] = value
    return out


class ChaosSource:
    kind = "chaos"
    default_label_map = LabelMap(liver=(1,))

    def __init__(self, root: Path, sequence: str = "T2SPIR") -> None:
        if sequence not in SEQUENCES:
            raise ConfigError(f"CHAOS sequence must be one of {', '.join(SEQUENCES)}, got {sequence!r}")
        mr = _mr_root(root)
        if mr is None:
            raise DataError(root, "no CHAOS MR patients found (expected MR/<patient>/T2SPIR/...)")
        self.root, self.sequence = mr, sequence
        self.description = f"CHAOS MR {sequence} (DICOM + PNG masks)"
        folder, dicom_sub = SEQUENCES[sequence]
        self._records = []
        for patient in sorted((p for p in mr.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
            dicom_dir, ground_dir = patient / folder / dicom_sub, patient / folder / "Ground"
            if not dicom_dir.is_dir():
                continue
            dicoms = sorted(p for p in dicom_dir.iterdir() if p.suffix.lower() == ".dcm")
            if not ground_dir.is_dir():
                raise DataError(dicom_dir, f"DICOM series has no ground-truth partner folder {ground_dir}")
            pngs = sorted(p for p in ground_dir.iterdir() if p.suffix.lower() == ".png")
            self._records.append(CaseRecord(case_id=f"chaos_{patient.name}_{sequence}", patient_id=patient.name,
                                            files=tuple(dicoms) + tuple(pngs),
                                            details={"dicoms": dicoms, "pngs": pngs, "ground": ground_dir}))
        if not self._records:
            raise DataError(mr, f"no CHAOS {sequence} series found")

    def records(self) -> list[CaseRecord]:
        return list(self._records)

    def load(self, record: CaseRecord) -> RawCase:
        dicoms, pngs = record.details["dicoms"], record.details["pngs"]
        if not dicoms:
            raise DataError(record.details["ground"].parent, "no DICOM files")
        if len(pngs) != len(dicoms):
            raise DataError(record.details["ground"], f"{len(pngs)} PNG masks for {len(dicoms)} DICOM slices")
        by_stem = {p.stem: p for p in pngs}
        if all(d.stem in by_stem for d in dicoms):
            partner = {d: by_stem[d.stem] for d in dicoms}
        else:
            partner = dict(zip(dicoms, pngs))  # both sorted by name: CHAOS numbers them in acquisition order
        volume, affine, ordered = read_dicom_series(dicoms)
        masks = []
        for dicom in ordered:
            mask = read_png_mask(partner[dicom]).T
            if mask.shape != volume.shape[:2]:
                raise DataError(partner[dicom], f"mask size {mask.shape[::-1]} differs from its DICOM slice "
                                                f"{volume.shape[1::-1]} ({dicom})")
            masks.append(mask)
        image = check_image(dicoms[0].parent, volume)
        return RawCase(case_id=record.case_id, patient_id=record.patient_id, image=image,
                       label=np.stack(masks, axis=-1), affine=affine, image_path=dicoms[0].parent,
                       label_path=record.details["ground"])

    def content_key(self, record: CaseRecord) -> str:
        return hash_files(record.files)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "sequence": self.sequence, "n_cases": len(self._records)}


register_source_kind(SourceKind("chaos", "CHAOS MR: DICOM series + PNG masks (T2SPIR, T1DUAL in/out phase)",
                                lambda p: p.is_dir() and _mr_root(p) is not None, ChaosSource,
                                "DIR/MR/<patient>/T2SPIR/{DICOM_anon,Ground}/", priority=10))
