"""Paired difference of one generator's arm between two runs on the same split: did a new generator version help?

Two runs of one comparability setting (same data, split, real-data level, seeds and test cases) differ only in the
generator's code or config. Their real+synthetic arms are aligned case by case and seed by seed, and
``stats.compare_paired`` gives the difference with the crossed case x seed random-effects CI the runner uses.
The real-only arms are compared too: they must be identical (the U-Nets are deterministic), or the two runs are not
comparable and the script stops.

Usage: python bench/compare_runs.py NEW_RUN_DIR OLD_RUN_DIR [--generator duo-diffusion] [--arm real+synthetic]
                                    [--metric dice_liver] [--out FILE.json] [--old-generator NAME]

``--old-generator`` compares two generators instead (default: the same one), e.g. Duo-Diffusion against its
real-labels ablation, each from its run of the same level (or both from one run: pass it twice).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from foscu_bench.stats import compare_paired
from foscu_bench.store import atomic_write_json

KEYS = ["n_real", "draw", "case_id"]


def arm_matrix(metrics: pd.DataFrame, generator: str, arm: str, metric: str) -> pd.DataFrame:
    """(level, draw, case) x seed matrix of one generator's arm (the real-only arm: generator "real-only")."""
    rows = metrics[(metrics["arm"] == arm) & (metrics["generator"] == generator)]
    if rows.empty:
        raise SystemExit(f"no {arm!r} rows of {generator!r} in the metrics")
    return rows.pivot(index=KEYS, columns="seed", values=metric).sort_index()


def load_metrics(run: Path) -> pd.DataFrame:
    path = run / "metrics.csv"
    if not path.exists():
        raise SystemExit(f"{path}: no metrics.csv (is {run} a run directory?)")
    return pd.read_csv(path)


def compare_runs(new: Path, old: Path, generator: str, arm: str, metric: str, old_generator: str | None = None) -> dict:
    new_metrics, old_metrics = load_metrics(new), load_metrics(old)
    for run, metrics in ((new, new_metrics), (old, old_metrics)):
        if len(metrics[["n_real", "draw"]].drop_duplicates()) > 1:
            raise SystemExit(f"{run} holds several real-data levels or draws: the runner tests each level apart, "
                             f"with draws as replicates (results._comparison); this script compares one level, one draw")
    real_new, real_old = (arm_matrix(m, "real-only", "real", metric) for m in (new_metrics, old_metrics))
    if not real_new.index.equals(real_old.index) or not np.allclose(real_new.to_numpy(), real_old.to_numpy(),
                                                                    equal_nan=True):
        raise SystemExit(f"the real-only arms of {new} and {old} differ: not the same split, seeds or U-Nets")
    old_generator = old_generator or generator
    a, b = arm_matrix(new_metrics, generator, arm, metric), arm_matrix(old_metrics, old_generator, arm, metric)
    if not a.index.equals(b.index) or list(a.columns) != list(b.columns):
        raise SystemExit(f"the {arm} arms are not aligned: {a.shape} vs {b.shape}")
    keep = ~(a.isna().any(axis=1) | b.isna().any(axis=1))
    result = compare_paired(a[keep].to_numpy(), b[keep].to_numpy())
    return {"new": str(new), "old": str(old), "generator": generator, "old_generator": old_generator, "arm": arm,
            "metric": metric, "real_only_identical": True, "cases_dropped_for_nan": int((~keep).sum()),
            "new_mean": float(a[keep].to_numpy().mean()), "old_mean": float(b[keep].to_numpy().mean()),
            "per_seed_difference": {str(s): float((a[keep][s] - b[keep][s]).mean()) for s in a.columns},
            **asdict(result)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    parser.add_argument("--generator", default="duo-diffusion")
    parser.add_argument("--old-generator", help="the old run's generator (default: --generator)")
    parser.add_argument("--arm", default="real+synthetic")
    parser.add_argument("--metric", default="dice_liver")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = compare_runs(args.new, args.old, args.generator, args.arm, args.metric, args.old_generator)
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
