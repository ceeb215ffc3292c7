"""What each CLI command does, as plain functions the CLI calls (and tests can call too)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import make_dataclass, replace
from pathlib import Path

from detcheck import spec
from detcheck.config import FlipConfig
from detcheck.errors import DataError, DetcheckError, UsageError

Log = Callable[[str], None]


def _given_or_default(self, name: str):
    """The value given, else the spec's default."""
    value = getattr(self, name)
    return spec.default(name) if value is None else value


# A measurement as asked for: every parameter of detcheck.spec as given (None: not given, so a
# resumed or replayed run's own value, else the spec's default applies), and how to run it.
FlipOptions = make_dataclass(
    "FlipOptions",
    [(name, object, None) for name in spec.PARAMS]
    + [
        ("progress", bool, True),
        ("key_env", str, "OPENAI_API_KEY"),  # the environment variable that holds the key
        ("tags", object, None),  # stored in run.json (e.g. a sweep's concurrency level)
        ("partition", bool, False),  # under model=<model>/date=<YYYY-MM-DD>/ (scheduled runs)
    ],
    namespace={"value": _given_or_default},
)


def given_parameters(options) -> dict:
    """The request parameters given (those left unset are absent)."""
    given = {name: getattr(options, name) for name in spec.REQUEST_PARAMS}
    return {k: v for k, v in given.items() if v is not None}


def resolve_config(options, recorded: dict | None = None):
    """Options given on the command line, else the recorded run's, else the spec's."""
    from detcheck.tokens import Target, resolve_targets

    base = FlipConfig.from_dict(recorded) if recorded else FlipConfig()
    config = replace(base, **given_parameters(options))
    if options.no_seed:
        config = replace(config, seed=None)
    from detcheck.shapes import SHAPES

    if config.api in SHAPES and not SHAPES[config.api].TAKES_SEED and options.seed is None:
        config = replace(config, seed=None)  # none is sent, and run.json says so (null)
    config.validate()
    recorded_targets = (recorded or {}).get("targets", {})
    same_model = bool(recorded) and config.model == recorded.get("model")
    if options.target_token:
        targets = resolve_targets(config.model, config.labels, options.target_token)
    elif same_model and all(label in recorded_targets for label in config.labels):
        # the recorded run already says which token each label arrives as: no tiktoken needed
        how = "as the recorded run measured it"
        targets = [Target(label, recorded_targets[label], how) for label in config.labels]
    elif same_model and config.labels[0] in recorded_targets:
        targets = resolve_targets(
            config.model,
            config.labels,
            recorded_targets[config.labels[0]],
            "as the recorded run measured it",
        )
    else:
        targets = resolve_targets(config.model, config.labels)
    return replace(config, targets={t.label: t.token for t in targets}), targets


def _live_endpoint(base_url: str, timeout_s: float, key_env: str = "OPENAI_API_KEY"):
    from detcheck.request import Endpoint

    key = os.environ.get(key_env)
    if not key:
        raise UsageError(
            f"{key_env} is not set. Export it, or try the offline demo: "
            "detcheck flip --replay recordings/gpt-4o-2024-08-06-coinflip-10000"
        )
    if not base_url.startswith(("http://", "https://")):
        from detcheck.config import strip_credentials

        shown = strip_credentials(base_url) if "://" in base_url else "(not a URL)"
        raise UsageError(f"--base-url must start with http:// or https://, got {shown!r}")
    return Endpoint(base_url, key, timeout_s=timeout_s)


def _replay_endpoint(path: Path, served: int = 0):
    from detcheck.measure import replay_source
    from detcheck.request import Endpoint
    from detcheck.transport import ReplayTransport

    bodies, recorded_meta = replay_source(path)
    transport = ReplayTransport(bodies, start=served)
    return Endpoint("http://replay.invalid/v1", "replay", transport), recorded_meta, len(bodies)


# how a run goes, not what it measures: a resume may change these (detcheck.spec says which)
RUN_CONTROL = ("n", "concurrency", "rpm", "max_attempts", "backoff_s", "max_backoff_s")
RUN_CONTROL += ("timeout_s", "out", "thresholds")


def settled(options, stored: dict | None = None):
    """Every run-control value: as given, else the stored run's (a resume), else the default."""
    values = {}
    for name in RUN_CONTROL:
        value = getattr(options, name)
        if value is None and stored:
            value = stored.get(name)
        values[name] = spec.default(name) if value is None else value
    return replace(options, **values)


