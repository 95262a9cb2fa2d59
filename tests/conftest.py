"""Shared fixtures: an isolated cache per test session, offline hub, writers for on-disk test datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at test time


def pytest_configure(config):
    """Under pytest-xdist each test process takes its share of the cores (torch's default, every core, would
    oversubscribe them: two processes of two threads on two cores run slower than one)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        from foscu_bench.cores import available_cores

        torch.set_num_threads(max(1, available_cores() // workers))

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    """A script of ``bench/`` imported as a module (bench/ is no package: its scripts run from the command line)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    # datasets' own cache (load_dataset of exported folders) stays inside the test session too
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf-datasets"))
    return cache


@pytest.fixture(scope="session")
def tiny_cases():
    """Four tiny phantom cases (two with tumours) as (image, label, affine) on the phantom's native grid."""
    from foscu_bench.data.phantom import PhantomConfig, generate_case
    from foscu_bench.profiles import get_profile

    config = PhantomConfig(spacing=get_profile("tiny").phantom_spacing)
    return [generate_case(i, config, force_tumour=bool(i % 2)) for i in range(4)]


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture
def nnunet_dir(tmp_path, tiny_cases):
    """An nnU-Net v2 raw dataset with 4 cases and a dataset.json naming 'liver' and 'tumor'."""
    root = tmp_path / "Dataset001_Liver"
    for i, case in enumerate(tiny_cases):
        write_nifti(root / "imagesTr" / f"liver_{i:03d}_0000.nii.gz", case.image, case.affine)
        write_nifti(root / "labelsTr" / f"liver_{i:03d}.nii.gz", case.label, case.affine)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "numTraining": len(tiny_cases), "file_ending": ".nii.gz", "name": "TinyLiver"}))
    return root


LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_dicom_series(folder: Path, volume_ras: np.ndarray, spacing: tuple[float, float, float],
                       origin_ras: tuple[float, float, float], shuffle_names: bool = False) -> list[Path]:
    """Write a RAS volume (X, Y, Z) as a standard axial LPS DICOM series (IOP 1,0,0,0,1,0), one file per slice.

    Column index c runs along patient-left (-x in RAS), row index r along patient-posterior (-y), so
    pixel[r, c] = volume[X-1-c, Y-1-r, k]. File names may be shuffled relative to slice position to test sorting.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = volume_ras.shape
    sx, sy, sz = spacing
    # LPS position of pixel (r=0, c=0) of slice k = RAS voxel (X-1, Y-1, k)
    x_last = origin_ras[0] + (nx - 1) * sx
    y_last = origin_ras[1] + (ny - 1) * sy
    order = np.random.default_rng(0).permutation(nz) if shuffle_names else np.arange(nz)
    series, study = generate_uid(), generate_uid()
    paths = []
    for file_index, k in enumerate(order):
        pixels = np.ascontiguousarray(volume_ras[::-1, ::-1, k].T.astype(np.uint16))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IMG-0001-{file_index + 1:05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = series, study, "MR"
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelSpacing = [sy, sx]  # [between rows, between columns]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-x_last, -y_last, origin_ras[2] + k * sz]
        ds.SliceThickness = sz
        ds.InstanceNumber = file_index + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        paths.append((path, k))
    return [p for p, _ in paths]


@pytest.fixture
def chaos_dir(tmp_path, tiny_cases):
    """A CHAOS-style MR folder: 2 patients, T2SPIR DICOM series (shuffled names) + PNG masks (liver = 63)."""
    from PIL import Image

    root = tmp_path / "CHAOS_Train_Sets" / "Train_Sets" / "MR"
    for patient, case in zip(("1", "2"), tiny_cases[:2]):
        spacing = tuple(float(s) for s in np.diag(case.affine)[:3])
        image = np.round(case.image / case.image.max() * 4000)
        dicom_dir = root / patient / "T2SPIR" / "DICOM_anon"
        paths = write_dicom_series(dicom_dir, image, spacing, tuple(case.affine[:3, 3]), shuffle_names=True)
        ground = root / patient / "T2SPIR" / "Ground"
        ground.mkdir(parents=True)
        import pydicom

        for path in paths:
            ds = pydicom.dcmread(str(path))
            k = int(round((float(ds.ImagePositionPatient[2]) - case.affine[2, 3]) / spacing[2]))
            grey = np.zeros(case.label.shape[:2], dtype=np.uint8)
            grey[case.label[:, :, k] == 1] = 63
            grey[case.label[:, :, k] == 2] = 63  # CHAOS has no tumour class
            Image.fromarray(np.ascontiguousarray(grey[::-1, ::-1].T)).save(ground / (path.stem + ".png"))
    return root.parent.parent


RUN_ARGS = ["run", "--generator", "classic-aug", "--seeds", "2", "--profile", "tiny", "--quiet", "--no-controls"]


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One uninterrupted tiny run (classic-aug, 2 seeds), shared by the runner, figure and export tests."""
    out = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("run-cache")
    old = os.environ.get("FOSCU_BENCH_CACHE")
    os.environ["FOSCU_BENCH_CACHE"] = str(cache)
    from foscu_bench.cli import main

    try:
        main([*RUN_ARGS, "--out", str(out)])
    finally:
        if old is None:
            os.environ.pop("FOSCU_BENCH_CACHE")
        else:
            os.environ["FOSCU_BENCH_CACHE"] = old
    return _run_dir(out), cache
