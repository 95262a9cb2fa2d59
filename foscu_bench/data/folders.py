"""NIfTI folders: nnU-Net v2 raw and MSD layouts, a generic images/labels folder, and a single image/label pair.

Layouts recognised (first match wins):
- nnU-Net v2 raw: ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``, ``dataset.json`` with
  ``channel_names``, ``labels`` (name -> value) and ``file_ending``;
- MSD (Medical Segmentation Decathlon): ``dataset.json`` with a ``training`` list of image/label paths and
  ``labels`` (value -> name), e.g. Task03_Liver;
- a folder with ``imagesTr/`` + ``labelsTr/`` or ``images/`` + ``labels/`` matched by file name;
- a single case: ``image.nii.gz`` + ``label.nii.gz`` (e.g. one image with a multi-organ label map).
When ``dataset.json`` names a ``liver`` label, it becomes the default label map.
"""

from __future__ import annotations

import json
from pathlib import Path

from foscu_bench.data.label_map import IDENTITY, LabelMap, label_map_from_names
from foscu_bench.data.sources import CaseRecord, SourceKind, hash_files, register_source_kind
from foscu_bench.data.volume_io import RawCase, is_nifti, load_nifti_pair, strip_nifti_suffix
from foscu_bench.errors import DataError


def read_dataset_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None


def default_label_map_from_json(meta: dict) -> LabelMap:
    """nnU-Net v2 writes labels as name -> value, MSD as "value" -> name: accept both."""
    labels = meta.get("labels") or {}
    if labels and all(str(k).isdigit() for k in labels):
        labels = {str(name): int(value) for value, name in labels.items()}
    try:
        names = {str(k): int(v) for k, v in labels.items() if not isinstance(v, (list, tuple))}
    except (TypeError, ValueError):
        names = {}
    return label_map_from_names(names) or IDENTITY


class NiftiPairsSource:
    """Any NIfTI source whose cases are (image file, label file) pairs."""

    def __init__(self, root: Path, kind: str, pairs: list[tuple[str, Path, Path]], label_map: LabelMap,
                 description: str) -> None:
        self.root = root
        self.kind = kind
        self.default_label_map = label_map
        self.description = description
        self._records = [CaseRecord(case_id=cid, patient_id=cid, files=(img, lab)) for cid, img, lab in pairs]
        if not self._records:
            raise DataError(root, f"no cases found ({kind} layout)")

    def records(self) -> list[CaseRecord]:
        return list(self._records)

    def load(self, record: CaseRecord) -> RawCase:
        image_path, label_path = record.files
        return load_nifti_pair(record.case_id, record.patient_id, image_path, label_path)

    def content_key(self, record: CaseRecord) -> str:
        return hash_files(record.files)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "n_cases": len(self._records)}


def _match_by_name(images_dir: Path, labels_dir: Path, channel_suffix: str | None) -> list[tuple[str, Path, Path]]:
    """Pair images and labels by case name; any image or label without its partner is an error."""
    images = {}
    for path in sorted(p for p in images_dir.iterdir() if is_nifti(p)):
        stem = strip_nifti_suffix(path.name)
        if channel_suffix is not None:
            if not stem.endswith(channel_suffix):
                continue  # another channel of a multi-channel case; we use channel 0000 only
            stem = stem[: -len(channel_suffix)]
        images[stem] = path
    labels = {strip_nifti_suffix(p.name): p for p in sorted(labels_dir.iterdir()) if is_nifti(p)}
    for stem, path in images.items():
        if stem not in labels:
            raise DataError(path, f"image has no label partner: expected {labels_dir / (stem + '.nii.gz')}")
    for stem, path in labels.items():
        if stem not in images:
            expected = stem + (channel_suffix or "") + ".nii.gz"
            raise DataError(path, f"label has no image partner: expected {images_dir / expected}")
    return [(stem, images[stem], labels[stem]) for stem in sorted(images)]


def _is_msd(meta: dict) -> bool:
    return isinstance(meta.get("training"), list) and bool(meta["training"]) and "image" in meta["training"][0]


def _detect_folder(path: Path) -> bool:
    return path.is_dir() and (((path / "imagesTr").is_dir() and (path / "labelsTr").is_dir())
                              or ((path / "images").is_dir() and (path / "labels").is_dir()))


def open_folder(root: Path) -> NiftiPairsSource:
    meta = read_dataset_json(root / "dataset.json") if (root / "dataset.json").is_file() else {}
    label_map = default_label_map_from_json(meta) if meta else IDENTITY
    name = meta.get("name", root.name)
    if meta and _is_msd(meta):
        pairs = []
        for entry in meta["training"]:
            image, label = root / entry["image"], root / entry["label"]
            for part, path in (("image", image), ("label", label)):
                if not path.is_file():
                    raise DataError(path, f"{part} listed in {root / 'dataset.json'} does not exist")
            pairs.append((strip_nifti_suffix(image.name), image, label))
        return NiftiPairsSource(root, "msd", pairs, label_map, f"MSD dataset {name!r}")
    if (root / "imagesTr").is_dir():
        nnunet = "channel_names" in meta or "modality" in meta or any(
            strip_nifti_suffix(p.name).endswith("_0000") for p in (root / "imagesTr").iterdir())
        pairs = _match_by_name(root / "imagesTr", root / "labelsTr", "_0000" if nnunet else None)
        kind = "nnunet" if nnunet else "nifti-folder"
        return NiftiPairsSource(root, kind, pairs, label_map, f"{'nnU-Net raw' if nnunet else 'NIfTI'} dataset {name!r}")
    pairs = _match_by_name(root / "images", root / "labels", None)
    return NiftiPairsSource(root, "nifti-folder", pairs, label_map, f"NIfTI folder {name!r}")


def _find_single(root: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def _detect_single(path: Path) -> bool:
    return path.is_dir() and (_find_single(path, "image") is not None or _find_single(path, "label") is not None)


def open_single(root: Path) -> NiftiPairsSource:
    image, label = _find_single(root, "image"), _find_single(root, "label")
    if image is None:
        raise DataError(root / "image.nii.gz", f"image partner of {label} not found")
    if label is None:
        raise DataError(root / "label.nii.gz", f"label partner of {image} not found")
    return NiftiPairsSource(root, "nifti-pair", [(root.name, image, label)], IDENTITY,
                            f"single image/label pair {root.name!r}")


register_source_kind(SourceKind(
    "nnunet / msd / nifti-folder", "NIfTI cases: nnU-Net v2 raw, MSD or images/labels folders",
    _detect_folder, open_folder, "DIR/imagesTr/*_0000.nii.gz + DIR/labelsTr/*.nii.gz (+ dataset.json)"))
register_source_kind(SourceKind(
    "nifti-pair", "one image with its (possibly multi-organ) label map", _detect_single, open_single,
    "DIR/image.nii.gz + DIR/label.nii.gz", priority=60))
