"""Every network's training step at one profile on this device: ms, FLOPs, fraction of the measured peak of its
precision, fp32 vs bf16 accuracy; batched sampling time; and the wall-time estimate of a full run at that profile.

Usage (prints a JSON line per measurement and rewrites ``--out`` after each section, so a run cut short keeps
what it measured)::

    python bench/step_profile.py --profile paper --out bench/results/gpu_paper_profile_h200.json   # on a GPU
    python bench/step_profile.py --profile quick --random-pairs --out bench/results/step_profile_quick_cpu.json

On CPU every network runs with torch's default threads (all cores); the runner instead trains one single-threaded
step per core, which bench/unet_step_speed.py measures.

Sections: measured fp32 and bf16 peaks (matmul, conv3d); the segmentation U-Net's pure compute step and its full
training step (data augmentation included) in fp32 and bf16, with validation Dice of short real-only trainings as
the accuracy check; the augmentation of one sample on the CPU and on the GPU; each Duo-Diffusion stage's step
(fp32 vs bf16: ms, FLOPs, fraction of peak, loss trajectory); batched sampling per volume (DDIM 10/50 and the
default sampler; label stage + ControlNet image stage + decoding); and the estimate of ``run --profile paper`` from
the profile's budgets.
FLOPs come from ``torch.utils.flop_counter`` (forward + backward of one real step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from segmentation_throughput import measured_peaks, step_flops  # noqa: E402

from foscu_bench.store import atomic_write_json  # noqa: E402

REPORT: dict = {}
STARTED = time.perf_counter()


def _save(out: Path) -> None:
    REPORT["elapsed_s"] = round(time.perf_counter() - STARTED, 1)
    atomic_write_json(out, REPORT)


def _log(section: str, row: dict) -> None:
    REPORT.setdefault(section, []).append(row)
    print(json.dumps({"section": section, **row}), flush=True)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def unet_compute_step(settings, device, precision: str, steps: int = 15) -> float:
    """ms of forward + DiceCE + backward + fused AdamW on random data (no data pipeline)."""
    from monai.losses import DiceCELoss

    from foscu_bench.segmentation import build_unet

    torch.manual_seed(0)
    model = build_unet(settings).to(device)
    x = torch.rand(settings.batch_size, 1, *settings.patch_size, device=device)
    y = (torch.rand(settings.batch_size, 1, *settings.patch_size, device=device) * 3).floor()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        loss_fn(out.float(), y).backward()
        optimiser.step()

    return timed(step, n=steps)


def timed(step, n: int = 10, warm: int = 3) -> float:
    """Mean ms of ``step`` over ``n`` calls after ``warm`` warm-up calls, the GPU synchronised at both ends."""
    for _ in range(warm):
        step()
    _sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    _sync()
    return (time.perf_counter() - start) / n * 1000


def steady_step_seconds(stamps: list[float], skip: float = 0.25) -> float:
    """Seconds per training step once the loader's workers have started and filled their queue: the mean gap over
    the steps after the first ``skip`` fraction (the run's startup is reported apart; over the 10,000 iterations of
    a paper U-Net it is noise, over a bench's few hundred it is not)."""
    first = int(len(stamps) * skip)
    return (stamps[-1] - stamps[first]) / max(1, len(stamps) - 1 - first)


def augmentation_ms(settings, pairs, device, n: int = 12) -> float:
    """ms to augment one training sample (crop, affine, intensity) with the volumes on ``device``."""
    from monai.data import set_track_meta

    from foscu_bench.segmentation import _augmentation

    augment = _augmentation(settings, pairs[0].label.shape, 0)
    volumes = [(torch.from_numpy(p.image).to(device), torch.from_numpy(p.label[None].astype(np.float32)).to(device))
               for p in pairs[:4]]
    set_track_meta(False)
    try:
        augment({"image": volumes[0][0], "label": volumes[0][1]})
        _sync()
        start = time.perf_counter()
        for i in range(n):
            image, label = volumes[i % len(volumes)]
            augment({"image": image, "label": label})
        _sync()
    finally:
        set_track_meta(True)
    return (time.perf_counter() - start) / n * 1000


def segmentation_section(args, profile, train, val, device, peaks) -> dict:
    from foscu_bench.segmentation import evaluate, train_segmentation

    settings = profile.segmentation
    flops = step_flops(settings, profile.shape, device)
    out = {}
    for precision in ("fp32", "bf16"):
        ms = unet_compute_step(settings, device, precision)
        peak = max(peaks[precision].values())
        out[precision] = ms
        _log("unet_compute_step", {"precision": precision, "ms": ms, "step_gflop": flops / 1e9,
                                   "achieved_tflops": flops / ms / 1e9, "fraction_of_peak": flops / ms / 1e6 / peak})
    for where in ("cpu", device.type) if device.type != "cpu" else ("cpu",):
        _log("augmentation", {"volumes_on": where, "ms_per_sample": augmentation_ms(settings, train, torch.device(where))})
    REPORT["threads"] = torch.get_num_threads()
    for precision, workers in [("fp32", None), ("bf16", None)] + [("bf16", w) for w in args.loader_workers]:
        if time.perf_counter() - STARTED > args.budget_s * 0.45:
            _log("unet_training", {"precision": precision, "skipped": "time budget"})
            continue
        run_settings = replace(settings, iterations=args.unet_iterations, precision=precision)
        stamps: list[float] = []
        started = time.perf_counter()
        result = train_segmentation(train, [], "real", run_settings, seed=0, device=str(device),
                                    loader_workers=workers, progress=lambda _it, _loss: stamps.append(time.perf_counter()))
        steady = steady_step_seconds(stamps)
        rows = evaluate(result.model, val, run_settings)
        _log("unet_training", {"precision": result.precision, "iterations": args.unet_iterations,
                               "loader_workers": result.loader_workers, "sample_stream": result.sample_stream,
                               "seconds_per_step": result.seconds / args.unet_iterations,
                               "startup_seconds": stamps[0] - started, "steady_seconds_per_step": steady,
                               "loss_first20": float(np.mean(result.losses[:20])),
                               "loss_last50": float(np.mean(result.losses[-50:])),
                               "val_dice_liver": float(np.mean([r["dice_liver"] for r in rows])),
                               "val_cases": len(rows)})
        if workers is None:
            out[f"train_{precision}"] = steady
            out[f"startup_{precision}"] = stamps[0] - started
            _sync()
            started = time.perf_counter()
            evaluate(result.model, val[:2], run_settings)
            _sync()
            out[f"evaluate_{precision}"] = (time.perf_counter() - started) / len(val[:2])
            _log("unet_evaluation", {"precision": result.precision, "seconds_per_case": out[f"evaluate_{precision}"],
                                     "sample_stream": result.sample_stream, "loader_workers": result.loader_workers})
        del result
    return out


def stage_call(stage: str, config, data, device):
    """One Duo-Diffusion stage's training call for ``config`` (fresh networks, seed 0, no checkpoints)."""
    from foscu_bench.generators.duo_diffusion import networks
    from foscu_bench.generators.duo_diffusion.training import train_autoencoder, train_controlnet, train_diffusion

    torch.manual_seed(0)
    times: list[float] = []

    def progress(_stage, _it, _total, _loss) -> None:
        _sync()
        times.append(time.perf_counter())

    if stage.endswith("autoencoder"):
        size = config.label_autoencoder if stage == "label_autoencoder" else config.image_autoencoder
        ae = networks.build_autoencoder(size, data[stage].shape[1]).to(device)
        disc = networks.build_discriminator().to(device) if stage == "image_autoencoder" and config.adversarial_weight else None
        log = train_autoencoder(stage, ae, data[stage], config, 0, device, None, progress, disc)
    elif stage == "controlnet":
        size = config.image_diffusion_size
        unet = networks.build_diffusion_unet(size, config.image_autoencoder.latent_channels).to(device)
        cn = networks.build_controlnet(size, config.image_autoencoder.latent_channels,
                                       config.image_autoencoder).to(device)
        networks.init_controlnet_from_unet(cn, unet)
        log = train_controlnet(cn, unet, data["latents"], data["controls"], config, 0, device, None, progress)
    elif stage == "label_diffusion":
        unet = networks.build_diffusion_unet(config.diffusion, config.label_autoencoder.latent_channels).to(device)
        log = train_diffusion(stage, unet, data["label_latents"], config, 0, device, None, progress)
    else:
        unet = networks.build_diffusion_unet(config.image_diffusion_size,
                                             config.image_autoencoder.latent_channels).to(device)
        log = train_diffusion(stage, unet, data["latents"], config, 0, device, None, progress)
    return log, times


def stage_data(profile, train) -> dict:
    """What each Duo-Diffusion stage trains on, from ``train``: one-hot labels, images, random latents (a stage's
    cost does not depend on the latents' values) and the label controls."""
    from foscu_bench.conditioning import label_channels
    from foscu_bench.generator import training_arrays
    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.generator import one_hot

    base = config_for(profile.name)
    images, labels = training_arrays(train)
    def latents(autoencoder) -> torch.Tensor:
        return torch.randn(len(images), autoencoder.latent_channels, *(s // autoencoder.factor for s in profile.shape),
                           generator=torch.Generator().manual_seed(0))

    return {"label_autoencoder": one_hot(labels), "image_autoencoder": torch.from_numpy(images[:, None]),
            "latents": latents(base.image_autoencoder), "label_latents": latents(base.label_autoencoder),
            "controls": torch.from_numpy(np.stack([label_channels(label) for label in labels]))}


def duo_section(args, profile, train, device, peaks) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from foscu_bench.generators.duo_diffusion.config import STAGES, config_for

    data = stage_data(profile, train)
    step_s = {}
    for stage in STAGES:
        for precision in ("fp32", "bf16"):
            if time.perf_counter() - STARTED > args.budget_s * 0.85:
                _log("duo_stage", {"stage": stage, "precision": precision, "skipped": "time budget"})
                continue
            n = args.stage_iterations if stage.endswith("autoencoder") else 2 * args.stage_iterations
            config = config_for(profile.name, precision=precision, iterations={stage: n})
            torch.cuda.reset_peak_memory_stats() if device.type == "cuda" else None
            try:
                log, times = stage_call(stage, config, data, device)
            except Exception as error:  # an out-of-memory stage must not cost the other measurements
                _log("duo_stage", {"stage": stage, "precision": precision, "error": repr(error)[:300]})
                torch.cuda.empty_cache() if device.type == "cuda" else None
                continue
            gaps = np.diff(times[4:])
            ms = float(np.median(gaps) * 1000)
            with FlopCounterMode(display=False) as counter:
                stage_call(stage, config_for(profile.name, precision=precision, iterations={stage: 1}), data, device)
            flops = float(counter.get_total_flops())
            peak = max(peaks[precision].values())
            losses = log["losses"]
            _log("duo_stage", {"stage": stage, "precision": precision, "iterations": n, "ms": ms,
                               "step_gflop": flops / 1e9, "achieved_tflops": flops / ms / 1e9,
                               "fraction_of_peak": flops / ms / 1e6 / peak,
                               "loss_first5": float(np.mean(losses[:5])), "loss_last10": float(np.mean(losses[-10:])),
                               "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30
                               if device.type == "cuda" else None})
            step_s[(stage, precision)] = ms / 1000
    return step_s


@torch.no_grad()
def sampling_section(profile, train, device) -> dict:
    """Seconds per volume of batched DDIM sampling with untrained paper-size networks (cost does not depend on the
    weights): label denoising + label decoding + ControlNet-guided image denoising + image decoding."""
    from foscu_bench.conditioning import label_channels
    from foscu_bench.generators.duo_diffusion import networks
    from foscu_bench.generators.duo_diffusion.config import config_for
    from foscu_bench.generators.duo_diffusion.sampling import denoise

    config = config_for(profile.name)
    batch = config.sample_batch
    modules = {"label_ae": networks.build_autoencoder(config.label_autoencoder, networks.LABEL_CHANNELS),
               "label_unet": networks.build_diffusion_unet(config.diffusion, config.label_autoencoder.latent_channels),
               "image_ae": networks.build_autoencoder(config.image_autoencoder, 1),
               "image_unet": networks.build_diffusion_unet(config.image_diffusion_size,
                                                           config.image_autoencoder.latent_channels),
               "controlnet": networks.build_controlnet(config.image_diffusion_size,
                                                       config.image_autoencoder.latent_channels,
                                                       config.image_autoencoder)}
    modules = {k: v.to(device).eval() for k, v in modules.items()}
    shape, image_shape = ((batch, ae.latent_channels, *(s // ae.factor for s in profile.shape))
                          for ae in (config.label_autoencoder, config.image_autoencoder))
    control = torch.from_numpy(np.stack([label_channels(train[i % len(train)].label) for i in range(batch)])).to(device)
    out = {}

    def one_batch(sampler: str, steps: int) -> None:
        gens = [torch.Generator().manual_seed(i) for i in range(batch)]
        z = denoise(modules["label_unet"], config, shape, gens, device, sampler, steps)
        modules["label_ae"].decode(z).argmax(1)
        z = denoise(modules["image_unet"], config, image_shape, gens, device, sampler, steps,
                    controlnet=modules["controlnet"], control=control)
        modules["image_ae"].decode(z)

    for precision in ("fp32", "bf16"):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            one_batch("ddim", 2)
            # DDIM at two step counts gives the fixed and per-step cost; the default sampler is what a run uses
            for sampler, steps in (("ddim", 10), ("ddim", 50), (config.scheduler, config.sampling_steps)):
                _sync()
                start = time.perf_counter()
                one_batch(sampler, steps)
                _sync()
                seconds = (time.perf_counter() - start) / batch
                out[(precision, steps) if sampler == "ddim" else (precision, "default")] = seconds
                _log("sampling", {"precision": precision, "sampler": sampler, "steps": steps, "batch": batch,
                                  "seconds_per_volume": seconds})
    for precision in ("fp32", "bf16"):
        per_step = (out[(precision, 50)] - out[(precision, 10)]) / 40
        fixed = out[(precision, 10)] - 10 * per_step
        _log("sampling_model", {"precision": precision, "fixed_seconds_per_volume": fixed,
                                "seconds_per_step_per_volume": per_step,
                                "ddpm1000_seconds_per_volume": fixed + 1000 * per_step,
                                "speedup_ddim10_vs_ddpm1000": (fixed + 1000 * per_step) / out[(precision, 10)]})
    return out


def run_steps(profile, unet_step_s: float, stage_s: dict, sample_s: float, n_train: int, evaluate_s: float,
              unet_startup_s: float = 0.0, seeds: int = 5,
              device: str = "cuda") -> list[tuple[str, float, tuple[str, ...]]]:
    """The steps of ``foscu-bench run --generator duo-diffusion --seeds 5 --profile <profile>`` as the runner plans
    them, in its order (fit parts first, then samples, then U-Nets): (name, seconds alone on the device, the names
    it waits for). Controls on: real-only, duo-diffusion, phantom-oracle and mismatched-labels U-Nets; each Duo stage
    in the precision ``precision="auto"`` gives it; every U-Net evaluates the test split; each seed samples as many
    volumes as there are real training cases."""
    from foscu_bench.generators.duo_diffusion.config import STAGES, config_for
    from foscu_bench.generators.duo_diffusion.training import stage_precision

    config = config_for(profile.name)
    seconds = {s: config.iterations[s] * stage_s.get((s, stage_precision(config, device, s)), np.nan) for s in STAGES}
    n_test = int(round(profile.n_phantom_cases * (profile.phantom_split_fractions or profile.split_fractions)[2]))
    unet = profile.segmentation.iterations * unet_step_s + unet_startup_s + n_test * evaluate_s
    # the runner's two fit parts (labels, images), each as its stages one after another, so that each stage can
    # slow down by its own factor beside other steps
    chains = [[s for s in STAGES if s.startswith("label")], [s for s in STAGES if not s.startswith("label")]]
    steps = [(f"fitpart/{stage}", seconds[stage], (f"fitpart/{chain[i - 1]}",) if i else ())
             for chain in chains for i, stage in enumerate(chain)]
    fitted = tuple(f"fitpart/{chain[-1]}" for chain in chains)
    steps += [(f"sample/{seed}", n_train * sample_s, fitted) for seed in range(seeds)]
    steps += [(f"unet/{arm}/{seed}", unet, (f"sample/{seed}",) if arm == "duo-diffusion" else ())
              for arm in ("real-only", "duo-diffusion", "phantom-oracle", "mismatched-labels") for seed in range(seeds)]
    return steps


def makespan(steps: list[tuple[str, float, tuple[str, ...]]], workers: int,
             slowdown: float | dict[str, float] = 1.0) -> float:
    """Seconds until the last step ends when ``workers`` steps run at once, each ``slowdown`` times slower than
    alone (one factor, or a dict: the step's own name's factor where it has one, else its kind's, the part of its
    name before the first ``/``), the runner's way: whenever a worker is free, the first ready step in plan order
    starts."""
    def factor(name: str) -> float:
        if not isinstance(slowdown, dict):
            return slowdown
        return slowdown[name] if name in slowdown else slowdown[name.split("/")[0]]

    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []
    waiting = list(steps)
    now = 0.0
    while waiting or running:
        ready = [s for s in waiting if all(d in done_at for d in s[2])]
        while ready and len(running) < workers:
            name, seconds, _ = ready.pop(0)
            waiting = [s for s in waiting if s[0] != name]
            running.append((now + seconds * factor(name), name))
        if not running:
            raise ValueError(f"steps wait for steps that never run: {[s[0] for s in waiting]}")
        running.sort()
        now, name = running.pop(0)
        done_at[name] = now
    return now


def estimate(profile, unet_step_s: float | None, stage_s: dict, sample_s: float | None, n_train: int,
             evaluate_s: float | None = None, unet_startup_s: float = 0.0, concurrency: dict | None = None,
             device: str | None = None, stage_concurrency: dict | None = None) -> None:
    """Hours of ``foscu-bench run --generator duo-diffusion --seeds 5 --profile <profile>`` on this device: one
    step at a time, and with ``k`` steps sharing the device at the aggregate speed-up that
    ``bench/gpu_concurrency.py`` measured for ``k`` (``concurrency``: its report), every step assumed to slow down
    as the U-Net did; with ``stage_concurrency`` (its ``--beside-stage`` report) also three at once with each kind
    of step slowed down by the worst factor measured for it (``measured_slowdowns``)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    steps = run_steps(profile, unet_step_s or np.nan, stage_s, sample_s or np.nan, n_train, evaluate_s or np.nan,
                      unet_startup_s, device=device)
    kinds = {kind: sum(seconds for name, seconds, _ in steps if name.startswith(kind)) / 3600
             for kind in ("fitpart", "sample", "unet")}
    row = {"duo_fit_hours": kinds["fitpart"], "sampling_hours": kinds["sample"],
           "unet_trainings": sum(name.startswith("unet/") for name, _, _ in steps),
           "unet_hours_with_evaluation": kinds["unet"], "total_hours_one_step_at_a_time": sum(kinds.values()),
           "n_train": n_train, "unet_step_s": unet_step_s, "unet_startup_s": unet_startup_s,
           "evaluate_s_per_case": evaluate_s}
    for k_row in (concurrency or {}).get("rows", []):
        k = k_row["concurrent"]
        slowdown = k / k_row["speedup_vs_first"]
        row[f"hours_{k}_steps_at_once"] = makespan(steps, k, slowdown) / 3600
        row[f"slowdown_{k}_steps_at_once"] = slowdown
    if concurrency:
        row["concurrency_from"] = concurrency.get("device")
    if concurrency and stage_concurrency:
        k, slowdowns = measured_slowdowns(concurrency, stage_concurrency)
        row.update({f"slowdown_{k}_steps_at_once_measured_{kind}": factor for kind, factor in slowdowns.items()})
        row[f"hours_{k}_steps_at_once_measured"] = makespan(steps, k, slowdowns) / 3600
        row["stage_concurrency_from"] = stage_concurrency.get("device")
    _log("paper_run_estimate", row)


def measured_slowdowns(concurrency: dict, stage_concurrency: dict) -> tuple[int, dict[str, float]]:
    """``k``, the steps on the GPU in the stage report (a stage and the U-Nets beside it), and the slowdowns at
    ``k``: each Duo stage measured beside the U-Nets its own (``fitpart/<stage>``, the worst where measured twice),
    a stage never measured beside them the slowest measured stage's (``fitpart``); a U-Net the worst measured beside
    ``k - 1`` U-Nets or beside a stage and U-Nets (against a U-Net alone in ``concurrency``); sampling, never
    measured beside others, the worst of all."""
    beside = [r for r in stage_concurrency["rows"] if "stage_slowdown" in r]
    if not beside:
        raise ValueError("the stage report holds no stage beside U-Nets")
    k = 1 + beside[0]["unets_beside"]
    alone = next(r for r in concurrency["rows"] if r["concurrent"] == 1)["steady_seconds_per_step_each"][0]
    unet = [s / alone for r in concurrency["rows"] if r["concurrent"] == k for s in r["steady_seconds_per_step_each"]]
    unet += [s / alone for r in stage_concurrency["rows"] for s in r["unet_seconds_per_step_each"]]
    if not unet:
        raise ValueError(f"the concurrency reports hold no U-Net at {k} steps at once")
    stage = [r["stage_slowdown"] for r in beside]
    own = {f"fitpart/{r['stage']}": max(b["stage_slowdown"] for b in beside if b["stage"] == r["stage"])
           for r in beside}
    return k, {"fitpart": max(stage), "unet": max(unet), "sample": max(stage + unet), **own}


def merged_reports(paths: list[Path]) -> dict:
    """The rows of several ``--beside-stage`` reports as one report; they must come from one device kind."""
    reports = [json.loads(path.read_text()) for path in paths]
    devices = {report.get("device") for report in reports}
    if len(devices) != 1:
        raise ValueError(f"stage reports from different devices {sorted(map(str, devices))}: {[str(p) for p in paths]}")
    return {"device": devices.pop(), "rows": [row for report in reports for row in report["rows"]]}


def random_pairs(n: int, profile) -> list:
    """Timing stand-ins: uniform noise images, an ellipsoid liver with a spherical tumour, at the profile's grid."""
    from foscu_bench.pair import Pair

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in profile.shape], indexing="ij"))
    pairs = []
    for i in range(n):
        centre = rng.uniform(-0.2, 0.2, size=3)[:, None, None, None]
        label = ((((grid - centre) / np.array([0.5, 0.4, 0.35])[:, None, None, None]) ** 2).sum(0) < 1).astype(np.uint8)
        label[((grid - centre) ** 2).sum(0) < 0.01] = 2
        pairs.append(Pair(image=rng.random((1, *profile.shape), dtype=np.float32), label=label,
                          spacing=profile.spacing, case_id=f"random-{i}", patient_id=f"random-{i}"))
    return pairs


def measured_times(report: dict) -> tuple[dict, dict, dict]:
    """The U-Net (steady step, startup, evaluation per case), Duo stage and sampling times of an earlier report of
    this script, keyed as the sections return them."""
    seg: dict = {}
    for row in report.get("unet_training", []):
        if "steady_seconds_per_step" in row:  # the first row of a precision: the device's default loaders
            key = row["precision"]
            seg.setdefault(f"train_{key}", row["steady_seconds_per_step"])
            seg.setdefault(f"startup_{key}", row.get("startup_seconds", 0.0))
    for row in report.get("unet_evaluation", []):
        seg.setdefault(f"evaluate_{row['precision']}", row["seconds_per_case"])
    stages = {(row["stage"], row["precision"]): row["ms"] / 1000 for row in report.get("duo_stage", []) if "ms" in row}
    sample = {(row["precision"], row["steps"] if row.get("sampler", "ddim") == "ddim" else "default"):
              row["seconds_per_volume"] for row in report.get("sampling", [])}
    return seg, stages, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/step_profile_<profile>_<device>.json")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--cases", type=int, default=20, help="phantom cases: 70%% train, the rest validation")
    parser.add_argument("--unet-iterations", type=int, default=250)
    parser.add_argument("--loader-workers", type=int, nargs="*", default=[],
                        help="extra bf16 U-Net trainings with these loader worker counts (default: the device's)")
    parser.add_argument("--sections", nargs="*", default=["segmentation", "sampling", "duo"],
                        choices=["segmentation", "sampling", "duo"])
    parser.add_argument("--stage-times-from", type=Path, default=None,
                        help="an earlier result of this script on the same device kind: its Duo stage and sampling "
                             "rows enter the estimate where this run skips those sections")
    parser.add_argument("--estimate-from", type=Path, default=None,
                        help="measure nothing: recompute the estimate from this earlier report (same device kind)")
    parser.add_argument("--concurrency-from", type=Path, default=None,
                        help="a bench/gpu_concurrency.py report: the estimate with k steps sharing the device")
    parser.add_argument("--stage-concurrency-from", type=Path, nargs="+", default=None,
                        help="bench/gpu_concurrency.py --beside-stage reports (one device kind): the estimate at "
                             "three steps at once with the slowdowns measured for each step (needs "
                             "--concurrency-from)")
    parser.add_argument("--stage-iterations", type=int, default=24)
    parser.add_argument("--budget-s", type=float, default=360.0, help="later sections are skipped past this")
    parser.add_argument("--random-pairs", action="store_true",
                        help="time on random images with ellipsoid livers instead of phantom cases (whose 128^3 "
                             "generation took 205 s for 20 cases on the GPU machine); accuracy rows then mean nothing")
    args = parser.parse_args()
    if args.out is None:
        args.out = HERE / "results" / f"step_profile_{args.profile}_{'cuda' if torch.cuda.is_available() else 'cpu'}.json"

    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.profiles import get_profile
    from foscu_bench.precision import resolve_device

    device = resolve_device("auto")
    profile = get_profile(args.profile)
    concurrency = json.loads(args.concurrency_from.read_text()) if args.concurrency_from else None
    stage_concurrency = merged_reports(args.stage_concurrency_from) if args.stage_concurrency_from else None
    paper_train = int(profile.n_phantom_cases * (profile.phantom_split_fractions or profile.split_fractions)[0])
    if args.estimate_from is not None:
        REPORT.update({k: v for k, v in json.loads(args.estimate_from.read_text()).items()
                       if k != "paper_run_estimate"})
        REPORT["estimate_from"] = str(args.estimate_from)
        seg, stages, sample = measured_times(REPORT)
        stages, sample = with_earlier_times(stages, sample, args.stage_times_from)
        on_gpu = REPORT.get("device") != "cpu"
        # the stages' auto precision as on the measured GPU (bf16 where it has bf16 units: every GPU these reports
        # come from), also where this machine has none
        with mock.patch("torch.cuda.is_bf16_supported", return_value=True) if on_gpu else contextlib.nullcontext():
            estimate_from_times(profile, seg, stages, sample, paper_train, concurrency, "cuda" if on_gpu else "cpu",
                                stage_concurrency)
        _save(args.out)
        return
    REPORT.update({"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                   "torch": torch.__version__, "cuda": torch.version.cuda, "profile": args.profile,
                   "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                   "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32, "cpu_count": os.cpu_count()})
    peaks = {p: measured_peaks(device, p) for p in ("fp32", "bf16")}
    REPORT["peaks_gflops"] = peaks
    print(json.dumps({"peaks_gflops": peaks}), flush=True)
    _save(args.out)

    start = time.perf_counter()
    if args.random_pairs:
        pairs = random_pairs(args.cases, profile)
    else:
        ds = open_dataset("phantom", profile=profile)
        pairs = ds.pairs(ds.case_ids[:args.cases])
    n_train = max(2, int(round(0.7 * len(pairs))))
    train, val = pairs[:n_train], pairs[n_train:]
    REPORT["phantom_seconds"] = time.perf_counter() - start
    print(json.dumps({"phantom_cases": len(pairs), "seconds": REPORT["phantom_seconds"]}), flush=True)

    seg, sample = {}, {}
    for name, section in (("segmentation", lambda: segmentation_section(args, profile, train, val, device, peaks)),
                          ("sampling", lambda: sampling_section(profile, train, device))):
        if name not in args.sections:
            continue
        try:
            result = section()
        except Exception as error:
            _log("errors", {"section": name, "error": repr(error)[:500]})
            result = {}
        seg, sample = (result, sample) if name == "segmentation" else (seg, result)
        _save(args.out)
    stages = duo_section(args, profile, train, device, peaks) if "duo" in args.sections else {}
    stages, sample = with_earlier_times(stages, sample, args.stage_times_from)
    _save(args.out)
    estimate_from_times(profile, seg, stages, sample, paper_train, concurrency, stage_concurrency=stage_concurrency)
    _save(args.out)


