"""Which stored runs may share a table: a comparability key, and run groups with one real-only arm.

Numbers are pooled only across runs with the same dataset fingerprint, split, profile content, seeds, protocol
version, fidelity extractor, fidelity version, and U-Net precision and kernel class (CPU vector ISA or GPU model) as
resolved on the run's machine. Within a group the real-only arms must agree wherever two runs share a (real-data
level, draw, seed, case): a grid split over several runs is merged level by level. The group's per-case rows are
merged and its statistics computed once with ``compute_stats``, exactly as a single run's stats.json is, so the
Holm families are declared in one place and the leaderboard, the figures and a run's own stats.json agree whenever
the group is one run.

A group shows one version of each generator: where its runs hold several code versions (the manifest's
``code_fingerprint``), the version of the most recently created run is current and the others' rows are retired
(``RunGroup.retired``), so a generator re-run level by level after a code change replaces its old rows instead of
standing beside them, while the other generators of a run it shared keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from foscu_bench.errors import ConfigError
from foscu_bench.hashing import json_hash
from foscu_bench.results import REFERENCE, RunResult, compute_stats

PROTOCOL_VERSION = 2
"""Bump when the protocol changes what a number means (arms, budgets, statistics): old runs form their own group.
2: real-data levels, controls, crossed random-effects test (seeds random)."""


def extractor_id(fidelity: dict) -> str | None:
    """Extractor name, + the weights hash of a pretrained one: fidelity numbers are comparable only between runs
    with the same extractor. A suite-trained extractor is fixed by its name, the dataset, the split and the level,
    all of which are in the comparability key or the row."""
    extractor = fidelity.get("extractor", {})
    if not extractor:
        return None
    weights = extractor.get("weights_sha256")
    return f"{extractor['name']}@{weights[:16]}" if weights else extractor["name"]


def comparability_key(run: RunResult) -> dict:
    manifest = run.manifest
    config = manifest["config"]
    key = {"dataset": manifest["dataset"]["fingerprint"], "split": json_hash(manifest["split"]),
           "profile": json_hash(manifest["profile"]), "seeds": config["seeds"],
           "protocol": manifest.get("protocol_version", 1), "extractor": extractor_id(run.fidelity)}
    if run.fidelity.get("fidelity_version"):  # absent before version 2: those keys stay as they were
        key["fidelity"] = run.fidelity["fidelity_version"]
    precision = manifest.get("segmentation", {}).get("precision")
    if precision:  # the U-Nets' resolved precision (``auto`` is bf16 on some CPUs, fp32 on others); absent before
        # session 12, whose runs would refuse to merge anyway where it differs (their real-only arms differ)
        key["unet_precision"] = precision
    kernels = manifest.get("segmentation", {}).get("kernels")
    if kernels:  # absent before session 13 (those keys are unchanged)
        key["kernels"] = kernels
    # the treatment's dose: runs adding another number of synthetic pairs, or another share of them per batch,
    # answer another question and never share a Holm family (keys of runs at the defaults are unchanged)
    dose = {"n_synthetic": config.get("n_synthetic"), "synthetic_fraction": config.get("synthetic_fraction")}
    n_train = len(manifest["split"].get("train", [])) if isinstance(manifest.get("split"), dict) else None
    if dose["n_synthetic"] != n_train or dose["synthetic_fraction"] is not None:
        key["synthetic"] = dose
    return key


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
    kinds: dict[str, str] = field(default_factory=dict)
    """Generator label -> kind (``control`` rows are shown apart and form their own Holm family)."""
    retired: list[dict] = field(default_factory=list)
    """Rows left out as an older code version of a generator than the group's newest: generator, run_id,
    code_fingerprint, superseded_by."""

    @property
    def key_id(self) -> str:
        return json_hash(self.key, 12)

    @property
    def name(self) -> str:
        first = self.runs[0].manifest
        return f"{first['dataset']['name']} / {first['profile']['name']}"


LEVEL_KEYS = ["n_real", "draw", "seed", "case_id"]


def _real_only(runs: list[RunResult]) -> pd.DataFrame:
    """The group's real-only rows: the union over runs, identical wherever two runs share a (level, seed, case)."""
    frames = [run.metrics[run.metrics["generator"] == REFERENCE] for run in runs]
    columns = [list(f.columns) for f in frames]
    if any(c != columns[0] for c in columns[1:]):
        raise ConfigError(f"runs {', '.join(r.run_id for r in runs)} share a comparability key but their metrics.csv "
                          f"columns differ (different foscu-bench versions?); put them in separate --runs folders")
    union = pd.concat(frames, ignore_index=True).drop_duplicates()
    clash = union[union.duplicated(LEVEL_KEYS, keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        owners = [r.run_id for r, f in zip(runs, frames)
                  if ((f["n_real"] == first["n_real"]) & (f["seed"] == first["seed"])).any()]
        raise ConfigError(f"runs {', '.join(owners)} share a comparability key but their real-only arms differ (at "
                          f"{int(first['n_real'])} real cases, seed {int(first['seed'])}, case {first['case_id']}: "
                          f"different code or device?); put them in separate --runs folders")
    return union.sort_values(LEVEL_KEYS, kind="mergesort").reset_index(drop=True)


def make_group(key: dict, runs: list[RunResult]) -> RunGroup:
    """One group: the shared real-only arm, then each generator's rows merged over the runs that hold it.

    A generator in several runs (a grid split by level, or controls every run repeats) is one row set where the
    runs agree on every (arm, level, seed, case) they share; only where they disagree (another code version, another
    device) are its rows kept apart, each suffixed with its run id.
    """
    reference = _real_only(runs)
    members: dict[str, list[tuple[RunResult, pd.DataFrame]]] = {}
    for run in runs:
        rows = run.metrics[run.metrics["generator"] != REFERENCE]
        for generator in rows["generator"].unique():
            members.setdefault(generator, []).append((run, rows[rows["generator"] == generator]))
    parts, labels, kinds, retired = [reference], {}, {}, []
    for generator, held in members.items():
        held, superseded = _current_version(generator, held)
        retired += superseded
        union = pd.concat([rows for _, rows in held], ignore_index=True).drop_duplicates()
        agree = not union.duplicated(["arm", *LEVEL_KEYS], keep=False).any()
        for run, rows in held:
            label = generator if agree else f"{generator}@{run.run_id}"
            labels[(run.run_id, generator)] = label
            kinds[label] = run.manifest.get("generators", {}).get(generator, {}).get("kind", "generator")
            if not agree:
                parts.append(rows.assign(generator=label))
        if agree:
            parts.append(union)
    frame = pd.concat(parts, ignore_index=True)
    return RunGroup(key=key, runs=runs, frame=frame, labels=labels, stats=compute_stats(frame, kinds), kinds=kinds,
                    retired=retired)


def _code(run: RunResult, generator: str) -> str | None:
    return run.manifest.get("generators", {}).get(generator, {}).get("code_fingerprint")


def _current_version(generator: str, held: list[tuple[RunResult, pd.DataFrame]]) -> tuple[list, list[dict]]:
    """The (run, rows) of ``generator``'s current code version, the one of its most recently created run, and a
    record of each run whose rows that version supersedes."""
    versions = {_code(run, generator) for run, _ in held}
    if len(versions) <= 1:
        return held, []
    newest = max(held, key=lambda item: (item[0].manifest.get("created", ""), item[0].run_id))[0]
    current = _code(newest, generator)
    return ([item for item in held if _code(item[0], generator) == current],
            [{"generator": generator, "run_id": run.run_id, "code_fingerprint": _code(run, generator),
              "superseded_by": current} for run, _ in held if _code(run, generator) != current])


def group_runs(runs: list[RunResult]) -> list[RunGroup]:
    """Runs grouped by comparability key (groups and runs in a stable order); never pools across keys."""
    by_key: dict[str, tuple[dict, list[RunResult]]] = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        key = comparability_key(run)
        by_key.setdefault(json_hash(key), (key, []))[1].append(run)
    groups = [make_group(key, members) for key, members in by_key.values()]
    return sorted(groups, key=lambda g: (g.name, g.key_id))
