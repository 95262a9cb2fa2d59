"""How much of a U-Net's test Dice is the luck of its training run, and do weight averages take it out?

The benchmark's minimum detectable effect at 5 seeds is dominated by the seed term: the training-to-training
variance of the delta (augmented minus real-only, same seed), 0.4-0.8 points sd at 16 real cases. This bench trains
the run's arms (real-only, real + the positive control, real + the negative control) at one real-data level, over
several seeds, exactly as the runner does, and scores from the *same* trainings the final weights and weight averages
kept beside them (exponential moving averages of several decays; uniform averages over the last part of the
schedule). Per variant it reports the crossed random-effects components of each control's delta and the design's
minimum detectable effect at 5 seeds and the run's test size, pooled over the controls as the calibration verdict is.

Usage: python bench/seed_noise.py --real-cases 16 --seeds 8 --workers 2 --out FILE
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ARMS = {"real-only": None, "phantom-oracle": "phantom-oracle", "mismatched-labels": "mismatched-labels"}
EMA_DECAYS = (0.99, 0.995, 0.998)
UNIFORM_TAILS = (0.25, 0.5)
"""Uniform weight averages over the last quarter / half of the iterations (SWA-style, on the poly schedule)."""


def _context(real_cases: int, seeds: int):
    from foscu_bench.runner.config import RunConfig
    from foscu_bench.runner.context import prepare

    return prepare(RunConfig(generators=("classic-aug",), seeds=seeds, real_cases=(real_cases,)), out="/tmp/seed_noise")


class _Averages:
    """Weight averages updated after every optimiser step: EMAs, and uniform means over the schedule's tail."""

    def __init__(self, iterations: int) -> None:
        self.iterations, self.step, self.models = iterations, 0, {}

    def __call__(self, model) -> None:
        import torch

        self.step += 1
        if not self.models:
            self.models = {f"ema{d}": copy.deepcopy(model) for d in EMA_DECAYS}
            self.models |= {f"tail{t}": None for t in UNIFORM_TAILS}
            self.counts = {f"tail{t}": 0 for t in UNIFORM_TAILS}
        with torch.no_grad():
            params = list(model.parameters())
            for decay in EMA_DECAYS:
                torch._foreach_lerp_(list(self.models[f"ema{decay}"].parameters()), params, 1 - decay)
            for tail in UNIFORM_TAILS:
                name = f"tail{tail}"
                if self.step <= self.iterations * (1 - tail):
                    continue
                if self.models[name] is None:
                    self.models[name] = copy.deepcopy(model)
                self.counts[name] += 1
                torch._foreach_lerp_(list(self.models[name].parameters()), params, 1 / self.counts[name])


def _train(task: tuple) -> list[dict]:
    import torch

    from foscu_bench.generator import sample_validated
    from foscu_bench.metrics.segmentation import dice
    from foscu_bench.runner.executors import unet_settings
    from foscu_bench.runner.fit_cache import fitted_generator
    from foscu_bench.segmentation import MEMBER_SEED_OFFSET, train_segmentation
    from foscu_bench.store import Step

    arm_name, seed, real_cases, seeds, options = task
    torch.set_num_threads(1)
    ctx = _context(real_cases, seeds)
    real = ctx.pairs("train", real_cases, 0)
    saved = options["fitted"].get(arm_name)
    control = ARMS.get(arm_name, arm_name.split("@")[0])
    synthetic = []
    if saved:  # a saved generator (NAME=DIR[@W]: W = Duo-Diffusion's control_guidance)
        from foscu_bench.generator import load

        directory, _, guidance = saved.partition("@")
        generator = load(control, Path(directory))
        if guidance:
            generator.duo_config = replace(generator.duo_config, control_guidance=float(guidance))
    elif control:
        generator = fitted_generator(ctx, control, real_cases, 0)
    if control:
        sample_seed = seed if options["synthetic_seed"] is None else options["synthetic_seed"]
        synthetic = sample_validated(generator, options["synthetic"] or ctx.n_synthetic, sample_seed,
                                     ctx.profile.shape)
    arm = "real+synthetic" if control else "real"
    step = Step("unet", generator=control, seed=seed, arm=arm, n_real=real_cases, draw=0)
    # one network per member here (the profile's own ensemble is what --members 2 reproduces, member by member)
    settings = replace(unet_settings(ctx, step, len(real), len(synthetic)), **options["settings"], members=1)
    averages = _Averages(settings.iterations) if options["averages"] else None
    start = time.perf_counter()
    members = []
    for member in range(options["members"]):
        members.append(train_segmentation(real, synthetic, arm, settings, seed=seed + MEMBER_SEED_OFFSET * member,
                                          device="cpu", synthetic_fraction=ctx.config.synthetic_fraction,
                                          on_step=averages if member == 0 else None).model)
    train_seconds = time.perf_counter() - start
    test = ctx.pairs("test")
    rows = []
    variants = {"final": [members[0]], **{name: [m] for name, m in (averages.models if averages else {}).items()}}
    if len(members) > 1:
        variants[f"ensemble{len(members)}"] = members
    for variant, models in variants.items():
        scores = [dice(_predict(models, p.image, settings) > 0, p.label > 0) for p in test]
        rows.append({"arm": arm_name, "seed": seed, "variant": variant, "dice_liver": [round(x, 6) for x in scores],
                     "mean_dice": float(np.mean(scores)), "train_seconds": train_seconds})
    print(json.dumps({k: v for k, v in rows[0].items() if k != "dice_liver"}), flush=True)
    return rows


