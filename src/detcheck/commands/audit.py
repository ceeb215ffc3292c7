"""`detcheck audit`: which known cause breaks determinism on this endpoint. Each check compares
a control arm with a treatment arm that differ in one factor only; every arm is an ordinary run
(a directory of runs under -o, one per round), so analyze, compare and replay work on it.

One warm-up call comes first (it is the first_call check's subject and is in no other arm).
The arms are then sent in rounds, each arm n/rounds calls per round, the order reversed every
other round: a drift of the endpoint over the audit falls on control and treatment alike, and
the control's first and last rounds are compared to say whether there was one.

What the audit promises, as flip does: every request it may send (background streams
included) is priced and limited before the first is sent, and --rpm paces them all; one
process writes an audit at a time (a lock on its directory); an arm that fails for any reason
but the endpoint refusing its parameter is left for --resume, which finishes it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from detcheck.analysis import audit as verdicts
from detcheck.checks import CHECKS, WARMUP, Sizes, arms_of
from detcheck.commands import audit_arms as disk
from detcheck.commands.audit_resume import (
    AUDIT_VERSION,
    SETTINGS,
    STATE,
    json_safe,
    load_state,
    resumed,
)
from detcheck.commands.costs import check_spend, total_spend
from detcheck.commands.flip import flip_command
from detcheck.config import strip_credentials
from detcheck.errors import DetcheckError, Interrupted, Refused, UsageError, reworded

Log = Callable[[str], None]


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


ROUNDS = 4  # looks at the data: after each, the arms whose every check is settled stop
CONTROLS = ("warmup", "alone")  # a failure here is never a refusal of one parameter
# the request parameters an arm's changes touch: a 400 naming one is a refusal of the arm
PARAMETERS_OF = {
    "top_logprobs": ("top_logprobs", "logprobs"),  # legacy completions: `logprobs` is the count
    "temperature": ("temperature",),
    "seed_per_call": ("seed",),
    "logprobs": ("logprobs", "include"),  # the Responses API asks for them with `include`
}
LENGTH_PARAMETERS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def audit_command(options, log: Log, *, checks: list[str], rounds: int = ROUNDS) -> dict:
    """Run the chosen checks (or carry on a killed audit: options.resume is its directory);
    the audit as data (every arm's runs listed, each check's verdict). A dry run returns what
    it would send and cost, and sends nothing."""
    from detcheck.store import RunLock

    if options.replay is not None:
        raise UsageError("audit calls an endpoint: it takes no --replay")
    if options.via == "batch":
        raise UsageError("audit measures online batching: it takes no --via batch")
    if options.concurrency is not None and options.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {options.concurrency}")
    if options.resume is not None:
        root = Path(options.resume)
        if not (root / STATE).is_file():
            raise UsageError(f"--resume {root}: not an audit directory (no {STATE})")
        lock = RunLock(root)  # before anything is read: what we count, no one else writes
        try:
            state = load_state(root)
            options, checks, rounds = resumed(options, state, root, log)
            return _audit(options, log, state, root, checks=checks, rounds=rounds)
        finally:
            lock.release()
    from detcheck import spec
    from detcheck.store import is_uri
    from detcheck.store.runs import new_run_id

    out = Path(options.out or spec.default("out"))
    if is_uri(str(out)):
        raise UsageError("audit writes its arms to a local directory: -o takes a path")
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: not a directory (the audit's directory goes under it)")
    from detcheck.commands.endpoints import checked

    options = checked(options, log)  # the base URL as it will be called, and a model
    state = {"audit_version": AUDIT_VERSION, "audit_id": new_run_id("audit")}
    root = out / state["audit_id"]
    if options.dry_run:
        return _audit(options, log, state, root, checks=checks, rounds=rounds)
    from detcheck.commands.endpoints import require_key

    _calls_per_arm(options, rounds)  # usage errors first, then the key
    require_key(options)  # before the audit's directory is made
    try:
        root.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"-o {out}: cannot create {root.name} ({exc.strerror or exc})") from None
    lock = RunLock(root)
    try:
        return _audit(options, log, state, root, checks=checks, rounds=rounds)
    finally:
        lock.release()


def _audit(options, log: Log, state: dict, root: Path, *, checks, rounds) -> dict:
    from detcheck import spec
    from detcheck.send.pace import pacer_for
    from detcheck.store.files import _write_atomic

    resuming = options.resume is not None
    n = _calls_per_arm(options, rounds)
    concurrency = options.concurrency or spec.default("concurrency", "audit")
    max_tokens = options.max_tokens or spec.default("max_tokens", "audit")
    sizes = Sizes(concurrency, options.prompt or spec.default("prompt"))
    skipped = _not_testable(options, checks, concurrency)
    tested = [c for c in checks if c not in skipped]
    table = arms_of(tested, sizes)
    per_round = [n // rounds + (1 if k < n % rounds else 0) for k in range(rounds)]
    first_seed = (options.seed if options.seed is not None else spec.default("seed")) + 1
    # every arm's runs pace their requests together: --rpm holds across the whole audit
    base = replace(options, concurrency=1, tags=None, max_tokens=None, resume=None,
                   pacer=pacer_for(options.rpm))  # fmt: skip
    errors = state.setdefault("errors", {})  # arm -> why the endpoint refused it (for good)

    def arm_options(name: str, calls: int, round_: int | None, tags=None):
        arm = table.get(name, WARMUP)
        changes = dict(arm.changes)
        if arm.kind == "generate":
            changes["max_tokens"] = max_tokens
        if changes.get("seed_per_call"):  # each round its own seeds: none twice, never `seed`
            changes["seed"] = first_seed + sum(per_round[: (round_ or 1) - 1])
        out = root / name if tags else None
        return replace(base, kind=arm.kind, n=calls, out=out, tags=tags, **changes)

    # the whole audit's spend (what is left of it, for a resume) is planned, limited and
    # confirmed once, before anything is sent: every arm to n, its background streams included
    # (the most it can take; settled arms stop sooner)
    left = _left(root, table, per_round, errors)
    spends = [
        flip_command(replace(arm_options(name, calls, k), dry_run=True), _silent)[0]
        for name, k, calls in left
    ]
    spend = total_spend(spends, arms=len(table)) if spends else _nothing_left(options)
    if options.dry_run:
        return {**spend, "resume": resuming} if resuming else spend
    check_spend(spend, options.max_cost, options.confirm)
    if resuming:
        log(f"resuming audit {state['audit_id']} in {root}: {spend['requests']:,} requests "
            "left at most")  # fmt: skip
    else:
        state["settings"] = {
            **{k: json_safe(getattr(options, k)) for k in SETTINGS if getattr(options, k)},
            "base_url": strip_credentials(options.value("base_url")),
            "n": n, "concurrency": concurrency, "max_tokens": max_tokens,
            "checks": checks, "rounds": rounds,
        }  # fmt: skip
        state["status"] = "running"
        log(f"audit {state['audit_id']}: {len(checks)} checks, {len(table)} arms of up to {n} "
            "calls + 1 warm-up")  # fmt: skip
    base = replace(base, max_cost=None, confirm=None, progress=False, dry_run=False)

    def save() -> None:
        _write_atomic(root / STATE, (json.dumps(state, indent=2) + "\n").encode())

    save()
    hint = f"continue with: detcheck audit --resume {shlex.quote(str(root))}"

    def send(name: str, calls: int, round_: int | None) -> None:
        found = disk.round_run(root / name, round_)
        if found is not None and disk.complete(found):
            return
        arm = table.get(name, WARMUP)
        tags = {"audit_id": state["audit_id"], "audit_arm": name}
        if round_ is not None:
            tags["audit_round"] = round_
        try:
            if found is None:
                _, _, outcome = flip_command(arm_options(name, calls, round_, tags), log,
                                             report=False)  # fmt: skip
            else:  # a run a kill or a failure left: carried on to its own n
                again = replace(
                    base, resume=str(found), kind=None, n=None, out=None, tags=None,
                    concurrency=None,
                    background_prefix=arm.changes.get("background_prefix", ""),
                    **{k: None for k in spec.REQUEST_PARAMS}, base_url=options.base_url,
                )  # fmt: skip
                _, _, outcome = flip_command(again, log, report=False)
        except DetcheckError as exc:
            refused = None if name in CONTROLS else _refusal(exc, arm)
            if refused is None:  # not the endpoint's word on this arm: left for --resume
                first = str(exc).splitlines()[0]
                kept = f"kept what arrived in {root}; {hint}"
                raise reworded(exc, f"arm {name}: {first}\n{kept}") from None
            errors[name] = refused
            save()
            log(f"{name}: the endpoint refused this arm ({refused}); its checks are not tested")
            return
        if outcome.interrupted:  # Ctrl-C: what arrived is kept; no verdict on part of it
            raise Interrupted(f"audit interrupted in arm {name}: what arrived is kept under "
                              f"{root}; {hint}")  # fmt: skip

    send("warmup", 1, None)
    settled: dict[str, str] = {}  # check -> the one verdict it can still end with
    stopped: dict[str, int] = {}  # arm -> calls it stopped at
    sent = 0
    for k, size in enumerate(per_round):
        order = list(table) if k % 2 == 0 else list(table)[::-1]
        for name in order:
            if name in errors or name in stopped:
                continue
            log(f"--- round {k + 1} of {rounds}: {table[name].what} ({size} calls)")
            send(name, size, k + 1)
        sent += size
        calls = disk.arm_calls(root, ["warmup", *table])
        for check in tested:
            if check in settled or _refused(check, sizes, errors):
                continue
            module = CHECKS[check]
            control, treatment, _, _ = _judged(check, calls, sizes)
            more = [0 if a.name == WARMUP.name else n - sent for a in module.arms(sizes)]
            found = verdicts.possible_verdicts(module.TEST, control, treatment, *more)
            if len(found) == 1:
                settled[check] = found.pop()
        for name in table:
            if name in stopped or name in errors:
                continue
            users = [c for c in tested if name in _arm_names(c, sizes)]
            if all(c in settled or _refused(c, sizes, errors) for c in users):
                stopped[name] = sent
                if sent < n:
                    log(f"{name}: stopped after {sent} of {n} calls (its checks are settled)")
    state["stopped_early"] = {name: calls for name, calls in stopped.items() if calls < n}
    _finish(state, root, table, checks=checks, skipped=skipped, sizes=sizes)
    save()
    return state


def _calls_per_arm(options, rounds: int) -> int:
    from detcheck import spec

    n = options.n if options.n is not None else spec.default("n", "audit")
    if n < rounds:
        raise UsageError(f"audit needs --n of at least {rounds} (one call per arm per round)")
    return n


def _left(root: Path, table: dict, per_round: list[int], errors: dict):
    """(arm, round, calls) still to send: every round without a complete run, less what a cut
    run of it already holds; the warm-up first (nothing, for a new audit, is sent yet)."""
    out = []
    wanted = [("warmup", None, 1)] + [
        (name, k + 1, size) for k, size in enumerate(per_round) for name in table
    ]
    for name, round_, size in wanted:
        if name in errors:
            continue
        found = disk.round_run(root / name, round_)
        if found is not None and disk.complete(found):
            continue
        held = disk.successes(found) if found is not None else 0
        if size - held > 0:
            out.append((name, round_, size - held))
    return out


def _nothing_left(options) -> dict:
    from detcheck import spec

    return {
        "dry_run": True, "via": "online", "model": options.value("model"),
        "endpoint": strip_credentials(options.value("base_url")),
        "api": options.value("api"), "requests": 0, "measured_requests": 0,
        "background_requests": 0, "prompt_tokens_per_request": None,
        "completion_tokens_per_request": spec.default("max_tokens"),
        "estimated_cost_usd": 0.0, "replay": False, "arms": 0,
    }  # fmt: skip


def _refusal(exc: DetcheckError, arm) -> str | None:
    """The endpoint's refusal of the parameter this arm changes (a 400 or 422 naming it), in
    its own words; None for anything else (an outage, a full disk, a lock, a timeout)."""
    if not isinstance(exc, Refused) or exc.status not in (400, 422):
        return None
    names = [p for change in arm.changes for p in PARAMETERS_OF.get(change, ())]
    if arm.kind == "generate":
        names += LENGTH_PARAMETERS
    said = exc.detail.lower()
    return exc.detail if any(name in said for name in names) else None


def _judged(check: str, calls: dict, sizes) -> tuple[list, list, str | None, str | None]:
    control, treatment = CHECKS[check].arms(sizes)
    return verdicts.judged(
        calls.get(control.name, []), calls.get(treatment.name, []), shares=treatment.shares
    )


def _finish(state: dict, root: Path, table: dict, *, checks, skipped, sizes) -> None:
    """Each check's verdict from its arms' stored runs, into the audit's state."""
    from detcheck import spec

    settings = state["settings"]
    n = settings["n"]
    names = ["warmup", *table]
    runs = {name: [str(p) for p in disk.runs_of(root / name)] for name in names}
    runs = {name: paths for name, paths in runs.items() if paths}
    background = {name: disk.background(paths) for name, paths in runs.items()}
    calls = disk.arm_calls(root, names)
    results = [_verdict(c, calls, skipped, state["errors"], background, sizes) for c in checks]
    control = next((name for name in ("alone", "greedy") if calls.get(name)), None)
    control_rounds = _by_round(calls.get(control, []))
    half = len(control_rounds) // 2
    state.update(
        status="complete",
        endpoint=settings["base_url"],
        model=settings.get("model") or spec.default("model"),
        n=n,
        concurrency=settings["concurrency"],
        rounds=settings["rounds"],
        checks=results,
        # the control's first rounds against its last: a change over the audit
        drift=verdicts.drift([_flat(control_rounds[:half]), _flat(control_rounds[half:])]),
        # the backend that answered, when it was not one throughout
        endpoint_changes=verdicts.endpoint_changes([c for arm in calls.values() for c in arm]),
        calls=sum(disk.successes(p) for paths in runs.values() for p in paths),
        calls_every_arm_to_n=1 + len(table) * n,
        arms={name: {"what": _what(table, name), "runs": paths} for name, paths in runs.items()},
        out=str(root),
    )


