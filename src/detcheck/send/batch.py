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
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx2
import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from detcheck.errors import EndpointError
from detcheck.plan import Plan, RetryPolicy
from detcheck.send.online import RETRYABLE_STATUS, Outcome, make_client, within
from detcheck.send.record import (
    body_text,
    error_message_from_body,
    redact_row,
    success_fields,
    unusable_reason,
)
from detcheck.send.transport import MAX_BODY_BYTES, BodyRejected
from detcheck.shapes._parse import FINAL_KINDS, MalformedResponse, int_or_none
from detcheck.store import to_micros, utc_now
from detcheck.text import clip, printable, redact

# The Batch API's limits per input file
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
WINDOW = "24h"
WINDOW_S = 24 * 3600
DONE = {"completed", "failed", "expired", "cancelled"}
KNOWN = DONE | {"validating", "in_progress", "finalizing", "cancelling"}
# A batch still running this long after its window closed is ended: providers say a batch
# expires at its window; one that does not is not waited for for ever.
GRACE_S = 3600
# One output line: a response body (capped online at MAX_BODY_BYTES) and the line around it
MAX_LINE_BYTES = MAX_BODY_BYTES + 64 * 1024
RAW_CLIP_CHARS = 4_000  # what a row keeps of a line it could not read


class CallFailed(EndpointError):
    """A Batch API call that failed; `transient`: trying again may help (no answer, a dropped
    connection, a 5xx or a 429), so a create that failed so may have gone through."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


# what a streamed download raises comes from the HTTP client itself, not the SDK
_DROPPED = (openai.APIConnectionError, BodyRejected, OSError, httpx2.TransportError,
            httpx2.StreamError)  # fmt: skip


class _Limit:  # what the caller reads of an online run's concurrency (never lowered here)
    def __init__(self, concurrency: int):
        self.lowest = concurrency


def custom_id(call: int, attempt: int) -> str:
    return f"call-{call}-attempt-{attempt}"


def sent_ranges(lines: list[tuple[int, int]]) -> list[list[int]]:
    """(call, attempt) pairs as [first call, last call, attempt] runs: what _run.json keeps of a
    batch's input, so a resume knows its custom_ids without downloading the file."""
    runs: list[list[int]] = []
    for call, attempt in lines:
        if runs and runs[-1][2] == attempt and runs[-1][1] == call - 1:
            runs[-1][1] = call
        else:
            runs.append([call, call, attempt])
    return runs


def ids_of(ranges: list[list[int]]) -> dict[str, tuple[int, int]]:
    return {
        custom_id(c, attempt): (c, attempt)
        for first, last, attempt in ranges
        for c in range(first, last + 1)
    }


