"""`detcheck flip`: open a run, send until it holds N responses, close it, report. The endpoint
is live (a key from the environment) or a replay of a stored run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from detcheck import spec
from detcheck.commands.costs import check_spend, cost_line, plan, usage_line
from detcheck.commands.options import FlipOptions, resolve_config, settled
from detcheck.errors import DetcheckError, UsageError

Log = Callable[[str], None]


def is_local(base_url: str) -> bool:
    """A server on this machine or a private network (where keys are usually not checked)."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def live_endpoint(base_url: str, timeout_s: float, key_env: str = "OPENAI_API_KEY"):
    from detcheck.plan import Endpoint

    key = os.environ.get(key_env)
    if not key:
        if is_local(base_url):  # vLLM, llama.cpp, SGLang: any key will do, but one is sent
            raise UsageError(
                f"{key_env} is not set. A local server usually takes any key: run with "
                f"{key_env}=unused (or export it)"
            )
        raise UsageError(
            f"{key_env} is not set. Export it, or try the offline demo: "
            "detcheck flip --replay recordings/gpt-4o-2024-08-06-coinflip-10000"
        )
    if not base_url.startswith(("http://", "https://")):
        from detcheck.config import strip_credentials

        shown = strip_credentials(base_url) if "://" in base_url else "(not a URL)"
        raise UsageError(f"--base-url must start with http:// or https://, got {shown!r}")
    return Endpoint(base_url, key, timeout_s=timeout_s)


def replay_endpoint(path: Path, served: int = 0):
    from detcheck.plan import Endpoint
    from detcheck.send.transport import ReplayTransport
    from detcheck.store.runs import replay_source

    bodies, recorded_meta = replay_source(path)
    transport = ReplayTransport(bodies, start=served)
    return Endpoint("http://replay.invalid/v1", "replay", transport), recorded_meta, len(bodies)


def flip_command(options, log: Log):
    """Run a measurement (or continue one); return (report, run path, outcome)."""
    from detcheck.send.tokens import UNRESOLVED
    from detcheck.store.runs import layout_clash, open_run, partitioned, run_meta

    spec.validate({name: getattr(options, name) for name in spec.PARAMS})
    if options.resume is not None:
        from detcheck.commands.resume import resume_run

        return resume_run(options, log)
    recorded = None
    if options.replay is not None:
        endpoint, recorded_meta, size = replay_endpoint(options.replay)
        recorded = recorded_meta.get("config")
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
    spend = plan(config, n, endpoint_name, replay=options.replay is not None, via=options.via)
    if options.dry_run:
        log(cost_line(config, n, replay=options.replay is not None, via=options.via))
        return spend, None, None
    check_spend(spend, options.max_cost, options.confirm)
    policy = retry_policy(options)
    meta = run_meta(
        config,
        targets,
        n=n,
        endpoint=endpoint_name,
        concurrency=options.concurrency,
        rpm=options.rpm,
        policy=policy,
        replay_of=str(options.replay) if options.replay is not None else None,
        tags=options.tags,
        timeout_s=options.timeout_s,
    )
    meta["background_load"] = options.background_load
    meta["via"] = options.via  # the serving tier: online, or the Batch API
    meta["measurement"] = options.measurement
    meta["partition"] = None  # the Hive keys of the run's path, if it has them
    meta["client"] = endpoint.client_kind
    for t in targets if config.kind == "flip" else []:
        if UNRESOLVED in t.how:
            log(
                f"{t.label!r}: tiktoken does not know {config.model!r}; the token will be "
                "matched against what the endpoint returns (or give --target-token)"
            )
        else:
            log(f"{t.label!r} is measured as token {t.token!r} ({t.how})")
    log(cost_line(config, n, replay=options.replay is not None, via=options.via))
    out = str(options.out)
    clash = layout_clash(out, options.partition)
    if clash:
        log(f"warning: {clash}")
    if options.partition:
        meta["partition"] = {"model": config.model, "date": meta["started_at"][:10]}
        out = partitioned(out, meta["partition"])
    writer = open_run(out, meta, log)
    log(f"writing {writer.run_dir}")
    return execute(config, endpoint, writer, n, 0, 0, 0, options, policy, log)


def retry_policy(options: FlipOptions):
    from detcheck.plan import RetryPolicy

    return RetryPolicy(
        max_attempts=options.max_attempts,
        initial_backoff_s=options.backoff_s,
        max_backoff_s=options.max_backoff_s,
    )


