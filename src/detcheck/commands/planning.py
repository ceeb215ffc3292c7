"""The one place a run's options are resolved: `new_plan` for a new run (live or a replay),
`resume_plan` for a stored run (its own parameters, under its lock). Both return a Plan;
nothing after this reads the options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from detcheck import spec
from detcheck.commands.costs import check_spend, cost_line, spend_of
from detcheck.commands.endpoints import checked, live_endpoint
from detcheck.commands.options import resolve_config, settled
from detcheck.config import FlipConfig
from detcheck.errors import UsageError
from detcheck.plan import Control, Endpoint, Plan, RetryPolicy, Start

Log = Callable[[str], None]


def replay_endpoint(path: Path, served: int = 0):
    """An endpoint that serves a stored run's bodies (from the `served`-th on), the run's
    metadata, and how many bodies it has."""
    from detcheck.send.transport import ReplayTransport, replay_source

    bodies, recorded_meta = replay_source(path)
    transport = ReplayTransport(bodies, start=served)
    return Endpoint("http://replay.invalid/v1", "replay", transport), recorded_meta, len(bodies)


def _policy(options) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=options.max_attempts,
        initial_backoff_s=options.backoff_s,
        max_backoff_s=options.max_backoff_s,
    )


def _control(options) -> Control:
    return Control(
        concurrency=options.concurrency,
        rpm=options.rpm,
        background_load=options.background_load,
        background_prefix=options.background_prefix,
        hold_concurrency=options.hold_concurrency,
        poll_s=options.batch_poll_s,
        cancel_on_interrupt=options.cancel_on_interrupt,
        progress=options.progress,
        pacer=options.pacer,
    )


def new_plan(options, log: Log) -> Plan:
    """A new run: the options given, else a replayed recording's values, else the spec's. A
    dry run's plan has no endpoint (it needs no key) and is not checked against --max-cost."""
    from detcheck.send.tokens import UNRESOLVED
    from detcheck.store.runs import layout_clash, partitioned, run_meta

    endpoint = recorded = None
    recorded_meta: dict = {}
    options = checked(options, log)  # the base URL as it will be called, and a model
    if options.replay is not None:
        endpoint, recorded_meta, size = replay_endpoint(options.replay)
        recorded = recorded_meta.get("config")
        if recorded and recorded_meta.get("targets"):
            # the tokens the run settled on, which for a model tiktoken does not know are
            # matched after the first responses (config keeps what was asked for)
            recorded = {**recorded, "targets": recorded_meta["targets"]}
        if options.kind is None:  # a replay measures what the recording measured
            options = replace(options, kind=(recorded or {}).get("kind", "flip"))
        endpoint_name = f"replay:{options.replay}"
    options = settled(options)
    n = options.n
    if options.replay is not None:
        if n > size:
            log(f"note: the recording has {size:,} responses; replay wraps around")
    else:
        endpoint_name = options.value("base_url")
        if not options.dry_run:  # a plan needs no key
            endpoint = live_endpoint(endpoint_name, options.timeout_s, options.key_env)
    config, targets = resolve_config(options, recorded)
    if options.via == "batch" and options.replay is not None:
        raise UsageError("--via batch sends through the Batch API; a replay sends nothing")
    if options.via == "batch" and options.background_load:
        raise UsageError("--background-load shares online batches; --via batch has none")
    replay = options.replay is not None
    spend = spend_of(
        config, n, endpoint_name, replay=replay, via=options.via,
        background=options.background_load, prefix=options.background_prefix,
    )  # fmt: skip
    plan = Plan(
        config,
        targets,
        endpoint,
        n,
        _control(options),
        _policy(options),
        spend,
        meta={},
        out=str(options.out),
        via=options.via,
        thresholds=options.thresholds,
        answer_regex=options.answer_regex,
    )
    if options.dry_run:
        return plan
    check_spend(spend, options.max_cost, options.confirm)
    meta = run_meta(
        plan,
        endpoint_name,
        replay_of=str(options.replay) if replay else None,
        tags=options.tags,
        timeout_s=options.timeout_s,
    )
    meta["background_load"] = options.background_load
    meta["via"] = options.via  # the serving tier: online, or the Batch API
    meta["measurement"] = options.measurement
    meta["partition"] = None  # the Hive keys of the run's path, if it has them
    meta["client"] = endpoint.client_kind
    if replay and recorded_meta.get("provenance"):  # a replay of data detcheck did not measure
        meta["provenance"] = recorded_meta["provenance"]
    plan.meta = meta
    for t in targets if config.kind == "flip" else []:
        if UNRESOLVED in t.how:
            log(
                f"{t.label!r}: tiktoken does not know {config.model!r}; the token will be "
                "matched against what the endpoint returns (or give --target-token)"
            )
        else:
            log(f"{t.label!r} is measured as token {t.token!r} ({t.how})")
    log(cost_line(spend))
    clash = layout_clash(plan.out, options.partition)
    if clash:
        log(f"warning: {clash}")
    if options.partition:
        meta["partition"] = {"model": config.model, "date": meta["started_at"][:10]}
        plan.out = partitioned(plan.out, meta["partition"])
    return plan


@dataclass
class Stored:
    """The run a resume writes into: its directory, its lock (held from before it was read
    until it is closed), and the object store it is uploaded to, if any."""

    run_dir: Path
    lock: object
    mirror: object = None