def _predict(models: list, image: np.ndarray, settings) -> np.ndarray:
    """Label map from one network, or from the mean softmax of several (an ensemble), by the runner's ``predict``."""
    from foscu_bench.ensemble import MeanSoftmaxEnsemble
    from foscu_bench.segmentation import predict

    for model in models:
        model.eval()
    return predict(models[0] if len(models) == 1 else MeanSoftmaxEnsemble(models).eval(), image, settings)


def _real_only_rows(path: Path) -> list[dict]:
    """The real-only rows (final weights) of an earlier output: they do not depend on any synthetic option."""
    return [r for r in json.loads(path.read_text())["rows"] if r["arm"] == "real-only" and r["variant"] == "final"]


def _matrices(rows: list[dict], variant: str, seeds: int | None = None) -> dict[str, np.ndarray]:
    """(cases x seeds) Dice per arm of one variant, real-only first, on the seeds every arm has (the first ``seeds``)."""
    by = {(r["arm"], r["seed"]): np.asarray(r["dice_liver"]) for r in rows if r["variant"] == variant}
    arms = list(dict.fromkeys(a for a, _ in sorted(by, key=lambda k: (k[0] != "real-only", k))))
    kept = sorted(s for s in {s for _, s in by} if all((arm, s) in by for arm in arms))[:seeds]
    return {arm: np.stack([by[(arm, s)] for s in kept], axis=1) for arm in arms}


def summarise(rows: list[dict], design_seeds: int = 5) -> dict:
    """Per variant: real-only seed sd, each control's delta and variance components, the pooled design MDE."""
    from foscu_bench import stats

    out = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        matrix = _matrices(rows, variant)
        arms = list(matrix)
        if "real-only" not in arms:
            continue
        comparisons, entry = [], {"seeds": matrix["real-only"].shape[1]}
        entry["real_only_mean"] = float(matrix["real-only"].mean() * 100)
        entry["real_only_seed_sd"] = float(matrix["real-only"].mean(axis=0).std(ddof=1) * 100)
        for control in [a for a in arms if a != "real-only"]:
            fit = stats.crossed_random_effects(matrix[control] - matrix["real-only"])
            if control in ARMS:  # the design: the controls' variance, as the calibration verdict pools it
                comparisons.append(fit.__dict__)
            entry[control] = {"delta": fit.estimate * 100, "ci": [fit.ci_low * 100, fit.ci_high * 100],
                              "sd_seed": float(np.sqrt(fit.var_seed) * 100), "sd_case": float(np.sqrt(fit.var_case) * 100),
                              "sd_residual": float(np.sqrt(fit.var_residual) * 100),
                              "arm_seed_sd": float(matrix[control].mean(axis=0).std(ddof=1) * 100)}
        n_cases = matrix["real-only"].shape[0]
        design = stats.pooled_design(comparisons, n_cases, design_seeds, target=0.0067) if comparisons else {}
        entry["design_mde_points"] = design.get("mde", float("nan")) * 100
        entry["seeds_for_0.67"] = design.get("seeds_for_target")
        out[variant] = entry
    return out


