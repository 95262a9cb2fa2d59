"""Errors a user can act on: every one names the file (or input) and the problem in one line."""

from __future__ import annotations

from pathlib import Path


class FoscuError(Exception):
    """Base class for errors that the CLI prints as one clear message (exit code 2), without a traceback."""


class DataError(FoscuError):
    """Bad input data: the message always starts with the offending path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(FoscuError):
    """A bad option or combination of options (e.g. an unknown profile or a malformed --label-map)."""
