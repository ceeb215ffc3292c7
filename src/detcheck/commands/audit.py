"""`detcheck audit`: which known cause breaks determinism on this endpoint. Each check compares
a control arm with a treatment arm that differ in one factor only; every arm is an ordinary run
(a directory of runs under -o, one per round), so analyze, compare and replay work on it.

One warm-up call comes first (it is the first_call check's subject and is in no other arm).
The arms are then sent in rounds, each arm n/rounds calls per round, the order reversed every
other round: a drift of the endpoint over the audit falls on control and treatment alike, and
the control's first and last rounds are compared to say whether there was one."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from detcheck.analysis import audit as verdicts
from detcheck.checks import CHECKS, WARMUP, Sizes, arms_of
from detcheck.commands.costs import check_spend
from detcheck.commands.flip import flip_command
from detcheck.config import strip_credentials
from detcheck.errors import DetcheckError, Interrupted, UsageError

Log = Callable[[str], None]

AUDIT_VERSION = 1


def choose(only: str | None, skip: str | None) -> list[str]:
    def names(text: str | None, flag: str) -> list[str]:
        given = [x.strip() for x in (text or "").split(",") if x.strip()]
        unknown = [x for x in given if x not in CHECKS]
        if unknown:
            raise UsageError(f"{flag}: no check {unknown[0]!r} (checks: {', '.join(CHECKS)})")
        return given

    chosen = names(only, "--only") or list(CHECKS)
    skipped = set(names(skip, "--skip"))
    out = [c for c in chosen if c not in skipped]
    if not out:
        raise UsageError("--only/--skip leave no check to run")
    return out


def audit_command(options, log: Log, *, checks: list[str], rounds: int = 2) -> dict:
    """Run the chosen checks; the audit as data (every arm's runs listed, each check's verdict).
    A dry run returns what it would send and cost, and sends nothing."""
    from detcheck import spec
    from detcheck.store.files import _write_atomic
    from detcheck.store.runs import new_run_id

    if options.resume is not None or options.replay is not None:
        raise UsageError("audit starts new runs: it takes no --resume or --replay")
    if options.via == "batch":
        raise UsageError("audit measures online batching: it takes no --via batch")
    n = options.n if options.n is not None else spec.default("n", "audit")
    if n < 2 * rounds:
        raise UsageError(f"audit needs --n of at least {2 * rounds} ({rounds} rounds of 2)")
    concurrency = options.concurrency or spec.default("concurrency", "audit")
    max_tokens = options.max_tokens or spec.default("max_tokens", "audit")
    base = replace(options, concurrency=1, tags=None, max_tokens=None)
    sizes = Sizes(concurrency, options.prompt or spec.default("prompt"))
    skipped = _not_testable(options, checks)
    table = arms_of([c for c in checks if c not in skipped], sizes)
    needed = list(table)

    def arm_options(name: str, calls: int, out: Path | None = None, tags=None):
        arm = table.get(name, WARMUP)
        length = {"max_tokens": max_tokens} if arm.kind == "generate" else {}
        return replace(base, kind=arm.kind, n=calls, out=out, tags=tags, **length, **arm.changes)

    # the whole audit's spend is planned, limited and confirmed once, before anything is sent
    quiet = [replace(arm_options(a, n), dry_run=True) for a in needed]
    spends = [flip_command(o, lambda _: None)[0] for o in quiet]
    warm = flip_command(replace(arm_options("warmup", 1), dry_run=True), lambda _: None)[0]
    costs = [s["estimated_cost_usd"] for s in [warm, *spends]]
    spend = {
        **warm,
        "requests": warm["requests"] + sum(s["requests"] for s in spends),
        "arms": len(needed),
        "estimated_cost_usd": None if None in costs else sum(costs),
    }
    if options.dry_run:
        return spend
    check_spend(spend, options.max_cost, options.confirm)
    base = replace(base, max_cost=None, confirm=None, progress=False)

    audit_id = new_run_id("audit")
    root = Path(options.out or spec.default("out")) / audit_id
    runs: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    background: dict[str, dict] = {}
    log(f"audit {audit_id}: {len(checks)} checks, {len(needed)} arms of {n} calls + 1 warm-up")
    _, path, _ = flip_command(
        arm_options("warmup", 1, root / "warmup", {"audit_id": audit_id, "audit_arm": "warmup"}),
        log,
    )
    runs["warmup"] = [str(path)]
    per_round = [n // rounds + (1 if k < n % rounds else 0) for k in range(rounds)]
    for k, size in enumerate(per_round):
        order = needed if k % 2 == 0 else needed[::-1]
        for name in order:
            if name in errors:
                continue
            log(f"--- round {k + 1} of {rounds}: {table[name].what} ({size} calls)")
            tags = {"audit_id": audit_id, "audit_arm": name, "audit_round": k + 1}
            try:
                _, path, outcome = flip_command(arm_options(name, size, root / name, tags), log)
            except DetcheckError as exc:
                if name == "alone" or isinstance(exc, Interrupted):  # alone: every control
                    raise
                errors[name] = str(exc).splitlines()[0]
                log(f"{name}: {errors[name]}")
                continue
            runs.setdefault(name, []).append(str(path))
            if outcome.interrupted:  # Ctrl-C: what arrived is kept; no verdict on part of it
                raise Interrupted(
                    f"audit interrupted in arm {name}, round {k + 1}: its runs so far are under "
                    f"{root} (an audit starts afresh; it does not resume)"
                )
            seen = background.setdefault(name, {"sent": 0, "failed": 0})
            seen["sent"] += outcome.background_requests
            seen["failed"] += outcome.background_failed
    values = {name: [_values(p) for p in paths] for name, paths in runs.items()}
    results = []
    for check in checks:
        results.append(_verdict(check, values, skipped, errors, background, sizes))
    control_rounds = values.get("alone") or values.get("greedy") or []
    result = {
        "audit_version": AUDIT_VERSION,
        "audit_id": audit_id,
        "endpoint": strip_credentials(options.value("base_url")),
        "model": options.model or spec.default("model"),
        "n": n,
        "concurrency": concurrency,
        "rounds": rounds,
        "checks": results,
        "drift": verdicts.drift(control_rounds),
        "arms": {name: {"what": _what(table, name), "runs": paths} for name, paths in runs.items()},
        "out": str(root),
    }
    _write_atomic(root / "_audit.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def _what(table: dict, name: str) -> str:
    return table.get(name, WARMUP).what


def _not_testable(options, checks: list[str]) -> dict[str, str]:
    """Checks the endpoint's API cannot take, and why."""
    from detcheck import spec
    from detcheck.shapes import shape

    api = options.api or spec.default("api")
    if options.no_seed or not shape(api).TAKES_SEED:
        why = "--no-seed" if options.no_seed else f"the {api} API takes no seed"
        return {c: why for c in checks if getattr(CHECKS[c], "NEEDS_SEED", False)}
    return {}


