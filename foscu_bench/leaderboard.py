"""Leaderboard tables computed from stored runs, never edited by hand (as MTEB builds its tables from results).

One row per (run, generator): the real+synthetic arm against real-only on liver Dice, with the bootstrap CI and
Holm-corrected p recomputed from the run's per-case rows, plus the run's fidelity numbers and costs. The
real-only reference of each run is a row of its own. Rows are ranked by delta Dice within (dataset, profile):
numbers from different datasets or grids are not comparable.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from foscu_bench.errors import ConfigError
from foscu_bench.results import REFERENCE, RunResult, compute_stats, find_runs, json_safe
from foscu_bench.stats import holm

COLUMNS = ("rank", "generator", "delta_dice_mean", "ci_low", "ci_high", "p_value", "p_holm", "dice_mean", "real_dice_mean",
           "mde", "fid", "fid_floor", "fid_reduction_pct", "kid_mean", "kid_std", "kid_floor", "ms_ssim",
           "fit_seconds", "sample_seconds_per_volume", "n_seeds", "n_cases", "n_synthetic", "dataset", "profile",
           "extractor", "run_id")
FORMATS = ("md", "csv", "latex", "json")
DEFAULT_FID_REFERENCE = "cond-ddpm"
"""FID reduction is reported against the image-space diffusion baseline, the closest prior art."""


def _extractor_id(run: RunResult) -> str | None:
    """Extractor name + checkpoint: FIDs are comparable only between runs with the same one."""
    extractor = run.fidelity.get("extractor", {})
    if not extractor:
        return None
    return f"{extractor['name']}@{extractor.get('checkpoint') or extractor.get('weights_sha256', '')[:16]}"


def _fidelity_fields(run: RunResult, generator: str) -> dict:
    entry = run.fidelity.get("generators", {}).get(generator, {})
    floor = run.fidelity.get("real_vs_real", {})
    return {"extractor": _extractor_id(run),"fid": entry.get("fid"), "fid_floor": floor.get("fid"), "fid_reduction_pct": entry.get("fid_reduction_pct"),
            "kid_mean": entry.get("kid_mean"), "kid_std": entry.get("kid_std"), "kid_floor": floor.get("kid_mean"),
            "ms_ssim": entry.get("ms_ssim")}


def run_rows(run: RunResult) -> list[dict]:
    """Leaderboard rows of one run (generators, then the real-only reference)."""
    stats = compute_stats(run.metrics)
    arms = {(a["generator"], a["arm"]): a for a in stats["arms"]}
    reference = arms.get((REFERENCE, "real"))
    if reference is None:
        raise ConfigError(f"run {run.run_id}: metrics.csv has no real-only arm to compare against")
    common = {"dataset": run.manifest["dataset"]["name"], "profile": run.manifest["profile"]["name"],
              "run_id": run.run_id, "real_dice_mean": reference["dice_liver"],
              "n_synthetic": run.manifest["config"].get("n_synthetic")}
    rows = []
    for generator, entry in stats["generators"].items():
        if "delta_dice_mean" not in entry:
            continue
        meta = run.manifest.get("generators", {}).get(generator, {})
        rows.append({**common, "generator": generator, "delta_dice_mean": entry["delta_dice_mean"],
                     "ci_low": entry["ci_low"], "ci_high": entry["ci_high"], "p_value": entry["p_value"],
                     "dice_mean": entry["dice_mean"], "mde": entry["mde"], "n_seeds": entry["n_seeds"],
                     "n_cases": entry["n_cases"], "fit_seconds": meta.get("fit_seconds"),
                     "sample_seconds_per_volume": meta.get("sample_seconds_per_volume"),
                     **_fidelity_fields(run, generator)})
    for rank, row in enumerate(sorted(rows, key=lambda r: -r["delta_dice_mean"]), start=1):
        row["rank"] = rank
    floor = run.fidelity.get("real_vs_real", {})
    rows.append({**common, "generator": REFERENCE, "dice_mean": reference["dice_liver"],
                 "n_seeds": reference["n_seeds"], "n_cases": reference["n_cases"], "n_synthetic": 0,
                 "fid": floor.get("fid"), "kid_mean": floor.get("kid_mean"), "ms_ssim": floor.get("ms_ssim"),
                 "extractor": _extractor_id(run)})
    return [{column: row.get(column) for column in COLUMNS} for row in rows]


def leaderboard_rows(runs_dir: str | Path, fid_reference: str = DEFAULT_FID_REFERENCE) -> list[dict]:
    """Rows of every completed run under ``runs_dir``; Holm-corrected and ranked within (dataset, profile).

    ``fid_reduction_pct`` is the paper's way of reporting fidelity: 100 * (FID_ref - FID) / FID_ref against
    ``fid_reference`` measured on the same dataset, profile and extractor (None where there is none).
    """
    runs = find_runs(runs_dir)
    if not runs:
        raise ConfigError(f"{runs_dir}: no completed runs found (run `foscu-bench run` first)")
    rows = [row for run in runs for row in run_rows(run)]
    reference_fids = {(r["dataset"], r["profile"], r["extractor"]): r["fid"] for r in rows
                      if r["generator"] == fid_reference and r["fid"]}
    for row in rows:
        reference_fid = reference_fids.get((row["dataset"], row["profile"], row["extractor"]))
        if reference_fid and row["fid"] is not None and row["rank"] is not None:
            row["fid_reduction_pct"] = 100.0 * (reference_fid - row["fid"]) / reference_fid
    for family in {(r["dataset"], r["profile"]) for r in rows}:
        members = [r for r in rows if (r["dataset"], r["profile"]) == family and r["p_value"] is not None]
        for row, adjusted in zip(members, holm([r["p_value"] for r in members])):
            row["p_holm"] = float(adjusted)
        ranked = sorted((r for r in rows if (r["dataset"], r["profile"]) == family and r["rank"] is not None),
                        key=lambda r: -r["delta_dice_mean"])
        for rank, row in enumerate(ranked, start=1):
            row["rank"] = rank
    references = {}
    for row in rows:  # one real-only row per (dataset, profile): identical seeds give identical reference arms
        if row["rank"] is None:
            references.setdefault((row["dataset"], row["profile"]), row)
    rows = [r for r in rows if r["rank"] is not None] + list(references.values())
    rows.sort(key=lambda r: (r["dataset"], r["profile"], r["rank"] is None, r["rank"] or 0))
    return json_safe(rows)


# -- formats ---------------------------------------------------------------------------------------------
def _points(value) -> str:
    """A Dice difference in Dice points (x100), the unit of the paper's '+0.67%'."""
    return "" if value is None else f"{100 * value:+.2f}"