def flip_command(options, log: Log):
    """Run a measurement (or continue one); return (report, run path, outcome)."""
    from detcheck.measure import open_run, partitioned, run_meta
    from detcheck.tokens import UNRESOLVED

    spec.validate({name: getattr(options, name) for name in spec.PARAMS})
    if options.resume is not None:
        return _resume(options, log)
    options = settled(options)
    n = options.n
    recorded = None
    if options.replay is not None:
        endpoint, recorded_meta, size = _replay_endpoint(options.replay)
        recorded = recorded_meta.get("config")
        endpoint_name = f"replay:{options.replay}"
        if n > size:
            log(f"note: the recording has {size:,} responses; replay wraps around")
    else:
        endpoint_name = options.value("base_url")
        endpoint = _live_endpoint(endpoint_name, options.timeout_s, options.key_env)
    config, targets = resolve_config(options, recorded)
    policy = _policy(options)
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
    meta["client"] = endpoint.client_kind
    for t in targets:
        if UNRESOLVED in t.how:
            log(
                f"{t.label!r}: tiktoken does not know {config.model!r}; the token will be "
                "matched against what the endpoint returns (or give --target-token)"
            )
        else:
            log(f"{t.label!r} is measured as token {t.token!r} ({t.how})")
    log(cost_line(config, n, replay=options.replay is not None))
    out = str(options.out)
    if options.partition:
        out = partitioned(out, config.model, meta["started_at"][:10])
    writer = open_run(out, meta, log)
    log(f"writing {writer.run_dir}")
    return _execute(config, endpoint, writer, n, 0, 0, 0, options, policy, log)


def _policy(options: FlipOptions):
    from detcheck.request import RetryPolicy

    return RetryPolicy(
        max_attempts=options.max_attempts,
        initial_backoff_s=options.backoff_s,
        max_backoff_s=options.max_backoff_s,
    )


def _execute(config, endpoint, writer, n, done, start_call, start_seq, options, policy, log):
    """Send until the run holds n successes; close the run whatever happens."""
    from detcheck.progress import ProgressBar
    from detcheck.report import build_report
    from detcheck.request import Flip, run_flip
    from detcheck.stats import import_scipy_in_background
    from detcheck.store import read_run, utc_now

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
    )
    status = "failed"
    import_scipy_in_background()  # while requests are in flight, not after
    failing = True
    try:
        with ProgressBar(n, enabled=options.progress, done=done) as bar:
            flip.on_progress = bar.update
            outcome = run_flip(flip)
        status = "interrupted" if outcome.interrupted else "complete"
        failing = False
    except DetcheckError as exc:
        exc.args = (f"{exc}\n{_resume_hint(writer, done + flip.outcome.successes, n)}",)
        raise
    finally:
        o = flip.outcome
        notes = {"other_model": o.other_model, "redirected": o.redirected}
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
    log(usage_line(config, outcome, replay=writer.meta.get("replay_of") is not None))
    if flip.limit.lowest < options.concurrency:
        log(f"note: 429s lowered concurrency to {flip.limit.lowest} at the lowest")
    if outcome.short_top_logprobs:
        log(
            f"warning: {outcome.short_top_logprobs:,} response(s) carried fewer than the "
            f"{config.top_logprobs} top logprobs asked for"
        )
    _match_targets_to_tokens(writer, log)
    # the report from the local copy, before it goes (a bucket may only be writable with
    # credentials the URI carried, which run.json does not keep)
    report = build_report([read_run(writer.run_dir)], options.thresholds)
    finish_staging(writer, log)
    if outcome.interrupted:
        log(_resume_hint(writer, done + outcome.successes, n))
    return report, _location(writer), outcome


def _location(writer) -> str | Path:
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
        log(f"warning: not every file reached {_location(writer)}; kept in {writer.run_dir}")


def _resume_hint(writer, successes: int, n: int) -> str:
    """How to go on: from the run's directory (for a remote run, its staging copy while it is
    there: its journals hold what was not uploaded yet), else from its object-store URI."""
    import shlex

    if writer.mirror is not None and not writer.run_dir.exists():
        target = writer.meta["upload_to"]  # credentials come from the environment
    else:
        target = str(writer.run_dir)
    return (
        f"kept {successes:,} of {n:,} responses in {_location(writer)}; continue with: "
        f"detcheck flip --resume {shlex.quote(target)}"
    )


