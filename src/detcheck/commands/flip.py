"""`detcheck flip`: plan the run (commands/planning), open it, send until it holds N
responses, close it, report. The endpoint is live (a key from the environment) or a replay of
a stored run; `--resume` carries a stored run on to its own N."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detcheck import spec
from detcheck.commands.costs import cost_line, usage_line
from detcheck.commands.planning import new_plan, resume_plan
from detcheck.errors import DetcheckError, Refused
from detcheck.plan import Plan

Log = Callable[[str], None]


def flip_command(options, log: Log, *, report: bool = True):
    """Run a measurement (or continue one); return (report, run path, outcome). A dry run
    returns what it would send and cost, and sends nothing. `report=False` skips the report
    (None): the audit reads its arms' values itself."""
    spec.validate({name: getattr(options, name) for name in spec.PARAMS})
    if options.resume is not None:
        plan = resume_plan(options, log)
        if plan.remaining <= 0:
            return _finish_complete(plan, log, report=report)
    else:
        plan = new_plan(options, log)
        if options.dry_run:
            log(cost_line(plan.spend))
            return plan.spend, None, None
    writer = open_writer(plan, log)
    try:
        return execute(plan, writer, log, report=report)
    except Refused as exc:
        if not exc.nothing_kept:
            raise
        import shutil

        from detcheck.commands.endpoints import explain

        # the first requests were refused: the empty run goes; say what was probably meant,
        # and the command that puts it right
        shutil.rmtree(writer.run_dir, ignore_errors=True)
        raise explain(exc, options, plan.endpoint) from None


def open_writer(plan: Plan, log: Log):
    """The run's writer: a new run under plan.out, or the stored run a resume continues (whose
    journals a crashed process left are compacted, and what it did not upload, uploaded)."""
    from detcheck.store import RunWriter
    from detcheck.store.runs import open_run

    if plan.stored is None:
        writer = open_run(plan.out, plan.meta, log)
        log(f"writing {writer.run_dir}")
        return writer
    stored = plan.stored
    try:
        writer = RunWriter(stored.run_dir, plan.meta, mirror=stored.mirror, lock=stored.lock)
    except BaseException:
        stored.lock.release()
        raise
    log(
        f"resuming {stored.run_dir}: {plan.start.done:,} of {plan.n:,} responses kept, "
        f"{plan.remaining:,} to go"
    )
    log(cost_line(plan.spend))
    return writer


def execute(plan: Plan, writer, log: Log, *, report: bool = True):
    """Send until the run holds plan.n successes; close the run whatever happens."""
    from detcheck.analysis.report import report_of
    from detcheck.analysis.stats import import_scipy_in_background
    from detcheck.render.progress import ProgressBar
    from detcheck.send.online import Flip
    from detcheck.send.runner import run_flip
    from detcheck.store import read_run

    if plan.via == "batch":
        from detcheck.send.batch import BatchFlip

        flip, run = BatchFlip(plan, writer, on_notice=log), BatchFlip.run
    else:
        flip, run = Flip(plan, writer, on_notice=log), run_flip
    done, n, config = plan.start.done, plan.n, plan.config
    status = "failed"
    import_scipy_in_background()  # while requests are in flight, not after
    failing = True
    try:
        with ProgressBar(n, enabled=plan.control.progress, done=done, label=config.kind) as bar:
            flip.on_progress = bar.update
            outcome = run(flip)
        status = "interrupted" if outcome.interrupted else "complete"
        failing = False
    except DetcheckError as exc:
        kept = done + flip.outcome.successes
        if isinstance(exc, Refused) and not kept and plan.stored is None and not writer.mirror:
            # a configuration error (a wrong URL, key or model): an empty run helps no one,
            # and --resume would refuse the corrected options
            exc.nothing_kept = True
            raise
        exc.args = (f"{exc}\n{_resume_hint(writer, kept, n)}",)
        raise
    finally:
        try:
            close_run(plan, writer, flip.outcome, status)
        except DetcheckError as exc:  # the disk filled, or an upload failed: say how to go on
            if not failing:  # (an error already on its way is the one to report)
                successes = done + flip.outcome.successes
                exc.args = (f"{exc}\n{_resume_hint(writer, successes, n)}",)
                raise
    plan.endpoint.transport = None  # a replay's bodies are not needed for the report: free them
    log(usage_line(config, outcome, replay=plan.replay, via=plan.via))
    if flip.limit.lowest < plan.control.concurrency:
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
    analysed = (
        report_of([read_run(writer.run_dir)], plan.thresholds, answer_regex=plan.answer_regex)
        if report
        else None
    )
    finish_staging(writer, log)
    if outcome.interrupted:
        log(_resume_hint(writer, done + outcome.successes, n))
    return analysed, location(writer), outcome


