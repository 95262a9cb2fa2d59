"""bench/publish_runs.py copies exactly the four run files of a finished run, and refuses an unfinished one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import bench_module
from foscu_bench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for p in (ROOT / "leaderboards" / "runs").iterdir() if p.is_dir())


def _module():
    return bench_module("publish_runs")


def test_a_finished_run_is_published_without_its_volumes(tmp_path):
    publish = _module()
    run = tmp_path / "runs" / COMMITTED[0].name
    shutil.copytree(COMMITTED[0], run)
    (run / "synthetic").mkdir()
    (run / "synthetic" / "pairs.npz").write_bytes(b"volume")
    target = publish.copy_run_files(run, tmp_path / "published")
    names = ["fidelity.json", "manifest.json", "metrics.csv", "stats.json"]
    assert sorted(p.name for p in target.iterdir()) == names
    for name in names:
        assert (target / name).read_bytes() == (COMMITTED[0] / name).read_bytes()


def test_an_unfinished_run_is_refused_with_its_path(tmp_path):
    publish = _module()
    run = tmp_path / COMMITTED[0].name
    shutil.copytree(COMMITTED[0], run)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    with pytest.raises(ConfigError, match="not 'complete'"):
        publish.copy_run_files(run, tmp_path / "published")
    (run / "stats.json").unlink()
    with pytest.raises(ConfigError, match="lacks stats.json"):
        publish.copy_run_files(run, tmp_path / "published")
    assert not (tmp_path / "published").exists()
