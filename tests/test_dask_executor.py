"""The Dask executor on a real two-worker LocalCluster: byte-identical to the serial executor, even when a worker
is killed in the middle of a step."""

from __future__ import annotations

import json

import pytest

from foscu_bench.cli import main

from conftest import RUN_ARGS

pytest.importorskip("distributed")

RESULT_FILES = ("metrics.csv", "stats.json", "fidelity.json")


def _dask_run(tmp_path, monkeypatch, *extra: str):
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))  # cold: every step computes again
    main([*RUN_ARGS, "--out", str(tmp_path / "runs"), "--executor", "dask", "--workers", "2", *extra])
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run_dir


def test_dask_with_two_workers_gives_the_serial_files_byte_for_byte(finished_run, tmp_path, monkeypatch):
    run_dir, _ = finished_run
    dask_dir = _dask_run(tmp_path, monkeypatch)
    assert dask_dir.name == run_dir.name
    for name in RESULT_FILES:
        assert (dask_dir / name).read_bytes() == (run_dir / name).read_bytes(), name
    invocation = json.loads((dask_dir / "manifest.json").read_text())["invocations"][-1]
    assert invocation["executor"] == "dask" and invocation["scheduler"] == "LocalCluster"
    assert invocation["dask_workers"] == 2 and invocation["steps_run"] == 8 and invocation["threads_per_step"] == 1


def test_a_worker_killed_mid_step_is_retried_and_changes_nothing(finished_run, tmp_path, monkeypatch):
    """SIGKILL of the worker in the 3rd iteration of the first U-Net it trains: Dask reschedules the step on
    the restarted worker (the kill fires once: FOSCU_KILL_ONCE), and the run's files equal the serial run's."""
    run_dir, _ = finished_run
    marker = tmp_path / "killed"
    monkeypatch.setenv("FOSCU_KILL_AT", "unet.iteration@3")
    monkeypatch.setenv("FOSCU_KILL_ONCE", str(marker))
    dask_dir = _dask_run(tmp_path, monkeypatch)
    assert marker.exists(), "no worker was killed: the kill point was never reached"
    for name in RESULT_FILES:
        assert (dask_dir / name).read_bytes() == (run_dir / name).read_bytes(), name
    assert not list(dask_dir.rglob(".tmp-*"))


def test_a_cluster_that_would_change_numbers_is_refused():
    """Workers with several threads (a CPU step owns its process's thread count), or without a GPU resource on a
    GPU run, or with other code, are refused before anything runs."""
    from foscu_bench.errors import ConfigError
    from foscu_bench.runner.dask_executor import check_workers, package_fingerprint

    class FakeClient:
        def __init__(self, workers, fingerprint):
            self.workers, self.fingerprint = workers, fingerprint

        def scheduler_info(self):
            return {"workers": self.workers}

        def run(self, function):
            return {address: self.fingerprint for address in self.workers}

    code = package_fingerprint()
    one = {"tcp://a:1": {"nthreads": 1, "resources": {}}}
    check_workers(FakeClient(one, code), on_gpu=False, code=code)
    with pytest.raises(ConfigError, match="--nthreads 1"):
        check_workers(FakeClient({"tcp://a:1": {"nthreads": 4, "resources": {}}}, code), on_gpu=False, code=code)
    with pytest.raises(ConfigError, match="GPU resource"):
        check_workers(FakeClient(one, code), on_gpu=True, code=code)
    with pytest.raises(ConfigError, match="other foscu-bench code"):
        check_workers(FakeClient(one, "0" * 16), on_gpu=False, code=code)
    with pytest.raises(ConfigError, match="no workers"):
        check_workers(FakeClient({}, code), on_gpu=False, code=code)


def test_worker_progress_reaches_the_drivers_reporter():
    """Workers' task bars arrive as Dask events and open, update and close the same bars in the driver."""
    from foscu_bench.runner.dask_executor import _forwarded_progress

    calls = []

    class Recorder:
        def task(self, description, total=None):
            from contextlib import contextmanager

            @contextmanager
            def bar():
                calls.append(("open", description, total))
                yield lambda completed, total=None, info="": calls.append(("update", completed, info))
                calls.append(("close", description))

            return bar()

    with _forwarded_progress(Recorder(), "run-a") as forward:
        forward((0.0, {"run": "run-a", "task": "w#0", "kind": "open", "description": "U-Net seed 0", "total": 9}))
        forward((0.1, {"run": "run-b", "task": "w#1", "kind": "open", "description": "other run", "total": 1}))
        forward((0.2, {"run": "run-a", "task": "w#0", "kind": "update", "completed": 4, "info": "loss 0.5"}))
        forward((0.3, {"run": "run-a", "task": "w#0", "kind": "close"}))
        forward((0.4, {"run": "run-a", "task": "w#2", "kind": "open", "description": "fit", "total": None}))
    assert calls == [("open", "U-Net seed 0", 9), ("update", 4, "loss 0.5"), ("close", "U-Net seed 0"),
                     ("open", "fit", None), ("close", "fit")]  # a worker that died mid-task: closed at the end
