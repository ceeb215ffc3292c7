"""Sending the N identical requests: concurrency, rate cap, retries, and one stored row per attempt.

The SDK's own retries are switched off (`max_retries=0`): an attempt retried inside the SDK would
be paid for but invisible. Every attempt goes through `_attempt`, which writes its row before
deciding whether to retry, so failures are recorded, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
import openai
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from detcheck.config import (
    strip_credentials,
)
from detcheck.errors import DetcheckError, EndpointError, Refused
from detcheck.plan import Plan
from detcheck.send.background import background_request
from detcheck.send.client import make_client, within
from detcheck.send.pace import pacer_for
from detcheck.send.record import (
    MAX_ERROR_BODY_CHARS,
    allowed_headers,
    body_text,
    error_code_from_body,
    error_message_from_body,
    redact_row,
    success_fields,
    unusable_reason,
)
from detcheck.send.retry import (
    RETRYABLE_STATUS,
    AdaptiveLimit,
    TransientError,
    fatal_message,
    parse_reset_s,
    retry_after_s,
)
from detcheck.send.runner import install_stop_handlers, remove_stop_handlers
from detcheck.send.transport import BodyRejected
from detcheck.shapes._parse import FINAL_KINDS, MalformedResponse
from detcheck.store import RunWriter, to_micros, utc_now
from detcheck.text import clip, printable, redact

# Refused connections and unknown host names, as aiohttp and httpx word them
_REFUSED = re.compile(
    r"connect call failed|connection refused|errno 111|all connection attempts failed"
    r"|name or service not known|nodename nor servname|name resolution",
    re.IGNORECASE,
)
UNREACHABLE_AFTER = 3  # refusals before any response that stop a run (a restart is brief)


@dataclass
class Outcome:
    successes: int = 0
    attempts: int = 0
    errors: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    short_top_logprobs: int = 0  # responses with fewer top logprobs than asked for
    other_model: int = 0  # responses naming another model than the one asked for
    redirected: int = 0  # responses that came from another origin (a followed redirect)
    background_requests: int = 0  # --background-load: sent alongside, never recorded
    background_failed: int = 0
    notes: Counter = field(default_factory=Counter)  # counts for _run.json's notes
    interrupted: bool = False
    elapsed_s: float = 0.0


class _Abandoned(Exception):
    """Stopping between two attempts of one call: the call is left for --resume."""


class Flip:
    """One measurement in progress. `run()` returns when n calls have succeeded, or raises."""

    def __init__(
        self,
        plan: Plan,
        writer: RunWriter,
        on_notice: Callable[[str], None] | None = None,
    ):
        config, endpoint, control = plan.config, plan.endpoint, plan.control
        self.config = config
        self.background_load = control.background_load
        self.background_prefix = control.background_prefix
        self._background_in_flight = 0
        self.endpoint = endpoint
        self.writer = writer
        self.n = n = plan.remaining
        self.concurrency = control.concurrency
        self.rpm = control.rpm
        self.policy = plan.policy
        self.on_progress: Callable[[Outcome], None] = lambda outcome: None
        self.on_notice = on_notice or (lambda message: None)
        self.body = config.request_body()
        whole = config.kind == "generate"  # every position, not only the first
        self.parse = (
            functools.partial(config.shape.parse, whole=whole, logprobs=config.logprobs)
            if whole
            else config.shape.parse
        )
        self.targets = frozenset(config.targets.values())
        self.secrets = endpoint.secrets
        self.outcome = Outcome()
        self._refusals = 0  # connections refused before any response (see _unreachable)
        self._next_call = plan.start.call
        self._end_call = plan.start.call + n
        self._seq = plan.start.seq
        # one limit shared by several flips (send.runner.run_flips: all of a prompt set's in
        # flight at once, at most that many), else the run's own
        self.limit = control.limit or AdaptiveLimit(
            control.concurrency, adaptive=not control.hold_concurrency
        )
        self._workers: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self._measured_done = False  # background streams send no more once set
        self._fatal: DetcheckError | None = None
        # --rpm: every request waits its turn, background included; an audit's arms share one
        self._pacer = pacer_for(self.rpm, control.pacer)
        self._calls_started = 0  # measured calls begun: each lets every stream send one more

    async def run(self, signals: bool = True, client=None) -> Outcome:
        """Send until n calls succeeded (or stop); `signals`: Ctrl-C and SIGTERM stop this
        flip (send.runner.run_flips installs one handler for several instead); `client`: one
        open client shared with other flips to the same endpoint (else its own)."""
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        workers = self._workers
        if signals:
            install_stop_handlers(loop, [self])
        self._started = asyncio.Condition()
        try:
            async with (
                contextlib.nullcontext(client) if client else make_client(self.endpoint) as client
            ):
                self.client = client
                # the background first, so that the first measured call already shares a batch
                background = [
                    asyncio.create_task(self._background(k)) for k in range(self.background_load)
                ]
                workers.extend(asyncio.create_task(self._worker()) for _ in range(self.concurrency))
                try:
                    results = await asyncio.gather(*workers, return_exceptions=True)
                finally:
                    self._measured_done = True
                    async with self._started:
                        self._started.notify_all()  # streams waiting for a call: no more come
                    if background:
                        await self._let_finish(background)
                    for task in background:
                        task.cancel()
                    await asyncio.gather(*background, return_exceptions=True)
                unexpected = [
                    r
                    for r in results
                    if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
                ]
                if unexpected and self._fatal is None:
                    raise unexpected[0]
        finally:
            if signals:
                remove_stop_handlers(loop)
            self.outcome.elapsed_s = time.perf_counter() - t0
        if self._fatal is not None:
            raise self._fatal
        self.outcome.interrupted = self._stop.is_set() and self.outcome.successes < self.n
        return self.outcome

    async def _let_finish(self, background: list[asyncio.Task]) -> None:
        """Waits for the background requests in flight, unless we are stopping: one cut off
        here would go on running on the server (it does not see the client go) and share the
        batch of whatever is sent next, an audit's control arm for one."""
        stopping = asyncio.create_task(self._stop.wait())
        pending = set(background)
        deadline_s = time.monotonic() + self.endpoint.timeout_s
        try:
            while pending and not stopping.done() and time.monotonic() < deadline_s:
                _, pending = await asyncio.wait(
                    pending | {stopping},
                    timeout=deadline_s - time.monotonic(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending.discard(stopping)
        finally:
            stopping.cancel()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ctrl-C or SIGTERM: the first waits for what is in flight to be recorded, a second
        abandons it."""
        if self._stop.is_set():
            for task in self._workers:
                task.cancel()
            return
        self._stop.set()
        self.on_notice(
            f"stopping: waiting for {self.limit.in_flight} in-flight request(s) to be recorded "
            "(press Ctrl-C again to abandon them)"
        )

    async def _worker(self) -> None:
        while not self._stop.is_set() and self._next_call < self._end_call:
            call = self._next_call
            self._next_call += 1
            async with self._started:
                self._calls_started += 1
                self._started.notify_all()
            try:
                await self._serve(call)
            except _Abandoned:
                return
            except DetcheckError as exc:  # the endpoint refused, or the run cannot be written
                if self._fatal is None:
                    self._fatal = exc
                self._stop.set()
            except TransientError as exc:
                if self._stop.is_set():
                    return
                self._fatal = EndpointError(
                    f"call {call} failed {self.policy.max_attempts} times in a row; last: "
                    f"{exc.kind}: {printable(str(exc))}"
                )
                self._stop.set()

    def _wait_s(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        if isinstance(exc, TransientError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self.policy.max_retry_after_s)
        backoff = wait_exponential_jitter(
            multiplier=self.policy.initial_backoff_s, max=self.policy.max_backoff_s
        )
        return backoff(retry_state)

    async def _serve(self, call: int) -> None:
        """Attempts for one call until it succeeds (or the policy gives up, or we are stopping).
        The first attempt is made before tenacity is involved: its ~35 objects per call form
        reference cycles that only the garbage collector frees, and at 300 calls/s its pauses
        were ~1 s of a 35 s run. Only a failed call enters the retry loop, where tenacity is
        handed that first failure as its attempt 1, so waits, stops and attempt numbers are
        exactly those of a loop over every attempt."""
        try:
            await self._attempt(call, 1)
            return
        except TransientError as exc:
            first_failure = exc
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self._wait_s,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempt_no = attempt.retry_state.attempt_number
                if attempt_no == 1:
                    raise first_failure
                if self._stop.is_set():
                    raise _Abandoned
                await self._attempt(call, attempt_no)

    async def _background(self, k: int) -> None:
        """One stream of --background-load: other prompts, of lengths that vary with each
        request, sent back to back until the measured calls are done (the ones in flight then
        are let finish); nothing is recorded. A stream is never more than one request ahead
        of the measured calls begun, so a run sends at most background_load x (n + 1) of them:
        what its plan priced (background_request), however fast they fail."""
        shape = self.config.shape
        sent = 0
        while not self._stop.is_set() and not self._measured_done:
            async with self._started:
                await self._started.wait_for(functools.partial(self._may_send, sent))
            if self._measured_done or self._stop.is_set():
                return
            if self._pacer is not None:
                await self._pacer.wait()
                if self._measured_done or self._stop.is_set():
                    return
            config = background_request(self.config, self.background_prefix, k, sent)
            sent += 1
            self._background_in_flight += 1
            self.outcome.background_requests += 1  # sent
            try:
                response = await within(
                    self.endpoint.timeout_s,
                    self.client.post(
                        shape.PATH, body=shape.request_body(config), cast_to=httpx2.Response
                    ),
                )
                ok = response.status_code == 200
            except asyncio.CancelledError:
                raise
            except Exception:
                ok = False
            finally:
                self._background_in_flight -= 1
            if not ok:
                self.outcome.background_failed += 1
                await asyncio.sleep(0.1)  # a failing endpoint is not hammered

    def _may_send(self, sent: int) -> bool:
        """A background stream's next request may go: it is at most one ahead of the measured
        calls begun, or they are all done (it then sends nothing)."""
        return sent <= self._calls_started or self._measured_done

    async def _attempt(self, call: int, attempt_no: int) -> None:
        if self._pacer is not None:
            await self._pacer.wait()
        in_flight = await self.limit.acquire()
        seq = self._seq
        self._seq += 1
        row = {
            "run_id": self.writer.meta["run_id"],
            "seq": seq,
            "call": call,
            "attempt": attempt_no,
            "in_flight": in_flight + self._background_in_flight,  # the batch it may share
            "ok": False,
        }
        started = utc_now()
        t0 = time.perf_counter()
        failure: Exception | None = None
        try:
            failure = await self._exchange(row)
        finally:
            headers = row.get("response_headers") or {}
            await self.limit.release(
                throttled=row.get("http_status") == 429,
                pause_s=parse_reset_s(headers.get("x-ratelimit-reset-requests"))
                if headers.get("x-ratelimit-remaining-requests") == "0"
                else None,
            )
            row["started_at"] = to_micros(started)
            row["latency_ms"] = (time.perf_counter() - t0) * 1000.0
            row["finished_at"] = row["started_at"] + int(row["latency_ms"] * 1000)
            self.outcome.attempts += 1
            self.writer.append(redact_row(row, self.secrets))
        if failure is not None:
            self.outcome.errors[getattr(failure, "kind", "error")] += 1
            self.on_progress(self.outcome)
            raise failure
        self.outcome.successes += 1
        self.outcome.prompt_tokens += row.get("prompt_tokens") or 0
        self.outcome.cached_tokens += row.get("cached_tokens") or 0
        self.outcome.completion_tokens += row.get("completion_tokens") or 0
        if self.config.logprobs and len(row["top_logprobs"]) < self.config.top_logprobs:
            if not self.outcome.short_top_logprobs:  # say so at once, not after N calls
                self.on_notice(
                    f"warning: the endpoint returned {len(row['top_logprobs'])} top logprobs, "
                    f"not the {self.config.top_logprobs} asked for (a cap, or token texts "
                    "that collide)"
                )
            self.outcome.short_top_logprobs += 1
        self.on_progress(self.outcome)

    def _body(self, row: dict) -> dict:
        if not self.config.seed_per_call:
            return self.body
        return {**self.body, "seed": self.config.seed + row["call"]}  # a retry keeps its seed

    async def _exchange(self, row: dict) -> Exception | None:
        """Send one request and fill `row`; return the failure to raise, if any."""
        try:
            # The SDK's raw route: its auth, headers, status errors and networking, without the
            # per-call parameter transform and pydantic parse that `create` adds (0.9 ms of CPU
            # per call, half the SDK's cost); we parse the body ourselves and keep it anyway.
            response = await within(
                self.endpoint.timeout_s,
                self.client.post(self.config.path, body=self._body(row), cast_to=httpx2.Response),
            )
        except (TimeoutError, asyncio.TimeoutError):
            message = f"request timed out after {self.endpoint.timeout_s:g} s (whole request)"
            row.update(error_type="timeout", error=message)
            return TransientError("timeout", message)
        except openai.APIStatusError as exc:
            return self._status_failure(row, exc)
        except openai.APIConnectionError as exc:  # APITimeoutError included
            kind, message = self._connection_failure(exc)
            row.update(error_type=kind, error=message)
            if kind == "connection" and self._unreachable(message):
                return EndpointError(
                    f"cannot reach {self.endpoint.shown}: {printable(message)}. Is the server "
                    "running, and is --base-url right?"
                )
            return TransientError(kind, message)
        except BodyRejected as exc:  # too large, or an encoding not asked for: retried
            row.update(error_type="body_rejected", error=clip(str(exc)))
            return TransientError("body_rejected", str(exc))
        except Exception as exc:  # the HTTP client refused the request itself: not transient
            message = clip(f"the HTTP client failed: {type(exc).__name__}: {exc}")
            row.update(error_type="client_error", error=message)
            return EndpointError(redact(message, self.secrets))
        body = response.content
        row.update(
            http_status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            response_headers=allowed_headers(response.headers),
            raw_body=body_text(body),
        )
        if response.history:
            row["final_url"] = strip_credentials(str(response.url))
            self._note_redirect(row["final_url"])
        try:
            parsed = self.parse(body)
        except MalformedResponse as exc:
            row.update(error_type=exc.kind, error=str(exc))
            if exc.kind in FINAL_KINDS:  # no logprobs, a refusal: asking again won't help
                message = printable(redact(str(exc), self.secrets))
                return Refused(message, response.status_code, exc.kind, message)
            return TransientError(exc.kind, str(exc))
        # a text asked for without logprobs has none to check
        problem = unusable_reason(parsed, self.targets) if self.config.logprobs else None
        if problem is not None:  # NaN, inf, positive, a string...: never counted toward n
            row.update(error_type="unusable_logprob", error=clip(problem))
            return TransientError("unusable_logprob", problem)
        row.update(success_fields(parsed), ok=True)
        self._check_model(parsed.model)
        return None

    def _check_model(self, model: str | None) -> None:
        """A response naming another model than the one asked for (a dated snapshot of the alias
        asked for is the same model) is counted, and said once."""
        asked = self.config.model
        if model is None or model == asked or model.startswith(f"{asked}-"):
            return
        if not self.outcome.other_model:
            self.on_notice(
                f"warning: asked for model {asked!r}, the endpoint answered as "
                f"{printable(clip(model, 100))!r} (each row keeps it in `response_model`)"
            )
        self.outcome.other_model += 1

    def _note_redirect(self, final_url: str) -> None:
        if final_url.split("/")[:3] == self.endpoint.shown.split("/")[:3]:  # both stripped
            return  # the same origin: a path redirect
        if not self.outcome.redirected:
            self.on_notice(
                f"warning: {self.endpoint.shown} redirected to another origin, "
                f"{printable(clip(final_url, 200))} (each row keeps the URL that answered)"
            )
        self.outcome.redirected += 1

    def _unreachable(self, message: str) -> bool:
        """An endpoint that has never answered and refuses connections (or whose name does not
        resolve) is not there: after UNREACHABLE_AFTER such failures the run stops, in seconds
        rather than after every call's full retries."""
        if self.outcome.successes or not _REFUSED.search(message):
            return False
        self._refusals += 1
        return self._refusals >= UNREACHABLE_AFTER

    def _connection_failure(self, exc: openai.APIConnectionError) -> tuple[str, str]:
        """Timeout or connection failure, told apart by the cause: the SDK's aiohttp transport
        reports refused and dropped connections as timeouts too."""
        text = redact(str(exc.__cause__ or "").strip(), self.secrets)
        if isinstance(exc, openai.APITimeoutError) and (not text or "time" in text.lower()):
            return "timeout", f"request timed out after {self.endpoint.timeout_s:g} s"
        return "connection", clip(f"connection to {self.endpoint.shown} failed: {text or exc}")

    def _status_failure(self, row: dict, exc: openai.APIStatusError) -> Exception:
        response = exc.response
        body = response.content if response is not None else None
        status = exc.status_code
        # also raised and printed: clipped, and without any secret the server echoed
        message = redact(error_message_from_body(body) or clip(str(exc)), self.secrets)
        code = error_code_from_body(body)
        row.update(
            http_status=status,
            request_id=response.headers.get("x-request-id") if response is not None else None,
            response_headers=allowed_headers(response.headers if response is not None else None),
            raw_body=body_text(body, MAX_ERROR_BODY_CHARS),
            error_type=f"http_{status}",
            error=message,
        )
        if status in RETRYABLE_STATUS and code != "insufficient_quota":
            retry_after = retry_after_s(response.headers if response is not None else None)
            return TransientError(f"http_{status}", message, retry_after)
        # a one-line message: server text with its control characters and newlines escaped
        detail = printable(message)
        return Refused(fatal_message(status, detail, self.body["model"]), status, code, detail)
