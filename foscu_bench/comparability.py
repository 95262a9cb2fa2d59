"""Which stored runs may share a table: a comparability key, and run groups with one real-only arm.

Numbers are pooled only across runs with the same dataset fingerprint, split, profile content, seeds, protocol
version and fidelity extractor. Within a group every run must have the identical real-only arm (same rows); the
group's per-case rows are merged and its statistics computed once with ``compute_stats``, exactly as a single
run's stats.json is, so the Holm family is declared in one place and the leaderboard, the figures and a run's
own stats.json agree whenever the group is one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from foscu_bench.errors import ConfigError
from foscu_bench.hashing import json_hash
from foscu_bench.results import REFERENCE, RunResult, compute_stats

PROTOCOL_VERSION = 1
"""Bump when the protocol changes what a number means (arms, budgets, statistics): old runs form their own group."""


def extractor_id(fidelity: dict) -> str | None:
    """Extractor name + checkpoint: fidelity numbers are comparable only between runs with the same one."""
    extractor = fidelity.get("extractor", {})
    if not extractor:
        return None
    return f"{extractor['name']}@{extractor.get('checkpoint') or extractor.get('weights_sha256', '')[:16]}"


def comparability_key(run: RunResult) -> dict:
    manifest = run.manifest
    return {"dataset": manifest["dataset"]["fingerprint"], "split": json_hash(manifest["split"]),
            "profile": json_hash(manifest["profile"]), "seeds": manifest["config"]["seeds"],
            "protocol": manifest.get("protocol_version", 1), "extractor": extractor_id(run.fidelity)}


@dataclass
class RunGroup:
    key: dict
    runs: list[RunResult]
    frame: pd.DataFrame
    """Merged per-case rows: the shared real-only arm once, then every run's generator arms."""
    labels: dict[tuple[str, str], str] = field(default_factory=dict)
    """(run_id, generator) -> the generator's name in ``frame`` (suffixed with the run id only if two runs of the
    group have the same generator)."""
    stats: dict = field(default_factory=dict)

    @property
    def key_id(self) -> str:
        return json_hash(self.key, 12)

    @property
    def name(self) -> str:
        first = self.runs[0].manifest
        return f"{first['dataset']['name']} / {first['profile']['name']}"


def _real_only(run: RunResult) -> pd.DataFrame:
    frame = run.metrics[run.metrics["generator"] == REFERENCE]
    return frame.sort_values(["seed", "case_id"], kind="mergesort").reset_index(drop=True)


def make_group(key: dict, runs: list[RunResult]) -> RunGroup:
    reference = _real_only(runs[0])
    for run in runs[1:]:
        other = _real_only(run)
        if not (list(other.columns) == list(reference.columns) and other.equals(reference)):
            raise ConfigError(f"runs {runs[0].run_id} and {run.run_id} share a comparability key but their real-only "
                              f"arms differ (different code or device?); put them in separate --runs folders")
    counts: dict[str, int] = {}
    for run in runs:
        for generator in run.metrics["generator"].unique():
            counts[generator] = counts.get(generator, 0) + (generator != REFERENCE)
    parts, labels = [reference], {}
    for run in runs:
        rows = run.metrics[run.metrics["generator"] != REFERENCE].copy()
        for generator in rows["generator"].unique():
            label = generator if counts[generator] == 1 else f"{generator}@{run.run_id}"
            labels[(run.run_id, generator)] = label
            rows.loc[rows["generator"] == generator, "generator"] = label
        parts.append(rows)
    frame = pd.concat(parts, ignore_index=True)
    return RunGroup(key=key, runs=runs, frame=frame, labels=labels, stats=compute_stats(frame))


def group_runs(runs: list[RunResult]) -> list[RunGroup]:
    """Runs grouped by comparability key (groups and runs in a stable order); never pools across keys."""
    by_key: dict[str, tuple[dict, list[RunResult]]] = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        key = comparability_key(run)
        by_key.setdefault(json_hash(key), (key, []))[1].append(run)
    groups = [make_group(key, members) for key, members in by_key.values()]
    return sorted(groups, key=lambda g: (g.name, g.key_id))
