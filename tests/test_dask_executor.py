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
    main([*RUN_ARGS, "--out", str(tmp_path / "runs"), "--workers", "2", *extra])
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run_dir


def test_dask_with_two_workers_gives_the_serial_files_byte_for_byte(finished_run, tmp_path, monkeypatch):
    """Same command, executor dask on a two-process LocalCluster: identical result files; the workers' progress
    (U-Net bars with their worker's name) reaches the driver's reporter, and every step is counted done."""
    from contextlib import contextmanager

    from foscu_bench.runner import RunConfig, prepare

    class Recorder:
        def __init__(self):
            self.opened, self.done, self.total = [], 0, None

        def begin(self, n_steps):
            self.total = n_steps

        @contextmanager
        def task(self, description, total=None):
            self.opened.append(description)
            yield lambda *args, **kwargs: None

        def step_done(self):
            self.done += 1

    run_dir, _ = finished_run
    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))  # cold: every step computes again
    recorder = Recorder()
    ctx = prepare(RunConfig(generators=("classic-aug",), seeds=2, profile="tiny", controls=False), tmp_path / "runs",
                  recorder)
    assert ctx.directory.name == run_dir.name
    ctx.execute(["test"], workers=2, threads=1, executor="dask")
    for name in RESULT_FILES:
        assert (ctx.directory / name).read_bytes() == (run_dir / name).read_bytes(), name
    invocation = json.loads((ctx.directory / "manifest.json").read_text())["invocations"][-1]
    assert invocation["executor"] == "dask" and invocation["scheduler"] == "LocalCluster"
    assert invocation["dask_workers"] == 2 and invocation["steps_run"] == 8 and invocation["threads_per_step"] == 1
    assert recorder.total == recorder.done == 8
    assert any(d.startswith("U-Net") and d.endswith("]") for d in recorder.opened), recorder.opened


def test_a_worker_killed_mid_step_is_retried_and_changes_nothing(finished_run, tmp_path, monkeypatch):
    """On a cluster started apart (``--scheduler ADDRESS``, as with dask-jobqueue), SIGKILL of a worker in the 3rd
    iteration of the first U-Net it trains: Dask reschedules the step (the kill fires once: FOSCU_KILL_ONCE) and
    the run's files equal the serial run's."""
    import logging

    from distributed import LocalCluster

    run_dir, _ = finished_run
    marker = tmp_path / "killed"
    monkeypatch.setenv("FOSCU_KILL_AT", "unet.iteration@3")  # the workers inherit it
    monkeypatch.setenv("FOSCU_KILL_ONCE", str(marker))
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        dask_dir = _dask_run(tmp_path, monkeypatch, "--scheduler", cluster.scheduler_address)
    assert marker.exists(), "no worker was killed: the kill point was never reached"
    invocation = json.loads((dask_dir / "manifest.json").read_text())["invocations"][-1]
    assert invocation["scheduler"] == cluster.scheduler_address
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


def test_the_slurm_example_is_valid():
    """The README's Slurm example: GPU jobs with one worker process each, declaring the GPU resource."""
    import py_compile
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "examples" / "slurm"
    slurm = yaml.safe_load((root / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert slurm["processes"] == 1 and "--gres=gpu:1" in slurm["job_extra_directives"]
    assert slurm["worker_extra_args"] == ["--resources", "GPU=1"]
    py_compile.compile(str(root / "run_on_slurm.py"), doraise=True)
