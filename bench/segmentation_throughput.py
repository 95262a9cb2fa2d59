"""Segmentation throughput: training voxels/s, inference volumes/s, and the fraction of measured peak.

Usage::

    python bench/segmentation_throughput.py [--profiles tiny quick] [--device auto] [--steps 30]
        [--out bench/results/segmentation_throughput.json]

Peak is *measured* on the current device, not taken from a datasheet: the best of a large fp32 matmul
(sgemm) and a large 3D convolution (the U-Net's own operation). The training step's FLOPs come from
``torch.utils.flop_counter`` over one forward + backward pass, so "fraction of peak" is achieved FLOP/s of the
real training step (data augmentation included in the wall time) divided by that peak.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from foscu_bench.data.dataset import open_dataset
from foscu_bench.profiles import get_profile
from foscu_bench.segmentation import build_unet, predict, resolve_device, resolve_precision, train_segmentation
from foscu_bench.store import atomic_write_json


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured_peaks(device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """GFLOP/s of a 2048^3 matmul and of a 64->64 channel 3x3x3 conv3d on 48^3 (fwd), best of 5, in ``precision``
    (bf16: under the same autocast the training uses, channels-last on CPU as the U-Net runs)."""
    from contextlib import nullcontext

    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    fmt = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    x = torch.randn(2, 64, 48, 48, 48, device=device).contiguous(memory_format=fmt)
    conv = torch.nn.Conv3d(64, 64, 3, padding=1).to(device, memory_format=fmt)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    results = {}
    for name, fn, flops in (("matmul", lambda: a @ b, 2 * 2048 ** 3),
                            ("conv3d", lambda: conv(x), 2 * 2 * 64 * 64 * 27 * 48 ** 3)):
        with torch.no_grad(), cast:
            fn()
            best = float("inf")
            for _ in range(5):
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                best = min(best, time.perf_counter() - start)
        results[f"{name}_gflops"] = flops / best / 1e9
    return results


def step_flops(settings, shape, device: torch.device) -> float:
    """FLOPs of one training step (forward + backward) at the profile's batch and patch size."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_unet(settings).to(device)
    x = torch.randn(settings.batch_size, 1, *settings.patch_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return float(counter.get_total_flops())


def bench_profile(name: str, device: torch.device, steps: int) -> dict:
    from dataclasses import replace

    profile = get_profile(name)
    settings = replace(profile.segmentation, iterations=steps)
    ds = open_dataset("phantom", profile=profile)
    pairs = ds.pairs(ds.case_ids[:8])
    warm = train_segmentation(pairs, [], "real", replace(settings, iterations=3), seed=0, device=str(device))
    del warm
    result = train_segmentation(pairs, [], "real", settings, seed=0, device=str(device))
    voxels = steps * settings.batch_size * float(np.prod(settings.patch_size))
    flops = step_flops(settings, profile.shape, device)
    predict(result.model, pairs[0].image, settings)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for pair in pairs:
        predict(result.model, pair.image, settings)
    _sync(device)
    inference_seconds = time.perf_counter() - start
    step_seconds = result.seconds / steps
    return {
        "profile": name, "grid": list(profile.shape), "patch": list(settings.patch_size),
        "batch_size": settings.batch_size, "channels": list(settings.channels), "steps": steps,
        "train_seconds_per_step": step_seconds, "train_voxels_per_second": voxels / result.seconds,
        "train_step_gflop": flops / 1e9, "train_achieved_gflops": flops / step_seconds / 1e9,
        "inference_volumes_per_second": len(pairs) / inference_seconds,
        "full_training_minutes_estimate": profile.segmentation.iterations * step_seconds / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "quick"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=1,
                        help="Also train this many single-threaded U-Nets at once (the runner's CPU default: one "
                             "step per core) and report the machine's summed throughput against the peak.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/segmentation_throughput.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    peaks = measured_peaks(device)
    peaks_by_precision = {"fp32": peaks}
    rows = []
    for name in args.profiles:
        precision = resolve_precision(device, get_profile(name).segmentation.precision)
        if precision not in peaks_by_precision:
            peaks_by_precision[precision] = measured_peaks(device, precision)
        peak = max(peaks_by_precision[precision].values())
        row = bench_profile(name, device, args.steps)
        row["precision"] = precision
        row["fraction_of_measured_peak"] = row["train_achieved_gflops"] / peak
        if args.concurrent > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(args.concurrent, initializer=torch.set_num_threads,
                                                           initargs=(1,)) as pool:
                parallel = pool.starmap(bench_profile, [(name, device, args.steps)] * args.concurrent)
            achieved = sum(r["train_achieved_gflops"] for r in parallel)
            row["concurrent"] = {"workers": args.concurrent, "threads_each": 1,
                                 "train_seconds_per_step_each": [r["train_seconds_per_step"] for r in parallel],
                                 "machine_achieved_gflops": achieved, "fraction_of_measured_peak": achieved / peak}
            print(f"{name:6s} {args.concurrent} single-threaded trainings at once: {achieved:6.1f} GFLOP/s = "
                  f"{achieved / peak:.1%} of the {precision} peak")
        rows.append(row)
        print(f"{name:6s} train {row['train_voxels_per_second'] / 1e6:7.3f} Mvox/s "
              f"({row['train_seconds_per_step'] * 1000:6.1f} ms/step, {row['train_achieved_gflops']:6.1f} GFLOP/s = "
              f"{row['fraction_of_measured_peak']:.1%} of peak) | infer {row['inference_volumes_per_second']:6.1f} vol/s "
              f"| full budget {row['full_training_minutes_estimate']:.2f} min")
    report = {"device": str(device), "device_name": torch.cuda.get_device_name() if device.type == "cuda"
              else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "peaks_gflops": peaks, "peaks_gflops_by_precision": peaks_by_precision,
              "profiles": rows}
    print(f"measured peaks: matmul {peaks['matmul_gflops']:.0f} GFLOP/s, conv3d {peaks['conv3d_gflops']:.0f} GFLOP/s")
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
