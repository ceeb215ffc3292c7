"""`detcheck generate`: the same request N times, whole answers kept; with --prompts, each
prompt of a JSONL file N times, one run each, reported together (TARr@N, TARa@N)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from detcheck.commands.flip import flip_command
from detcheck.errors import UsageError

Log = Callable[[str], None]


def load_prompts(path: Path) -> list[tuple[str, str]]:
    """(id, prompt) per line of a JSONL file; errors name the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--prompts {path}: cannot read ({exc.strerror or exc})") from None
    out, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise UsageError(f"{path}:{number}: not a JSON object") from None
        prompt = item.get("prompt") if isinstance(item, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise UsageError(f'{path}:{number}: needs "prompt" (non-empty text)')
        given = item.get("id", number)
        if isinstance(given, bool) or not isinstance(given, (str, int)):
            raise UsageError(f'{path}:{number}: "id" must be text or an integer')
        prompt_id = str(given)
        if prompt_id in seen:
            raise UsageError(f"{path}:{number}: id {prompt_id!r} is used twice")
        seen.add(prompt_id)
        out.append((prompt_id, prompt))
    if not out:
        raise UsageError(f"--prompts {path}: no prompts in it")
    return out


def generate_command(options, prompts: Path | None, log: Log):
    """(report, run paths, interrupted?) of one prompt's run, or of one run per prompt."""
    from detcheck.analysis.report import report_of
    from detcheck.commands.costs import check_spend, total_spend
    from detcheck.commands.endpoints import checked
    from detcheck.store import read_runs
    from detcheck.store.runs import new_run_id

    options = checked(replace(options, kind="generate"), log)  # the URL as called, a model
    if prompts is None:
        report, path, outcome = flip_command(options, log)
        return report, [path], outcome is not None and outcome.interrupted
    if options.prompt is not None:
        raise UsageError("give --prompt or --prompts, not both")
    if options.resume is not None or options.replay is not None:
        raise UsageError("--prompts starts new runs: --resume or --replay one run at a time")
    items = load_prompts(prompts)
    # the spend of the whole set is planned, limited and confirmed once, before any prompt runs
    quiet = replace(options, dry_run=True, prompt=items[0][1])
    spends = [flip_command(replace(quiet, prompt=p), lambda _: None)[0] for _, p in items]
    spend = total_spend(spends, prompts=len(items))
    if options.dry_run:
        return spend, [], False
    check_spend(spend, options.max_cost, options.confirm)
    options = replace(options, max_cost=None, confirm=None)
    set_id = new_run_id("prompts")
    paths = []
    for k, (prompt_id, prompt) in enumerate(items, 1):
        log(f"--- prompt {prompt_id} ({k} of {len(items)})")
        tags = {"prompt_set": set_id, "prompt_id": prompt_id}
        _, path, outcome = flip_command(replace(options, prompt=prompt, tags=tags), log)
        paths.append(path)
        if outcome.interrupted:
            break
    runs = read_runs([str(p) for p in paths])
    report = report_of(runs, answer_regex=options.answer_regex)
    return report, paths, outcome.interrupted
