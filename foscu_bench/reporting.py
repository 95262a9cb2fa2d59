"""Progress reporting for long stages, decoupled from the runner: the CLI passes a rich reporter, tests none.

A reporter hands out tasks; each task is a callable ``update(completed, total=None, info="")``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

Update = Callable[..., None]


class Reporter(Protocol):
    def begin(self, n_steps: int) -> None: ...

    def task(self, description: str, total: int | None = None) -> "contextmanager[Update]": ...  # type: ignore[valid-type]

    def step_done(self) -> None: ...


class NullReporter:
    """Reports nothing (``--quiet``, ``--json``, library use)."""

    def begin(self, n_steps: int) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Update]:
        yield lambda *args, **kwargs: None

    def step_done(self) -> None:
        pass


class RichReporter:
    """One overall bar for the run's steps plus a bar with ETA for the stage in progress."""

    def __init__(self, console) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console)
        self.overall = self.progress.add_task("run (steps)", total=None, info="")

    def begin(self, n_steps: int) -> None:
        self.progress.update(self.overall, total=n_steps, completed=0)

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Update]:
        """A bar with ETA for one stage (fit, sampling, one U-Net), removed when the stage ends."""
        task_id = self.progress.add_task(description, total=total, info="")

        def update(completed: int, total: int | None = None, info: str = "") -> None:
            fields = {"completed": completed, "info": info}
            if total is not None:
                fields["total"] = total
            self.progress.update(task_id, **fields)

        try:
            yield update
        finally:
            self.progress.remove_task(task_id)

    def step_done(self) -> None:
        self.progress.advance(self.overall)
