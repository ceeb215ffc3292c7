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


ROUNDS = 4  # looks at the data: after each, the arms whose every check is settled stop
STATE = "_audit.json"
# what a resumed audit takes from the one it continues (the rest is the run's own business)
SETTINGS = ("model", "prompt", "labels", "temperature", "seed", "no_seed", "top_logprobs", "api")
SETTINGS += ("base_url", "n", "concurrency", "max_tokens", "timeout_s", "max_attempts", "rpm")


def audit_command(options, log: Log, *, checks: list[str], rounds: int = ROUNDS) -> dict:
    """Run the chosen checks (or carry on a killed audit: options.resume is its directory);
    the audit as data (every arm's runs listed, each check's verdict). A dry run returns what
    it would send and cost, and sends nothing."""
    from detcheck import spec
    from detcheck.store import is_uri
    from detcheck.store.files import _write_atomic
    from detcheck.store.runs import new_run_id

    if options.replay is not None:
        raise UsageError("audit calls an endpoint: it takes no --replay")
    if options.via == "batch":
        raise UsageError("audit measures online batching: it takes no --via batch")
    if options.resume is not None:
        root = Path(options.resume)
        state = _load_state(root)
        options, checks, rounds = _resumed(options, state, root)
        log(f"resuming audit {state['audit_id']} in {root}")
    else:
        if is_uri(str(options.out or "")):
            raise UsageError("audit writes its arms to a local directory: -o takes a path")
        from detcheck.commands.endpoints import checked

        options = checked(options, log)  # the base URL as it will be called, and a model
        state = {"audit_version": AUDIT_VERSION, "audit_id": new_run_id("audit")}
        root = Path(options.out or spec.default("out")) / state["audit_id"]
    n = options.n if options.n is not None else spec.default("n", "audit")
    if n < rounds:
        raise UsageError(f"audit needs --n of at least {rounds} (one call per arm per round)")
    concurrency = options.concurrency or spec.default("concurrency", "audit")
    max_tokens = options.max_tokens or spec.default("max_tokens", "audit")
    sizes = Sizes(concurrency, options.prompt or spec.default("prompt"))
    skipped = _not_testable(options, checks)
    tested = [c for c in checks if c not in skipped]
    table = arms_of(tested, sizes)
    base = replace(options, concurrency=1, tags=None, max_tokens=None, resume=None)

    def arm_options(name: str, calls: int, tags=None):
        arm = table.get(name, WARMUP)
        length = {"max_tokens": max_tokens} if arm.kind == "generate" else {}
        out = root / name if tags else None
        return replace(base, kind=arm.kind, n=calls, out=out, tags=tags, **length, **arm.changes)

    if options.resume is None:
        # the whole audit's spend is planned, limited and confirmed once, before anything is
        # sent: every arm to n (the most it can take; settled arms stop sooner)
        spends = [flip_command(replace(arm_options(a, n), dry_run=True), _silent)[0] for a in table]
        warm = flip_command(replace(arm_options("warmup", 1), dry_run=True), _silent)[0]
        costs = [s["estimated_cost_usd"] for s in [warm, *spends]]
        spend = {
            **warm,
            "requests": warm["requests"] + sum(s["requests"] for s in spends),
            "arms": len(table),
            "estimated_cost_usd": None if None in costs else sum(costs),
        }
        if options.dry_run:
            return spend
        check_spend(spend, options.max_cost, options.confirm)
        state["settings"] = {
            **{k: _json_safe(getattr(options, k)) for k in SETTINGS if getattr(options, k)},
            "base_url": strip_credentials(options.value("base_url")),
            "n": n, "concurrency": concurrency, "max_tokens": max_tokens,
            "checks": checks, "rounds": rounds,
        }  # fmt: skip
        state.update(status="running", errors={})
        log(f"audit {state['audit_id']}: {len(checks)} checks, {len(table)} arms of up to {n} "
            "calls + 1 warm-up")  # fmt: skip
    base = replace(base, max_cost=None, confirm=None, progress=False, dry_run=False)

    def save() -> None:
        root.mkdir(parents=True, exist_ok=True)
        _write_atomic(root / STATE, (json.dumps(state, indent=2) + "\n").encode())

    save()
    audit_id, errors = state["audit_id"], state["errors"]

    def send(name: str, calls: int, round_: int | None) -> None:
        tags = {"audit_id": audit_id, "audit_arm": name}
        if round_ is not None:
            tags["audit_round"] = round_
        found = _round_run(root / name, round_)
        if found is not None and _complete(found):
            return
        arm = table.get(name, WARMUP)
        try:
            if found is None:
                _, _, outcome = flip_command(arm_options(name, calls, tags), log, report=False)
            else:  # a run a kill left: carried on to its own n
                again = replace(
                    base, resume=str(found), kind=None, n=None, out=None, tags=None,
                    concurrency=None,
                    background_prefix=arm.changes.get("background_prefix", ""),
                    **{k: None for k in spec.REQUEST_PARAMS}, base_url=options.base_url,
                )  # fmt: skip
                _, _, outcome = flip_command(again, log, report=False)
        except DetcheckError as exc:
            if name in ("alone", "warmup") or isinstance(exc, Interrupted):  # every control
                raise
            errors[name] = str(exc).splitlines()[0]
            save()
            log(f"{name}: {errors[name]}")
            return
        if outcome.interrupted:  # Ctrl-C: what arrived is kept; no verdict on part of it
            raise Interrupted(
                f"audit interrupted in arm {name}: what arrived is kept under {root}; "
                f"continue with: detcheck audit --resume {root}"
            )

    send("warmup", 1, None)
    per_round = [n // rounds + (1 if k < n % rounds else 0) for k in range(rounds)]
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
        values = _arm_values(root, table)
        for check in tested:
            if check not in settled and not _refused(check, sizes, errors):
                module = CHECKS[check]
                control, treatment = (values.get(a.name, []) for a in module.arms(sizes))
                left = [0 if a.name == WARMUP.name else n - sent for a in module.arms(sizes)]
                found = verdicts.possible_verdicts(module.TEST, control, treatment, *left)
                if len(found) == 1:
                    settled[check] = found.pop()
        for name in table:
            users = [c for c in tested if name in _arm_names(c, sizes)]
            if name not in stopped and all(
                c in settled or _refused(c, sizes, errors) for c in users
            ):
                stopped[name] = sent
                if sent < n:
                    log(f"{name}: stopped after {sent} of {n} calls (its checks are settled)")
    state["stopped_early"] = {name: calls for name, calls in stopped.items() if calls < n}
    _finish(state, root, table, checks=checks, skipped=skipped, sizes=sizes)
    save()
    return state


def _finish(state: dict, root: Path, table: dict, *, checks, skipped, sizes) -> None:
    """Each check's verdict from its arms' stored runs, into the audit's state."""
    from detcheck import spec

    settings = state["settings"]
    n = settings["n"]
    runs = {name: _runs_of(root / name) for name in ["warmup", *table]}
    runs = {name: [str(p) for p in paths] for name, paths in runs.items() if paths}
    background = {name: _background(paths) for name, paths in runs.items()}
    by_round = {name: [_values(p) for p in paths] for name, paths in runs.items()}
    pooled = {name: _flat(rounds) for name, rounds in by_round.items()}
    results = [_verdict(c, pooled, skipped, state["errors"], background, sizes) for c in checks]
    control_rounds = by_round.get("alone") or by_round.get("greedy") or []
    half = len(control_rounds) // 2
    calls = sum(_successes(p) for paths in runs.values() for p in paths)
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
        calls=calls,
        calls_every_arm_to_n=1 + len(table) * n,
        arms={name: {"what": _what(table, name), "runs": paths} for name, paths in runs.items()},
        out=str(root),
    )


