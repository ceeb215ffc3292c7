"""`detcheck history`: the runs under some paths, chosen as `llm logs` chooses its logs (a model,
a start after some time, the last N), one line each (detcheck.render.history)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from detcheck.errors import UsageError

_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2026-01-31', '2026-01-31T12:00' (UTC unless it says otherwise), or a time ago: '36h',
    '7d', '2w', '90m'."""
    now = now or datetime.now(timezone.utc)
    match = _DURATION.fullmatch(text.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since takes a date (2026-01-31), a date and time (2026-01-31T12:00) or a time "
            f"ago (36h, 7d, 2w), got {text!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _started(run) -> datetime | None:
    text = run.meta.get("started_at")
    try:
        when = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=timezone.utc)


def chosen(runs: Sequence, model: str | None, since: datetime | None, last: int | None) -> list:
    """The runs of `model` (a name, or a pattern: 'gpt-4o*') started at or after `since`, the
    last `last` of them, oldest first."""
    picked = []
    for run in runs:
        name = (run.meta.get("config") or {}).get("model") or ""
        if model is not None and name != model and not fnmatch.fnmatchcase(name, model):
            continue
        started = _started(run)
        if since is not None and (started is None or started < since):
            continue
        picked.append(run)
    picked.sort(key=lambda r: (r.meta.get("started_at") or "", r.meta.get("run_id") or ""))
    if last is not None:
        if last < 1:
            raise UsageError(f"-n takes a number of runs (1 or more), got {last}")
        picked = picked[-last:]
    return picked


def history_command(
    paths: Sequence[str],
    thresholds: Sequence[float],
    *,
    model: str | None = None,
    since: str | None = None,
    last: int | None = None,
    warn=None,
) -> list[dict]:
    """One line per chosen run, oldest first (each its own report's summary)."""
    from detcheck.render.history import history
    from detcheck.store import read_runs

    cutoff = parse_since(since) if since is not None else None
    runs = chosen(read_runs(paths, warn=warn), model, cutoff, last)
    if not runs:
        raise UsageError("no run matches " + _filters(model, since, last))
    return history(runs, thresholds)


def _filters(model, since, last) -> str:
    given = [f"--model {model}" if model else "", f"--since {since}" if since else ""]
    return " ".join(g for g in given if g) or "(none given)"
