"""Every committed table in leaderboards/ is rebuilt byte for byte from the run files committed beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from foscu_bench.leaderboard import leaderboard_rows, render

ROOT = Path(__file__).resolve().parents[1] / "leaderboards"
EXTENSIONS = {"md": "md", "csv": "csv", "tex": "latex", "json": "json"}
BOARDS = sorted(p.parent for p in ROOT.glob("*/runs"))
RUN_FILES = ("manifest.json", "metrics.csv", "stats.json", "fidelity.json")


def test_there_is_a_committed_leaderboard_and_no_table_without_its_runs():
    assert BOARDS, "leaderboards/ must hold at least one table with the runs behind it"
    orphans = [p for p in ROOT.glob("*.*") if p.suffix.lstrip(".") in EXTENSIONS]
    assert not orphans, f"tables without run files: {orphans}"


@pytest.mark.parametrize("board", BOARDS, ids=[b.name for b in BOARDS])
def test_committed_tables_rebuild_from_their_runs(board):
    runs = sorted(p for p in (board / "runs").iterdir() if p.is_dir())
    assert runs
    for run in runs:
        for name in RUN_FILES:
            assert (run / name).is_file(), f"{run.name} lacks {name}"
        assert not (run / "synthetic").exists(), "volumes are never committed"
    tables = sorted(p for p in board.glob("leaderboard.*") if p.suffix.lstrip(".") in EXTENSIONS)
    assert {p.suffix for p in tables} == {".md", ".csv", ".tex", ".json"}
    rows = leaderboard_rows(board / "runs")
    for table in tables:
        assert render(rows, EXTENSIONS[table.suffix.lstrip(".")]) == table.read_text(), table.name