def execute(config, endpoint, writer, n, done, start_call, start_seq, options, policy, log):
    """Send until the run holds n successes; close the run whatever happens."""
    from detcheck.analysis.report import report_of
    from detcheck.analysis.stats import import_scipy_in_background
    from detcheck.render.progress import ProgressBar
    from detcheck.send.online import Flip, run_flip
    from detcheck.store import read_run, utc_now

    if writer.meta.get("via") == "batch":
        from detcheck.send.batch import BatchFlip

        flip = BatchFlip(
            config,
            endpoint,
            writer,
            n=n - done,
            policy=policy,
            concurrency=options.concurrency,
            start_seq=start_seq,
            poll_s=options.batch_poll_s,
            cancel_on_interrupt=options.cancel_on_interrupt,
            on_notice=log,
        )
        run = BatchFlip.run
    else:
        flip = Flip(
            config,
            endpoint,
            writer,
            n=n - done,
            concurrency=options.concurrency,
            rpm=options.rpm,
            policy=policy,
            on_notice=log,
            start_call=start_call,
            start_seq=start_seq,
            background_load=options.background_load,
            hold_concurrency=options.hold_concurrency,
        )
        run = run_flip
    status = "failed"
    import_scipy_in_background()  # while requests are in flight, not after
    failing = True
    try:
        with ProgressBar(n, enabled=options.progress, done=done, label=config.kind) as bar:
            flip.on_progress = bar.update
            outcome = run(flip)
        status = "interrupted" if outcome.interrupted else "complete"
        failing = False
    except DetcheckError as exc:
        exc.args = (f"{exc}\n{_resume_hint(writer, done + flip.outcome.successes, n)}",)
        raise
    finally:
        o = flip.outcome
        notes = {
            "other_model": o.other_model,
            "redirected": o.redirected,
            "background_requests": o.background_requests,
            "background_failed": o.background_failed,
            **o.notes,
        }
        if writer.meta.get("resumed"):  # this session's end (a session a kill ended has none)
            writer.meta["resumed"][-1]["ended_at"] = utc_now().isoformat()
        try:
            writer.close(
                status=status,
                ended_at=utc_now().isoformat(),
                successes=done + o.successes,
                attempts=start_seq + o.attempts,
                notes={k: (writer.meta.get("notes") or {}).get(k, 0) + v for k, v in notes.items()},
            )
        except DetcheckError as exc:  # the disk filled, or an upload failed: say how to go on
            if not failing:  # (an error already on its way is the one to report)
                exc.args = (f"{exc}\n{_resume_hint(writer, done + o.successes, n)}",)
                raise
    endpoint.transport = None  # a replay's bodies are not needed for the report: free them
    replayed = writer.meta.get("replay_of") is not None
    log(usage_line(config, outcome, replay=replayed, via=writer.meta.get("via", "online")))
    if flip.limit.lowest < options.concurrency:
        log(f"note: 429s lowered concurrency to {flip.limit.lowest} at the lowest")
    if outcome.short_top_logprobs:
        log(
            f"warning: {outcome.short_top_logprobs:,} response(s) carried fewer than the "
            f"{config.top_logprobs} top logprobs asked for"
        )
    if config.kind == "flip":
        _match_targets_to_tokens(writer, log)
    # the report from the local copy, before it goes (a bucket may only be writable with
    # credentials the URI carried, which run.json does not keep)
    report = report_of(
        [read_run(writer.run_dir)], options.thresholds, answer_regex=options.answer_regex
    )
    finish_staging(writer, log)
    if outcome.interrupted:
        log(_resume_hint(writer, done + outcome.successes, n))
    return report, location(writer), outcome


def location(writer) -> str | Path:
    """Where the run is: its directory, or its object-store URI (without credentials)."""
    from detcheck.store import display_uri

    upload_to = writer.meta.get("upload_to")
    return display_uri(upload_to) if writer.mirror is not None and upload_to else writer.run_dir


def finish_staging(writer, log: Log) -> None:
    """A run bound for an object store: once every file is uploaded, its local staging copy
    (journals and all) goes; if something is missing there, the copy stays for --resume."""
    import shutil

    if writer.mirror is None:
        return
    if writer.uploaded():
        shutil.rmtree(writer.run_dir, ignore_errors=True)
    else:
        log(f"warning: not every file reached {location(writer)}; kept in {writer.run_dir}")


def _resume_hint(writer, successes: int, n: int) -> str:
    """How to go on: from the run's directory (for a remote run, its staging copy while it is
    there: its journals hold what was not uploaded yet), else from its object-store URI."""
    import shlex

    command = (writer.meta.get("config") or {}).get("kind") or "flip"
    if writer.mirror is not None and not writer.run_dir.exists():
        target = writer.meta["upload_to"]  # credentials come from the environment
    else:
        target = str(writer.run_dir)
    return (
        f"kept {successes:,} of {n:,} responses in {location(writer)}; continue with: "
        f"detcheck {command} --resume {shlex.quote(target)}"
    )


def _match_targets_to_tokens(writer, log: Log) -> None:
    """For models tiktoken does not know, pick each label's token from what the endpoint
    actually returned (the most common top tokens), say which and why, and store the choice."""
    from collections import Counter

    from detcheck.send.tokens import UNRESOLVED, match_label
    from detcheck.store import read_run

    meta = writer.meta
    unresolved = [label for label, how in meta["target_how"].items() if UNRESOLVED in how]
    if not unresolved:
        return
    run = read_run(writer.run_dir)
    seen: Counter = Counter()
    for batch in run.batches(["ok", "top_logprobs"], batch_size=1000):
        for ok, top in zip(
            batch.column("ok").to_pylist(), batch.column("top_logprobs").to_pylist()
        ):
            if ok and top:
                seen.update(e["token"] for e in top if e["token"] is not None)
        break  # the first thousand responses are enough to see the vocabulary
    ranked = [t for t, _ in seen.most_common()]
    for label in unresolved:
        found = match_label(label, ranked)
        if found is None:
            log(
                f"warning: no returned token matches {label!r}; analyse another with --token "
                f"(most common: {', '.join(repr(t) for t in ranked[:8])})"
            )
            continue
        token, how = found
        meta["targets"][label] = token
        meta["target_how"][label] = how
        if label == meta["label"]:
            meta["target"] = token
        log(f"{label!r} is measured as token {token!r} ({how})")
    writer.write_meta()
