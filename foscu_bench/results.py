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
ROW_KEYS = ("generator", "arm", "n_real", "draw", "seed", "case_id")
"""``n_real``: real training cases of the level (everything that learned from real data saw only those);
``draw``: which nested subset sequence; a replicate of a level is a (draw, seed) pair."""
PRIMARY_METRIC = PRIMARY
COMPARED_METRICS = compared_columns()
"""Metrics compared between arms (``metrics.spec``); tumour metrics only over test cases with a reference tumour."""
COMPARED_ARMS = ("real+synthetic", "real+synthetic-exposure", "synthetic")
ARM_BLOCKS = {"real+synthetic": None, "real+synthetic-exposure": "exposure_matched", "synthetic": "synthetic_only"}
"""Where each compared arm's block sits in a generator's stats entry (None: the entry itself)."""
FAMILIES = ("generators", "controls")


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

    @property
    def largest_level(self) -> dict:
        """The run's largest real-data level (``n_real``, ``draw``, ``whole_split``, ``train`` ids)."""
        levels = self.manifest.get("real_data_levels") or [
            {"n_real": len(self.manifest["split"]["train"]), "draw": 0, "whole_split": True,
             "train": self.manifest["split"]["train"]}]
        return max(levels, key=lambda level: (level["n_real"], -level["draw"]))

    def synthetic_path(self, generator: str, seed: int) -> Path:
        """The synthetic set of ``generator`` and ``seed`` at the run's largest real-data level."""
        level = self.largest_level
        return self.layout.synthetic(generator, seed, None if level["whole_split"] else level["n_real"],
                                     level["draw"])


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