def close_run(plan: Plan, writer, outcome, status: str) -> None:
    """Close a run after sending: its status, its counts, and the notes of this session added
    to those of earlier ones."""
    from detcheck.store import utc_now

    o = outcome
    notes = {
        "other_model": o.other_model,
        "redirected": o.redirected,
        "background_requests": o.background_requests,
        "background_failed": o.background_failed,
        **o.notes,
    }
    if writer.meta.get("resumed"):  # this session's end (a session a kill ended has none)
        writer.meta["resumed"][-1]["ended_at"] = utc_now().isoformat()
    writer.close(
        status=status,
        ended_at=utc_now().isoformat(),
        successes=plan.start.done + o.successes,
        attempts=plan.start.seq + o.attempts,
        notes={k: (writer.meta.get("notes") or {}).get(k, 0) + v for k, v in notes.items()},
    )


def execute_many(options_list: list, log: Log, *, in_flight: int) -> list[Path]:
    """New runs sent at once, in one event loop, with at most `in_flight` requests in flight
    across them all (1: one at a time, in turn): a prompt set measured alone, or batched with
    itself. Every run is closed whatever happens; the first error is raised after, naming its
    run. Returns the runs' directories."""
    from dataclasses import replace

    from detcheck.send.online import Flip, Outcome
    from detcheck.send.retry import AdaptiveLimit
    from detcheck.send.runner import run_flips

    limit = AdaptiveLimit(in_flight)
    plans, writers = [], []
    try:
        for options in options_list:
            plan = new_plan(options, _silent)
            plan.control = replace(plan.control, limit=limit)
            if plans and plan.endpoint == plans[0].endpoint:
                plan.endpoint = plans[0].endpoint  # one client for them all (send.runner)
            plans.append(plan)
            writers.append(open_writer(plan, _silent))
    except BaseException:
        for plan, writer in zip(plans, writers):
            close_run(plan, writer, Outcome(), "failed")
        raise
    flips = [Flip(plan, writer, on_notice=log) for plan, writer in zip(plans, writers)]
    ended = run_flips(flips)
    for plan, writer, flip, outcome in zip(plans, writers, flips, ended):
        if isinstance(outcome, BaseException):
            status = "failed"
        else:
            status = "interrupted" if outcome.interrupted else "complete"
        close_run(plan, writer, flip.outcome, status)
    failed = [o for o in ended if isinstance(o, BaseException)]
    if failed:
        raise failed[0]
    # a signal that came as the last requests were answered ended nothing, but was asked for:
    # the caller (a verification's next phase) must not carry on
    if any(o.interrupted for o in ended) or any(f.stop_requested for f in flips):
        from detcheck.errors import Interrupted

        raise Interrupted("interrupted: what arrived is kept")
    return [writer.run_dir for writer in writers]


def _silent(_: str) -> None:
    pass


def _finish_complete(plan: Plan, log: Log, *, report: bool = True):
    """A resumed run that holds its n responses. If the process died before closing it
    (journals not yet compacted, run.json still "running", parts not uploaded), closing is all
    that is left."""
    from detcheck.analysis.report import report_of
    from detcheck.send.online import Outcome
    from detcheck.store import RunWriter, read_run, utc_now

    run_dir, meta, stored = plan.stored.run_dir, plan.meta, plan.stored
    done, n = plan.start.done, plan.n
    if meta.get("status") == "complete" and not list(run_dir.glob("_journal-*.jsonl")):
        stored.lock.release()
        log(f"{run_dir} already holds {done:,} of {n:,} responses: nothing to do")
    else:
        log(f"{run_dir} holds {done:,} of {n:,} responses: finishing what was not closed")
        writer = RunWriter(run_dir, meta, mirror=stored.mirror, lock=stored.lock)
        writer.close(
            status="complete",
            ended_at=meta.get("ended_at") or utc_now().isoformat(),
            successes=done,
            attempts=plan.start.seq,
        )
        if stored.mirror is not None:
            analysed = report_of([read_run(run_dir)], plan.thresholds) if report else None
            finish_staging(writer, log)
            return analysed, location(writer), Outcome()
    analysed = report_of([read_run(run_dir)], plan.thresholds) if report else None
    return analysed, run_dir, Outcome()


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
    actually returned (ranked by probability mass over the first responses), say which and
    why, and store the choice."""
    import math
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
                # mass, not presence: every top-20 token is present in every response
                for e in top:
                    if e["token"] is not None and e["logprob"] is not None:
                        seen[e["token"]] += math.exp(e["logprob"])
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
