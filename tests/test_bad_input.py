"""Every bad input gets one clear error naming the file and the problem; nothing half-written stays behind."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from conftest import write_nifti
from foscu_bench.cli import main
from foscu_bench.data.dataset import open_dataset
from foscu_bench.errors import ConfigError, DataError


def _load_all(root, **kwargs):
    ds = open_dataset(root, profile="tiny", **kwargs)
    return ds.pairs()


def _pair_dir(tmp_path, image, label, affine, label_affine=None):
    root = tmp_path / "case"
    write_nifti(root / "image.nii.gz", image, affine)
    write_nifti(root / "label.nii.gz", label, affine if label_affine is None else label_affine)
    return root


def test_missing_label_partner(nnunet_dir):
    missing = nnunet_dir / "labelsTr" / "liver_002.nii.gz"
    missing.unlink()
    with pytest.raises(DataError, match=r"liver_002_0000\.nii\.gz: image has no label partner"):
        _load_all(nnunet_dir)


def test_missing_image_partner(nnunet_dir):
    (nnunet_dir / "imagesTr" / "liver_003_0000.nii.gz").unlink()
    with pytest.raises(DataError, match=r"liver_003\.nii\.gz: label has no image partner"):
        _load_all(nnunet_dir)


def test_single_pair_missing_label(tmp_path, tiny_cases):
    write_nifti(tmp_path / "case" / "image.nii.gz", tiny_cases[0].image, tiny_cases[0].affine)
    with pytest.raises(DataError, match=r"label\.nii\.gz: label partner of .*image\.nii\.gz not found"):
        _load_all(tmp_path / "case")


def test_shape_mismatch(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, case.label[:, :, :-1], case.affine)
    with pytest.raises(DataError, match=r"label\.nii\.gz: label shape .* differs from image shape"):
        _load_all(root)


def test_affine_mismatch(tmp_path, tiny_cases):
    case = tiny_cases[0]
    shifted = case.affine.copy()
    shifted[0, 3] += 5.0
    root = _pair_dir(tmp_path, case.image, case.label, case.affine, shifted)
    with pytest.raises(DataError, match=r"label\.nii\.gz: label affine differs from image affine"):
        _load_all(root)


def test_empty_liver(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, np.zeros_like(case.label), case.affine)
    with pytest.raises(DataError, match=r"label\.nii\.gz: no liver voxels"):
        _load_all(root)


def test_nan_voxels(tmp_path, tiny_cases):
    case = tiny_cases[0]
    image = case.image.copy()
    image[3, 4, 5] = np.nan
    image[1, 1, 1] = np.inf
    root = _pair_dir(tmp_path, image, case.label, case.affine)
    with pytest.raises(DataError, match=r"image\.nii\.gz: 2 voxels are NaN or infinite"):
        _load_all(root)


def test_truncated_file(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, case.label, case.affine)
    data = (root / "image.nii.gz").read_bytes()
    (root / "image.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"image\.nii\.gz: cannot read as NIfTI .*truncated"):
        _load_all(root)


def test_unreadable_file(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, case.label, case.affine)
    (root / "label.nii.gz").write_bytes(gzip.compress(b"this is not a nifti file at all" * 20))
    with pytest.raises(DataError, match=r"label\.nii\.gz: cannot read as NIfTI"):
        _load_all(root)


def test_unexpected_label_values(tmp_path, tiny_cases):
    case = tiny_cases[0]
    label = case.label.copy()
    label[0, 0, 0] = 7
    root = _pair_dir(tmp_path, case.image, label, case.affine)
    with pytest.raises(DataError, match=r"label\.nii\.gz: unexpected label values \[7\].*--label-map"):
        _load_all(root)


def test_non_integer_label(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, case.label.astype(np.float32) * 0.5, case.affine)
    with pytest.raises(DataError, match=r"label\.nii\.gz: label has non-integer values"):
        _load_all(root)


def test_wrong_label_map_value(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, case.label, case.affine)
    with pytest.raises(DataError, match=r"label\.nii\.gz: no liver voxels with --label-map liver=5 "
                                        r"\(label values present: \[0, 1\]\)"):
        _load_all(root, label_map="liver=5")


def test_wrong_label_map_syntax(tmp_path, tiny_cases):
    case = tiny_cases[0]
    root = _pair_dir(tmp_path, case.image, case.label, case.affine)
    with pytest.raises(ConfigError, match="bad --label-map"):
        _load_all(root, label_map="liver:5")


def test_invalid_dataset_json(nnunet_dir):
    (nnunet_dir / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: invalid JSON"):
        _load_all(nnunet_dir)


def test_unknown_layout_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known dataset layout"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(ConfigError, match="neither a built-in dataset"):
        open_dataset(tmp_path / "nope")


def test_corrupt_dicom_is_named(chaos_dir):
    dicom = sorted((chaos_dir / "Train_Sets" / "MR" / "2" / "T2SPIR" / "DICOM_anon").glob("*.dcm"))[2]
    dicom.write_bytes(b"garbage")
    ds = open_dataset(chaos_dir, profile="tiny")
    ds.pair("chaos_1_T2SPIR")  # the intact patient still loads
    with pytest.raises(DataError, match=rf"{dicom.name}: cannot read as DICOM"):
        ds.pair("chaos_2_T2SPIR")


def test_chaos_mask_count_mismatch(chaos_dir):
    ground = chaos_dir / "Train_Sets" / "MR" / "1" / "T2SPIR" / "Ground"
    sorted(ground.glob("*.png"))[0].unlink()
    with pytest.raises(DataError, match=r"Ground: \d+ PNG masks for \d+ DICOM slices"):
        open_dataset(chaos_dir, profile="tiny").pair("chaos_1_T2SPIR")


def test_cli_prints_one_line_error_and_leaves_nothing(tmp_path, tiny_cases, capsys, isolated_cache):
    case = tiny_cases[0]
    image = case.image.copy()
    image[0, 0, 0] = np.nan
    root = _pair_dir(tmp_path, image, case.label, case.affine)
    out_png = tmp_path / "out" / "preview.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["datasets", "preview", str(root), "--out", str(out_png), "--profile", "tiny"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "image.nii.gz" in err and "NaN or infinite" in err
    assert "Traceback" not in err
    assert not out_png.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    leftovers += [p for p in isolated_cache.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_cli_bad_profile_and_label_map(capsys):
    for argv, message in [(["datasets", "show", "phantom", "--profile", "huge"], "unknown profile 'huge'"),
                          (["datasets", "show", "phantom", "--label-map", "kidney=2"], "only 'liver' and 'tumour'")]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_dataset_json_listing_missing_file(tmp_path, tiny_cases):
    root = tmp_path / "Task03_Liver"
    case = tiny_cases[0]
    write_nifti(root / "imagesTr" / "liver_0.nii.gz", case.image, case.affine)
    (root / "labelsTr").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver"}, "training": [
        {"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"}]}))
    with pytest.raises(DataError, match=r"liver_0\.nii\.gz: label listed in .*dataset\.json does not exist"):
        _load_all(root)