def _by_round(calls: list) -> list[list]:
    rounds: dict = {}
    for c in calls:
        rounds.setdefault(c.round, []).append(c.value)
    return [rounds[k] for k in sorted(rounds, key=lambda k: k or 0)]


def _silent(_: str) -> None:
    pass


def _flat(rounds: list[list]) -> list:
    return [v for values in rounds for v in values]


def _arm_names(check: str, sizes) -> list[str]:
    return [arm.name for arm in CHECKS[check].arms(sizes)]


def _refused(check: str, sizes, errors: dict) -> bool:
    return any(name in errors for name in _arm_names(check, sizes))


def _what(table: dict, name: str) -> str:
    return table.get(name, WARMUP).what


def _not_testable(options, checks: list[str], concurrency: int) -> dict[str, str]:
    """Checks the endpoint's API (or the audit's own settings) cannot test, and why."""
    from detcheck import spec
    from detcheck.shapes import shape

    out = {}
    if concurrency < 2:
        why = "--concurrency 1 shares no batch: give 2 or more to test it"
        out.update({c: why for c in checks if getattr(CHECKS[c], "NEEDS_BATCH", False)})
    api = options.api or spec.default("api")
    if options.no_seed or not shape(api).TAKES_SEED:
        why = "--no-seed" if options.no_seed else f"the {api} API takes no seed"
        out.update({c: why for c in checks if getattr(CHECKS[c], "NEEDS_SEED", False)})
    return out