def _kind(text: object) -> str:
    """An error code from the server as an error_type: a word, never a forged line."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:60] or "error"


class BatchAPI:
    """The Batch API's calls, each bounded by the timeout as a whole (a server that drips
    bytes cannot hold one), retried by detcheck where that is safe, redacted, and failing as
    EndpointError (exit 3)."""

    def __init__(self, endpoint, policy=None):
        self.endpoint = endpoint
        self.policy = policy or RetryPolicy()
        self.timeout_s = endpoint.timeout_s
        self.secrets = endpoint.secrets

    async def __aenter__(self) -> BatchAPI:
        self.client = make_client(self.endpoint)  # max_retries=0: only detcheck retries
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.__aexit__(*exc)

    def clean(self, text: object) -> str:
        """Server text as it may be stored or shown: no secret, no control characters."""
        return printable(clip(redact(str(text), self.secrets))) or ""

    async def retried(self, once: Callable, attempts: int | None = None):
        """`once()` again while it fails with a transient CallFailed, with the online path's
        backoff (tenacity's exponential with jitter), at most `attempts` times in all."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, CallFailed) and exc.transient),
            stop=stop_after_attempt(attempts or self.policy.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.policy.initial_backoff_s, max=self.policy.max_backoff_s
            ),
            reraise=True,
        )
        return await retrying(once)

    async def call(self, what: str, make: Callable, retry: bool = True, bounded: bool = True):
        """`make()` (an SDK coroutine), bounded by --timeout as a whole (unless `bounded` is
        False: a download bounds itself) and retried on what retrying can fix."""

        async def once():
            try:
                return await (within(self.timeout_s, make()) if bounded else make())
            except Exception as exc:
                transient, reason = self.explain(exc)
                raise CallFailed(f"{what}: {reason}", transient) from None

        return await self.retried(once, None if retry else 1)

    def explain(self, exc: BaseException) -> tuple[bool, str]:
        """(whether trying again may help, the reason as it may be shown)."""
        if isinstance(exc, openai.APIStatusError):
            try:
                body = exc.response.content
            except Exception:  # a streamed error body that was never read
                body = None
            message = error_message_from_body(body) or exc.message
            status = exc.status_code
            return status in RETRYABLE_STATUS, self.clean(f"HTTP {status}: {message}")
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, openai.APITimeoutError)):
            return True, f"no answer within --timeout {self.timeout_s:g} s"
        if isinstance(exc, _DROPPED):
            return True, self.clean(f"{type(exc).__name__}: {exc}")
        raise exc

    async def lines(self, file_id: str, max_lines: int) -> AsyncIterator[bytes | int]:
        """A file's lines, streamed: each line's bytes, or the length of a line over
        MAX_LINE_BYTES (its bytes are not kept). Each MAX_BODY_BYTES may take --timeout: a
        large file may take long, a dripping one cannot hold the run."""
        loop = asyncio.get_running_loop()
        started, received = loop.time(), 0

        def left_s() -> float:
            allowed = self.timeout_s * (1 + received // MAX_BODY_BYTES)
            return max(0.0, started + allowed - loop.time())

        manager = self.client.files.with_streaming_response.content(file_id)
        response = await asyncio.wait_for(manager.__aenter__(), self.timeout_s)
        try:
            chunks = response.iter_bytes().__aiter__()
            buffer, over, count = bytearray(), 0, 0
            while count < max_lines:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), left_s())
                except StopAsyncIteration:
                    break
                received += len(chunk)
                start = 0
                while count < max_lines:
                    end = chunk.find(b"\n", start)
                    piece = chunk[start:] if end < 0 else chunk[start:end]
                    if over:
                        over += len(piece)
                    elif len(buffer) + len(piece) > MAX_LINE_BYTES:
                        over = len(buffer) + len(piece)
                        buffer = bytearray(buffer[:RAW_CLIP_CHARS])
                    else:
                        buffer += piece
                    if end < 0:
                        break
                    count += 1
                    yield over or bytes(buffer)
                    buffer, over, start = bytearray(), 0, end + 1
            if (buffer or over) and count < max_lines:
                yield over or bytes(buffer)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(manager.__aexit__(None, None, None), self.timeout_s)


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
            records = [await self._submit(chunk) for chunk in _chunks(lines, self._line_bytes())]
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
        uploaded = await self.api.call(
            "uploading the batch input file",
            lambda: self.api.client.files.create(file=(name, data.encode()), purpose="batch"),
        )
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
            state = f"batch {batch.id}: {status}" + _counts(batch.request_counts)
            now = time.monotonic()
            if state != shown or now - last_shown_at > 60:
                self.on_notice(f"{state} ({_duration(now - self._started)})")
                shown, last_shown_at = state, now
            if status != record.get("status"):
                record["status"] = status
                self.writer.write_meta()
            if status in DONE:
                return batch, None
            ended = _given_up(batch, status)
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
                kind = f"batch_{_kind(status)}"
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
        if isinstance(raw, int):
            self._bad_line(
                f"a line of {raw:,} bytes, over {MAX_LINE_BYTES:,}", b"", batch_id, times
            )
            return 0
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self._bad_line(f"not JSON: {exc}", raw, batch_id, times)
            return 0
        cid = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(cid, str):
            self._bad_line("not an object with a custom_id", raw, batch_id, times)
            return 0
        if cid in self.seen or cid in answered:  # collected before a kill, or twice: once
            return 0
        if cid not in sent:
            row = self._row(-1, 0, self.api.clean(cid), batch_id, times)
            row.update(error_type="batch_foreign_line", raw_body=_raw(raw))
            row["error"] = "a line whose custom_id this batch never sent"
            self._append(row)
            self.outcome.errors["batch_foreign_line"] += 1
            return 1
        answered.add(cid)
        call, attempt = sent[cid]
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        error = line.get("error") if isinstance(line.get("error"), dict) else {}
        status = int_or_none(response.get("status_code"))
        body = response.get("body")
        if isinstance(body, str):  # some servers send the body as a JSON string
            with contextlib.suppress(ValueError, RecursionError):
                body = json.loads(body)
        row = self._row(call, attempt, cid, batch_id, times)
        request_id = response.get("request_id")
        row.update(http_status=status, request_id=request_id if type(request_id) is str else None)
        if body is not None:
            row["raw_body"] = body_text(json.dumps(body).encode())
        if status != 200 or not isinstance(body, dict):
            inner = body.get("error") if isinstance(body, dict) else None
            message = inner.get("message") if isinstance(inner, dict) else None
            message = message or error.get("message") or f"HTTP {status}"
            kind = f"http_{status}" if status else f"batch_{_kind(error.get('code') or 'error')}"
            if status == 200:
                kind, message = "malformed_body", "the line's response has no JSON object body"
            if row.get("raw_body") is None:
                row["raw_body"] = _raw(raw)
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
        row.update(error_type="batch_bad_line", error=clip(why), raw_body=_raw(raw))
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
                "cancelled the open batch(es); what they completed is collected by --resume"
            )
        else:
            self.on_notice(
                "the batch keeps running at the provider (--cancel-on-interrupt cancels it); "
                "--resume collects it without sending anything again"
            )
        self.writer.write_meta()


