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
from foscu_bench.store import atomic_path

RUN_FILES = ("manifest.json", "metrics.csv", "stats.json", "fidelity.json")
FORMATS = {"md": "md", "csv": "csv", "tex": "latex", "json": "json"}


def copy_run_files(run_dir: Path, runs_root: Path) -> Path:
    """The four run files of a finished run into ``runs_root/<run_id>/`` (each written atomically)."""
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(f"{run_dir}: lacks {', '.join(missing)}; is the run finished?")
    status = json.loads((run_dir / "manifest.json").read_text()).get("status")
    if status != "complete":
        raise ConfigError(f"{run_dir / 'manifest.json'}: status {status!r}, not 'complete'; finish the run first")
    target = runs_root / run_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        with atomic_path(target / name, suffix=Path(name).suffix) as tmp:
            shutil.copyfile(run_dir / name, tmp)
    return target


def write_tables(rows: list[dict], stem: Path) -> list[Path]:
    from foscu_bench.leaderboard import render
    from foscu_bench.store import atomic_write_text

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
    from foscu_bench.leaderboard import leaderboard_rows

    rows = leaderboard_rows(args.runs_root)
    for path in write_tables(rows, args.tables):
        print(f"wrote {path}", flush=True)
    if not args.no_figures:
        for path in group_figures(args.runs_root, args.figures, rows):
            print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
