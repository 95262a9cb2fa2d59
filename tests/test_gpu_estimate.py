"""The paper-profile wall-time estimate of bench/step_profile.py: the runner's step graph, scheduled on k workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import bench_module
from foscu_bench.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@pytest.fixture(scope="module")
def step_profile():
    return bench_module("step_profile")


def test_makespan_follows_dependencies_and_workers(step_profile):
    steps = [("a", 10.0, ()), ("b", 10.0, ()), ("c", 5.0, ("a",)), ("d", 1.0, ("c", "b"))]
    assert step_profile.makespan(steps, 1) == 26.0
    assert step_profile.makespan(steps, 2) == 16.0  # a|b, then c, then d
    assert step_profile.makespan(steps, 2, slowdown=2.0) == 32.0
    kinds = [("fit/a", 10.0, ()), ("unet/b", 10.0, ()), ("unet/c", 5.0, ("fit/a",))]
    assert step_profile.makespan(kinds, 2, slowdown={"fit": 3.0, "unet": 1.0}) == 35.0  # 30 for fit/a, then 5
    with pytest.raises(ValueError, match="never run"):
        step_profile.makespan([("x", 1.0, ("missing",))], 1)


def test_the_default_run_graph_and_its_schedule(step_profile):
    stages = {(s, p): 0.01 for s in ("label_autoencoder", "label_diffusion", "image_autoencoder", "image_diffusion",
                                     "controlnet") for p in ("fp32", "bf16")}
    steps = step_profile.run_steps(get_profile("paper"), 0.02, stages, 0.5, 120, 0.2, device="cpu")
    names = [name for name, _, _ in steps]
    assert names[:5] == ["fitpart/label_autoencoder", "fitpart/label_diffusion", "fitpart/image_autoencoder",
                         "fitpart/image_diffusion", "fitpart/controlnet"]
    deps = dict((n, d) for n, _, d in steps)
    assert deps["fitpart/controlnet"] == ("fitpart/image_diffusion",) and deps["fitpart/image_autoencoder"] == ()
    assert deps["sample/0"] == ("fitpart/label_diffusion", "fitpart/controlnet")
    assert sum(name.startswith("unet/") for name in names) == 20 and sum(n.startswith("sample/") for n in names) == 5
    assert dict((n, d) for n, _, d in steps)["unet/duo-diffusion/3"] == ("sample/3",)
    alone = sum(seconds for _, seconds, _ in steps)
    assert step_profile.makespan(steps, 1) == pytest.approx(alone)
    assert step_profile.makespan(steps, 3) < alone / 2  # independent U-Nets fill the workers beside the fit


def rebuilt_and_committed(tmp_path: Path, committed: str, **reports: str | list[str]) -> tuple[dict, dict]:
    """The estimate that bench/step_profile.py rebuilds from committed reports (``--estimate-from`` and the
    ``--<option>`` given in ``reports``) beside the committed one: nothing in them is typed in by hand."""
    out = tmp_path / "estimate.json"
    options = [arg for option, names in reports.items()
               for arg in (f"--{option.replace('_', '-')}", *(str(RESULTS / n) for n in ([names] if isinstance(names, str) else names)))]
    subprocess.run([sys.executable, str(ROOT / "bench" / "step_profile.py"), *options, "--out", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    return (json.loads(out.read_text())["paper_run_estimate"][0],
            json.loads((RESULTS / committed).read_text())["paper_run_estimate"][0])


def test_committed_h100_estimate_is_reproduced_from_its_measurements(tmp_path):
    fresh, committed = rebuilt_and_committed(tmp_path, "gpu_paper_estimate_s16_h100.json",
                                             estimate_from="gpu_paper_profile_s16_h100.json",
                                             concurrency_from="gpu_concurrency_s16_h200.json")
    assert fresh == pytest.approx(committed)
    assert fresh["hours_3_steps_at_once"] < 2.0 < fresh["total_hours_one_step_at_a_time"]


def test_measured_slowdowns_take_the_worst_factor_of_each_kind(step_profile):
    concurrency = {"rows": [{"concurrent": 1, "steady_seconds_per_step_each": [0.02]},
                            {"concurrent": 3, "steady_seconds_per_step_each": [0.03, 0.04, 0.035]}]}
    stages = {"rows": [{"stage": "a", "unets_beside": 0, "unet_seconds_per_step_each": []},
                       {"stage": "a", "unets_beside": 2, "stage_slowdown": 1.5, "unet_seconds_per_step_each": [0.05]},
                       {"stage": "b", "unets_beside": 2, "stage_slowdown": 1.8, "unet_seconds_per_step_each": [0.03]}]}
    stages["rows"].append({"stage": "b", "unets_beside": 2, "stage_slowdown": 1.6, "unet_seconds_per_step_each": []})
    k, slowdowns = step_profile.measured_slowdowns(concurrency, stages)
    assert k == 3 and slowdowns == pytest.approx({"fitpart": 1.8, "unet": 2.5, "sample": 2.5,
                                                  "fitpart/a": 1.5, "fitpart/b": 1.8})
    # a stage's own factor where measured, its kind's (the slowest stage's) where not
    steps = [("fitpart/a", 10.0, ()), ("fitpart/c", 10.0, ())]
    assert step_profile.makespan(steps, 1, slowdowns) == pytest.approx(15.0 + 18.0)
    with pytest.raises(ValueError, match="no stage beside"):
        step_profile.measured_slowdowns(concurrency, {"rows": stages["rows"][:1]})


def test_committed_estimate_with_measured_stage_slowdowns_is_reproduced(tmp_path):
    """Session 18's estimate: each Duo stage slowed by its own factor measured beside two U-Nets (sessions 17 and
    18, all five stages), a U-Net and sampling by the worst factor measured for a U-Net."""
    fresh, committed = rebuilt_and_committed(tmp_path, "gpu_paper_estimate_s18_h100.json",
                                             estimate_from="gpu_paper_profile_s16_h100.json",
                                             concurrency_from="gpu_concurrency_s17_h200.json",
                                             stage_concurrency_from=["gpu_stage_concurrency_s17_h200.json",
                                                                     "gpu_stage_concurrency_s18_h200.json"])
    assert fresh == pytest.approx(committed)
    # a U-Net beside a stage and a U-Net slows down more than beside two U-Nets
    assert fresh["slowdown_3_steps_at_once_measured_unet"] > fresh["slowdown_3_steps_at_once"]
    assert fresh["hours_3_steps_at_once"] < fresh["hours_3_steps_at_once_measured"] < 2.0