def markdown_table(paths: list[Path], seeds: int = 6, real_only_from: Path | None = None) -> str:
    """One row per (file, variant) on the first ``seeds`` seeds: real-only Dice and seed sd, each control's delta
    and the seed sd of that delta, and the minimum detectable effect at 5 seeds of the run's test size for the
    positive control alone and pooled over both controls (the calibration verdict's design)."""
    from foscu_bench import stats

    extra_real = _real_only_rows(real_only_from) if real_only_from else []
    lines = ["| file: weights | seeds | real-only Dice | real-only seed sd | oracle delta | its seed sd | negative delta | "
             "its seed sd | MDE@5 oracle | MDE@5 both controls |", "|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        rows = json.loads(path.read_text())["rows"]
        for variant in dict.fromkeys(r["variant"] for r in rows):
            own = [r for r in rows if r["variant"] == variant]
            if not any(r["arm"] == "real-only" for r in own):
                own += [{**r, "variant": variant} for r in extra_real]
            matrix = _matrices([r for r in own if r["arm"] in ARMS], variant, seeds)
            kept = range(matrix["real-only"].shape[1])
            fits = {arm: stats.crossed_random_effects(matrix[arm] - matrix["real-only"]) for arm in matrix
                    if arm != "real-only"}
            cells = []
            for control in ("phantom-oracle", "mismatched-labels"):
                fit = fits.get(control)
                cells += [f"{fit.estimate * 100:+.2f}", f"{np.sqrt(fit.var_seed) * 100:.2f}"] if fit else ["-", "-"]
            n_cases = matrix["real-only"].shape[0]
            oracle = stats.pooled_design([fits["phantom-oracle"].__dict__], n_cases, 5)["mde"] * 100
            both = (f"{stats.pooled_design([f.__dict__ for f in fits.values()], n_cases, 5)['mde'] * 100:.2f}"
                    if len(fits) == 2 else "-")
            real = matrix["real-only"]
            lines.append(f"| {path.stem}: {variant} | {len(kept)} | {real.mean() * 100:.2f} | "
                         f"{real.mean(axis=0).std(ddof=1) * 100:.2f} | " + " | ".join(cells) + f" | {oracle:.2f} | {both} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real-cases", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--synthetic", type=int, default=None, help="synthetic pairs per set (default: the run's)")
    parser.add_argument("--synthetic-seed", type=int, default=None,
                        help="one synthetic set for every training seed (default: a set per seed, as the runner)")
    parser.add_argument("--members", type=int, default=1,
                        help="U-Nets per (arm, seed), scored alone (member 0) and as a mean-softmax ensemble")
    parser.add_argument("--no-averages", action="store_true", help="score the final weights only")
    parser.add_argument("--real-only-from", type=Path, default=None,
                        help="take the real-only rows (final weights) from an earlier output of this bench instead of "
                             "training them again (they do not depend on the synthetic options)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a U-Net setting of the profile, e.g. --set batch_size=4 --set iterations=500")
    parser.add_argument("--fitted", nargs="*", default=[], metavar="NAME=DIR[@W]",
                        help="also an arm of a saved generator (fitted at this level), sampled as the runner does; "
                             "@W sets Duo-Diffusion's control_guidance")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ", ".join(ARMS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="print the Markdown table of earlier outputs and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.table, real_only_from=args.real_only_from))
        return
    if args.out is None:
        parser.error("--out is required")
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    fitted = {}
    for item in args.fitted:
        name, _, where = item.partition("=")
        fitted[name + ("@" + where.partition("@")[2] if "@" in where else "")] = where
    options = {"fitted": fitted, "members": args.members, "settings": overrides, "synthetic": args.synthetic, "synthetic_seed": args.synthetic_seed, "averages": not args.no_averages}
    from foscu_bench.store import atomic_write_json

    ctx = _context(args.real_cases, args.seeds)  # fits the controls once, in the parent, before the workers need them
    from foscu_bench.runner.fit_cache import fitted_generator

    for control in ("phantom-oracle", "mismatched-labels"):
        fitted_generator(ctx, control, args.real_cases, 0)
    arms = [a for a in args.arms.split(",") if a] + list(fitted)
    tasks = [(arm, seed, args.real_cases, args.seeds, options) for seed in range(args.seeds) for arm in arms]
    rows: list[dict] = []
    if args.real_only_from:
        rows = [r for r in _real_only_rows(args.real_only_from) if r["seed"] < args.seeds]
        tasks = [t for t in tasks if t[0] != "real-only"]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(_train, tasks):
            rows += result
            atomic_write_json(args.out, {"real_cases": args.real_cases, "rows": rows})
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    atomic_write_json(args.out, {"real_cases": args.real_cases, "seeds": args.seeds, "options": options,
                                 "test_case_ids": list(ctx.split.test),
                                 "ema_decays": list(EMA_DECAYS),
                                 "uniform_tails": list(UNIFORM_TAILS), "wall_seconds": time.perf_counter() - start,
                                 "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