def resume_plan(options, log: Log) -> Plan:
    """A stored run carried on, with its own parameters, to exactly its n successes; what is
    left is planned, limited and confirmed like a new run. The run's lock is taken before
    anything is read, so what is counted is what no one else is writing; the plan holds it."""
    import pyarrow.compute as pc

    from detcheck.store import RunLock, is_uri, read_run, utc_now

    if options.replay is not None:
        raise UsageError("--resume takes no --replay: a replayed run resumes its own replay")
    given = str(options.resume)
    run_dir = _download_for_resume(given, log) if is_uri(given) else Path(given)
    if not run_dir.exists():
        raise UsageError(f"--resume {run_dir}: no such file or directory")
    if not run_dir.is_dir():
        raise UsageError(f"--resume takes a run directory, got {run_dir}")
    lock = RunLock(run_dir)
    try:
        run = read_run(run_dir, columns=["ok", "seq", "call"])
        meta = run.meta
        stored = FlipConfig.from_dict(meta["config"])
        n = meta["n_requested"]
        differ = _differences(options, stored, meta)
        if differ:
            raise UsageError(
                "--resume continues a run with its own parameters; these differ: "
                + "; ".join(differ)
            )
        table = run.table
        done = int(pc.sum(table.column("ok")).as_py() or 0)
        start = Start(
            done=done,
            seq=int(pc.max(table.column("seq")).as_py() + 1) if table.num_rows else 0,
            call=int(pc.max(table.column("call")).as_py() + 1) if table.num_rows else 0,
        )
        options = settled(options, {**_stored_run_control(meta), "via": meta.get("via", "online")})
        replay = bool(meta.get("replay_of"))
        plan = Plan(
            stored,
            [],
            None,
            n,
            _control(options),
            _policy(options),
            {},
            meta,
            out=str(run_dir),
            via=options.via,
            start=start,
            thresholds=options.thresholds,
            answer_regex=options.answer_regex,
            stored=Stored(run_dir, lock, _mirror_of(meta)),
        )
        if done >= n:
            return plan  # nothing to send: closing the run is all that may be left
        plan.spend = spend_of(
            stored, n - done, meta.get("endpoint") or "", replay, options.via,
            background=options.background_load,
            prefix=options.background_prefix,
        )  # fmt: skip
        check_spend(plan.spend, options.max_cost, options.confirm)
        if replay:
            plan.endpoint, _, _ = replay_endpoint(Path(meta["replay_of"]), served=done)
        else:
            plan.endpoint = live_endpoint(
                options.base_url or meta["endpoint"], options.timeout_s, options.key_env
            )
        # each session with its own run control: the run's own unless given
        meta.setdefault("resumed", []).append(
            {
                "at": utc_now().isoformat(),
                "successes": done,
                "concurrency": options.concurrency,
                "rpm": options.rpm,
                "background_load": options.background_load,
                "client": plan.endpoint.client_kind,
            }
        )
        meta["status"] = "running"
    except BaseException:
        lock.release()
        raise
    return plan


def _mirror_of(meta: dict):
    """The object-store directory a run is uploaded to, if it is one (credentials from the
    environment: run.json never holds them)."""
    from detcheck.store import open_uri

    upload_to = meta.get("upload_to")
    return open_uri(upload_to) if upload_to else None


def _download_for_resume(uri: str, log: Log) -> Path:
    """A remote run to resume: its staging copy if this machine still has it (journals
    included), else its parts and run.json downloaded into a new private staging directory."""
    import json as json_

    from detcheck.store import META_NAMES, display_uri, meta_file, open_uri
    from detcheck.store.reader import remote_meta_name
    from detcheck.store.runs import staging_dir

    fs, path = open_uri(uri)
    path = path.rstrip("/")
    try:
        with fs.open_input_stream(f"{path}/{remote_meta_name(fs, path)}") as f:
            run_id = json_.loads(f.read())["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--resume {display_uri(uri)}: not a detcheck run ({exc})") from None
    local = staging_dir(str(run_id))
    if meta_file(local):
        log(f"resuming from the staging copy {local}")
        return local
    import pyarrow.fs as pafs

    log(f"downloading {display_uri(uri)} to {local}")
    for info in fs.get_file_info(pafs.FileSelector(path)):
        name = info.base_name
        if name in META_NAMES or (name.startswith("part-") and name.endswith(".parquet")):
            with fs.open_input_stream(info.path) as f:
                (local / name).write_bytes(f.read())
    return local


def _stored_run_control(meta: dict) -> dict:
    """A stored run's own run control, as run.json keeps it."""
    policy = meta.get("retry_policy") or {}
    return {
        "n": meta["n_requested"],
        "concurrency": meta.get("concurrency"),
        "rpm": meta.get("rpm"),
        "max_attempts": policy.get("max_attempts"),
        "backoff_s": policy.get("initial_backoff_s"),
        "max_backoff_s": policy.get("max_backoff_s"),
        "timeout_s": meta.get("timeout_s"),
        "background_load": meta.get("background_load"),
    }


def _differences(options, stored: FlipConfig, meta: dict) -> list[str]:
    """What was given that a resume may not change (what is measured, and how many)."""
    from detcheck.config import strip_credentials

    recorded = {
        **stored.to_dict(),
        "labels": stored.labels,
        "target_token": meta.get("target"),
        "n": meta["n_requested"],
        "base_url": meta["endpoint"],
        "via": meta.get("via", "online"),
    }
    out = []
    for name, param in spec.PARAMS.items():
        value = getattr(options, name)
        if value is None or param.resumable or name not in recorded:
            continue
        if name == "base_url":
            value = strip_credentials(value)
        if value != recorded[name]:
            shown, was = value, recorded[name]
            if name == "labels":
                shown, was = spec.LABEL_SEPARATOR.join(value), spec.LABEL_SEPARATOR.join(was)
            out.append(f"{param.option} {shown!r} (stored {was!r})")
    if options.no_seed and stored.seed is not None:
        out.append(f"--no-seed (stored seed {stored.seed!r})")
    return out
