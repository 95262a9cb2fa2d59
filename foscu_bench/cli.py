"""The ``foscu-bench`` command line: thin, it parses options, calls the library and prints with rich.

Every error a user can act on (``FoscuError``) is printed as one line on stderr with exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from foscu_bench import __version__
from foscu_bench.errors import ConfigError, FoscuError

app = typer.Typer(name="foscu-bench", no_args_is_help=True, add_completion=False,
                  help="Does synthetic data from generator X make 3D liver segmentation better, by how much, how surely?")
datasets_app = typer.Typer(no_args_is_help=True, help="List, inspect and preview datasets.")
app.add_typer(datasets_app, name="datasets")
generators_app = typer.Typer(no_args_is_help=True, help="List the registered generators.")
app.add_typer(generators_app, name="generators")
console = Console()
err_console = Console(stderr=True)

ProfileOption = typer.Option("quick", "--profile", help="tiny | quick | paper: the processing grid.")
LabelMapOption = typer.Option(None, "--label-map", help="Map source label values: liver=5[,tumour=N].")


def _open(dataset: str, label_map: Optional[str], profile: str, n_cases: Optional[int] = None):
    from foscu_bench.data.dataset import open_dataset

    phantom_options = {"n_cases": n_cases} if n_cases is not None else None
    return open_dataset(dataset, label_map=label_map, profile=profile, phantom_options=phantom_options)


def _load_pairs(ds, limit: Optional[int], quiet: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    case_ids = ds.case_ids[:limit] if limit else ds.case_ids
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task(f"loading {ds.name}", total=len(case_ids))
        return ds.pairs(case_ids, progress=lambda _: progress.advance(task))


@datasets_app.command("list")
def datasets_list() -> None:
    """Built-in datasets and the on-disk layouts that are recognised."""
    from foscu_bench.data.sources import BUILTIN_DATASETS, SOURCE_KINDS, _import_builtin_sources

    _import_builtin_sources()
    table = Table(title="Datasets", show_lines=False)
    table.add_column("name / layout", style="bold")
    table.add_column("what")
    table.add_column("use as")
    for name, factory in BUILTIN_DATASETS.items():
        table.add_row(name, factory(profile="quick").description + " (embedded, no download)", name)
    for kind in SOURCE_KINDS:
        table.add_row(kind.name, kind.description, kind.example)
    console.print(table)


@datasets_app.command("show")
def datasets_show(
    dataset: str = typer.Argument(..., help="'phantom', 'phantom-t2' or a dataset folder."),
    label_map: Optional[str] = LabelMapOption,
    profile: str = ProfileOption,
    limit: Optional[int] = typer.Option(None, help="Only the first N cases."),
    n_cases: Optional[int] = typer.Option(None, "--n-cases", help="Phantom only: number of cases to generate."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Cases, shapes, spacing, orientation, liver-volume and intensity statistics."""
    from foscu_bench.data.summary import summarize

    ds = _open(dataset, label_map, profile, n_cases)
    pairs = _load_pairs(ds, limit, quiet=as_json)
    summary = summarize(pairs)
    summary.update(dataset=ds.name, source=ds.source.kind, label_map=str(ds.label_map), profile=profile,
                   fingerprint=ds.fingerprint())
    if as_json:
        console.print_json(json.dumps(summary))
        return
    table = Table(title=f"{ds.name} ({ds.source.description})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    lv, li, sr, cnr = summary["liver_ml"], summary["liver_intensity"], summary["surround_intensity"], summary["liver_cnr"]
    rows = [
        ("cases", f"{summary['n_cases']} ({summary['n_tumour_cases']} with tumour)"),
        ("native shapes", ", ".join(f"{k} ({v})" for k, v in summary["native_shapes"].items())),
        ("native spacing (median, mm)", " x ".join(f"{s:g}" for s in summary["native_spacing_median_mm"])),
        ("native orientation", ", ".join(f"{k} ({v})" for k, v in summary["native_orientations"].items())),
        ("label map", summary["label_map"]),
        (f"{profile} grid", f"{'x'.join(map(str, summary['grid_shape']))} at "
                            f"{' x '.join(f'{s:g}' for s in summary['grid_spacing_mm'])} mm, RAS"),
        ("liver volume (ml)", f"{lv['mean']:.0f} ± {lv['sd']:.0f}  [{lv['min']:.0f}, {lv['max']:.0f}]"),
        ("liver voxels on grid", f"{summary['liver_voxels_on_grid']['mean']:.0f} mean "
                                 f"[{summary['liver_voxels_on_grid']['min']:.0f}, {summary['liver_voxels_on_grid']['max']:.0f}]"),
        ("liver kept in frame (min)", f"{summary['liver_kept_fraction_min']:.1%}"),
        ("liver intensity [0,1]", f"{li['mean']:.3f} ± {li['sd']:.3f} (within-liver sd {summary['liver_intensity_sd']['mean']:.3f})"),
        ("surrounding tissue", f"{sr['mean']:.3f} ± {sr['sd']:.3f}"),
        ("liver/surround CNR", f"{cnr['mean']:.2f} ± {cnr['sd']:.2f}"),
        ("fingerprint", summary["fingerprint"]),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@datasets_app.command("preview")
def datasets_preview(
    dataset: str = typer.Argument(..., help="'phantom', 'phantom-t2' or a dataset folder."),
    out: Path = typer.Option(..., "--out", help="PNG (or PDF) file to write."),
    label_map: Optional[str] = LabelMapOption,
    profile: str = ProfileOption,
    cases: int = typer.Option(4, "--cases", help="Number of cases (tumour and non-tumour alternate)."),
    case_id: Optional[List[str]] = typer.Option(None, "--case", help="Specific case id(s) instead."),
) -> None:
    """Tri-planar views with liver (yellow) and tumour (red) contours, in radiological convention."""
    from foscu_bench.preview import pick_preview_cases, save_preview

    ds = _open(dataset, label_map, profile)
    if case_id:
        pairs = [ds.pair(c) for c in case_id]
    else:
        pool = _load_pairs(ds, min(len(ds.case_ids), max(cases * 3, cases)))
        pairs = pick_preview_cases(pool, cases)
    path = save_preview(pairs, out, title=f"{ds.name} · {profile} profile")
    console.print(f"wrote {path}")


@generators_app.command("list")
def generators_list(
    profile: str = ProfileOption,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Name, kind, parameter count (at --profile), conditioning and citation of every generator."""
    from foscu_bench.generator import parameter_count, registry
    from foscu_bench.profiles import get_profile

    prof = get_profile(profile)
    rows = []
    for name, meta in sorted(registry().items()):
        n_params = parameter_count(name, prof)
        rows.append({"name": name, "kind": meta.kind, "parameters": n_params, "conditioning": meta.conditioning,
                     "citation": meta.citation, "reference": meta.reference})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"Generators (parameters at the {profile} profile)", show_lines=True)
    for column in ("name", "kind", "parameters", "conditioning", "citation"):
        table.add_column(column, overflow="fold")
    for row in rows:
        params = "-" if not row["parameters"] else f"{row['parameters'] / 1e6:.2f} M"
        table.add_row(row["name"], row["kind"], params, row["conditioning"], f"{row['citation']} ({row['reference']})")
    console.print(table)


@app.command("run")
def run(
    generator: List[str] = typer.Option(..., "--generator", help="Generator name(s) to benchmark (repeat the flag)."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Seeds per arm (U-Net init, data order, sampling)."),
    dataset: str = typer.Option("phantom", "--dataset", help="'phantom', 'phantom-t2' or a dataset folder."),
    label_map: Optional[str] = LabelMapOption,
    profile: str = ProfileOption,
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]; auto picks CUDA when present."),
    out: Path = typer.Option(Path("runs"), "--out", help="Directory holding run directories."),
    synthetic: Optional[int] = typer.Option(None, "--synthetic", help="Synthetic pairs per seed (default: as many "
                                                                       "as real training cases)."),
    synthetic_only: bool = typer.Option(False, "--synthetic-only", help="Also train synthetic-only U-Nets."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the patient-level split."),
    real_cases: Optional[str] = typer.Option(None, "--real-cases",
                                             help="Real-data levels: numbers of real training cases (nested seeded "
                                                  "subsets) or 'all', e.g. 4,8,16,all. Default: the calibrated "
                                                  "level (16 on the quick phantom), else all."),
    real_draws: int = typer.Option(1, "--real-draws", min=1, help="Subset draws per level below 'all'."),
    synthetic_fraction: Optional[float] = typer.Option(None, "--synthetic-fraction",
                                                       help="Share of real+synthetic training samples drawn from "
                                                            "the synthetic pool (default: proportional to pool sizes)."),
    exposure_matched: bool = typer.Option(False, "--exposure-matched",
                                          help="Also train real+synthetic U-Nets that see each real case as often "
                                               "as real-only (iterations / (1 - synthetic share))."),
    controls: bool = typer.Option(True, "--controls/--no-controls",
                                  help="Run the positive (phantom-oracle, phantom only) and negative "
                                       "(mismatched-labels) controls beside the generators."),
    workers: int = typer.Option(0, "--workers", min=0,
                                help="Steps computed at once, in worker processes (0: one per CPU core on CPU, "
                                     "1 on a GPU). Never changes a number. With --scheduler: workers to wait for."),
    executor: str = typer.Option("local", "--executor",
                                 help="local: this process or a process pool (--workers); dask: every step a Dask "
                                      "task, on a LocalCluster of --workers processes or on --scheduler's cluster."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Address of a running Dask scheduler (tcp://host:8786), for "
                                                 "example a dask-jobqueue SLURMCluster's; implies --executor dask."),
    threads: int = typer.Option(0, "--threads", min=0,
                                help="CPU threads per step (0: 1 on CPU, all cores on a GPU machine). Recorded: "
                                     "oneDNN's sums depend on it in the last bits."),
    plan: bool = typer.Option(False, "--plan", help="Print the steps, what is done and an estimated time; run nothing."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or tables."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's stats as JSON (implies --quiet)."),
) -> None:
    """Fit generators on the training split, train U-Nets real-only vs real+synthetic, evaluate, store.

    Re-running the same command resumes an interrupted run; a finished run is not recomputed.
    """
    from foscu_bench.reporting import NullReporter, RichReporter
    from foscu_bench.runner import RunConfig, prepare
    from foscu_bench.runner.config import default_real_cases, parse_real_cases

    real_cases = real_cases or default_real_cases(dataset, profile)
    config = RunConfig(generators=tuple(generator), seeds=seeds, dataset=dataset, label_map=label_map,
                       profile=profile, device=device, synthetic=synthetic, synthetic_only=synthetic_only,
                       split_seed=split_seed, real_cases=parse_real_cases(real_cases), real_draws=real_draws,
                       synthetic_fraction=synthetic_fraction, exposure_matched=exposure_matched, controls=controls)
    silent = quiet or as_json
    reporter = NullReporter() if silent or plan else RichReporter(err_console)
    prepared = prepare(config, out, reporter)
    from foscu_bench.runner.parallel import default_threads, default_workers

    threads = threads or default_threads(prepared.device)
    if plan:
        _print_plan(prepared, as_json, threads)
        return
    executor = "dask" if scheduler else executor
    workers = workers or (1 if scheduler else default_workers(prepared.device, threads))
    options = dict(workers=workers, threads=threads, executor=executor, scheduler=scheduler)
    if silent:
        manifest = prepared.execute(sys.argv, **options)
    else:
        err_console.print(f"run [bold]{prepared.run_id}[/] -> {prepared.directory} ({executor}: {workers} "
                          f"worker(s) x {threads} thread(s){', ' + scheduler if scheduler else ''})")
        with reporter:
            manifest = prepared.execute(sys.argv, **options)
    stats = json.loads(prepared.layout.stats.read_text())
    if as_json:
        console.print_json(json.dumps({"run_dir": str(prepared.directory), "stats": stats}))
    elif not quiet:
        _print_summary(prepared, stats, manifest)


def _print_plan(prepared, as_json: bool, threads: int | None = None) -> None:
    steps = prepared.plan(threads)
    pending = [p for p in steps if not p.done]
    known = [p.estimate_seconds for p in pending if p.estimate_seconds is not None]
    unknown = len(pending) - len(known)
    if as_json:
        console.print_json(json.dumps({"run_dir": str(prepared.directory), "steps": [
            {"step": p.step.name, "done": p.done, "estimate_seconds": p.estimate_seconds} for p in steps],
            "estimated_seconds": sum(known), "steps_without_estimate": unknown}))
        return
    table = Table(title=f"plan of {prepared.run_id} ({prepared.profile.name} profile, {prepared.device})")
    for column in ("step", "status", "estimate"):
        table.add_column(column)
    for p in steps:
        estimate = "-" if p.done else ("?" if p.estimate_seconds is None else f"{p.estimate_seconds:.0f} s")
        table.add_row(p.step.name, "done" if p.done else "pending", estimate)
    console.print(table)
    extra = f" (+{unknown} steps without an estimate)" if unknown else ""
    console.print(f"{len(pending)} of {len(steps)} steps to run; estimated {sum(known) / 60:.1f} min from this "
                  f"machine's measured step times{extra}. Writes into {prepared.directory}")


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def calibration_line(stats: dict, level: int | str | None = None) -> str:
    """One line: positive control delta [CI], negative control delta [CI], minimum detectable effect at ``level``
    (default: the largest level). A grid run prints one per level: a level can pass where another fails."""
    if not stats.get("calibration"):
        return "calibration: no controls in this run (--no-controls): nothing shows that this protocol can detect a gain"
    level = max(stats["calibration"], key=int) if level is None else str(level)
    if level not in stats["calibration"]:
        return f"calibration at {level} real cases: no controls at this level"
    c = stats["calibration"][level]

    def part(name: str, entry: dict | None, detected: str) -> str:
        if entry is None:
            return f"{name} control: not run"
        mark = "detected" if c.get(detected) else "NOT detected"
        return (f"{name} control {100 * entry['delta_dice_mean']:+.2f} [{100 * entry['ci_low']:+.2f}, "
                f"{100 * entry['ci_high']:+.2f}] pts, p(Holm) {entry['p_holm']:.2g} ({mark})")

    positive_mde = (c.get("positive") or {}).get("mde")
    mde = "-" if positive_mde is None else f"{100 * positive_mde:.2f}"
    design = c.get("design") or {}
    design_part = ""
    if design.get("mde") is not None:
        seeds = design.get("seeds_for_target")
        design_part = (f"; design minimum detectable effect {100 * design['mde']:.2f} pts at {design['n_seeds']} seeds "
                       f"(variance pooled over the {design['n_arms']} controls), "
                       + (f"{seeds} seeds would detect {100 * design['target']:.2f}" if seeds else
                          f"no seed count up to 100 detects {100 * design['target']:.2f}"))
    generator_mdes = ", ".join(
        f"{name} {100 * block['mde']:.2f}" for name, v in stats.get("generators", {}).items()
        if v.get("kind") != "control" and (block := v.get("levels", {}).get(level)) and block.get("mde") is not None)
    verdict = "calibration passed" if c.get("passed") else "CALIBRATION FAILED: do not trust a null result"
    return (f"calibration at {level} real cases: {part('positive', c['positive'], 'positive_detected')}; "
            f"{part('negative', c['negative'], 'negative_detected')}; minimum detectable effect {mde} pts "
            f"(positive control){design_part}; passed needs the positive delta >= 2x the larger of the two"
            + (f"; generators' minimum detectable effects: {generator_mdes} pts" if generator_mdes else "")
            + f"; {verdict}")


def _print_summary(prepared, stats: dict, manifest: dict) -> None:
    """The run's stats.json as a table per real-data level: one delta [CI] and Holm p per leaderboard metric
    (``metrics.spec``), the real-case equivalent, then the calibration line."""
    from foscu_bench.leaderboard import worth_text
    from foscu_bench.metrics.spec import PRIMARY, leaderboard_columns, metric_of

    fidelity = json.loads(prepared.layout.fidelity.read_text()).get("generators", {})
    primary = metric_of(PRIMARY)
    arms = {(a["generator"], a["arm"], a["n_real"]): a for a in stats["arms"]}
    equivalents = stats.get("real_case_equivalent", {})
    for level in stats["levels"]:
        table = Table(title=f"{prepared.run_id}: {level} real training cases, {len(prepared.split.test)} held-out "
                            f"cases x {prepared.config.seeds} seeds (Holm within generators and within controls)")
        table.add_column("arm")
        table.add_column(f"{primary.label} (sd over seeds)")
        for column in leaderboard_columns():
            metric = metric_of(column)
            table.add_column(f"Δ {metric.label} {metric.delta_unit} [95% CI]".replace("  ", " "))
            table.add_column("p (Holm)")
        table.add_column("worth (real cases)")
        table.add_column("FID")
        real = arms[("real-only", "real", level)]
        table.add_row("real-only", f"{real[PRIMARY]:.3f} ({_fmt(real.get(f'{PRIMARY}_seed_sd'))})",
                      *(["-", "-"] * len(leaderboard_columns())), "-", "-")
        for name, entry in stats["generators"].items():
            block = entry["levels"].get(str(level))
            if block is None:
                continue
            arm = arms[(name, "real+synthetic", level)]
            cells = []
            for column in leaderboard_columns():
                comparison = block.get("metrics", {}).get(column)
                scale = metric_of(column).delta_scale
                cells += ["-", "-"] if comparison is None else [
                    f"{scale * comparison['delta_mean']:+.2f} [{scale * comparison['ci_low']:+.2f}, "
                    f"{scale * comparison['ci_high']:+.2f}]", _fmt(comparison.get("p_holm"))]
            worth = equivalents.get(name, {}).get(str(level))
            worth = "-" if worth is None else worth_text(worth["equivalent"], worth["ci_low"], worth["ci_high"])
            fid = fidelity.get(name, {}) if level == stats["levels"][-1] else {}
            label = f"real + {name}" + (" (control)" if entry.get("kind") == "control" else "")
            table.add_row(label, f"{arm[PRIMARY]:.3f} ({_fmt(arm.get(f'{PRIMARY}_seed_sd'))})", *cells, worth,
                          _fmt(fid.get("fid"), ".2f"))
        console.print(table)
        if stats.get("calibration"):
            console.print(calibration_line(stats, level))
    if not stats.get("calibration"):
        console.print(calibration_line(stats))
    last = manifest["invocations"][-1]
    console.print(f"results in {prepared.directory} (this invocation: {last['steps_run']} steps, "
                  f"{last['wall_seconds'] / 60:.1f} min, peak memory {last['peak_memory_mb']:.0f} MiB)")


@app.command("leaderboard")
def leaderboard(
    runs: Path = typer.Option(Path("runs"), "--runs", help="A run directory or a directory of runs."),
    fmt: str = typer.Option("md", "--format", help="md | csv | latex | json"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write to this file instead of stdout."),
    fid_reference: str = typer.Option("cond-ddpm", "--fid-reference", help="Generator FID reductions are relative to."),
) -> None:
    """Rank generators by delta liver Dice (with CI and Holm p), recomputed from the runs' per-case rows."""
    from foscu_bench.leaderboard import leaderboard_rows, render
    from foscu_bench.store import atomic_write_text

    retired: list[dict] = []
    text = render(leaderboard_rows(runs, fid_reference, retired), fmt)
    for entry in retired:
        err_console.print(f"{entry['generator']}: rows of run {entry['run_id']} (code {entry['code_fingerprint']}) "
                          f"left out, superseded by code {entry['superseded_by']}")
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
        err_console.print(f"wrote {output}")


@app.command("figures")
def figures(
    runs: Path = typer.Option(Path("runs"), "--runs", help="A run directory or a directory of runs."),
    out: Path = typer.Option(Path("paper_figures"), "--out", help="Directory for the PNG and PDF files."),
) -> None:
    """Paper figures (PNG + PDF) from stored runs: samples, label/real/synthetic grid, Dice, fidelity, losses."""
    from foscu_bench.figures import make_figures

    for path in make_figures(runs, out):
        console.print(f"wrote {path}")


@app.command("fidelity")
def fidelity(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    extractor: Optional[str] = typer.Option(None, "--extractor", help="Feature extractor (default: the shipped "
                                                                      "foscu-ae3d-corpus)."),
    extractor_weights: Optional[str] = typer.Option(None, "--extractor-weights", help="Local weights of the "
                                                                                      "extractor."),
) -> None:
    """Recompute a run's fidelity.json under the current protocol (U-Net results untouched)."""
    from foscu_bench.runner.refidelity import recompute_fidelity

    document = recompute_fidelity(run_dir, extractor, extractor_weights)
    floor = document["real_vs_real"]
    console.print(f"fidelity of {run_dir} at n = {document['n_per_set']} per set "
                  f"({document['extractor']['name']}); floor FID {floor['fid']:.2f}")
    for name, entry in document["generators"].items():
        excess = entry.get("excess_over_floor", {}).get("fid", {})
        copies = entry.get("memorisation", {})
        console.print(f"  {name}: FID {entry['fid']:.2f}, above floor {excess.get('difference', float('nan')):+.2f} "
                      f"[{excess.get('ci_low', float('nan')):+.2f}, {excess.get('ci_high', float('nan')):+.2f}], "
                      f"near-copies {copies.get('near_copies', '-')}/{copies.get('n_synthetic', '-')}")


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    out: Path = typer.Option(..., "--out", help="Folder to write (replaced atomically)."),
    fmt: str = typer.Option("hf", "--format", help="hf (parquet + dataset card) | nifti (nnU-Net raw layout)"),
    generator: Optional[List[str]] = typer.Option(None, "--generator", help="Only these generators (default: all)."),
    with_real: bool = typer.Option(True, "--with-real/--synthetic-only",
                                   help="nifti: add the run's real training cases (never held-out ones)."),
    allow_near_copies: bool = typer.Option(False, "--allow-near-copies",
                                           help="hf: export even where the memorisation check finds more "
                                                "near-copies of training volumes than chance (or none was run)."),
) -> None:
    """Export a run's synthetic pairs as a Hugging Face dataset folder or an nnU-Net raw dataset."""
    from foscu_bench.hub import export_hf, export_nifti

    if fmt == "hf":
        path = export_hf(run_dir, out, generator, allow_near_copies=allow_near_copies)
    elif fmt == "nifti":
        path = export_nifti(run_dir, out, generator, with_real=with_real)
    else:
        raise ConfigError(f"unknown export format {fmt!r}; choose hf or nifti")
    console.print(f"wrote {path}")


@app.command("publish")
def publish(
    folder: Path = typer.Argument(..., help="A folder written by `export --format hf`."),
    repo_id: str = typer.Option(..., "--repo-id", help="OWNER/NAME of the dataset repository."),
    public: bool = typer.Option(False, "--public", help="Make the repository public (default: private)."),
) -> None:
    """Upload an exported dataset folder to the Hugging Face Hub in one commit (token from HF_TOKEN or login)."""
    from foscu_bench.hub import publish as publish_folder

    console.print(f"published {publish_folder(folder, repo_id, public=public)}")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        console.print(f"foscu-bench {__version__}")
        raise typer.Exit()


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: one clear line and exit code 2 for user errors."""
    try:
        app(args=argv, standalone_mode=False)
    except FoscuError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