def json_safe(value, digits: int | None = None):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python; floats to ``digits`` significant digits where given."""
    if isinstance(value, dict):
        return {k: json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, (np.floating, float)):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{digits}g}") if digits else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def with_replicates(frame: pd.DataFrame) -> pd.DataFrame:
    """A ``replicate`` column: one training run of a level, the (draw, seed) pair, paired between arms."""
    frame = frame.copy()
    frame["replicate"] = frame["draw"].astype(int) * 100_000 + frame["seed"].astype(int)
    return frame


def _comparison(frame: pd.DataFrame, generator: str, arm: str, metric: str) -> dict | None:
    """Paired comparison of (generator, arm) against real-only on ``metric`` within one real-data level, over
    cases defined in both; replicates ((draw, seed) pairs) are random effects crossed with cases."""
    replicates = sorted(frame["replicate"].unique())
    test = frame[(frame["generator"] == generator) & (frame["arm"] == arm)]
    ref = frame[(frame["generator"] == REFERENCE) & (frame["arm"] == "real")]
    if metric not in frame.columns or test.empty:
        return None
    # a case counts only if the metric is defined for every replicate of both arms (count() counts non-missing)
    complete = [set(counts.index[counts == len(replicates)])
                for counts in (arm_rows.groupby("case_id")[metric].count() for arm_rows in (ref, test))]
    cases = sorted(complete[0] & complete[1])
    if len(cases) < 2:
        return None
    a = metric_matrix(test, "arm", arm, metric, cases, replicates, seed_column="replicate")
    b = metric_matrix(ref, "arm", "real", metric, cases, replicates, seed_column="replicate")
    result = compare_paired(a, b).to_dict()
    result.update(mean=float(a.mean()), reference_mean=float(b.mean()),
                  seed_sd=float(a.mean(axis=0).std(ddof=1)) if len(replicates) > 1 else None)
    return result


def arm_summary(frame: pd.DataFrame) -> list[dict]:
    """Mean over cases and replicates and the sd of per-replicate means, per (generator, arm, level) and metric."""
    out = []
    for (generator, arm, n_real), group in with_replicates(frame).groupby(["generator", "arm", "n_real"], sort=True):
        entry = {"generator": generator, "arm": arm, "n_real": int(n_real),
                 "n_seeds": int(group["replicate"].nunique()), "n_cases": int(group["case_id"].nunique())}
        for metric in METRIC_COLUMNS:
            if metric in group.columns and group[metric].notna().any():
                per_seed = group.groupby("replicate")[metric].mean()
                entry[metric] = float(group[metric].mean())
                entry[f"{metric}_seed_sd"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None
        out.append(entry)
    return out


def _block(metrics: dict) -> dict:
    """A generator's block for one arm and level: every compared metric, the primary one's fields on top."""
    block: dict = {"metrics": metrics}
    primary = metrics.get(PRIMARY_METRIC)
    if primary is not None:
        block.update(delta_dice_mean=primary["delta_mean"], ci_low=primary["ci_low"], ci_high=primary["ci_high"],
                     p_value=primary["p_value"], p_holm=primary["p_holm"], test=primary["test"],
                     dice_mean=primary["mean"], mde=primary["mde"], n_cases=primary["n_cases"],
                     n_seeds=primary["n_seeds"])
    return block


PAPER_EFFECT = 0.0067
"""The gain FOSCU reports (+0.67 mean Dice points): the effect a default run should be able to detect."""


def _design(comparisons: dict, n: int, members: set[str] | None = None) -> dict:
    """Pooled minimum detectable effect of one level's design (``stats.pooled_design``) over every arm, or over the
    arms of ``members`` only."""
    from foscu_bench.stats import pooled_design

    primary = [c for (g, arm, metric, level), c in comparisons.items()
               if arm == "real+synthetic" and metric == PRIMARY_METRIC and level == n
               and (members is None or g in members)]
    if not primary:
        return {}
    return pooled_design(primary, primary[0]["n_cases"], primary[0]["n_seeds"], target=PAPER_EFFECT)


def _calibration(per_generator: dict, kinds: dict, level: str, design: dict | None = None) -> dict | None:
    """The controls at one level: is a true gain detected (and >= 2 x MDE), is a true harm detected?

    The MDE the positive control must clear twice is the larger of its own and the design's, ``design`` being the
    variance components pooled over the level's controls: one arm's seed variance from 5 seeds can be near zero by
    chance (the oracle at 16 real cases: 0.03 pts), and a verdict on the protocol must not depend on the generator
    under test (pooled over every arm, the default run's verdict flipped with Duo-Diffusion's own seed variance:
    design MDE 0.92 with one fit of it, 1.08 with the next; over the controls 0.98 both times)."""
    from foscu_bench.controls import NEGATIVE, POSITIVE

    def entry(name: str) -> dict | None:
        block = per_generator.get(name, {}).get("levels", {}).get(level)
        if not block or "delta_dice_mean" not in block:
            return None
        return {k: block[k] for k in ("delta_dice_mean", "ci_low", "ci_high", "p_value", "p_holm", "mde")}

    positive, negative = entry(POSITIVE), entry(NEGATIVE)
    if positive is None and negative is None:
        return None
    mdes = [e["mde"] for e in (positive, negative) if e and e["mde"] is not None]
    design_mde = (design or {}).get("mde")
    out = {"positive": positive, "negative": negative, "mde": max(mdes) if mdes else None, "design_mde": design_mde,
           "design": design or {}}
    if positive is not None:
        out["positive_detected"] = bool(positive["p_holm"] < 0.05 and positive["delta_dice_mean"] > 0)
        bar = max(m for m in (positive["mde"], design_mde, 0.0) if m is not None)
        out["positive_at_least_2x_mde"] = bool(positive["mde"] is not None
                                               and positive["delta_dice_mean"] >= 2 * bar)
    if negative is not None:
        out["negative_detected"] = bool(negative["p_holm"] < 0.05 and negative["delta_dice_mean"] < 0)
    out["passed"] = all(out.get(k, True) for k in ("positive_detected", "positive_at_least_2x_mde",
                                                    "negative_detected"))
    return out


def compute_stats(frame: pd.DataFrame, kinds: dict[str, str] | None = None) -> dict:
    """stats.json: every augmented arm against real-only at every real-data level.

    Holm-corrected per (family, arm, metric, level), the families being the generators and, apart, the controls
    (``kinds[name] == "control"``); each family is declared in ``holm_families``. Per generator, the top-level
    keys are the primary metric's (liver Dice) comparison of the real+synthetic arm at the largest level, as in
    DESIGN.md (``delta_dice_mean, ci_low, ci_high, p_value, p_holm, test``); ``levels`` holds every level,
    ``metrics`` every compared metric; ``exposure_matched`` and ``synthetic_only`` the other arms when trained.
    ``design`` the minimum detectable effect per level from variance components pooled over every arm (and the
    seeds that would detect the paper's effect), ``calibration`` reports the controls per level (with the design
    pooled over the controls alone, which its verdict uses),
    ``real_case_equivalent`` what each augmented arm is worth in
    real cases (when the run has several levels).
    """
    from foscu_bench.equivalence import real_case_equivalents

    kinds = kinds or {}
    frame = with_replicates(frame)
    generators = sorted(g for g in frame["generator"].unique() if g != REFERENCE)
    levels = sorted(int(n) for n in frame["n_real"].unique())
    comparisons: dict[tuple, dict] = {}
    families: dict[str, list[str]] = {}
    for n in levels:
        level = frame[frame["n_real"] == n]
        for arm in COMPARED_ARMS:
            for metric in COMPARED_METRICS:
                found = {g: _comparison(level, g, arm, metric) for g in generators}
                found = {g: c for g, c in found.items() if c is not None}
                for family in FAMILIES:
                    members = {g: c for g, c in found.items() if (kinds.get(g) == "control") == (family == "controls")}
                    if not members:
                        continue
                    families[f"{family}/{arm}/{metric}/n-{n}"] = sorted(members)
                    for (g, c), p_adj in zip(members.items(), holm([c["p_value"] for c in members.values()])):
                        c["p_holm"] = float(p_adj)
                        c["holm_family_size"] = len(members)
                        comparisons[(g, arm, metric, n)] = c
    per_generator = {}
    for g in generators:
        entry: dict = {"kind": kinds.get(g, "generator"), "levels": {}}
        for n in levels:
            for arm, key in ARM_BLOCKS.items():
                metrics = {m: comparisons[(g, arm, m, n)] for m in COMPARED_METRICS if (g, arm, m, n) in comparisons}
                if not metrics:
                    continue
                block = _block(metrics)
                if key is None:
                    entry["levels"][str(n)] = block
                    if n == levels[-1]:
                        entry.update(block)
                else:
                    entry.setdefault(f"{key}_levels", {})[str(n)] = block
                    if n == levels[-1]:
                        entry[key] = block
        per_generator[g] = entry
    design = {str(n): d for n in levels if (d := _design(comparisons, n))}
    controls = {g for g in generators if kinds.get(g) == "control"}
    calibration = {str(n): c for n in levels
                   if (c := _calibration(per_generator, kinds, str(n), _design(comparisons, n, controls))) is not None}
    return json_safe({"schema_version": 2, "reference": REFERENCE, "primary_metric": PRIMARY_METRIC,
                      "multiple_comparisons": "holm per family (generators; controls apart), arm, metric and level",
                      "levels": levels, "holm_families": families, "generators": per_generator,
                      "design": design, "calibration": calibration,
                      "real_case_equivalent": real_case_equivalents(frame) if len(levels) > 1 else {},
                      "arms": arm_summary(frame)})


def training_pairs(run: RunResult):
    """The run's real training pairs, re-opened from its dataset (cached by content) and checked unchanged."""
    from foscu_bench.data.dataset import open_dataset
    from foscu_bench.errors import ConfigError

    config = run.manifest["config"]
    dataset = open_dataset(config["dataset"], label_map=config.get("label_map"), profile=config["profile"])
    if dataset.fingerprint() != run.manifest["dataset"]["fingerprint"]:
        raise ConfigError(f"run {run.run_id}: dataset {config['dataset']!r} changed since the run "
                          f"(fingerprint differs); this needs the data the run used")
    return dataset.pairs(run.largest_level["train"])
