"""`detcheck sweep`: one measurement at several concurrency levels (and background loads), one
run each, and whether the values depend on the level."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from detcheck.commands.costs import check_spend, fmt_usd, total_spend
from detcheck.commands.endpoints import refixed
from detcheck.commands.flip import flip_command
from detcheck.errors import Refused, UsageError

Log = Callable[[str], None]


def parse_levels(text: str, flag: str, low: int) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes integers like 1,8,64, got {text!r}") from None
    if not levels or any(level < low for level in levels):
        raise UsageError(f"{flag} takes levels >= {low}, e.g. 1,8,64")
    return levels


def sweep_command(
    options,
    levels: Sequence[int],
    log: Log,
    loads: Sequence[int] | None = None,
    adaptive: bool = False,
) -> dict:
    """The same measurement at every (concurrency, background load) pair, one run each, tagged
    with its level; and a test of whether the distribution of values depends on the level. A
    dry run returns what the whole sweep would send and cost, and sends nothing."""
    from dataclasses import replace as with_

    from detcheck.commands.endpoints import checked
    from detcheck.send.pace import pacer_for
    from detcheck.store import read_run
    from detcheck.store.runs import new_run_id

    options = checked(options, log)  # the base URL as it will be called, and a model
    loads = list(loads) if loads else [options.background_load or 0]
    options = with_(options, pacer=pacer_for(options.rpm))  # --rpm across the levels, not each
    sweep_id = new_run_id("sweep")

    def level_of(concurrency: int, load: int):
        tags = {
            "sweep_id": sweep_id,
            "sweep_concurrency": concurrency,
            "sweep_background_load": load,
        }
        return with_(
            options,
            concurrency=concurrency,
            background_load=load,
            tags=tags,
            hold_concurrency=not adaptive,  # the level is what is measured: hold it
        )

    # the whole sweep is priced, held to --max-cost and confirmed once, before anything is
    # sent (each level held to it alone would let a sweep of k levels spend k times the cap)
    spends = [flip_command(with_(level_of(c, b), dry_run=True), _silent)[0]
              for c in levels for b in loads]  # fmt: skip
    spend = total_spend(spends, levels=len(spends))
    if options.replay is None and not options.dry_run:
        log(f"the sweep: {spend['requests']:,} requests in {len(spends)} levels"
            + (f", at most {fmt_usd(spend['estimated_cost_usd'])} at list prices"
               if spend["estimated_cost_usd"] is not None else ""))  # fmt: skip
    if options.dry_run:
        return spend
    check_spend(spend, options.max_cost, options.confirm)
    options = with_(options, max_cost=None, confirm=None)
    rows, values_by_level = [], []
    for concurrency in levels:
        for load in loads:
            log(f"--- concurrency {concurrency}, background load {load}")
            level = level_of(concurrency, load)
            try:
                report, run_path, _ = flip_command(level, log)
            except Refused as exc:
                if exc.fix is None or rows:  # a fix applies to the sweep's first level only
                    raise
                line = _command_line(options, levels, loads, adaptive, exc.fix)
                raise refixed(exc, line) from None
            run = read_run(run_path, columns=["ok", "in_flight"]) if _local(run_path) else None
            rows.append(_level_row(report, run, concurrency, load, run_path))
            values_by_level.append(_values(report))
    return {"sweep_id": sweep_id, "levels": rows, "test": _across_levels(values_by_level)}


def _silent(_: str) -> None:
    pass


def _command_line(options, levels, loads, adaptive: bool, fix: dict) -> str:
    """The sweep as given, with the fix: its levels as lists, as it takes them."""
    import shlex
    from dataclasses import replace as with_

    from detcheck.commands.endpoints import command_line

    line = command_line(with_(options, kind="sweep", concurrency=None, background_load=None),
                        **fix)  # fmt: skip
    extra = ["--concurrency", ",".join(map(str, levels))]
    if len(loads) > 1 or loads[0]:
        extra += ["--background-loads", ",".join(map(str, loads))]
    extra += ["--adaptive"] if adaptive else []
    return f"{line} {shlex.join(extra)}"


def _local(path) -> bool:
    from detcheck.store import is_uri

    return not is_uri(str(path))


def _level_row(report: dict, run, concurrency: int, load: int, run_path) -> dict:
    import pyarrow.compute as pc

    mean_in_flight = None
    if run is not None and run.table.num_rows:
        ok = run.table.filter(run.table.column("ok"))
        mean_in_flight = pc.mean(ok.column("in_flight")).as_py()
    modal = report.get("modal") or {}
    throttled = report["errors_by_type"].get("http_429", 0)
    return {
        "concurrency": concurrency,
        "background_load": load,
        "n": report["n"],
        "distinct": report["distinct"],
        "clusters": len(report["clusters"]),
        "modal_share": modal.get("share"),
        "mean_in_flight": mean_in_flight,  # what the level achieved (background included)
        "throttled": throttled,  # 429 answers: while they were retried, fewer were in flight
        "held": throttled == 0,
        "run_path": str(run_path),
    }


def _values(report: dict) -> dict[float, int]:
    """{logprob: calls} of a flip report."""
    return {v["logprob"]: v["count"] for c in report["clusters"] for v in c["values"]}


def _across_levels(values_by_level: list[dict[float, int]]) -> dict | None:
    """Does the distribution of values depend on the level? A chi-square test of independence
    of value and level (sparse values pooled), as the report's "explains?" lines test."""
    import numpy as np

    from detcheck.analysis import stats

    if len(values_by_level) < 2:
        return None
    codes = {v: i for i, v in enumerate(sorted({v for d in values_by_level for v in d}))}
    value_ids, level_ids = [], []
    for level, counts in enumerate(values_by_level):
        for value, count in counts.items():
            value_ids.append(np.full(count, codes[value]))
            level_ids.append(np.full(count, level))
    if not value_ids:
        return None
    result = stats.association(np.concatenate(value_ids), np.concatenate(level_ids))
    if result is None:
        return None
    verdict = stats.association_verdict("the level", result)
    return {**result, "verdict": verdict}
