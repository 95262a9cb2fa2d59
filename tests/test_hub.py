"""Exports of a tiny run: Hugging Face folder (load_dataset round trip), nnU-Net NIfTI, and publishing offline."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import yaml

from foscu_bench.cli import main


@pytest.fixture
def exported(finished_run, tmp_path, monkeypatch):
    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    main(["export", str(run_dir), "--out", str(tmp_path / "hf"), "--format", "hf"])
    return run_dir, tmp_path / "hf"


def test_hf_export_round_trips_every_volume_through_load_dataset(exported):
    import datasets

    from foscu_bench.hub import to_numpy
    from foscu_bench.store import load_synthetic

    run_dir, folder = exported
    loaded = datasets.load_dataset(str(folder), "classic-aug", split="train",
                                   cache_dir=str(folder.parent / "load-cache"))
    expected = [(seed, pair) for seed in (0, 1)
                for pair in load_synthetic(run_dir / "synthetic" / "classic-aug" / f"seed-{seed}.npz")]
    assert len(loaded) == len(expected)
    for example, (seed, pair) in zip(loaded, expected):
        arrays = to_numpy(example)
        assert arrays["image"].dtype == np.float32 and arrays["label"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["image"], pair.image)
        np.testing.assert_array_equal(arrays["label"], pair.label)
        assert arrays["spacing"] == pytest.approx(pair.spacing)
        assert example["case_id"] == pair.case_id and example["seed"] == seed
        assert example["has_tumour"] == pair.has_tumour
        assert example["liver_volume_ml"] == pytest.approx(pair.liver_volume_ml, rel=1e-6)
        assert example["profile"] == "tiny" and example["generator"] == "classic-aug"
    assert not list(folder.parent.glob(".tmp-*"))


def test_dataset_card_metadata_and_features(exported):
    import datasets
    from huggingface_hub import DatasetCard

    _, folder = exported
    text = (folder / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    card = yaml.safe_load(header)
    assert DatasetCard.load(folder / "README.md").data.to_dict() == card  # a valid huggingface_hub card
    assert card["license"] and card["task_categories"] == ["image-segmentation"]
    assert card["configs"][0]["data_files"][0]["path"] == "data/classic-aug/train-*.parquet"
    assert card["dataset_info"][0]["splits"][0]["num_examples"] == 14
    features = datasets.load_dataset(str(folder), "classic-aug", split="train").features
    assert {"image", "label", "spacing", "generator", "generator_config_hash", "seed", "liver_volume_ml",
            "has_tumour", "profile"} <= set(features)
    assert "not for clinical use" in body.lower() and "real-vs-real floor" in body


def test_nifti_export_reads_back_with_spacing_and_labels(finished_run, tmp_path, monkeypatch):
    import nibabel as nib

    from foscu_bench.data.dataset import open_dataset

    run_dir, cache = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    main(["export", str(run_dir), "--out", str(tmp_path / "nnunet"), "--format", "nifti"])
    root = tmp_path / "nnunet" / "Dataset900_FoscuSynthLiver"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    info = json.loads((root / "dataset.json").read_text())
    n_expected = len(manifest["split"]["train"]) + 2 * manifest["config"]["n_synthetic"]
    assert info["numTraining"] == n_expected == len(list((root / "imagesTr").glob("*_0000.nii.gz")))
    assert set(info["foscu_bench"]["cases"].values()) == {"real", "classic-aug"}
    label = nib.load(str(root / "labelsTr" / "foscu_00000.nii.gz"))
    image = nib.load(str(root / "imagesTr" / "foscu_00000_0000.nii.gz"))
    assert label.header.get_zooms() == pytest.approx(manifest["profile"]["spacing"])
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2}
    # our own nnU-Net loader re-imports it: labels identical, images equal up to its percentile normalisation
    ds = open_dataset(root, profile="tiny")
    assert len(ds.case_ids) == n_expected and str(ds.label_map) == "liver=1,tumour=2"
    pair = ds.pair("foscu_00000")
    np.testing.assert_array_equal(pair.label, np.asarray(label.dataobj).astype(np.uint8))
    assert np.corrcoef(pair.image.ravel(), np.asarray(image.dataobj).ravel())[0, 1] > 0.99


def test_publish_offline_fails_fast_and_never_shows_the_token(exported, monkeypatch, capsys):
    import socket

    _, folder = exported
    secret = "hf_SECRETtoken1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(["publish", str(folder), "--repo-id", "foscu/synth-liver-mri"])
    assert exc.value.code == 2 and time.perf_counter() - started < 5
    assert "cannot publish offline" in capsys.readouterr().err
    # online mode but no network: the check happens before any upload
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(SystemExit):
        main(["publish", str(folder), "--repo-id", "foscu/synth-liver-mri"])
    captured = capsys.readouterr()
    assert "cannot reach huggingface.co" in captured.err and "Nothing was uploaded" in captured.err
    assert secret not in captured.err + captured.out


def test_publish_needs_a_token_and_an_exported_folder(exported, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    _, folder = exported
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(SystemExit):
        main(["publish", str(folder), "--repo-id", "foscu/synth-liver-mri"])
    assert "not authenticated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["publish", str(tmp_path), "--repo-id", "foscu/synth-liver-mri"])
    assert "not an exported dataset folder" in capsys.readouterr().err
