"""`detcheck show`: one response's top-logprobs table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from detcheck.errors import DataError, UsageError

Log = Callable[[str], None]


def _shown_token(token: str | None) -> str:
    """A token as `show` prints it: quoted, so leading spaces and control characters show."""
    from detcheck.text import printable

    return "null" if token is None else printable(json.dumps(token, ensure_ascii=False))


def show_command(path: Path, row: int) -> str:
    import math

    from tabulate import tabulate

    from detcheck.recordings import locate
    from detcheck.store import find_runs, read_run
    from detcheck.text import printable

    found = find_runs(locate(path))  # a path, or the name of a recording that ships
    if len(found) != 1:
        raise UsageError(f"{path} holds {len(found)} runs; show takes one run")
    if (read_run(found[0], columns=["seq"]).meta.get("config") or {}).get("kind") == "generate":
        return _show_generation(found[0], row)
    run = read_run(found[0], columns=["ok", "seq", "system_fingerprint", "top_logprobs"])
    table = run.table.filter(run.table.column("ok")).sort_by("seq")
    if not 0 <= row < table.num_rows:
        raise UsageError(f"--row must be between 0 and {table.num_rows - 1}, got {row}")
    entries = table.column("top_logprobs")[row].as_py() or []
    if not entries:
        raise DataError(f"response {row} of {path} has no top logprobs")
    rows, total = [], 0.0
    for e in entries:
        lp = e["logprob"]
        if lp is None:  # NaN, inf or not a number as sent: stored as null
            rows.append([_shown_token(e["token"]), "null", "null"])
            continue
        pct = math.exp(lp) * 100
        total += pct
        rows.append([_shown_token(e["token"]), f"{lp:.10f}", f"{pct:.10f}"])
    fp = table.column("system_fingerprint")[row].as_py()
    header = (
        f"response {row} of {table.num_rows:,} (seq {table.column('seq')[row].as_py()}, "
        f"fingerprint {printable(fp) if fp else 'none'})"
    )
    body = tabulate(
        rows,
        headers=["Token", "Log Probability", "Percentage"],
        disable_numparse=True,
        colalign=("left", "right", "right"),
    )
    return f"{header}\n\n{body}\n\ntotal probability covered: {total:.10f}%"


def _show_generation(path: Path, row: int) -> str:
    """Each generated position of one response: its token and logprob, and the top tokens."""
    from tabulate import tabulate

    from detcheck.store import read_run
    from detcheck.text import printable

    columns = ["ok", "seq", "system_fingerprint", "finish_reason", "text"]
    run = read_run(path, columns=[*columns, "gen_tokens", "gen_logprobs", "gen_top_tokens"])
    table = run.table.filter(run.table.column("ok")).sort_by("seq")
    if not 0 <= row < table.num_rows:
        raise UsageError(f"--row must be between 0 and {table.num_rows - 1}, got {row}")
    picked = table.slice(row, 1).to_pylist()[0]
    seq = picked["seq"]
    tops = run.row(seq, ["gen_top_logprobs"]) or {}
    top_values = tops.get("gen_top_logprobs") or []
    rows = []
    for p, (token, lp) in enumerate(zip(picked["gen_tokens"] or [], picked["gen_logprobs"] or [])):
        names = (picked["gen_top_tokens"] or [[]] * (p + 1))[p] if picked["gen_top_tokens"] else []
        values = top_values[p] if p < len(top_values) else []
        alternatives = "  ".join(
            f"{_shown_token(t)} {v:.4f}" if v is not None else f"{_shown_token(t)} null"
            for t, v in zip(names, values)
        )
        rows.append([p, _shown_token(token), "null" if lp is None else f"{lp:.10f}", alternatives])
    fp = picked["system_fingerprint"]
    header = (
        f"response {row} of {table.num_rows:,} (seq {seq}, fingerprint "
        f"{printable(fp) if fp else 'none'}, finish reason {printable(picked['finish_reason'])})\n"
        f"text: {printable(json.dumps(picked['text'], ensure_ascii=False))}"
    )
    body = tabulate(
        rows,
        headers=["Position", "Token", "Log Probability", "Top tokens"],
        disable_numparse=True,
        colalign=("right", "left", "right", "left"),
    )
    return f"{header}\n\n{body}"