def estimate_from_times(profile, seg: dict, stages: dict, sample: dict, n_train: int, concurrency: dict | None,
                        device: str | None = None, stage_concurrency: dict | None = None) -> None:
    """``estimate`` from the sections' times (measured now or read back by ``measured_times``): bf16 U-Net, the
    default sampler."""
    estimate(profile, seg.get("train_bf16"), stages, default_sampler_seconds(sample), n_train,
             seg.get("evaluate_bf16"), seg.get("startup_bf16", 0.0), concurrency, device, stage_concurrency)


def with_earlier_times(stages: dict, sample: dict, earlier_report: Path | None) -> tuple[dict, dict]:
    """Duo stage and sampling times of an earlier report of the same device kind where this one has none."""
    if earlier_report is None:
        return stages, sample
    earlier = json.loads(earlier_report.read_text())
    REPORT["stage_times_from"] = {"file": str(earlier_report), "device": earlier.get("device")}
    _, earlier_stages, earlier_sample = measured_times(earlier)
    return {**earlier_stages, **stages}, {**earlier_sample, **sample}


def default_sampler_seconds(sample: dict) -> float | None:
    """Seconds per volume of the default sampler (bf16 first), else of DDIM-50 from reports that predate it."""
    return next((sample[k] for k in (("bf16", "default"), ("fp32", "default"), ("bf16", 50), ("fp32", 50))
                 if k in sample), None)


if __name__ == "__main__":
    main()
