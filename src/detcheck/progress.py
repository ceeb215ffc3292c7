"""A progress bar on stderr (rich, which typer already brings): done/total, rate, ETA, errors."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} calls/s" if speed else "- calls/s")


class ProgressBar:
    def __init__(self, total: int, enabled: bool = True, done: int = 0, label: str = "flip"):
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[errors]}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=total, completed=done, errors="")
        self._done = done

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, outcome) -> None:
        errors = sum(outcome.errors.values())
        self._progress.update(
            self._task,
            completed=self._done + outcome.successes,
            errors=f"{errors:,} failed attempt(s)" if errors else "",
        )
