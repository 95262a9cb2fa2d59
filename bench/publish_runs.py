"""Commit finished runs behind the leaderboard: copy their run files, rebuild the tables and the group figures.

Usage: python bench/publish_runs.py runs/<run_id> [runs/<run_id> ...] [--tables leaderboards/phantom_quick]
                                    [--figures paper_figures] [--no-figures]

A grid is measured in several runs that share a comparability key; each finished run is published the same way:
its manifest.json, metrics.csv, stats.json and fidelity.json (never volumes) go to ``leaderboards/runs/<run_id>/``,
the four tables are rendered from every committed run (what ``tests/test_committed_leaderboards.py`` rebuilds byte
for byte), and each comparability group's figures (Dice vs real cases, per-case distributions, metric validity)
are drawn from the committed rows only, so they need no volumes and no phantom cases.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from foscu_bench.errors import ConfigError
from foscu_bench.figures import group_figures
from foscu_bench.leaderboard import leaderboard_rows, render
from foscu_bench.store import RunLayout, atomic_path, atomic_write_text

FORMATS = {"md": "md", "csv": "csv", "tex": "latex", "json": "json"}


def run_files(layout: RunLayout) -> list[Path]:
    """What is committed of a run (the run layout's four result files): everything a table is rebuilt from."""
    return [layout.manifest, layout.metrics, layout.stats, layout.fidelity]


def copy_run_files(run_dir: Path, runs_root: Path) -> Path:
    """The four run files of a finished run into ``runs_root/<run_id>/`` (each written atomically)."""
    source = RunLayout(run_dir)
    missing = [path.name for path in run_files(source) if not path.is_file()]
    if missing:
        raise ConfigError(f"{run_dir}: lacks {', '.join(missing)}; is the run finished?")
    status = json.loads(source.manifest.read_text()).get("status")
    if status != "complete":
        raise ConfigError(f"{source.manifest}: status {status!r}, not 'complete'; finish the run first")
    target = RunLayout(runs_root / source.run_id)
    for path, copy in zip(run_files(source), run_files(target)):
        with atomic_path(copy, suffix=copy.suffix) as tmp:
            shutil.copyfile(path, tmp)
    return target.directory


def write_tables(rows: list[dict], stem: Path) -> list[Path]:
    paths = []
    for suffix, fmt in FORMATS.items():
        path = stem.with_suffix(f".{suffix}")
        atomic_write_text(path, render(rows, fmt))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="finished run directories to publish")
    parser.add_argument("--runs-root", type=Path, default=Path("leaderboards/runs"))
    parser.add_argument("--tables", type=Path, default=Path("leaderboards/phantom_quick"),
                        help="path stem of the four tables (.md, .csv, .tex, .json)")
    parser.add_argument("--figures", type=Path, default=Path("paper_figures"))
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args()
    for run_dir in args.runs:
        print(f"copied {copy_run_files(run_dir, args.runs_root)}", flush=True)
    rows = leaderboard_rows(args.runs_root)
    for path in write_tables(rows, args.tables):
        print(f"wrote {path}", flush=True)
    if not args.no_figures:
        for path in group_figures(args.runs_root, args.figures, rows):
            print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
