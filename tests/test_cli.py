"""The dataset commands of the CLI, end to end on the tiny phantom and the real MRI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REAL_DATA
from foscu_bench.cli import main


def run_cli(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_datasets_list(capsys):
    code, out, _ = run_cli(["datasets", "list"], capsys)
    assert code == 0
    for name in ("phantom", "phantom-t2", "nnunet", "amos", "chaos", "nifti-pair"):
        assert name in out


def test_datasets_show_phantom_json(capsys):
    code, out, _ = run_cli(["datasets", "show", "phantom", "--profile", "tiny", "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["n_cases"] == 12 and summary["grid_shape"] == [16, 16, 16]
    assert 800 < summary["liver_ml"]["mean"] < 2500
    assert summary["native_spacing_median_mm"][2] > summary["native_spacing_median_mm"][0]


def test_datasets_show_table(capsys):
    code, out, _ = run_cli(["datasets", "show", "phantom", "--profile", "tiny", "--limit", "3"], capsys)
    assert code == 0 and "liver volume (ml)" in out and "3 (" in out


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real data not present")
def test_datasets_show_real_mri(capsys):
    code, out, _ = run_cli(["datasets", "show", str(REAL_DATA / "totalsegmentator-mr"), "--label-map", "liver=5",
                            "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["native_orientations"] == {"LPS": 1}
    assert summary["liver_ml"]["mean"] == pytest.approx(498.96, rel=1e-6)


def test_datasets_preview_writes_png(tmp_path, capsys):
    out = tmp_path / "preview.png"
    code, _, _ = run_cli(["datasets", "preview", "phantom", "--out", str(out), "--profile", "tiny", "--cases", "2"],
                         capsys)
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(out) as img:
        assert img.width > 500 and img.height > 300


def test_run_reports_bad_options_clearly(capsys):
    code, _, err = run_cli(["run", "--generator", "duo-difusion", "--seeds", "5"], capsys)
    assert code == 2 and "did you mean 'duo-diffusion'" in err and "Traceback" not in err
    code, _, err = run_cli(["run", "--generator", "classic-aug", "--profile", "huge"], capsys)
    assert code == 2 and "unknown profile 'huge'" in err
    code, _, err = run_cli(["run", "--generator", "classic-aug", "--generator", "classic-aug"], capsys)
    assert code == 2 and "named twice" in err
    code, _, err = run_cli(["run", "--generator", "classic-aug", "--synthetic", "0"], capsys)
    assert code == 2 and "--synthetic must be >= 1" in err


def test_console_script_and_light_import():
    """``import foscu_bench`` and ``--help`` must not import torch or MONAI (fast start, no heavy deps)."""
    code = ("import sys, foscu_bench, foscu_bench.cli; "
            "print(any(m.split('.')[0] in ('torch', 'monai') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    result = subprocess.run([sys.executable, "-m", "foscu_bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "datasets" in result.stdout
