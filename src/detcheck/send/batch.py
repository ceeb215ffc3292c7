"""`--via batch`: the same requests through the Batch API, at half the list price and on another
serving tier. The N request bodies (exactly the online ones) go up as JSONL, a batch is created
and polled, and its output and error files come back as one row per line, in the schema of online
runs (with `batch_id` and `custom_id`).

Nothing is paid for twice and nothing is lost:
- the run's metadata names each batch (and, before a batch exists, the file it is made from and
  the custom_ids it holds) as soon as it exists, so `--resume` re-attaches to a batch a killed
  process left instead of creating another, and sends only what is still missing after it;
- a create is never retried blindly (the SDK's retries are off): before detcheck creates again
  from the same input file it looks the batch up by that file;
- only lines whose custom_id was uploaded count; a line that cannot be read, names an id never
  sent, or is missing from what came back is a failed attempt with its raw text, and the call
  goes again in a follow-up batch until the run holds its N successes or runs out of attempts;
- every call to the API is bounded by --timeout as a whole, a batch that outlives its window (or
  reports a status nobody documents) is ended, and output files are streamed, line by line, each
  line capped;
- every message is redacted before it is stored or shown, and failures are detcheck's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import time
from collections import Counter
from collections.abc import Callable

from detcheck.errors import EndpointError
from detcheck.plan import Plan
from detcheck.send.batch_api import (
    DONE,
    MAX_LINES,
    WINDOW,
    BatchAPI,
    CallFailed,
    counts_text,
    custom_id,
    duration_text,
    error_kind,
    failure_of,
    given_up,
    ids_of,
    into_files,
    raw_text,
    read_output_line,
    sent_ranges,
    to_micros_s,
)
from detcheck.send.online import Outcome
from detcheck.send.record import (
    body_text,
    redact_row,
    success_fields,
    unusable_reason,
)
from detcheck.shapes._parse import FINAL_KINDS, MalformedResponse
from detcheck.store import to_micros, utc_now
from detcheck.text import clip, printable, redact


class _Limit:  # what the caller reads of an online run's concurrency (never lowered here)
    def __init__(self, concurrency: int):
        self.lowest = concurrency


class BatchFlip:
    """A measurement through the Batch API; `run()` returns the Outcome, like an online Flip."""

    def __init__(self, plan: Plan, writer, on_notice: Callable[[str], None] | None = None):
        config, endpoint = plan.config, plan.endpoint
        self.config, self.endpoint, self.writer, self.policy = config, endpoint, writer, plan.policy
        self.target_total = int(writer.meta["n_requested"])
        self.poll_s = plan.control.poll_s
        self.cancel_on_interrupt = plan.control.cancel_on_interrupt
        self.secrets = endpoint.secrets
        notice = on_notice or (lambda message: None)
        # ids, statuses and messages in a notice are the server's: redacted, on one line
        self.on_notice = lambda message: notice(printable(redact(message, self.secrets)))
        self.on_progress: Callable[[Outcome], None] = lambda outcome: None
        self.outcome = Outcome()
        self.limit = _Limit(plan.control.concurrency)
        whole = config.kind == "generate"
        self.parse = (
            functools.partial(config.shape.parse, whole=True) if whole else config.shape.parse
        )
        self.targets = frozenset(config.targets.values())
        # the Batch API names the endpoint with its version: /v1/chat/completions
        self.url = "/v1" + config.path
        self._seq = plan.start.seq
        self._started = time.monotonic()
        self._signalled = False
        self._load_state()

    # -- what the run already holds (a resume) --------------------------------------------
    def _load_state(self) -> None:
        from detcheck.store import read_run

        self.succeeded: set[int] = set()
        self.attempts: Counter = Counter()  # call -> attempts made
        self.seen: set[str] = set()  # custom_ids already stored (a line is stored once)
        self._last_error: dict[int, str] = {}  # call -> its last failure, for the final error
        run = read_run(self.writer.run_dir, columns=["call", "attempt", "ok", "custom_id"])
        for call, attempt, ok, cid in zip(
            *(run.table.column(c).to_pylist() for c in ("call", "attempt", "ok", "custom_id"))
        ):
            if cid:
                self.seen.add(cid)
            if call < 0:  # a line that answered no call of ours
                continue
            self.attempts[call] = max(self.attempts[call], attempt)
            if ok:
                self.succeeded.add(call)
        # calls already handed to a batch count too, answered or not: never sent as new
        sent = [r[1] for b in self._batches() for r in b.get("sent") or ()]
        self._next_call = max([*self.attempts, *sent], default=-1) + 1

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            asyncio.run(self._main())
        except KeyboardInterrupt:  # no signal handlers (not the main thread): the default
            self.outcome.interrupted = True
        self.outcome.elapsed_s = time.monotonic() - started
        return self.outcome

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def stop() -> None:
            if not self._signalled:
                self._signalled = True
                task.cancel()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop)
                installed.append(sig)
        try:
            async with BatchAPI(self.endpoint, self.policy) as self.api:
                try:
                    await self._until_done()
                except asyncio.CancelledError:
                    if not self._signalled:
                        raise
                    if hasattr(task, "uncancel"):
                        task.uncancel()
                    await self._interrupted()
                    self.outcome.interrupted = True
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _until_done(self) -> None:
        for record in list(self._batches()):
            if not record.get("collected"):
                await self._settle(record)
        while len(self.succeeded) < self.target_total:
            lines = self._next_lines()
            # every file of this round submitted before waiting: the batches run side by side
            records = [await self._submit(chunk) for chunk in into_files(lines, self._line_bytes())]
            for record in records:
                await self._settle(record)

    def _batches(self) -> list[dict]:
        return self.writer.meta.setdefault("batches", [])

    def _next_lines(self) -> list[tuple[int, int]]:
        """(call, attempt) to send: failed calls again, then new calls, up to what is missing."""
        missing = self.target_total - len(self.succeeded)
        retry = sorted(c for c in self.attempts if c not in self.succeeded)
        spent = [c for c in retry if self.attempts[c] >= self.policy.max_attempts]
        if spent:
            raise EndpointError(
                f"call {spent[0]} failed {self.attempts[spent[0]]} times through the Batch API; "
                f"last: {self._last_error.get(spent[0], 'no answer')}"
            )
        lines = [(c, self.attempts[c] + 1) for c in retry[:missing]]
        while len(lines) < missing:
            lines.append((self._next_call, 1))
            self._next_call += 1
        return lines

    def _line_bytes(self) -> int:
        return len(json.dumps(self._line(0, 1)).encode()) + 1

    def _line(self, call: int, attempt: int) -> dict:
        return {
            "custom_id": custom_id(call, attempt),
            "method": "POST",
            "url": self.url,
            "body": self.config.request_body(),
        }

    # -- submitting ---------------------------------------------------------------------------
    async def _submit(self, lines: list[tuple[int, int]]) -> dict:
        data = "".join(json.dumps(self._line(c, a), separators=(",", ":")) + "\n" for c, a in lines)
        name = f"detcheck-{self.writer.meta['run_id']}-{len(self._batches())}.jsonl"
        uploaded = await self.api.upload(name, data.encode(), first=not self._batches())
        record = {
            "input_file_id": uploaded.id,
            "lines": len(lines),
            "sent": sent_ranges(lines),
            "uploaded_at": int(time.time()),
            "id": None,
        }
        self._batches().append(record)
        self.writer.write_meta()  # a crash now re-finds the batch by its input file
        for call, attempt in lines:  # handed to the provider: a resume never sends them as new
            self.attempts[call] = max(self.attempts[call], attempt)
        batch = await self._create(record)
        record.update(id=batch.id, created_at=batch.created_at, status=batch.status)
        self.writer.write_meta()
        self.on_notice(f"batch {batch.id}: {len(lines):,} requests submitted ({WINDOW} window)")
        return record

    async def _create(self, record: dict):
        """Create the batch, once. A create that got no answer may have created it: detcheck
        looks it up by its input file before it creates again (never the SDK's blind retry)."""
        tried = False

        async def once():
            nonlocal tried
            if tried:
                self.on_notice("the batch create got no answer; looking for it before trying again")
                found = await self._find_batch(record)
                if found is not None:
                    return found
            tried = True
            return await self.api.call(
                "creating the batch",
                lambda: self.api.client.batches.create(
                    input_file_id=record["input_file_id"],
                    endpoint=self.url,
                    completion_window=WINDOW,
                    metadata={"detcheck_run": str(self.writer.meta["run_id"])[:512]},
                ),
                retry=False,
            )

        return await self.api.retried(once)

    async def _find_batch(self, record: dict):
        """The batch made from this input file, if there is one (newest first, back to the
        upload: a long batch history is not walked)."""
        since = int(record.get("uploaded_at") or 0) - 300
        page = await self.api.call(
            "listing batches", lambda: self.api.client.batches.list(limit=100)
        )
        while True:
            for batch in page.data:
                if batch.input_file_id == record["input_file_id"]:
                    return batch
                if since > 0 and (batch.created_at or 0) < since:
                    return None
            if not page.has_next_page():
                return None
            page = await self.api.call("listing batches", page.get_next_page)

    # -- waiting and collecting -----------------------------------------------------------------
    async def _settle(self, record: dict) -> None:
        if not record.get("id"):
            batch = await self._find_batch(record)
            if batch is None:  # never created: its lines are failed attempts, sent again
                record.update(collected=True, status="never_created")
                await self._collect(record, None, ("batch_not_created", "no batch was created"))
                return
            record.update(id=batch.id, created_at=batch.created_at)
            self.writer.write_meta()
        batch, ended = await self._poll(record)
        if ended is not None:
            with contextlib.suppress(EndpointError):
                batch = await self.api.call(
                    "cancelling the batch",
                    lambda: self.api.client.batches.cancel(record["id"]),
                    retry=False,
                )
            self.on_notice(f"batch {record['id']}: {ended[1]}; its lines are sent again")
        await self._collect(record, batch, ended)

    async def _poll(self, record: dict):
        """The batch once it is done, with None; or, if it must be given up on (past its window
        and the grace, or in a status nobody documents), with (error_type, why)."""
        shown, last_shown_at = None, 0.0
        while True:
            batch = await self.api.call(
                "polling the batch", lambda: self.api.client.batches.retrieve(record["id"])
            )
            status = self.api.clean(batch.status)
            state = f"batch {batch.id}: {status}" + counts_text(batch.request_counts)
            now = time.monotonic()
            if state != shown or now - last_shown_at > 60:
                self.on_notice(f"{state} ({duration_text(now - self._started)})")
                shown, last_shown_at = state, now
            if status != record.get("status"):
                record["status"] = status
                self.writer.write_meta()
            if status in DONE:
                return batch, None
            ended = given_up(batch, status)
            if ended is not None:
                return batch, ended
            await asyncio.sleep(self.poll_s)

    async def _collect(self, record: dict, batch, ended: tuple[str, str] | None) -> None:
        sent = ids_of(record["sent"]) if record.get("sent") else await self._sent_of(record)
        batch_id = record.get("id")
        finished = batch and (
            batch.completed_at or batch.expired_at or batch.cancelled_at or batch.failed_at
        )
        created = record.get("created_at") or (batch.created_at if batch else None)
        times = (
            to_micros_s(created) if created else to_micros(utc_now()),
            to_micros_s(finished) if finished else to_micros(utc_now()),
        )
        answered: set[str] = set()
        foreign = 0
        unreadable = None
        for what, file_id in (
            ("output", batch and batch.output_file_id),
            ("error", batch and batch.error_file_id),
        ):
            if not file_id:
                continue

            # a download that breaks off is tried again (what was stored is not stored twice):
            # giving up on it would send again, and pay again, lines the provider ran
            async def read(file_id=file_id) -> None:
                nonlocal foreign  # counted as stored: a retry skips what was stored
                # twice what was sent, and a few: enough for an honest file, and a bound
                async for raw in self.api.lines(file_id, 2 * len(sent) + 16):
                    foreign += self._store_line(raw, sent, answered, batch_id, times)

            try:
                name = self.api.clean(file_id)
                await self.api.call(f"reading the {what} file {name}", read, bounded=False)
            except CallFailed as exc:
                unreadable = str(exc)
                self.on_notice(f"batch {batch_id}: {unreadable}")
        status = batch.status if batch is not None else "never_created"
        for cid in sorted(set(sent) - answered - self.seen, key=lambda c: sent[c]):
            if ended is not None:
                kind, message = ended
            elif unreadable is not None:
                kind, message = "batch_output_unreadable", unreadable
            elif status != "completed":
                kind = f"batch_{error_kind(status)}"
                message = f"the batch ended {self.api.clean(status)} before this request ran"
            else:
                kind, message = "batch_missing_line", "the completed batch returned no line for it"
            self._store_unanswered(cid, sent[cid], batch_id, times, kind, message)
        if foreign:
            self.outcome.notes["batch_foreign_lines"] += foreign
            self.on_notice(
                f"warning: batch {batch_id}: {foreign:,} line(s) whose custom_id was never sent "
                "(kept as failed rows, not counted)"
            )
        record.update(collected=True, status=self.api.clean(status))
        if ended is not None:
            record["ended"] = ended[1]
        self.writer.write_meta()
        self.on_progress(self.outcome)

    async def _sent_of(self, record: dict) -> dict[str, tuple[int, int]]:
        """A batch recorded before _run.json kept its custom_ids: read from its input file."""
        sent = {}
        async for raw in self.api.lines(record["input_file_id"], MAX_LINES):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                cid = json.loads(raw)["custom_id"]
                _, call, _, attempt = cid.split("-")
                sent[cid] = (int(call), int(attempt))
        return sent

    def _store_line(self, raw, sent: dict, answered: set, batch_id, times) -> int:
        """One line of an output or error file as a row; 1 if its custom_id was never sent."""
        line = read_output_line(raw)
        if isinstance(line, str):  # why it names no call
            self._bad_line(line, b"" if isinstance(raw, int) else raw, batch_id, times)
            return 0
        cid = line.custom_id
        if cid in self.seen or cid in answered:  # collected before a kill, or twice: once
            return 0
        if cid not in sent:
            row = self._row(-1, 0, self.api.clean(cid), batch_id, times)
            row.update(error_type="batch_foreign_line", raw_body=raw_text(raw))
            row["error"] = "a line whose custom_id this batch never sent"
            self._append(row)
            self.outcome.errors["batch_foreign_line"] += 1
            return 1
        answered.add(cid)
        call, attempt = sent[cid]
        row = self._row(call, attempt, cid, batch_id, times)
        row.update(http_status=line.status, request_id=line.request_id)
        body = line.body
        if body is not None:
            row["raw_body"] = body_text(json.dumps(body).encode())
        if line.status != 200 or not isinstance(body, dict):
            kind, message = failure_of(line)
            if row.get("raw_body") is None:
                row["raw_body"] = raw_text(raw)
            row.update(error_type=kind, error=self.api.clean(message))
            self._failed(row, kind, row["error"])
            return 0
        try:
            parsed = self.parse(json.dumps(body).encode())
        except MalformedResponse as exc:
            row.update(error_type=exc.kind, error=self.api.clean(exc))
            self._failed(row, exc.kind, row["error"])
            if exc.kind in FINAL_KINDS:  # no logprobs, a refusal: sending again won't help
                raise EndpointError(row["error"]) from None
            return 0
        problem = unusable_reason(parsed, self.targets)
        if problem is not None:
            row.update(error_type="unusable_logprob", error=clip(problem))
            self._failed(row, "unusable_logprob", problem)
            return 0
        row.update(success_fields(parsed), ok=True)
        self._append(row)
        if call not in self.succeeded:
            self.succeeded.add(call)
            self.outcome.successes += 1
        self.outcome.prompt_tokens += parsed.prompt_tokens or 0
        self.outcome.cached_tokens += parsed.cached_tokens or 0
        self.outcome.completion_tokens += parsed.completion_tokens or 0
        return 0

    def _bad_line(self, why: str, raw: bytes, batch_id, times) -> None:
        """A line that answers no call that can be named: kept (clipped), never counted."""
        row = self._row(-1, 0, None, batch_id, times)
        row.update(error_type="batch_bad_line", error=clip(why), raw_body=raw_text(raw))
        self._append(row)
        self.outcome.errors["batch_bad_line"] += 1

    def _store_unanswered(self, cid, call_attempt, batch_id, times, kind, message) -> None:
        call, attempt = call_attempt
        row = self._row(call, attempt, cid, batch_id, times)
        row.update(error_type=kind, error=self.api.clean(message))
        self._failed(row, kind, row["error"])

    def _row(self, call: int, attempt: int, cid, batch_id, times) -> dict:
        row = {
            "run_id": self.writer.meta["run_id"],
            "seq": self._seq,
            "call": call,
            "attempt": attempt,
            "started_at": times[0],
            "finished_at": times[1],
            "ok": False,
            "batch_id": batch_id,
            "custom_id": cid,
        }
        self._seq += 1
        if call >= 0:
            self.attempts[call] = max(self.attempts[call], attempt)
        return row

    def _failed(self, row: dict, kind: str, message: str) -> None:
        self._append(row)
        self.outcome.errors[kind] += 1
        self._last_error[row["call"]] = f"{kind}: {clip(message, 200)}"

    def _append(self, row: dict) -> None:
        self.writer.append(redact_row(row, self.secrets))
        if row["custom_id"]:
            self.seen.add(row["custom_id"])
        self.outcome.attempts += 1

    # -- Ctrl-C, SIGTERM ------------------------------------------------------------------------
    async def _interrupted(self) -> None:
        open_batches = [b for b in self._batches() if b.get("id") and not b.get("collected")]
        if not open_batches:
            return
        if self.cancel_on_interrupt:
            for record in open_batches:
                with contextlib.suppress(EndpointError):
                    await self.api.call(
                        "cancelling the batch",
                        functools.partial(self.api.client.batches.cancel, record["id"]),
                        retry=False,
                    )
                    record["status"] = "cancelling"
            self.on_notice(
                "stopping: cancelled the open batch(es); --resume collects what they completed"
            )
        else:
            self.on_notice(
                "stopping: the batch keeps running at the provider (--cancel-on-interrupt "
                "cancels it); --resume collects it without sending anything again"
            )
        self.writer.write_meta()
