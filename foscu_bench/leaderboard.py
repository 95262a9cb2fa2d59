"""Leaderboard tables computed from stored runs, never edited by hand (as MTEB builds its tables from results).

Runs are grouped by comparability key (``comparability``) and never pooled across keys. Per group and real-data
level, one row per generator: the real+synthetic arm against the group's real-only arm at that level, with the
CI and Holm-corrected p of the crossed random-effects test from the group's statistics (the family is every
generator of the group, declared in ``holm_families``), its real-case equivalent, the fidelity numbers and costs;
then the controls (their own Holm family), then the real-only reference row.

Every format renders from one column list: ``data_columns()`` (CSV and JSON) and ``display_columns()`` (Markdown
and LaTeX). Both are built from ``metrics.spec``, so a metric with ``leaderboard=True`` appears everywhere.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from foscu_bench.comparability import RunGroup, extractor_id, group_runs
from foscu_bench.errors import ConfigError
from foscu_bench.metrics.spec import PRIMARY, leaderboard_columns, metric_of
from foscu_bench.results import REFERENCE, find_runs, json_safe

FORMATS = ("md", "csv", "latex", "json")
DEFAULT_FID_REFERENCE = "cond-ddpm"
"""FID reduction is reported against the image-space diffusion baseline, the closest prior art."""


def _secondary() -> list[str]:
    """Leaderboard metric columns other than the primary (their deltas get their own columns)."""
    return [c for c in leaderboard_columns() if c != PRIMARY]


def data_columns() -> list[str]:
    columns = ["rank", "generator", "kind", "n_real", "delta_dice_mean", "ci_low", "ci_high", "p_value", "p_holm",
               "dice_mean", "real_dice_mean", "mde", "var_case", "var_seed", "var_residual", "equivalent", "equivalent_ci_low", "equivalent_ci_high"]
    for column in _secondary():
        columns += [f"delta_{column}", f"delta_{column}_ci_low", f"delta_{column}_ci_high", f"p_holm_{column}"]
    return columns + ["fid", "fid_floor", "fid_excess", "fid_excess_ci_low", "fid_excess_ci_high", "fd_infinity",
                      "fid_reduction_pct", "fid_reduction_ci_low", "fid_reduction_ci_high", "kid_mean", "kid_se",
                      "kid_floor", "precision", "recall", "density", "coverage", "ms_ssim", "near_copy_fraction",
                      "near_copy_p", "consistency", "consistency_ceiling", "fit_seconds", "sample_seconds_per_volume", "n_seeds", "n_cases", "n_synthetic",
                      "holm_family_size", "dataset", "profile", "extractor", "comparability_key", "run_id"]


def _fidelity_at(run, level: int) -> tuple[dict, dict]:
    """(per-generator fidelity, floor) of a run at a real-data level (draw 0); empty where it was not measured."""
    document = (run.fidelity.get("levels") or {}).get(f"n-{level}-draw-0")
    if document is None:
        document = run.fidelity if run.largest_level["n_real"] == level else {}
    return document.get("generators", {}), document.get("real_vs_real", {})


def _fidelity_fields(fid: dict, floor: dict) -> dict:
    """Leaderboard fidelity columns of one generator (schema 4: excess over the floor with its CI, KID with its
    standard error, PRDC, memorisation; schema 3 runs fill FID, KID and MS-SSIM only)."""
    excess = fid.get("excess_over_floor", {}).get("fid", {})
    memorised = fid.get("memorisation", {})
    return {"fid": fid.get("fid"), "fid_floor": floor.get("fid"), "fid_excess": excess.get("difference"),
            "fid_excess_ci_low": excess.get("ci_low"), "fid_excess_ci_high": excess.get("ci_high"),
            "fd_infinity": fid.get("fd_infinity"), "kid_mean": fid.get("kid", fid.get("kid_mean")),
            "kid_se": fid.get("kid_se"), "kid_floor": floor.get("kid", floor.get("kid_mean")),
            **{k: fid.get(k) for k in ("precision", "recall", "density", "coverage", "ms_ssim")},
            "near_copy_fraction": memorised.get("near_copy_fraction"), "near_copy_p": memorised.get("p_value"),
            "consistency": fid.get("consistency", {}).get("synthetic", {}).get("mean"),
            "consistency_ceiling": fid.get("consistency", {}).get("real_ceiling", {}).get("mean"),
            "_fidelity": (fid, floor)}


def _group_rows(group: RunGroup) -> list[dict]:
    stats = group.stats
    arms = {(a["generator"], a["arm"], a["n_real"]): a for a in stats["arms"]}
    first = group.runs[0]
    common = {"dataset": first.manifest["dataset"]["name"], "profile": first.manifest["profile"]["name"],
              "comparability_key": group.key_id}
    out = []
    for level in stats["levels"]:
        reference = arms.get((REFERENCE, "real", level))
        if reference is None:
            raise ConfigError(f"runs {', '.join(r.run_id for r in group.runs)}: no real-only arm at {level} real "
                              f"cases to compare against")
        rows, seen = [], set()
        holders = [run for run in group.runs if (run.metrics["n_real"] == level).any()]
        for run in holders:
            fidelity, floor = _fidelity_at(run, level)
            here = set(run.metrics.loc[run.metrics["n_real"] == level, "generator"])
            for generator, meta in run.manifest.get("generators", {}).items():
                label = group.labels.get((run.run_id, generator))
                entry = stats["generators"].get(label, {})
                block = entry.get("levels", {}).get(str(level), {})
                if "delta_dice_mean" not in block or generator not in here or label in seen:
                    continue  # one row per generator and level, from the first run that computed it
                seen.add(label)
                fid = fidelity.get(generator, {})
                worth = stats.get("real_case_equivalent", {}).get(label, {}).get(str(level), {})
                row = {**common, "generator": label, "kind": meta.get("kind"), "run_id": run.run_id, "n_real": level,
                       "real_dice_mean": reference[PRIMARY], "delta_dice_mean": block["delta_dice_mean"],
                       "ci_low": block["ci_low"], "ci_high": block["ci_high"], "p_value": block["p_value"],
                       "p_holm": block["p_holm"], "dice_mean": block["dice_mean"], "mde": block["mde"],
                       "n_seeds": block["n_seeds"], "n_cases": block["n_cases"],
                       **{k: block["metrics"][PRIMARY][k] for k in ("var_case", "var_seed", "var_residual")},
                       "holm_family_size": block["metrics"][PRIMARY]["holm_family_size"],
                       "equivalent": worth.get("equivalent"), "equivalent_ci_low": worth.get("ci_low"),
                       "equivalent_ci_high": worth.get("ci_high"),
                       "n_synthetic": run.manifest["config"].get("n_synthetic"),
                       "fit_seconds": meta.get("fit_seconds"),
                       "sample_seconds_per_volume": meta.get("sample_seconds_per_volume"),
                       "extractor": extractor_id(run.fidelity), **_fidelity_fields(fid, floor)}
                for column in _secondary():
                    comparison = block["metrics"].get(column)
                    if comparison is not None:
                        row.update({f"delta_{column}": comparison["delta_mean"],
                                    f"delta_{column}_ci_low": comparison["ci_low"],
                                    f"delta_{column}_ci_high": comparison["ci_high"],
                                    f"p_holm_{column}": comparison["p_holm"]})
                rows.append(row)
        ranked = sorted((r for r in rows if r["kind"] != "control"), key=lambda r: -r["delta_dice_mean"])
        for rank, row in enumerate(ranked, start=1):
            row["rank"] = rank
        controls = sorted((r for r in rows if r["kind"] == "control"), key=lambda r: -r["delta_dice_mean"])
        fidelity, floor = _fidelity_at(holders[0], level)
        out += ranked + controls + [{
            **common, "generator": REFERENCE, "kind": "reference", "run_id": holders[0].run_id, "n_real": level,
            "real_dice_mean": reference[PRIMARY], "dice_mean": reference[PRIMARY], "n_seeds": reference["n_seeds"],
            "n_cases": reference["n_cases"], "n_synthetic": 0, "fid": floor.get("fid"),
            "kid_mean": floor.get("kid", floor.get("kid_mean")), "kid_se": floor.get("kid_se"),
            **{k: floor.get(k) for k in ("fd_infinity", "precision", "recall", "density", "coverage", "ms_ssim")},
            "extractor": extractor_id(holders[0].fidelity)}]
    return out


def _fid_reduction(rows: list[dict], fid_reference: str) -> None:
    """The paper's "FID reduction %" where it is well defined: against ``fid_reference`` of the same run and level
    (same held-out reference and extractor), floor-corrected, with a paired bootstrap CI
    (``fidelity.floor_corrected_reduction``); blank elsewhere."""
    from foscu_bench.metrics.fidelity import floor_corrected_reduction

    for row in rows:
        reference = next((r for r in rows if r["generator"] == fid_reference and r["run_id"] == row["run_id"]
                          and r["n_real"] == row["n_real"] and r.get("_fidelity")), None)
        if reference is None or row is reference or not row.get("_fidelity"):
            continue
        fid, floor = row["_fidelity"]
        reduction = floor_corrected_reduction(fid, reference["_fidelity"][0], floor)
        if reduction is not None:
            row.update(fid_reduction_pct=reduction["pct"], fid_reduction_ci_low=reduction["ci_low"],
                       fid_reduction_ci_high=reduction["ci_high"])


def leaderboard_rows(runs_dir: str | Path, fid_reference: str = DEFAULT_FID_REFERENCE,
                     retired: list[dict] | None = None) -> list[dict]:
    """Rows of every completed run under ``runs_dir``, per comparability group, ranked by delta Dice. ``retired``,
    if given, receives the rows left out as older code versions of a generator (``RunGroup.retired``)."""
    runs = find_runs(runs_dir)
    if not runs:
        raise ConfigError(f"{runs_dir}: no completed runs found (run `foscu-bench run` first)")
    rows = []
    for group in group_runs(runs):
        if retired is not None:
            retired += group.retired
        group_rows = _group_rows(group)
        _fid_reduction(group_rows, fid_reference)
        rows += group_rows
    return json_safe([{column: row.get(column) for column in data_columns()} for row in rows])


# -- display -------------------------------------------------------------------------------------------------
def _num(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _cases(value) -> str:
    """A real-case count or a censored one ('>29')."""
    return "" if value is None else (value if isinstance(value, str) else f"{value:.1f}")


def worth_text(equivalent, low, high) -> str:
    """A real-case equivalent with its CI, censored values as they are ('>32')."""
    return "" if equivalent is None else f"{_cases(equivalent)} [{_cases(low)}, {_cases(high)}]"


def _worth(row: dict) -> str:
    return worth_text(row.get("equivalent"), row.get("equivalent_ci_low"), row.get("equivalent_ci_high"))


def _rank(row: dict) -> str:
    return {"control": "ctl", "reference": "ref"}.get(row.get("kind"), _num(row["rank"], "d"))


def _delta(column: str, key: str) -> Callable[[dict], str]:
    scale = metric_of(column).delta_scale
    return lambda row: "" if row.get(key) is None else f"{scale * row[key]:+.2f}"


def _ci(low: str, high: str, scale: float) -> Callable[[dict], str]:
    return lambda row: "" if row.get(low) is None else f"[{scale * row[low]:+.2f}, {scale * row[high]:+.2f}]"


def _fid(row: dict) -> str:
    text = _num(row["fid"], ".2f")
    return text + (f" ({row['fid_floor']:.2f})" if row["fid"] is not None and row["fid_floor"] is not None else "")


def _with_ci(key: str, spec: str) -> Callable[[dict], str]:
    """``value [low, high]`` from ``key``, ``key_ci_low``, ``key_ci_high``; blank where not measured."""
    return lambda row: "" if row.get(key) is None else (
        f"{row[key]:{spec}} [{row[f'{key}_ci_low']:{spec}}, {row[f'{key}_ci_high']:{spec}}]")


def _kid(row: dict) -> str:
    text = _num(row["kid_mean"], ".4f")
    return text + (f" ± {row['kid_se']:.4f}" if text and row.get("kid_se") is not None else "")


def _prdc(row: dict) -> str:
    return "" if row.get("precision") is None else f"{row['precision']:.2f} / {row['coverage']:.2f}"


def _near_copies(row: dict) -> str:
    if row.get("near_copy_fraction") is None:
        return ""
    return f"{100 * row['near_copy_fraction']:.0f}%" + (" (!)" if row["near_copy_p"] < 0.01 else "")


@dataclass(frozen=True)
class DisplayColumn:
    header: str
    latex: str | None
    """LaTeX header; None: Markdown only."""
    cell: Callable[[dict], str]


def display_columns() -> list[DisplayColumn]:
    primary = metric_of(PRIMARY)
    columns = [
        DisplayColumn("#", None, _rank),
        DisplayColumn("generator", "Generator", lambda r: r["generator"] + (" (control)" if r.get("kind") == "control"
                                                                            else "")),
        DisplayColumn("real cases", "$N_\\mathrm{real}$", lambda r: _num(r.get("n_real"), "d")),
        DisplayColumn(f"Δ {primary.label} ({primary.delta_unit})", rf"$\Delta${primary.label} ({primary.delta_unit})",
                      _delta(PRIMARY, "delta_dice_mean")),
        DisplayColumn("95% CI", r"95\% CI", _ci("ci_low", "ci_high", primary.delta_scale)),
        DisplayColumn("p (Holm)", r"$p_\mathrm{Holm}$", lambda r: _num(r["p_holm"], ".3g")),
        DisplayColumn(primary.label, primary.label, lambda r: _num(r["dice_mean"], primary.value_format)),
        DisplayColumn("worth in real cases [95% CI]", "Real-case equiv.", _worth),
    ]
    for column in _secondary():
        metric = metric_of(column)
        unit = f" ({metric.delta_unit})" if metric.delta_unit else ""
        columns += [
            DisplayColumn(f"Δ {metric.label}{unit} [95% CI]", rf"$\Delta${metric.label}{unit}",
                          lambda r, c=column, m=metric: "" if r.get(f"delta_{c}") is None else
                          f"{_delta(c, f'delta_{c}')(r)} {_ci(f'delta_{c}_ci_low', f'delta_{c}_ci_high', m.delta_scale)(r)}"),
            DisplayColumn(f"p {metric.label} (Holm)", None, lambda r, c=column: _num(r.get(f"p_holm_{c}"), ".3g")),
        ]
    return columns + [
        DisplayColumn("FID (real floor)", "FID", _fid),
        DisplayColumn("FID − floor [95% CI]", "FID$-$floor", _with_ci("fid_excess", "+.2f")),
        DisplayColumn("FID Δ% [95% CI]", None, _with_ci("fid_reduction_pct", "+.1f")),
        DisplayColumn("FD∞", None, lambda r: _num(r.get("fd_infinity"), ".2f")),
        DisplayColumn("KID ± SE", "KID", _kid),
        DisplayColumn("precision / coverage", None, _prdc),
        DisplayColumn("MS-SSIM", "MS-SSIM", lambda r: _num(r["ms_ssim"], ".3f")),
        DisplayColumn("near-copies", None, _near_copies),
        DisplayColumn("consistency (real)", "Consist.", lambda r: "" if r.get("consistency") is None else
                      f"{r['consistency']:.3f} ({r['consistency_ceiling']:.3f})"),
        DisplayColumn("fit (s)", "Fit (s)", lambda r: _num(r["fit_seconds"], ".0f")),
        DisplayColumn("s / volume", "s/vol", lambda r: _num(r["sample_seconds_per_volume"], ".2f")),
        DisplayColumn("seeds", None, lambda r: str(r["n_seeds"])),
        DisplayColumn("test cases", None, lambda r: str(r["n_cases"])),
        DisplayColumn("dataset / profile", None, lambda r: f"{r['dataset']} / {r['profile']}"),
    ]


def _groups(rows: list[dict]) -> list[list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["comparability_key"], []).append(row)
    return list(out.values())


def _footnote(rows: list[dict]) -> str:
    runs = sorted({row["run_id"] for row in rows})
    family = max((row["holm_family_size"] or 0) for row in rows if row.get("kind") not in ("control", "reference")) \
        if any(row.get("kind") not in ("control", "reference") for row in rows) else 0
    extractors = sorted({row["extractor"] for row in rows if row.get("extractor")})
    mixed = (f" Fidelity columns compare only rows of one extractor; this group has {', '.join(extractors)} "
             f"(see the CSV's extractor column)." if len(extractors) > 1 else "")
    return (f"Comparability key `{rows[0]['comparability_key']}` ({rows[0]['dataset']} / {rows[0]['profile']}); "
            f"Holm family: the {family} generator(s) of this group at each level (controls: their own family). "
            f"{_design_text(rows)}"
            f"Computed by foscu-bench from the per-case rows of {len(runs)} run(s): {', '.join(runs)}.{mixed}")


def _design_text(rows: list[dict]) -> str:
    """Per level, the minimum detectable effect of the design, variance pooled over its arms (``pooled_design``)."""
    from foscu_bench.results import PAPER_EFFECT
    from foscu_bench.stats import pooled_design

    parts = []
    for level in sorted({row["n_real"] for row in rows if row.get("kind") != "reference"}):
        arms = [row for row in rows if row["n_real"] == level and row.get("kind") != "reference"
                and row.get("var_seed") is not None]
        design = pooled_design(arms, arms[0]["n_cases"], arms[0]["n_seeds"], target=PAPER_EFFECT) if arms else {}
        if design:
            seeds = design["seeds_for_target"]
            parts.append(f"{level} real cases {100 * design['mde']:.2f} pts at {design['n_seeds']} seeds "
                         f"({seeds if seeds else '>100'} seeds for {100 * PAPER_EFFECT:.2f})")
    if not parts:
        return ""
    return ("Minimum detectable effect of the design (variance pooled over each level's arms): "
            + "; ".join(parts) + ". ")


def _validity_section(group: list[dict]) -> list[str]:
    """The metric-validity table of a group, where its rows carry schema-4 fidelity (``validity``)."""
    from foscu_bench.validity import all_scopes, validity_markdown

    entries = all_scopes(group)
    if not any(e["spearman"] is not None for e in entries):
        return []
    return ["Which fidelity metric predicts usefulness: Spearman rank correlation of each metric with the Dice delta "
            "at every real-data level (one row each), over the group's generators and controls, and over its "
            "generators alone (a relation only the controls carry does not rank generators).", "",
            validity_markdown(entries), ""]


def to_markdown(rows: list[dict]) -> str:
    columns = display_columns()
    out = []
    for group in _groups(rows):
        out += ["| " + " | ".join(c.header for c in columns) + " |", "|" + "---|" * len(columns)]
        out += ["| " + " | ".join(c.cell(row) for c in columns) + " |" for row in group]
        out += ["", _footnote(group), ""]
        out += _validity_section(group)
    out += [
        "Δ: real+synthetic minus real-only at the same number of real training cases, per test case averaged over "
        "seeds (Dice in points, x100); 95% CI and p: t-test of a crossed random-effects model (test cases and "
        "trainings random, Satterthwaite df), Holm-corrected across the generators of the group (controls apart). "
        "Worth in real cases: where the real-only learning curve reaches the augmented Dice (log-linear "
        "interpolation, bootstrap CI; '>N' beyond the largest level measured). Fidelity against held-out real "
        "volumes only (never a training case): FID in brackets: held-out-vs-held-out floor at the same n; FID − "
        "floor and KID ± SE: paired bootstrap over volumes (runs with fidelity schema 4); FD∞: FID extrapolated to "
        "infinite n (Chong & Forsyth 2020); precision / coverage: Naeem et al. 2020 (k = 5); FID Δ%: floor-corrected "
        "reduction against the reference generator of the same run and level, with its CI; near-copies: synthetic "
        "volumes closer to a training volume than any held-out volume is, (!) where more than chance (p < 0.01); "
        "consistency: liver Dice of a real-data U-Net on the synthetic images against their labels (in brackets: "
        "the same U-Net on held-out real volumes).",
    ]
    return "\n".join(out) + "\n"


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=data_columns(), lineterminator="\n")
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
    columns = [c for c in display_columns() if c.latex is not None]
    tables = []
    for group in _groups(rows):
        body = [" & ".join(_latex_escape(c.cell(row)) if i == 0 else _latex_escape(c.cell(row)).replace("-", "$-$")
                           for i, c in enumerate(columns)) + r" \\" for row in group]
        caption = (r"Liver segmentation with real+synthetic training against real-only ("
                   + _latex_escape(f"{group[0]['dataset']} / {group[0]['profile']}")
                   + r"). $\Delta$ over held-out cases, seed-averaged; CI and $p$ from a crossed random-effects "
                     r"model (test cases and trainings random), Holm-corrected over the group's generators. FID in "
                     r"brackets: held-out floor; FID$-$floor with its paired bootstrap CI. Comparability key "
                     r"\texttt{" + group[0]["comparability_key"] + "}.")
        tables.append("\n".join([r"\begin{table}[t]", r"\centering", r"\small", r"\caption{" + caption + "}",
                                 r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}", r"\toprule",
                                 " & ".join(c.latex for c in columns) + r" \\", r"\midrule", *body, r"\bottomrule",
                                 r"\end{tabular}", r"\end{table}"]))
    return "\n\n".join(tables) + "\n"


def to_json(rows: list[dict]) -> str:
    from foscu_bench.validity import all_scopes

    validity = {group[0]["comparability_key"]: all_scopes(group) for group in _groups(rows)}
    # 12 significant digits: the last ones of a log-interpolation differ between CPUs (AVX2 vs AVX-512 libm), and
    # a committed table must rebuild byte for byte on any of them (tests/test_committed_leaderboards.py)
    return json.dumps(json_safe({"schema_version": 3, "columns": data_columns(), "rows": rows,
                                 "metric_validity": validity}, digits=12), indent=2, sort_keys=True) + "\n"


RENDERERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}


def render(rows: list[dict], fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown leaderboard format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](rows)
