"""Every committed table in leaderboards/ is rebuilt byte for byte from the run files committed in leaderboards/runs/.

One runs folder holds every committed run; the tables are the leaderboard of all of them (comparability groups
stay apart inside each table).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from foscu_bench.leaderboard import leaderboard_rows, render

ROOT = Path(__file__).resolve().parents[1] / "leaderboards"
RUNS = ROOT / "runs"
EXTENSIONS = {"md": "md", "csv": "csv", "tex": "latex", "json": "json"}
TABLES = sorted(p for p in ROOT.glob("*.*") if p.suffix.lstrip(".") in EXTENSIONS and p.stem != "README")
RUN_FILES = ("manifest.json", "metrics.csv", "stats.json", "fidelity.json")


def test_committed_tables_have_their_runs_and_every_format():
    assert TABLES, "leaderboards/ must hold at least one table with the runs behind it"
    runs = sorted(p for p in RUNS.iterdir() if p.is_dir())
    assert runs, "tables without run files in leaderboards/runs/"
    for run in runs:
        for name in RUN_FILES:
            assert (run / name).is_file(), f"{run.name} lacks {name}"
        assert not (run / "synthetic").exists(), "volumes are never committed"
    stems = {p.stem for p in TABLES}
    assert {p.suffix for p in TABLES} == {".md", ".csv", ".tex", ".json"} and all(
        {f"{stem}{suffix}" for suffix in (".md", ".csv", ".tex", ".json")} <= {p.name for p in TABLES}
        for stem in stems)


@pytest.fixture(scope="module")
def rows():
    """The leaderboard of the committed runs, computed once (its bootstraps take ~10 s)."""
    return leaderboard_rows(RUNS)


@pytest.mark.parametrize("table", TABLES, ids=[t.name for t in TABLES])
def test_committed_table_rebuilds_from_the_runs(table, rows):
    assert render(rows, EXTENSIONS[table.suffix.lstrip(".")]) == table.read_text(), table.name