def _given_up(batch, status: str) -> tuple[str, str] | None:
    if status not in KNOWN:
        return (
            "batch_unknown_status",
            f"the batch reports status {status!r}, which no Batch API has",
        )
    created = batch.created_at or time.time()
    expires = batch.expires_at or created + WINDOW_S
    late_s = time.time() - expires
    if late_s > GRACE_S:
        return (
            "batch_overdue",
            f"the batch is still {status} {_duration(late_s)} past its completion window",
        )
    return None


def _counts(counts) -> str:
    """`, 3/10 done, 0 failed` from request_counts, whatever of it the server sent."""
    done, total, failed = (
        int_or_none(getattr(counts, name, None)) for name in ("completed", "total", "failed")
    )
    if total is None:
        return ""
    return f", {done if done is not None else '?'}/{total:,} done, {failed or 0:,} failed"


def _raw(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return clip(text, RAW_CLIP_CHARS)


def _chunks(lines: list, line_bytes: int) -> list[list]:
    per_file = max(1, min(MAX_LINES, MAX_BYTES // max(1, line_bytes)))
    return [lines[i : i + per_file] for i in range(0, len(lines), per_file)]


def to_micros_s(seconds: int | float) -> int:
    return int(seconds * 1_000_000)


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s"


def probe_batch(config, endpoint, poll_s: float = 15.0, log=None) -> dict:
    """Submit a one-request batch and say what its output line carries: logprobs, how many
    top logprobs of the 20 asked for, a fingerprint. (No provider documents whether batch
    output keeps logprobs: this finds out.) Bounded as a run is: past its window and the
    grace, or in an unknown status, the probe stops and says why."""
    from dataclasses import replace

    config = replace(config, top_logprobs=20)
    return asyncio.run(_probe(config, endpoint, poll_s, log or (lambda message: None)))


async def _probe(config, endpoint, poll_s: float, log) -> dict:
    url = "/v1" + config.path
    line = {"custom_id": "probe", "method": "POST", "url": url, "body": config.request_body()}
    async with BatchAPI(endpoint) as api:
        data = (json.dumps(line) + "\n").encode()
        uploaded = await api.call(
            "uploading the probe",
            lambda: api.client.files.create(file=("detcheck-probe.jsonl", data), purpose="batch"),
        )
        batch = await api.call(
            "creating the probe batch",
            lambda: api.client.batches.create(
                input_file_id=uploaded.id, endpoint=url, completion_window=WINDOW
            ),
            retry=False,
        )
        log(f"batch {batch.id} submitted: one request; waiting (it can take up to {WINDOW})")
        while api.clean(batch.status) not in DONE:
            ended = _given_up(batch, api.clean(batch.status))
            if ended is not None:
                raise EndpointError(f"probe batch {batch.id}: {ended[1]}")
            await asyncio.sleep(poll_s)
            batch = await api.call(
                "polling the probe batch",
                functools.partial(api.client.batches.retrieve, batch.id),
            )
        out: dict = {"endpoint": endpoint.shown, "model": config.model, "api": config.api}
        out.update(via="batch", batch_id=api.clean(batch.id), batch_status=api.clean(batch.status))
        answer: dict = {}
        if batch.output_file_id:
            async for raw in api.lines(batch.output_file_id, 1):
                with contextlib.suppress(ValueError, RecursionError, TypeError):
                    loaded = json.loads(raw)
                    answer = loaded if isinstance(loaded, dict) else {}
    response = answer.get("response") if isinstance(answer.get("response"), dict) else {}
    body = response.get("body")
    out["status"] = int_or_none(response.get("status_code"))
    try:
        parsed = config.shape.parse(json.dumps(body).encode()) if body else None
    except MalformedResponse as exc:
        parsed, out["error"] = None, api.clean(exc)
    out["logprobs"] = parsed is not None
    out["top_logprobs_requested"] = 20
    out["top_logprobs_returned"] = len(parsed.top_logprobs) if parsed else 0
    fingerprint = body.get("system_fingerprint") if isinstance(body, dict) else None
    out["system_fingerprint"] = bool(fingerprint)
    out["fingerprint_value"] = api.clean(fingerprint) if isinstance(fingerprint, str) else None
    return out