def _resume(options, log: Log):
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
        options = settled(options, _stored_run_control(meta))
        if done >= n:
            return _finish_complete(run_dir, meta, lock, mirror, done, start_seq, options, log)
        if meta.get("replay_of"):
            endpoint, _, _ = _replay_endpoint(Path(meta["replay_of"]), served=done)
        else:
            endpoint = _live_endpoint(
                options.base_url or meta["endpoint"], options.timeout_s, options.key_env
            )
        # each session with its own run control: the run's own unless given
        meta.setdefault("resumed", []).append(
            {
                "at": utc_now().isoformat(),
                "successes": done,
                "concurrency": options.concurrency,
                "rpm": options.rpm,
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
    log(cost_line(stored, n - done, replay=bool(meta.get("replay_of"))))
    return _execute(
        stored,
        endpoint,
        writer,
        n,
        done,
        start_call,
        start_seq,
        options,
        _policy(options),
        log,
    )


def _finish_complete(run_dir, meta, lock, mirror, done, start_seq, options, log):
    """A run that holds its n responses. If the process died before closing it (journals not
    yet compacted, run.json still "running", parts not uploaded), closing is all that is left."""
    from detcheck.report import build_report
    from detcheck.request import Outcome
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
            report = build_report([read_run(run_dir)], options.thresholds)
            finish_staging(writer, log)
            return report, _location(writer), Outcome()
    return build_report([read_run(run_dir)], options.thresholds), run_dir, Outcome()


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

    from detcheck.measure import staging_dir
    from detcheck.store import RUN_JSON, display_uri, open_uri

    fs, path = open_uri(uri)
    path = path.rstrip("/")
    try:
        with fs.open_input_stream(f"{path}/{RUN_JSON}") as f:
            run_id = json_.loads(f.read())["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--resume {display_uri(uri)}: not a detcheck run ({exc})") from None
    local = staging_dir(str(run_id))
    if (local / RUN_JSON).exists():
        log(f"resuming from the staging copy {local}")
        return local
    import pyarrow.fs as pafs

    log(f"downloading {display_uri(uri)} to {local}")
    for info in fs.get_file_info(pafs.FileSelector(path)):
        name = info.base_name
        if name == RUN_JSON or (name.startswith("part-") and name.endswith(".parquet")):
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


def cost_line(config: FlipConfig, n: int, replay: bool) -> str:
    from detcheck.tokens import count_prompt_tokens, estimate_cost_usd

    if replay:
        return f"replaying {n:,} calls: no endpoint is called, nothing is spent"
    prompt_tokens = count_prompt_tokens(config.model, config.prompt)
    if prompt_tokens is None:
        return f"{n:,} calls to {config.model} (no token count or price known for this model)"
    cost = estimate_cost_usd(config.model, prompt_tokens, config.max_tokens, n)
    price = f", at most {fmt_usd(cost)} at list prices" if cost is not None else ""
    return (
        f"{n:,} calls x ({prompt_tokens} prompt + {config.max_tokens} completion tokens)"
        f"{price} (cached prompts cost less)"
    )


def fmt_usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def usage_line(config: FlipConfig, outcome, replay: bool) -> str:
    from detcheck.tokens import usage_cost_usd

    line = (
        f"{outcome.successes:,} responses in {outcome.elapsed_s:,.1f} s "
        f"({outcome.attempts:,} attempts); usage: {outcome.prompt_tokens:,} prompt tokens "
        f"({outcome.cached_tokens:,} cached) + {outcome.completion_tokens:,} completion tokens"
    )
    cost = usage_cost_usd(
        config.model, outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens
    )
    if cost is not None and not replay:
        line += f" = {fmt_usd(cost)} at list prices"
    return line


def _shown_token(token: str | None) -> str:
    """A token as `show` prints it: quoted, so leading spaces and control characters show."""
    from detcheck.record import printable

    return "null" if token is None else printable(json.dumps(token, ensure_ascii=False))


def show_command(path: Path, row: int) -> str:
    import math

    from tabulate import tabulate

    from detcheck.record import printable
    from detcheck.store import find_runs, read_run

    found = find_runs(Path(path))
    if len(found) != 1:
        raise UsageError(f"{path} holds {len(found)} runs; show takes one run")
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


def run_experiment(path: Path, out: str | Path, log: Log, progress: bool = False) -> list[dict]:
    """Every measurement of an experiment file; one summary dict each (`error` on failure)."""
    from detcheck.experiment import load
    from detcheck.report import summary

    summaries = []
    for m in load(path):
        s = dict(m.settings)
        seed, labels = s.pop("seed", None), s.pop("labels", None)
        options = FlipOptions(
            **{k: v for k, v in s.items() if k in spec.PARAMS},
            seed=seed if seed is not False else None,
            no_seed=seed is False or None,
            labels=tuple(labels) if labels is not None else None,
            out=out,
            progress=progress,
            key_env=s.get("api_key_env", "OPENAI_API_KEY"),
            partition=True,
        )
        try:
            report, run_path, _ = flip_command(options, log=log)
        except DetcheckError as exc:
            summaries.append({"name": m.name, "error": str(exc).splitlines()[0]})
            continue
        summaries.append({"name": m.name, "run_path": str(run_path), **summary(report)})
    return summaries


def summary_line(s: dict) -> str:
    if "error" in s:
        return f"{s['name']}: FAILED: {s['error']}"
    fps = ", ".join(f"{k} {v:,}" for k, v in sorted(s["fingerprints"].items()))
    modal = f"modal {s['modal_pct']:.10f}% in {s['modal_share']:.1%}" if s["modal_pct"] else ""
    return (
        f"{s['name']}: {s['n']:,} responses, {s['distinct']:,} distinct, {s['clusters']} "
        f"clusters at {s['threshold']:g} {s['threshold_unit']}, {modal}, Chao1 {s['chao1']:,.1f}; "
        f"fingerprints {fps}; {s['errors']:,} failed attempts -> {s['run_path']}"
    )


def compare_command(baseline, candidate, thresholds, token, fail_on, alpha, markdown, warn):
    """(markdown text, JSON dict, drifted?) for two sets of runs."""
    from detcheck.compare import FINDINGS, Distribution, compare, drift, render_markdown
    from detcheck.report import build_report, run_target
    from detcheck.store import display_uri, read_runs

    kinds = tuple(k.strip() for k in fail_on.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FINDINGS]
    if unknown:
        raise UsageError(f"--fail-on: unknown finding {unknown[0]!r} (from: {', '.join(FINDINGS)})")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    base_runs = read_runs([baseline], warn=warn)
    cand_runs = read_runs([candidate], warn=warn)
    target = token or run_target(base_runs, None)[0]
    base = build_report(base_runs, thresholds, token=target)
    cand = build_report(cand_runs, thresholds, token=target)
    result = compare(
        Distribution.from_report(base), Distribution.from_report(cand), thresholds, alpha
    )
    failing = drift(result, kinds)
    text = render_markdown(result, kinds, (display_uri(baseline), display_uri(candidate)))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    if markdown:
        Path(markdown).write_text(text, encoding="utf-8")
    data = {
        **result,
        "target": target,
        "fail_on": list(kinds),
        "drift": bool(failing),
        "failing_findings": failing,
    }
    return text, data, bool(failing)


def _match_targets_to_tokens(writer, log: Log) -> None:
    """For models tiktoken does not know, pick each label's token from what the endpoint
    actually returned (the most common top tokens), say which and why, and store the choice."""
    from collections import Counter

    from detcheck.store import read_run
    from detcheck.tokens import UNRESOLVED, match_label

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


def probe_command(options) -> dict:
    """What an endpoint honours, asked with the measurement `options` describe."""
    from detcheck.probe import probe

    spec.validate({name: getattr(options, name) for name in spec.PARAMS})
    config, _ = resolve_config(options)
    endpoint = _live_endpoint(options.value("base_url"), options.value("timeout_s"))
    return probe(config, endpoint)


def sweep_command(options, levels: Sequence[int], log: Log) -> list[dict]:
    """The same measurement at several concurrency levels, one run each, tagged with its level."""
    from dataclasses import replace as with_

    from detcheck.measure import new_run_id
    from detcheck.report import summary

    if not levels or any(c < 1 for c in levels):
        raise UsageError("--concurrency takes levels >= 1, e.g. 1,8,64")
    sweep_id = new_run_id("sweep")
    rows = []
    for level in levels:
        log(f"--- concurrency {level}")
        tags = {"sweep_id": sweep_id, "sweep_concurrency": level}
        report, run_path, _ = flip_command(with_(options, concurrency=level, tags=tags), log)
        rows.append({"concurrency": level, "run_path": str(run_path), **summary(report)})
    return rows
