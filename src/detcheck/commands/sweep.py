"""`detcheck sweep`: one measurement at several concurrency levels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from detcheck.commands.flip import flip_command
from detcheck.errors import UsageError

Log = Callable[[str], None]


def sweep_command(options, levels: Sequence[int], log: Log) -> list[dict]:
    """The same measurement at several concurrency levels, one run each, tagged with its level."""
    from dataclasses import replace as with_

    from detcheck.measure import new_run_id
    from detcheck.report import summary

    if not levels or any(c < 1 for c in levels):
        raise UsageError("--concurrency takes levels >= 1, e.g. 1,8,64")
    sweep_id = new_run_id("sweep")
    rows = []
    for level in levels:
        log(f"--- concurrency {level}")
        tags = {"sweep_id": sweep_id, "sweep_concurrency": level}
        report, run_path, _ = flip_command(with_(options, concurrency=level, tags=tags), log)
        rows.append({"concurrency": level, "run_path": str(run_path), **summary(report)})
    return rows
