"""Progress on stderr: a bar in a terminal (rich, which typer already brings): done/total, rate,
ETA, errors; elsewhere (a CI log, a file) a plain line every PLAIN_EVERY_S seconds and at the end,
so a log shows a long run moving rather than nothing until it ends."""

from __future__ import annotations

import os
import sys
import time

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


# Seconds between plain progress lines (DETCHECK_PROGRESS_EVERY_S overrides it)
PLAIN_EVERY_S = 30.0


class ProgressBar:
    def __init__(self, total: int, enabled: bool = True, done: int = 0, label: str = "flip"):
        console = Console(stderr=True)
        self._plain = enabled and not console.is_terminal
        self._every_s = float(os.environ.get("DETCHECK_PROGRESS_EVERY_S", PLAIN_EVERY_S))
        self._label, self._total, self._start_done = label, total, done
        self._started = self._last_line = time.monotonic()
        self._line_at = (0, -1)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[errors]}"),
            console=console,
            disable=not enabled or self._plain,
        )
        self._task = self._progress.add_task(label, total=total, completed=done, errors="")
        self._done = done

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()
        if self._plain and self._line_at != self._current:
            self._line()

    def update(self, outcome) -> None:
        errors = sum(outcome.errors.values())
        if self._plain:
            self._current = (self._done + outcome.successes, errors)
            if time.monotonic() - self._last_line >= self._every_s:
                self._line()
            return
        self._progress.update(
            self._task,
            completed=self._done + outcome.successes,
            errors=f"{errors:,} failed attempt(s)" if errors else "",
        )

    _current = (0, 0)

    def _line(self) -> None:
        """One plain progress line: 'flip 1,234/10,000 (12%), 95 calls/s, ETA 1m 32s, 3 failed
        attempt(s)'."""
        done, errors = self._current
        now = time.monotonic()
        rate = (done - self._start_done) / max(now - self._started, 1e-9)
        left = self._total - done
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""
        failed = f", {errors:,} failed attempt(s)" if errors else ""
        share = done / self._total if self._total else 1.0
        counts = f"{self._label} {done:,}/{self._total:,} ({share:.0%})"
        print(
            f"{counts}, {rate:,.0f} calls/s{eta}{failed}",
            file=sys.stderr,
            flush=True,
        )
        self._last_line, self._line_at = now, self._current


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds + 0.5), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s" if m else f"{s}s"