def _num(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _display(row: dict) -> list[str]:
    ci = "" if row["ci_low"] is None else f"[{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]"
    fid = _num(row["fid"], ".2f")
    if row["fid"] is not None and row["fid_floor"] is not None:
        fid += f" ({row['fid_floor']:.2f})"
    return [_num(row["rank"], "d") or "ref", row["generator"], _points(row["delta_dice_mean"]), ci,
            _num(row["p_holm"], ".3g"), _num(row["dice_mean"], ".4f"), fid,
            _num(row["fid_reduction_pct"], "+.1f"), _num(row["kid_mean"], ".4f"), _num(row["ms_ssim"], ".3f"),
            _num(row["fit_seconds"], ".0f"), _num(row["sample_seconds_per_volume"], ".2f"), str(row["n_seeds"]),
            str(row["n_cases"]), f"{row['dataset']} / {row['profile']}"]


DISPLAY_HEADER = ["#", "generator", "Δ Dice (pts)", "95% CI", "p (Holm)", "Dice", "FID (real floor)", "FID Δ%",
                  "KID", "MS-SSIM", "fit (s)", "s / volume", "seeds", "test cases", "dataset / profile"]


def to_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(DISPLAY_HEADER) + " |", "|" + "---|" * len(DISPLAY_HEADER)]
    lines += ["| " + " | ".join(_display(row)) + " |" for row in rows]
    runs = sorted({row["run_id"] for row in rows})
    notes = [
        "",
        "Δ Dice: real+synthetic minus real-only liver Dice in Dice points, per test case averaged over seeds; "
        "95% CI: two-level bootstrap (cases x paired seeds); p: Wilcoxon signed-rank over test cases, Holm-corrected "
        "across all generators of the same dataset and profile. FID in brackets: real-vs-real floor at the same "
        "sample size; FID Δ%: reduction against the reference generator (same dataset, profile and extractor).",
        f"Computed by foscu-bench from the per-case rows of {len(runs)} run(s): {', '.join(runs)}.",
    ]
    return "\n".join(lines + notes) + "\n"


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.10g}" if isinstance(v, float) else v)) for k, v in row.items()})
    return buffer.getvalue()


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                       ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(char, repl)
    return text


def to_latex(rows: list[dict]) -> str:
    header = ["Generator", r"$\Delta$Dice (pts)", r"95\% CI", r"$p_\mathrm{Holm}$", "Dice", "FID", "KID",
              "MS-SSIM", "Fit (s)", "s/vol"]
    body = []
    for row in rows:
        d = _display(row)
        cells = [d[1], d[2], d[3], d[4], d[5], d[6], d[8], d[9], d[10], d[11]]
        body.append(" & ".join(_latex_escape(c) if i == 0 else _latex_escape(c).replace("-", "$-$")
                               for i, c in enumerate(cells)) + r" \\")
    datasets = sorted({f"{r['dataset']} / {r['profile']}" for r in rows})
    caption = (r"Liver Dice of real+synthetic training against real-only (" + _latex_escape(", ".join(datasets))
               + r"). $\Delta$Dice in Dice points over held-out cases, seed-averaged; CI by two-level bootstrap; "
               r"Wilcoxon signed-rank $p$, Holm-corrected. FID in brackets: real-vs-real floor.")
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", r"\caption{" + caption + "}",
                      r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                      " & ".join(header) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
                      r"\end{table}"]) + "\n"


def to_json(rows: list[dict]) -> str:
    return json.dumps({"schema_version": 1, "columns": list(COLUMNS), "rows": rows}, indent=2, sort_keys=True) + "\n"


RENDERERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}


def render(rows: list[dict], fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown leaderboard format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](rows)
