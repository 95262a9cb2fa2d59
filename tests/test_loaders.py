"""Real-data path: every layout loads, orientation and spacing are right, labels map, cache works."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from conftest import REAL_DATA, write_nifti
from foscu_bench.data.dataset import open_dataset
from foscu_bench.data.label_map import parse_label_map
from foscu_bench.errors import ConfigError
from foscu_bench.profiles import get_profile

needs_real = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data not found at {REAL_DATA}")


def test_nnunet_layout_uses_dataset_json_label_names(nnunet_dir, tiny_cases):
    ds = open_dataset(nnunet_dir, profile="tiny")
    assert ds.source.kind == "nnunet"
    assert ds.case_ids == [f"liver_{i:03d}" for i in range(4)]
    assert str(ds.label_map) == "liver=1,tumour=2"  # from {"liver": 1, "tumor": 2}
    raw = ds.raw_case("liver_001")
    np.testing.assert_array_equal(raw.label, tiny_cases[1].label)
    pair = ds.pair("liver_001")
    assert pair.image.shape == (1, *get_profile("tiny").shape) and pair.label.dtype == np.uint8
    assert 0.0 <= pair.image.min() and pair.image.max() <= 1.0
    assert pair.has_tumour


def test_msd_layout(tmp_path, tiny_cases):
    root = tmp_path / "Task03_Liver"
    training = []
    for i, case in enumerate(tiny_cases[:2]):
        write_nifti(root / "imagesTr" / f"liver_{i}.nii.gz", case.image, case.affine)
        write_nifti(root / "labelsTr" / f"liver_{i}.nii.gz", case.label, case.affine)
        training.append({"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({
        "name": "Liver", "labels": {"0": "background", "1": "liver", "2": "cancer"}, "training": training}))
    ds = open_dataset(root, profile="tiny")
    assert ds.source.kind == "msd" and ds.case_ids == ["liver_0", "liver_1"]
    assert str(ds.label_map) == "liver=1,tumour=2"
    assert ds.pair("liver_1").has_tumour


def test_generic_images_labels_folder(tmp_path, tiny_cases):
    for i, case in enumerate(tiny_cases[:2]):
        write_nifti(tmp_path / "d" / "images" / f"c{i}.nii.gz", case.image, case.affine)
        write_nifti(tmp_path / "d" / "labels" / f"c{i}.nii.gz", case.label, case.affine)
    ds = open_dataset(tmp_path / "d", profile="tiny")
    assert ds.source.kind == "nifti-folder" and ds.case_ids == ["c0", "c1"]


def test_amos_reads_mri_cases_with_liver_6(tmp_path, tiny_cases):
    root = tmp_path / "amos22"
    case = tiny_cases[0]
    multi = np.where(case.label == 1, 6, 0).astype(np.uint8)
    multi[(case.label == 0) & (case.tissue == 8)] = 1  # spleen is 1 in AMOS
    for name in ("amos_0005", "amos_0507", "amos_0540"):  # one CT case, two MRI cases
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", case.image, case.affine)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", multi, case.affine)
    ds = open_dataset(root, profile="tiny")
    assert ds.source.kind == "amos" and ds.case_ids == ["amos_0507", "amos_0540"]
    assert str(ds.label_map) == "liver=6"
    raw_liver = np.count_nonzero(case.label == 1) * np.prod(np.diag(case.affine)[:3]) / 1000
    assert ds.pair("amos_0507").meta["liver_ml_native"] == pytest.approx(raw_liver, rel=1e-6)
    assert open_dataset(root, profile="tiny", modality="ct").case_ids == ["amos_0005"]


def test_chaos_dicom_png_geometry_and_masks(chaos_dir, tiny_cases):
    """DICOM (LPS, shuffled file names) + PNG masks come back as the original RAS volume and label."""
    ds = open_dataset(chaos_dir, profile="tiny")
    assert ds.source.kind == "chaos" and ds.case_ids == ["chaos_1_T2SPIR", "chaos_2_T2SPIR"]
    raw = ds.raw_case("chaos_1_T2SPIR")
    original = tiny_cases[0]
    np.testing.assert_allclose(raw.affine @ [0, 0, 0, 1], original.affine @ [original.image.shape[0] - 1,
                                                                               original.image.shape[1] - 1, 0, 1])
    assert "".join(nib.aff2axcodes(raw.affine)) == "LPS"
    # reorient to RAS with nibabel (independent of our MONAI chain) and compare voxel by voxel
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(raw.affine),
                                           nib.orientations.axcodes2ornt("RAS"))
    image_ras = nib.orientations.apply_orientation(raw.image, ornt)
    label_ras = nib.orientations.apply_orientation(raw.label, ornt)
    expected = np.round(original.image / original.image.max() * 4000)
    np.testing.assert_array_equal(image_ras, expected)
    np.testing.assert_array_equal(label_ras > 0, original.label > 0)
    pair = ds.pair("chaos_1_T2SPIR")
    assert pair.meta["native_orientation"] == "LPS" and pair.label.any()


@needs_real
def test_real_totalsegmentator_mri_lps_to_ras():
    ds = open_dataset(REAL_DATA / "totalsegmentator-mr", label_map="liver=5", profile="quick")
    raw = ds.raw_case(ds.case_ids[0])
    assert "".join(nib.aff2axcodes(raw.affine)) == "LPS" and raw.image.shape == (117, 91, 20)
    pair = ds.pair(ds.case_ids[0])
    assert pair.meta["native_orientation"] == "LPS"
    affine = np.array(pair.meta["affine"])
    assert "".join(nib.aff2axcodes(affine)) == "RAS"
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), get_profile("quick").spacing, rtol=1e-5)
    # 18480 liver voxels at 3 mm isotropic = 498.96 ml, independent of our pipeline
    assert int(np.count_nonzero(raw.label == 5)) == 18480
    assert pair.meta["liver_ml_native"] == pytest.approx(498.96, rel=1e-6)
    assert 0.9 < pair.meta["liver_kept_fraction"] < 1.1
    # RAS: the liver lies on the patient's right, i.e. the high-x half of the grid
    xs = np.argwhere(pair.label > 0)[:, 0]
    assert xs.mean() > pair.label.shape[0] / 2


@needs_real
def test_real_chaos_nnunet_layout():
    ds = open_dataset(REAL_DATA / "chaos-t2spir", profile="tiny")
    assert ds.source.kind == "nnunet" and len(ds.case_ids) == 8
    assert str(ds.label_map) == "liver=1"  # from dataset.json, same as --label-map liver=1
    pair = ds.pair("chaos_01")
    assert pair.meta["native_orientation"] == "LAS" and 1000 < pair.meta["liver_ml_native"] < 2500
    assert set(np.unique(pair.label)) == {0, 1}  # kidneys and spleen dropped
    xs = np.argwhere(pair.label > 0)[:, 0]
    assert xs.mean() > pair.label.shape[0] / 2, "liver must be on the patient's right after reorientation"


def test_label_map_parsing():
    assert str(parse_label_map("liver=5")) == "liver=5"
    assert str(parse_label_map("liver=5+6, tumor=7")) == "liver=5+6,tumour=7"
    for bad, message in [("liver", "expected NAME=VALUE"), ("spleen=1", "only 'liver' and 'tumour'"),
                         ("tumour=2", "no liver value"), ("liver=1,liver=2", "twice"), ("liver=0", "background"),
                         ("liver=3,tumour=3", "both liver and tumour")]:
        with pytest.raises(ConfigError, match=message):
            parse_label_map(bad)


def test_preprocessed_pairs_are_cached_by_content(nnunet_dir, monkeypatch, isolated_cache):
    import foscu_bench.data.dataset as dataset_module

    ds = open_dataset(nnunet_dir, profile="tiny")
    first = ds.pair("liver_000")
    calls = []
    monkeypatch.setattr(dataset_module, "preprocess_case", lambda *a: calls.append(a))
    again = open_dataset(nnunet_dir, profile="tiny").pair("liver_000")
    assert calls == [] and np.array_equal(first.image, again.image) and first.meta == again.meta
    # a corrupt cache entry is recomputed, not trusted
    for entry in (isolated_cache / "preprocessed").glob("*.npz"):
        entry.write_bytes(b"not an npz")
    monkeypatch.undo()
    recomputed = open_dataset(nnunet_dir, profile="tiny").pair("liver_000")
    np.testing.assert_array_equal(recomputed.image, first.image)
    # changed content -> different key -> not served from the cache
    shutil.copy(nnunet_dir / "imagesTr" / "liver_001_0000.nii.gz", nnunet_dir / "imagesTr" / "liver_000_0000.nii.gz")
    shutil.copy(nnunet_dir / "labelsTr" / "liver_001.nii.gz", nnunet_dir / "labelsTr" / "liver_000.nii.gz")
    changed = open_dataset(nnunet_dir, profile="tiny")
    assert changed.fingerprint() != ds.fingerprint()
    assert not np.array_equal(changed.pair("liver_000").label, first.label)


def test_phantom_dataset_is_deterministic_and_valid():
    a = open_dataset("phantom", profile="tiny")
    pairs = a.pairs()
    assert len(pairs) == get_profile("tiny").n_phantom_cases
    assert a.fingerprint() == open_dataset("phantom", profile="tiny").fingerprint()
    other = open_dataset("phantom", profile="tiny", phantom_options={"seed": 1})
    assert other.fingerprint() != a.fingerprint()
    assert all(p.label.shape == get_profile("tiny").shape for p in pairs)
    assert any(p.has_tumour for p in pairs) and not all(p.has_tumour for p in pairs)