def _silent(_: str) -> None:
    pass


def _flat(rounds: list[list]) -> list:
    return [v for values in rounds for v in values]


def _json_safe(value):
    return list(value) if isinstance(value, tuple) else value


def _load_state(root: Path) -> dict:
    path = root / STATE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--resume {root}: not an audit directory (no {STATE})") from None
    except ValueError as exc:
        raise UsageError(f"--resume {root}: {STATE} is not JSON ({exc})") from None
    if state.get("audit_version") != AUDIT_VERSION or "settings" not in state:
        raise UsageError(f"--resume {root}: {STATE} is not one this version can continue")
    return state


def _resumed(options, state: dict, root: Path):
    """The options of the audit a resume continues: its own settings; only how to reach the
    endpoint (a base URL with credentials, the key's variable) may be given again."""
    from detcheck.commands import FlipOptions

    settings = dict(state["settings"])
    checks, rounds = settings.pop("checks"), settings.pop("rounds")
    if isinstance(settings.get("labels"), list):
        settings["labels"] = tuple(settings["labels"])
    if options.base_url:
        settings["base_url"] = options.base_url
    resumed = FlipOptions(
        **settings, out=str(root.parent), resume=str(root), key_env=options.key_env,
        progress=options.progress, confirm=options.confirm,
    )  # fmt: skip
    return resumed, checks, rounds


def _rounds_of(arm_dir: Path) -> list[tuple[int | None, Path]]:
    """An arm's runs with their rounds, in round order (the warm-up's, round None, first)."""
    if not arm_dir.is_dir():
        return []
    found = []
    for run_dir in arm_dir.iterdir():
        meta = _meta(run_dir)
        if meta is not None:
            found.append(((meta.get("tags") or {}).get("audit_round"), run_dir))
    return sorted(found, key=lambda found: (found[0] or 0, found[1]))


def _runs_of(arm_dir: Path) -> list[Path]:
    return [path for _, path in _rounds_of(arm_dir)]


def _round_run(arm_dir: Path, round_: int | None) -> Path | None:
    return next((path for k, path in _rounds_of(arm_dir) if k == round_), None)


def _meta(run_dir: Path) -> dict | None:
    from detcheck.store.files import meta_file

    found = meta_file(run_dir) if run_dir.is_dir() else None
    try:
        return json.loads(found.read_text()) if found is not None else None
    except (OSError, ValueError):
        return None


def _complete(run_dir: Path) -> bool:
    meta = _meta(run_dir) or {}
    return meta.get("status") == "complete" and not list(run_dir.glob("_journal-*.jsonl"))


def _successes(path: str) -> int:
    return int((_meta(Path(path)) or {}).get("successes") or 0)


def _background(paths: list[str]) -> dict:
    notes = [(_meta(Path(p)) or {}).get("notes") or {} for p in paths]
    return {
        "sent": sum(x.get("background_requests", 0) for x in notes),
        "failed": sum(x.get("background_failed", 0) for x in notes),
    }


def _arm_values(root: Path, table: dict) -> dict[str, list]:
    """Every arm's values so far, its rounds pooled in order."""
    return {
        name: [v for path in _runs_of(root / name) for v in _values(str(path))]
        for name in ["warmup", *table]
    }


def _arm_names(check: str, sizes) -> list[str]:
    return [arm.name for arm in CHECKS[check].arms(sizes)]


def _refused(check: str, sizes, errors: dict) -> bool:
    return any(name in errors for name in _arm_names(check, sizes))


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
    result = verdicts.verdict_of(
        module.TEST, values.get(control, []), values.get(treatment, []), name=check,
        cannot_tell=getattr(module, "CANNOT_TELL", ""),
    )  # fmt: skip
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
