"""The Batch API as detcheck calls it: its limits, the custom_ids that name each (call,
attempt), and BatchAPI, whose calls (upload, create, retrieve, list, download, cancel) are
each bounded by --timeout as a whole, retried only where that is safe, and redacted. The
measurement that drives them is send/batch.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx2
import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from detcheck.errors import EndpointError, Refused
from detcheck.plan import RetryPolicy
from detcheck.send.client import make_client, within
from detcheck.send.record import error_message_from_body
from detcheck.send.retry import RETRYABLE_STATUS
from detcheck.send.transport import MAX_BODY_BYTES, BodyRejected
from detcheck.shapes._parse import int_or_none
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

    def __init__(self, message: str, transient: bool, status: int | None = None):
        super().__init__(message)
        self.transient, self.status = transient, status


# what a streamed download raises comes from the HTTP client itself, not the SDK
_DROPPED = (openai.APIConnectionError, BodyRejected, OSError, httpx2.TransportError,
            httpx2.StreamError)  # fmt: skip


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


def error_kind(text: object) -> str:
    """An error code from the server as an error_type: a word, never a forged line."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:60] or "error"


@dataclass
class OutputLine:
    """One line of a batch's output or error file, as far as it can be read."""

    custom_id: str
    status: int | None  # the response's HTTP status (None: the line has none)
    body: object  # the response body (decoded when a server sent it as a JSON string)
    request_id: str | None
    error: dict  # the line's own error object (an error file's), else {}


def read_output_line(raw: bytes | int) -> OutputLine | str:
    """A line as an OutputLine, or why it answers no call that can be named (a line over
    MAX_LINE_BYTES arrives as its length)."""
    if isinstance(raw, int):
        return f"a line of {raw:,} bytes, over {MAX_LINE_BYTES:,}"
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {exc}"
    cid = line.get("custom_id") if isinstance(line, dict) else None
    if not isinstance(cid, str):
        return "not an object with a custom_id"
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    error = line.get("error") if isinstance(line.get("error"), dict) else {}
    body = response.get("body")
    if isinstance(body, str):  # some servers send the body as a JSON string
        with contextlib.suppress(ValueError, RecursionError):
            body = json.loads(body)
    request_id = response.get("request_id")
    return OutputLine(
        cid,
        int_or_none(response.get("status_code")),
        body,
        request_id if type(request_id) is str else None,
        error,
    )


def failure_of(line: OutputLine) -> tuple[str, str]:
    """The error_type and message of a line that carries no usable response body."""
    status, body, error = line.status, line.body, line.error
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    message = message or error.get("message") or f"HTTP {status}"
    kind = f"http_{status}" if status else f"batch_{error_kind(error.get('code') or 'error')}"
    if status == 200:
        kind, message = "malformed_body", "the line's response has no JSON object body"
    return kind, message


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
                status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
                raise CallFailed(f"{what}: {reason}", transient, status) from None

        return await self.retried(once, None if retry else 1)

    async def upload(self, name: str, data: bytes, *, first: bool):
        """Upload a batch input file. The first refused with a 4xx (a bad key, a wrong URL) is
        the endpoint's refusal: nothing was created or paid, a configuration error as a first
        online call's 4xx is (the run that started is not kept)."""
        try:
            return await self.call(
                "uploading the batch input file",
                lambda: self.client.files.create(file=(name, data), purpose="batch"),
            )
        except CallFailed as exc:
            if exc.transient or not first or exc.status is None or not 400 <= exc.status < 500:
                raise
            detail = str(exc).split(": ", 1)[-1]
            raise Refused(str(exc), exc.status, None, detail) from None

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
            into_files = response.iter_bytes().__aiter__()
            buffer, over, count = bytearray(), 0, 0
            while count < max_lines:
                try:
                    chunk = await asyncio.wait_for(into_files.__anext__(), left_s())
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


def given_up(batch, status: str) -> tuple[str, str] | None:
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
            f"the batch is still {status} {duration_text(late_s)} past its completion window",
        )
    return None


def counts_text(counts) -> str:
    """`, 3/10 done, 0 failed` from request_counts, whatever of it the server sent."""
    done, total, failed = (
        int_or_none(getattr(counts, name, None)) for name in ("completed", "total", "failed")
    )
    if total is None:
        return ""
    return f", {done if done is not None else '?'}/{total:,} done, {failed or 0:,} failed"


def raw_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return clip(text, RAW_CLIP_CHARS)


def into_files(lines: list, line_bytes: int) -> list[list]:
    per_file = max(1, min(MAX_LINES, MAX_BYTES // max(1, line_bytes)))
    return [lines[i : i + per_file] for i in range(0, len(lines), per_file)]


def to_micros_s(seconds: int | float) -> int:
    return int(seconds * 1_000_000)


def duration_text(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s"
