"""AMOS 2022 (Ji et al., NeurIPS 2022): abdominal CT and MRI with 15 organ labels; liver is value 6.

Layout: ``imagesTr/amos_NNNN.nii.gz`` + ``labelsTr/`` (and ``imagesVa/`` + ``labelsVa/``), ``dataset.json``.
AMOS numbers its MRI cases from 500 upwards (``amos_0500`` and later); CT cases are below 500. By default
only the MRI cases are read (this suite is about MRI); ``modality="ct"`` or ``"all"`` changes that.
"""

from __future__ import annotations

import re
from pathlib import Path

from foscu_bench.data.folders import NiftiPairsSource, default_label_map_from_json, read_dataset_json
from foscu_bench.data.label_map import LabelMap
from foscu_bench.data.sources import SourceKind, register_source_kind
from foscu_bench.data.volume_io import is_nifti, strip_nifti_suffix
from foscu_bench.errors import ConfigError, DataError

AMOS_LIVER = 6
MRI_FIRST_ID = 500
_CASE = re.compile(r"amos_(\d+)$")


def _detect(path: Path) -> bool:
    if not (path.is_dir() and (path / "imagesTr").is_dir()):
        return False
    return any(_CASE.match(strip_nifti_suffix(p.name)) for p in (path / "imagesTr").iterdir() if is_nifti(p))


def open_amos(root: Path, modality: str = "mri") -> NiftiPairsSource:
    if modality not in ("mri", "ct", "all"):
        raise ConfigError(f"AMOS modality must be mri, ct or all, got {modality!r}")
    meta = read_dataset_json(root / "dataset.json") if (root / "dataset.json").is_file() else {}
    label_map = default_label_map_from_json(meta) if meta else LabelMap(liver=(AMOS_LIVER,))
    if not label_map.explicit:
        label_map = LabelMap(liver=(AMOS_LIVER,))
    pairs = []
    for images_dir, labels_dir in (("imagesTr", "labelsTr"), ("imagesVa", "labelsVa")):
        if not (root / images_dir).is_dir():
            continue
        for image in sorted(p for p in (root / images_dir).iterdir() if is_nifti(p)):
            match = _CASE.match(strip_nifti_suffix(image.name))
            if not match:
                continue
            is_mri = int(match.group(1)) >= MRI_FIRST_ID
            if (modality == "mri" and not is_mri) or (modality == "ct" and is_mri):
                continue
            label = root / labels_dir / image.name
            if not label.is_file():
                raise DataError(image, f"image has no label partner: expected {label}")
            pairs.append((strip_nifti_suffix(image.name), image, label))
    if not pairs:
        raise DataError(root, f"AMOS layout found but no {modality.upper()} cases with labels "
                              f"(MRI cases are amos_{MRI_FIRST_ID:04d} and above)")
    return NiftiPairsSource(root, "amos", pairs, label_map, f"AMOS {modality.upper()} cases")


register_source_kind(SourceKind("amos", "AMOS 2022 abdominal multi-organ (MRI cases by default, liver=6)",
                                _detect, open_amos, "DIR/imagesTr/amos_0507.nii.gz + DIR/labelsTr/ (+ dataset.json)",
                                priority=10))
