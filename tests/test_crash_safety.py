"""SIGKILL of the driver at named points in every step kind, then a rerun: identical files, nothing lost,
nothing half-written.

One tiny Duo-Diffusion run (real labels, 1 seed: a real-only U-Net, a fit with stage checkpoints, a sample, a
U-Net on real+synthetic data, fidelity) and its Hugging Face export are the reference. Each case starts from a
copy of that run with the files of the step under test deleted (and a cache without the step's cached result),
runs ``foscu-bench`` in a subprocess with ``FOSCU_KILL_AT`` naming a kill point (``foscu_bench.faults``), checks
that the process died there (SIGKILL), reruns the same command, and compares.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foscu_bench.cli import main

GENERATOR = "duo-diffusion-real-labels"
RUN = ["run", "--generator", GENERATOR, "--seeds", "1", "--profile", "tiny", "--quiet", "--no-controls",
       "--workers", "1"]
RESULT_FILES = ("metrics.csv", "stats.json", "fidelity.json")
RESULTS = list(RESULT_FILES)
SAMPLE = [f"sample--{GENERATOR}--seed-0.json", f"synthetic/{GENERATOR}/seed-0.npz"]
FIT = [f"fit--{GENERATOR}.json", f"unet--{GENERATOR}--seed-0.json"] + SAMPLE
REAL_UNET = ["unet--real-only--seed-0.json"]
FIDELITY = [f"fidelity--{GENERATOR}.json"]
CASES = {  # kill point -> (run files to delete so that the point is reached, cache folders the copy leaves out)
    # fit: inside the image diffusion stage's first checkpoint swap (iteration 200 of 300); the resumed fit must
    # be bit-identical, or the regenerated sample and the U-Net trained on it would differ
    "write:image_diffusion/@1": (FIT + RESULTS, ("generators", "unets")),
    "write:seed-0.npz": (SAMPLE + RESULTS, ()),  # the synthetic set, complete but not renamed
    f"write:sample--{GENERATOR}--seed-0.json": (SAMPLE + RESULTS, ()),  # a step record
    "write:timings.json": (SAMPLE + RESULTS, ()),  # the measured time, after the step record
    "unet.iteration@5": (REAL_UNET + RESULTS, ("unets",)),  # in the middle of a U-Net training
    "write:unet--real-only--seed-0.json": (REAL_UNET + RESULTS, ()),  # a U-Net record (from the U-Net cache)
    "fidelity.report": (FIDELITY + RESULTS, ()),  # fidelity computed, not stored
    "write:metrics.csv": (RESULTS, ()),  # assembly
    "write:stats.json": (RESULTS, ()),
    "write:fidelity.json": (RESULTS, ()),
    "write:manifest.json@1": (RESULTS, ()),  # the manifest written as the invocation starts
    "write:manifest.json@2": (RESULTS, ()),  # ... and as it ends, after assembly
    # the driver of a Dask LocalCluster and of the local process pool, killed storing a sample's record while a
    # worker trains the real-only U-Net: their workers must not outlive it
    f"dask:write:sample--{GENERATOR}--seed-0.json": (SAMPLE + REAL_UNET + RESULTS, ("unets",)),
    f"pool:write:sample--{GENERATOR}--seed-0.json": (SAMPLE + REAL_UNET + RESULTS, ("unets",)),
}
EXECUTORS = {"dask": ["--executor", "dask", "--workers", "2"], "pool": ["--workers", "2"]}
EXPORT_CASES = ("export.shard", "write:export/")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, its cache and its HF export."""
    root = tmp_path_factory.mktemp("crash-reference")
    old = os.environ.get("FOSCU_BENCH_CACHE")
    os.environ["FOSCU_BENCH_CACHE"] = str(root / "cache")
    try:
        main([*RUN, "--out", str(root / "runs")])
        (run_dir,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
        main(["export", str(run_dir), "--out", str(root / "export"), "--format", "hf", "--allow-near-copies"])
    finally:
        if old is None:
            os.environ.pop("FOSCU_BENCH_CACHE")
        else:
            os.environ["FOSCU_BENCH_CACHE"] = old
    return run_dir, root / "cache", root / "export"


def _copy_cache(cache: Path, target: Path, leave_out: tuple[str, ...]) -> Path:
    """The reference cache without ``leave_out`` (``unets``: a deleted U-Net step must train again)."""
    shutil.copytree(cache, target, ignore=lambda d, names: [n for n in names if Path(d) == cache and n in leave_out])
    return target


def _killed(command: list[str], point: str, cache: Path) -> None:
    env = {**os.environ, "FOSCU_BENCH_CACHE": str(cache), "FOSCU_KILL_AT": point}
    process = subprocess.run([sys.executable, "-m", "foscu_bench", *command], env=env, capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, (
        f"the process was not killed at {point} (exit {process.returncode}): {process.stderr[-2000:]}")
    deadline = time.time() + 20
    while _processes_using(cache) and time.time() < deadline:
        time.sleep(0.5)
    assert not _processes_using(cache), "worker processes outlived their killed driver"


def _processes_using(cache: Path) -> list[int]:
    """Live processes whose environment names this case's cache (the killed run's workers)."""
    needle = f"FOSCU_BENCH_CACHE={cache}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0") and int(proc.name) != os.getpid():
                state = (proc / "stat").read_text().split(")")[-1].split()[0]
                found += [] if state == "Z" else [int(proc.name)]
        except OSError:
            continue
    return found


@pytest.mark.parametrize("point", list(CASES) + list(EXPORT_CASES))
def test_killed_at_a_point_then_rerun_gives_identical_files(point, reference, tmp_path, monkeypatch):
    run_dir, cache, export = reference
    if point in EXPORT_CASES:
        cache = _copy_cache(cache, tmp_path / "cache", ())
        monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
        command = ["export", str(run_dir), "--out", str(tmp_path / "export"), "--format", "hf", "--allow-near-copies"]
        _killed(command, point, cache)
        main(command)
        assert _tree(tmp_path / "export") == _tree(export)
        for name in _tree(export):
            assert filecmp.cmp(tmp_path / "export" / name, export / name, shallow=False), name
        assert not list(tmp_path.glob(".tmp-*")), "a killed export's staging folder was left behind"
        return
    delete, leave_out = CASES[point]
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    for name in delete:
        path = copy / name if "/" in name or name in RESULT_FILES else copy / "steps" / name
        path.unlink()
    cache = _copy_cache(cache, tmp_path / "cache", leave_out)
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(cache))
    command = [*RUN, "--out", str(tmp_path / "runs")]
    executor, _, name = point.partition(":")
    if executor in EXECUTORS:
        point, command = name, command + EXECUTORS[executor]
    _killed(command, point, cache)
    main(command)
    for name in RESULT_FILES:
        assert (copy / name).read_bytes() == (run_dir / name).read_bytes(), name
    assert _tree(copy) == _tree(run_dir)  # every step file and synthetic set is back, nothing extra
    assert not list(copy.rglob(".tmp-*")) and not list(cache.rglob(".tmp-*"))


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
