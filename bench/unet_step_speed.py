"""U-Net training step speed on this machine: precision x memory format x threads, and two steps side by side.

Answers the questions behind the runner's defaults (bf16 autocast where the CPU has bf16 units, channels-last-3d
on CPU, one thread per step and one step per core), with the accuracy check that bf16 must pass: validation Dice
of full real-only trainings in fp32 and bf16 for the same seeds.

    python bench/unet_step_speed.py --profile quick [--accuracy-seeds 2] [--out bench/results/unet_step_speed_quick.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def step_ms(profile: str, precision: str, channels_last: bool, steps: int = 20) -> float:
    """Mean wall time of one forward + backward + fused AdamW step on random data, after 3 warm-up steps."""
    import torch
    from monai.losses import DiceCELoss

    from foscu_bench.profiles import get_profile
    from foscu_bench.segmentation import build_unet

    settings = get_profile(profile).segmentation
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = build_unet(settings).to(memory_format=fmt)
    x = torch.rand(settings.batch_size, 1, *settings.patch_size).contiguous(memory_format=fmt)
    y = (torch.rand(settings.batch_size, 1, *settings.patch_size) * 3).floor()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        optimiser.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        loss_fn(out.float(), y).backward()
        optimiser.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps * 1000


def _child(args: list[str], threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, text=True)


def speed_grid(profile: str) -> list[dict]:
    """Every variant alone (1 and 2 threads), then the single-thread variants two at a time (one per core)."""
    rows = []
    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):
            variant = ["--child", profile, precision, str(int(channels_last))]
            for threads in (1, 2):
                ms = float(_child(variant, threads).communicate()[0])
                rows.append({"precision": precision, "channels_last": channels_last, "threads": threads,
                             "concurrent": 1, "step_ms": ms, "steps_per_s_machine": 1000 / ms})
            pair = [_child(variant, 1), _child(variant, 1)]
            ms = [float(p.communicate()[0]) for p in pair]
            rows.append({"precision": precision, "channels_last": channels_last, "threads": 1, "concurrent": 2,
                         "step_ms": float(np.mean(ms)), "steps_per_s_machine": sum(1000 / m for m in ms)})
            print(json.dumps(rows[-3:]), flush=True)
    return rows


def accuracy(profile: str, seeds: int) -> list[dict]:
    """Validation liver Dice of full real-only trainings, fp32 vs bf16, same seeds (never the test split)."""
    sys.path.insert(0, str(HERE))
    from bench_setup import training_split

    from foscu_bench.segmentation import evaluate, train_segmentation

    ds, split, train = training_split("phantom", profile)
    validation = ds.pairs(split.val)
    rows = []
    for seed in range(seeds):
        for precision in ("fp32", "bf16"):
            settings = replace(ds.profile.segmentation, precision=precision)
            result = train_segmentation(list(train), [], "real", settings, seed=seed)
            dice = float(np.mean([r["dice_liver"] for r in evaluate(result.model, validation, settings)]))
            rows.append({"seed": seed, "precision": result.precision, "val_dice": dice,
                         "final_loss_mean_last100": float(np.mean(result.losses[-100:])),
                         "train_seconds": result.seconds, "threads": result.threads})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, profile, precision, channels_last = sys.argv
        print(step_ms(profile, precision, channels_last == "1"))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--accuracy-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    sys.path.insert(0, str(HERE))
    from segmentation_throughput import measured_peaks

    from foscu_bench.store import atomic_write_json

    report = {"profile": args.profile, "machine": platform.processor() or platform.machine(),
              "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
              "peaks_gflops": measured_peaks(torch.device("cpu")),
              "speed": speed_grid(args.profile), "accuracy": accuracy(args.profile, args.accuracy_seeds)}
    out = args.out or HERE / "results" / f"unet_step_speed_{args.profile}.json"
    atomic_write_json(out, report)
    print(json.dumps({"written": str(out)}))


if __name__ == "__main__":
    main()