def _verdict(check, calls, skipped, errors, background, sizes) -> dict:
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
    control_values, treatment_values, why, note = _judged(check, calls, sizes)
    if why is not None:
        return _not_tested(check, why, control, treatment)
    result = verdicts.verdict_of(
        module.TEST, control_values, treatment_values, name=check,
        cannot_tell=getattr(module, "CANNOT_TELL", ""),
    )  # fmt: skip
    result["name"] = check
    if result["verdict"] != verdicts.NOT_TESTED:
        holds, broken = module.MEANING
        result["meaning"] = holds if result["verdict"] == verdicts.HOLDS else broken
    if note is not None:
        result["note"] = note
    result["arms"] = {"control": control, "treatment": treatment}
    return result


def _not_tested(check: str, reason: str, control: str, treatment: str) -> dict:
    return {
        "name": check,
        "verdict": verdicts.NOT_TESTED,
        "reason": reason,
        "arms": {"control": control, "treatment": treatment},
    }


def required_unmet(result: dict, required: list[str]) -> list[str]:
    """Why each required check fails the gate: broken, or not decided (not tested, or not in
    this audit at all). --require passes only on `holds`."""
    found = {c["name"]: c for c in result["checks"]}
    out = []
    for name in required:
        check = found.get(name)
        if check is None:
            out.append(f"{name}: not tested (this audit did not run it)")
        elif check["verdict"] == verdicts.BROKEN:
            out.append(f"{name}: broken")
        elif check["verdict"] != verdicts.HOLDS:
            out.append(f"{name}: {check['verdict']} ({check.get('reason', 'no reason given')})")
    return out
