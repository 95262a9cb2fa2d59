"""Stored results: reading run directories and recomputing statistics from their per-case rows.

Per-case rows (``metrics.csv``) are the only stored truth (DESIGN.md); ``stats.json``, leaderboards and figures
are all recomputed from them with ``compute_stats``, so they can never disagree with the rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foscu_bench.errors import DataError
from foscu_bench.metrics.spec import PRIMARY, compared_columns, metric_columns
from foscu_bench.stats import compare_paired, holm, metric_matrix

REFERENCE = "real-only"
"""The ``generator`` value of the real-only arm in metrics.csv."""
METRIC_COLUMNS = metric_columns()
ROW_KEYS = ("generator", "arm", "seed", "case_id")
PRIMARY_METRIC = PRIMARY
COMPARED_METRICS = compared_columns()
"""Metrics compared between arms (``metrics.spec``); tumour metrics only over test cases with a reference tumour."""
COMPARED_ARMS = ("real+synthetic", "synthetic")


@dataclass
class RunResult:
    directory: Path
    manifest: dict
    metrics: pd.DataFrame
    fidelity: dict

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def layout(self):
        from foscu_bench.store import RunLayout

        return RunLayout(self.directory)


def metrics_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with the schema's column order, sorted so that identical rows give identical CSV."""
    frame = pd.DataFrame(rows)
    columns = list(ROW_KEYS) + [c for c in METRIC_COLUMNS if c in frame.columns]
    return frame[columns].sort_values(list(ROW_KEYS), kind="mergesort").reset_index(drop=True)


def metrics_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")


