"""Workers and threads the runner picks by default: one single-threaded step per core on CPU; on a GPU, as many
steps side by side as its memory holds (at most GPU_STEPS_AT_ONCE), sharing the cores."""

from types import SimpleNamespace

import pytest
import torch

from foscu_bench.runner import parallel


@pytest.fixture
def sixteen_cores(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 16)


def _gpu_with(monkeypatch, gib: float) -> torch.device:
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda _device: SimpleNamespace(total_memory=int(gib * 2 ** 30)))
    return torch.device("cuda")


def test_cpu_runs_one_single_threaded_step_per_core(sixteen_cores):
    cpu = torch.device("cpu")
    assert parallel.default_threads(cpu) == 1
    assert parallel.default_workers(cpu, 1) == 16
    assert parallel.default_workers(cpu, 4) == 4


@pytest.mark.parametrize("gib, steps", [(80, 3), (141, 3), (48, 2), (24, 1), (16, 1)])
def test_gpu_shares_the_device_as_far_as_its_memory_holds(monkeypatch, sixteen_cores, gib, steps):
    gpu = _gpu_with(monkeypatch, gib)
    assert parallel.gpu_steps_at_once(gpu) == steps
    threads = parallel.default_threads(gpu)
    assert threads == 16 // steps
    assert parallel.default_workers(gpu, threads) == steps


def test_sample_loaders_come_from_the_steps_share_of_the_cores(monkeypatch):
    gpu = torch.device("cuda")
    for threads, loaders in [(16, 8), (5, 4), (2, 1), (1, 1)]:
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        assert parallel.step_loader_workers(gpu) == loaders
    assert parallel.step_loader_workers(torch.device("cpu")) is None  # CPU keeps its sequential stream
