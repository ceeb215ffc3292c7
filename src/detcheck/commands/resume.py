"""`detcheck flip --resume`: carry a stored run (local, or its object-store URI) on to its own N
with its own parameters, under its lock; finish a run a kill left unclosed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detcheck import spec
from detcheck.commands.costs import check_spend, cost_line, plan
from detcheck.commands.flip import (
    execute,
    finish_staging,
    live_endpoint,
    location,
    replay_endpoint,
    retry_policy,
)
from detcheck.commands.options import settled
from detcheck.config import FlipConfig
from detcheck.errors import UsageError

Log = Callable[[str], None]


def resume_run(options, log: Log):
    """Carry on a stored run, with its own parameters, to exactly its n successes. The run's
    lock is taken before anything is read, so what is counted is what no one else is writing."""
    import pyarrow.compute as pc

    from detcheck.store import RunLock, RunWriter, is_uri, read_run, utc_now

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
        start_seq = int(pc.max(table.column("seq")).as_py() + 1) if table.num_rows else 0
        start_call = int(pc.max(table.column("call")).as_py() + 1) if table.num_rows else 0
        mirror = _mirror_of(meta)
        options = settled(options, {**_stored_run_control(meta), "via": meta.get("via", "online")})
        if done >= n:
            return _finish_complete(run_dir, meta, lock, mirror, done, start_seq, options, log)
        replay = bool(meta.get("replay_of"))
        # what is left to do is planned, limited and confirmed like a new run
        check_spend(
            plan(stored, n - done, meta.get("endpoint") or "", replay, options.via),
            options.max_cost,
            options.confirm,
        )
        if replay:
            endpoint, _, _ = replay_endpoint(Path(meta["replay_of"]), served=done)
        else:
            endpoint = live_endpoint(
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
                "client": endpoint.client_kind,
            }
        )
        meta["status"] = "running"
        # compacts what a crashed process left in journals, uploads what it did not
        writer = RunWriter(run_dir, meta, mirror=mirror, lock=lock)
    except BaseException:
        lock.release()
        raise
    log(f"resuming {run_dir}: {done:,} of {n:,} responses kept, {n - done:,} to go")
    log(cost_line(stored, n - done, replay=bool(meta.get("replay_of")), via=options.via))
    return execute(
        stored,
        endpoint,
        writer,
        n,
        done,
        start_call,
        start_seq,
        options,
        retry_policy(options),
        log,
    )


def _finish_complete(run_dir, meta, lock, mirror, done, start_seq, options, log):
    """A run that holds its n responses. If the process died before closing it (journals not
    yet compacted, run.json still "running", parts not uploaded), closing is all that is left."""
    from detcheck.analysis.report import report_of
    from detcheck.send.online import Outcome
    from detcheck.store import RunWriter, read_run, utc_now

    n = meta["n_requested"]
    if meta.get("status") == "complete" and not list(run_dir.glob("_journal-*.jsonl")):
        lock.release()
        log(f"{run_dir} already holds {done:,} of {n:,} responses: nothing to do")
    else:
        log(f"{run_dir} holds {done:,} of {n:,} responses: finishing what was not closed")
        writer = RunWriter(run_dir, meta, mirror=mirror, lock=lock)
        writer.close(
            status="complete",
            ended_at=meta.get("ended_at") or utc_now().isoformat(),
            successes=done,
            attempts=start_seq,
        )
        if mirror is not None:
            report = report_of([read_run(run_dir)], options.thresholds)
            finish_staging(writer, log)
            return report, location(writer), Outcome()
    return report_of([read_run(run_dir)], options.thresholds), run_dir, Outcome()


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