def _values(path: str) -> list:
    """What each successful call gave, in call order: (first token, its logprob) for a flip
    run, the whole text for a generate run."""
    from detcheck.store import read_run

    run = read_run(path, columns=["ok", "call", "token", "logprob", "text", "gen_tokens"])
    table = run.table.filter(run.table.column("ok")).sort_by("call")
    if (run.meta.get("config") or {}).get("kind") == "generate":
        texts = table.column("text").to_pylist()
        tokens = table.column("gen_tokens").to_pylist()
        return [t if t is not None else tuple(g or ()) for t, g in zip(texts, tokens)]
    return list(zip(table.column("token").to_pylist(), table.column("logprob").to_pylist()))


def _verdict(check, values, skipped, errors, background, sizes) -> dict:
    module = CHECKS[check]
    control, treatment = (arm.name for arm in module.arms(sizes))
    if check in skipped:
        return _not_tested(check, skipped[check], control, treatment)
    for arm in (control, treatment):
        if arm in errors:
            why = f"the endpoint refused the {arm} arm: {errors[arm]}"
            return _not_tested(check, why, control, treatment)
    sent = background.get(treatment, {})
    if sent.get("sent") and sent["failed"] == sent["sent"]:
        why = f"the background could not be sent ({sent['failed']} failed)"
        return _not_tested(check, why, control, treatment)
    pooled = {arm: [v for run in values.get(arm, []) for v in run] for arm in (control, treatment)}
    if module.TEST == "first_call":
        first = pooled[control][0] if pooled[control] else None
        result = verdicts.first_call(first, pooled[treatment])
    elif module.TEST == "concentrated":
        result = verdicts.has_effect(
            check, pooled[control], pooled[treatment], cannot_tell=module.CANNOT_TELL
        )
    else:
        result = verdicts.differs(check, pooled[control], pooled[treatment])
    result["name"] = check
    if result["verdict"] != verdicts.NOT_TESTED:
        holds, broken = module.MEANING
        result["meaning"] = holds if result["verdict"] == verdicts.HOLDS else broken
    result["arms"] = {"control": control, "treatment": treatment}
    return result


def _not_tested(check: str, reason: str, control: str, treatment: str) -> dict:
    return {
        "name": check,
        "verdict": verdicts.NOT_TESTED,
        "reason": reason,
        "arms": {"control": control, "treatment": treatment},
    }


def required_broken(result: dict, required: list[str]) -> list[str]:
    """The required checks that came out broken (--require: exit 1 when any did)."""
    broken = [c["name"] for c in result["checks"] if c["verdict"] == verdicts.BROKEN]
    return [name for name in broken if name in required]