def read_metrics(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"generator": str, "arm": str, "case_id": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read per-case metrics ({exc})") from None
    missing = [c for c in (*ROW_KEYS, PRIMARY_METRIC) if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; expected {', '.join(ROW_KEYS)}, {PRIMARY_METRIC}, ...")
    return frame


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not a readable JSON file ({exc})") from None


def load_run(directory: str | Path) -> RunResult:
    """A completed run directory (manifest.json + metrics.csv; fidelity.json when present)."""
    from foscu_bench.store import RunLayout

    layout = RunLayout(Path(directory))
    if not layout.manifest.is_file():
        raise DataError(layout.directory, "no manifest.json: not a foscu-bench run directory")
    if not layout.metrics.is_file():
        raise DataError(layout.directory, "run has no metrics.csv yet (unfinished? re-run the same command to resume)")
    fidelity = _read_json(layout.fidelity) if layout.fidelity.is_file() else {}
    return RunResult(layout.directory, _read_json(layout.manifest), read_metrics(layout.metrics), fidelity)


def find_runs(root: str | Path) -> list[RunResult]:
    """Every completed run under ``root`` (``root`` itself may be a run directory), sorted by run id."""
    from foscu_bench.store import RunLayout

    root = Path(root)
    if not root.exists():
        raise DataError(root, "runs directory not found")
    layouts = [RunLayout(root)] if RunLayout(root).manifest.is_file() else [
        RunLayout(m.parent) for m in sorted(root.glob(f"*/{RunLayout(root).manifest.name}"))]
    runs = [load_run(layout.directory) for layout in layouts if layout.metrics.is_file()]
    return sorted(runs, key=lambda r: r.run_id)


def json_safe(value):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _comparison(frame: pd.DataFrame, generator: str, arm: str, metric: str) -> dict | None:
    """Paired comparison of (generator, arm) against real-only on ``metric``, over cases defined in both."""
    seeds = sorted(frame["seed"].unique())
    test = frame[(frame["generator"] == generator) & (frame["arm"] == arm)]
    ref = frame[(frame["generator"] == REFERENCE) & (frame["arm"] == "real")]
    if metric not in frame.columns or test.empty:
        return None
    defined = set(ref.loc[ref[metric].notna(), "case_id"]) & set(test.loc[test[metric].notna(), "case_id"])
    # a case counts only if the metric is defined for every seed of both arms
    cases = sorted(c for c in defined
                   if ref.loc[ref["case_id"] == c, metric].notna().sum() == len(seeds)
                   and test.loc[test["case_id"] == c, metric].notna().sum() == len(seeds))
    if len(cases) < 2:
        return None
    a = metric_matrix(test, "arm", arm, metric, cases, seeds)
    b = metric_matrix(ref, "arm", "real", metric, cases, seeds)
    result = compare_paired(a, b).to_dict()
    result.update(mean=float(a.mean()), reference_mean=float(b.mean()),
                  seed_sd=float(a.mean(axis=0).std(ddof=1)) if len(seeds) > 1 else None)
    return result


def arm_summary(frame: pd.DataFrame) -> list[dict]:
    """Mean over cases and seeds and the sd of per-seed means, per (generator, arm) and metric."""
    out = []
    for (generator, arm), group in frame.groupby(["generator", "arm"], sort=True):
        entry = {"generator": generator, "arm": arm, "n_seeds": int(group["seed"].nunique()),
                 "n_cases": int(group["case_id"].nunique())}
        for metric in METRIC_COLUMNS:
            if metric in group.columns and group[metric].notna().any():
                per_seed = group.groupby("seed")[metric].mean()
                entry[metric] = float(group[metric].mean())
                entry[f"{metric}_seed_sd"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None
        out.append(entry)
    return out


def compute_stats(frame: pd.DataFrame) -> dict:
    """stats.json: every augmented arm against real-only, Holm-corrected across generators per (metric, arm).

    Per generator the top-level keys are the primary metric's (liver Dice) comparison of the real+synthetic arm,
    as in DESIGN.md (``delta_dice_mean, ci_low, ci_high, p_value, p_holm, test``); ``metrics`` holds every
    compared metric, and ``synthetic_only`` the synthetic-only arm when it was trained.
    """
    generators = sorted(g for g in frame["generator"].unique() if g != REFERENCE)
    comparisons: dict[tuple[str, str, str], dict] = {}
    families: dict[str, list[str]] = {}
    for arm in COMPARED_ARMS:
        for metric in COMPARED_METRICS:
            found = {g: _comparison(frame, g, arm, metric) for g in generators}
            found = {g: c for g, c in found.items() if c is not None}
            adjusted = holm([c["p_value"] for c in found.values()]) if found else []
            if found:
                families[f"{arm}/{metric}"] = sorted(found)
            for (g, c), p_adj in zip(found.items(), adjusted):
                c["p_holm"] = float(p_adj)
                c["holm_family_size"] = len(found)
                comparisons[(g, arm, metric)] = c
    per_generator = {}
    for g in generators:
        entry: dict = {}
        for arm, key in (("real+synthetic", None), ("synthetic", "synthetic_only")):
            metrics = {m: comparisons[(g, arm, m)] for m in COMPARED_METRICS if (g, arm, m) in comparisons}
            if not metrics:
                continue
            block = {"metrics": metrics}
            primary = metrics.get(PRIMARY_METRIC)
            if primary is not None:
                block.update(delta_dice_mean=primary["delta_mean"], ci_low=primary["ci_low"],
                             ci_high=primary["ci_high"], p_value=primary["p_value"], p_holm=primary["p_holm"],
                             test=primary["test"], dice_mean=primary["mean"], mde=primary["mde"],
                             n_cases=primary["n_cases"], n_seeds=primary["n_seeds"])
            if key is None:
                entry.update(block)
            else:
                entry[key] = block
        per_generator[g] = entry
    return json_safe({"schema_version": 1, "reference": REFERENCE, "primary_metric": PRIMARY_METRIC,
                   "multiple_comparisons": "holm across generators, per metric and arm",
                   "holm_families": families, "generators": per_generator, "arms": arm_summary(frame)})


def training_pairs(run: RunResult):
    """The run's real training pairs, re-opened from its dataset (cached by content) and checked unchanged."""
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.errors import ConfigError

    config = run.manifest["config"]
    dataset = open_dataset(config["dataset"], label_map=config.get("label_map"), profile=config["profile"])
    if dataset.fingerprint() != run.manifest["dataset"]["fingerprint"]:
        raise ConfigError(f"run {run.run_id}: dataset {config['dataset']!r} changed since the run "
                          f"(fingerprint differs); this needs the data the run used")
    return dataset.pairs(run.manifest["split"]["train"])
