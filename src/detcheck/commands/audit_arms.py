"""An audit's arms on disk: each arm a directory of ordinary runs, one per round (the warm-up's
has no round), and what each round holds: its calls, whether it is complete, what its background
streams sent. Read-only: commands.audit writes them through flip_command."""

from __future__ import annotations

import json
from pathlib import Path

from detcheck.analysis.audit import Call


def rounds_of(arm_dir: Path) -> list[tuple[int | None, Path]]:
    """An arm's runs with their rounds, in round order (the warm-up's, round None, first)."""
    if not arm_dir.is_dir():
        return []
    found = []
    for run_dir in arm_dir.iterdir():
        meta = meta_of(run_dir)
        if meta is not None:
            found.append(((meta.get("tags") or {}).get("audit_round"), run_dir))
    return sorted(found, key=lambda found: (found[0] or 0, found[1]))


def runs_of(arm_dir: Path) -> list[Path]:
    return [path for _, path in rounds_of(arm_dir)]


def round_run(arm_dir: Path, round_: int | None) -> Path | None:
    return next((path for k, path in rounds_of(arm_dir) if k == round_), None)


def meta_of(run_dir: Path) -> dict | None:
    from detcheck.store.files import meta_file

    found = meta_file(run_dir) if run_dir.is_dir() else None
    try:
        return json.loads(found.read_text()) if found is not None else None
    except (OSError, ValueError):
        return None


def complete(run_dir: Path) -> bool:
    meta = meta_of(run_dir) or {}
    return meta.get("status") == "complete" and not list(run_dir.glob("_journal-*.jsonl"))


def successes(path: Path | str) -> int:
    return int((meta_of(Path(path)) or {}).get("successes") or 0)


def background(paths: list[str]) -> dict:
    """What an arm's background streams sent, and how many of those failed."""
    notes = [(meta_of(Path(p)) or {}).get("notes") or {} for p in paths]
    return {
        "sent": sum(x.get("background_requests", 0) for x in notes),
        "failed": sum(x.get("background_failed", 0) for x in notes),
    }


_COLUMNS = ["ok", "call", "token", "logprob", "text", "gen_tokens", "system_fingerprint",
            "response_model", "started_at", "in_flight"]  # fmt: skip


def calls_of(path: Path | str, arm: str, round_: int | None) -> list[Call]:
    """Every answered call of one run, in call order: (first token, its logprob) for a flip
    run, the whole text for a generate run (its tokens where no text came back)."""
    import pyarrow.compute as pc

    from detcheck.store import read_run

    run = read_run(Path(path), columns=_COLUMNS)
    table = run.table.filter(run.table.column("ok")).sort_by("call")
    column = {name: table.column(name).to_pylist() for name in _COLUMNS[1:]}
    if (run.meta.get("config") or {}).get("kind") == "generate":
        values = [t if t is not None else tuple(g or ()) for t, g in zip(
            column["text"], column["gen_tokens"])]  # fmt: skip
    else:
        values = list(zip(column["token"], column["logprob"]))
    started = pc.cast(table.column("started_at"), "int64").to_pylist()
    return [
        Call(value, (fingerprint, model), us or 0, in_flight or 1, arm, round_, call)
        for value, fingerprint, model, us, in_flight, call in zip(
            values,
            column["system_fingerprint"],
            column["response_model"],
            started,
            column["in_flight"],
            column["call"],
        )  # fmt: skip
    ]


def arm_calls(root: Path, names) -> dict[str, list[Call]]:
    """Every named arm's calls so far, its rounds in order."""
    return {
        name: [c for k, path in rounds_of(root / name) for c in calls_of(path, name, k)]
        for name in names
    }
