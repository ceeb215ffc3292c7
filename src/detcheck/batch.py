"""`--via batch`: the same requests through the Batch API, at half the list price and on another
serving tier. The N request bodies (exactly the online ones) go up as JSONL, a batch is created
and polled, and its output and error files come back as one row per line, in the schema of online
runs (with `batch_id` and `custom_id`).

Nothing is paid for twice and nothing is lost: the run's metadata names each batch (and, before
a batch exists, the file it is being created from) as soon as it exists, so `--resume` re-attaches
to a batch a killed process left instead of creating another. Lines that failed (the error file,
a non-200 line, a line an expired or cancelled batch never ran) are failed attempts, sent again
in a follow-up batch until the run holds its N successes or a call runs out of attempts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

from detcheck.errors import DataError, EndpointError
from detcheck.record import (
    MalformedResponse,
    body_text,
    clip,
    redact_row,
    success_fields,
    unusable_reason,
)
from detcheck.request import Outcome
from detcheck.store import to_micros, utc_now

# The Batch API's limits per input file
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
DONE = {"completed", "failed", "expired", "cancelled"}
WINDOW = "24h"


class _Limit:  # what the caller reads of an online run's concurrency (never lowered here)
    def __init__(self, concurrency: int):
        self.lowest = concurrency


class BatchFlip:
    """A measurement through the Batch API; `run()` returns the Outcome, like an online Flip."""

    def __init__(
        self,
        config,
        endpoint,
        writer,
        n: int,
        policy,
        concurrency: int,
        start_seq: int = 0,
        poll_s: float = 15.0,
        cancel_on_interrupt: bool = False,
        on_notice: Callable[[str], None] | None = None,
    ):
        import functools

        import openai

        self.config, self.endpoint, self.writer, self.policy = config, endpoint, writer, policy
        self.target_total = int(writer.meta["n_requested"])
        self.poll_s = poll_s
        self.cancel_on_interrupt = cancel_on_interrupt
        self.on_notice = on_notice or (lambda message: None)
        self.on_progress: Callable[[Outcome], None] = lambda outcome: None
        self.outcome = Outcome()
        self.limit = _Limit(concurrency)
        self.secrets = endpoint.secrets
        whole = config.kind == "generate"
        self.parse = (
            functools.partial(config.shape.parse, whole=True) if whole else config.shape.parse
        )
        self.targets = frozenset(config.targets.values())
        self.client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            timeout=endpoint.timeout_s,
            max_retries=max(
                0, policy.max_attempts - 1
            ),  # the SDK's backoff, for file and batch calls
        )
        # the Batch API names the endpoint with its version: /v1/chat/completions
        self.url = "/v1" + config.path
        self._seq = start_seq
        self._started = time.monotonic()
        self._load_state()

    # -- what the run already holds (a resume) --------------------------------------------
    def _load_state(self) -> None:
        from detcheck.store import read_run

        self.succeeded: set[int] = set()
        self.attempts: Counter = Counter()  # call -> attempts made
        self.seen: set[str] = set()  # custom_ids already stored (a line is stored once)
        self._last_error: dict[int, str] = {}  # call -> its last failure, for the final error
        run = read_run(self.writer.run_dir, columns=["call", "attempt", "ok", "custom_id"])
        for call, attempt, ok, custom_id in zip(
            *(run.table.column(c).to_pylist() for c in ("call", "attempt", "ok", "custom_id"))
        ):
            self.attempts[call] = max(self.attempts[call], attempt)
            if ok:
                self.succeeded.add(call)
            if custom_id:
                self.seen.add(custom_id)
        self._next_call = max(self.attempts, default=-1) + 1

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            for record in self._batches():
                if not record.get("collected"):
                    self._await_and_collect(record)
            while len(self.succeeded) < self.target_total:
                lines = self._next_lines()
                # every file of this round submitted before waiting: the batches run side by side
                records = [self._submit(chunk) for chunk in _chunks(lines, self._line_bytes())]
                for record in records:
                    self._await_and_collect(record)
        except KeyboardInterrupt:
            self._interrupted()
            self.outcome.interrupted = True
        self.outcome.elapsed_s = time.monotonic() - started
        return self.outcome

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
            "custom_id": f"call-{call}-attempt-{attempt}",
            "method": "POST",
            "url": self.url,
            "body": self.config.request_body(),
        }

    # -- submitting ---------------------------------------------------------------------------
    def _submit(self, lines: list[tuple[int, int]]) -> dict:
        data = "".join(json.dumps(self._line(c, a), separators=(",", ":")) + "\n" for c, a in lines)
        name = f"detcheck-{self.writer.meta['run_id']}-{len(self._batches())}.jsonl"
        uploaded = self.client.files.create(file=(name, data.encode()), purpose="batch")
        record = {"input_file_id": uploaded.id, "lines": len(lines), "id": None}
        self._batches().append(record)
        self.writer.write_meta()  # a crash now re-finds the batch by its input file
        batch = self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=self.url,
            completion_window=WINDOW,
            metadata={"detcheck_run": str(self.writer.meta["run_id"])[:512]},
        )
        record.update(id=batch.id, created_at=batch.created_at, status=batch.status)
        self.writer.write_meta()
        self.on_notice(f"batch {batch.id}: {len(lines):,} requests submitted ({WINDOW} window)")
        for call, attempt in lines:
            self.attempts[call] = max(self.attempts[call], attempt)
        return record

    def _find_batch(self, record: dict):
        """The batch made from this input file, if a killed process created it unrecorded."""
        for batch in self.client.batches.list(limit=100):
            if batch.input_file_id == record["input_file_id"]:
                return batch
        return None

    # -- waiting and collecting -----------------------------------------------------------------
    def _await_and_collect(self, record: dict) -> None:
        if not record.get("id"):
            batch = self._find_batch(record)
            if batch is None:  # never created: its lines go in the next batch
                self._batches().remove(record)
                self.writer.write_meta()
                return
            record.update(id=batch.id, created_at=batch.created_at)
            self.writer.write_meta()
        batch = self._poll(record)
        self._collect(record, batch)

    def _poll(self, record: dict):
        shown = None
        last_shown_at = 0.0
        while True:
            batch = self.client.batches.retrieve(record["id"])
            counts = batch.request_counts
            done = (
                f"{counts.completed:,}/{counts.total:,} done, {counts.failed:,} failed"
                if counts
                else ""
            )
            state = f"batch {batch.id}: {batch.status}" + (f", {done}" if done else "")
            now = time.monotonic()
            if state != shown or now - last_shown_at > 60:
                elapsed = _duration(now - self._started)
                self.on_notice(f"{state} ({elapsed})")
                shown, last_shown_at = state, now
            if batch.status != record.get("status"):
                record["status"] = batch.status
                self.writer.write_meta()
            if batch.status in DONE:
                return batch
            time.sleep(self.poll_s)

    def _collect(self, record: dict, batch) -> None:
        finished = batch.completed_at or batch.expired_at or batch.cancelled_at or batch.failed_at
        times = (
            to_micros_s(batch.created_at),
            to_micros_s(finished) if finished else to_micros(utc_now()),
        )
        answered: set[str] = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = self.client.files.content(file_id).text
            for raw in text.splitlines():
                if raw.strip():
                    answered.add(self._store_line(raw, batch.id, times))
        # lines the batch never ran (it expired, was cancelled, or failed whole)
        if batch.status != "completed":
            submitted = self.client.files.content(record["input_file_id"]).text
            for raw in submitted.splitlines():
                custom_id = json.loads(raw)["custom_id"] if raw.strip() else None
                if custom_id and custom_id not in answered and custom_id not in self.seen:
                    self._store_unanswered(custom_id, batch, times)
        record.update(collected=True, status=batch.status)
        self.writer.write_meta()
        self.on_progress(self.outcome)

    def _store_line(self, raw: str, batch_id: str, times: tuple[int, int]) -> str:
        line = json.loads(raw)
        custom_id = str(line.get("custom_id"))
        if custom_id in self.seen:  # collected before a kill: stored once
            return custom_id
        call, attempt = _call_of(custom_id)
        response = line.get("response") or {}
        error = line.get("error") or {}
        status = response.get("status_code")
        body = response.get("body")
        row = self._row(call, attempt, custom_id, batch_id, times)
        row.update(http_status=status, request_id=response.get("request_id"))
        if body is not None:
            row["raw_body"] = body_text(json.dumps(body).encode())
        if status != 200 or body is None:
            inner = body.get("error") if isinstance(body, dict) else None
            message = inner.get("message") if isinstance(inner, dict) else None
            message = message or error.get("message") or f"HTTP {status}"
            kind = f"http_{status}" if status else f"batch_{error.get('code') or 'error'}"
            row.update(error_type=kind, error=clip(message))
            self._failed(row, kind, message)
            return custom_id
        try:
            parsed = self.parse(json.dumps(body).encode())
        except MalformedResponse as exc:
            row.update(error_type=exc.kind, error=str(exc))
            self._failed(row, exc.kind, str(exc))
            return custom_id
        problem = unusable_reason(parsed, self.targets)
        if problem is not None:
            row.update(error_type="unusable_logprob", error=clip(problem))
            self._failed(row, "unusable_logprob", problem)
            return custom_id
        row.update(success_fields(parsed), ok=True)
        self._append(row)
        if call not in self.succeeded:
            self.succeeded.add(call)
            self.outcome.successes += 1
        self.outcome.prompt_tokens += parsed.prompt_tokens or 0
        self.outcome.cached_tokens += parsed.cached_tokens or 0
        self.outcome.completion_tokens += parsed.completion_tokens or 0
        return custom_id

    def _store_unanswered(self, custom_id: str, batch, times: tuple[int, int]) -> None:
        call, attempt = _call_of(custom_id)
        row = self._row(call, attempt, custom_id, batch.id, times)
        kind = f"batch_{batch.status}"
        message = f"the batch ended {batch.status} before this request ran"
        row.update(error_type=kind, error=message)
        self._failed(row, kind, message)

    def _row(self, call: int, attempt: int, custom_id: str, batch_id: str, times) -> dict:
        row = {
            "run_id": self.writer.meta["run_id"],
            "seq": self._seq,
            "call": call,
            "attempt": attempt,
            "started_at": times[0],
            "finished_at": times[1],
            "ok": False,
            "batch_id": batch_id,
            "custom_id": custom_id,
        }
        self._seq += 1
        self.attempts[call] = max(self.attempts[call], attempt)
        return row

    def _failed(self, row: dict, kind: str, message: str) -> None:
        self._append(row)
        self.outcome.errors[kind] += 1
        self._last_error[row["call"]] = f"{kind}: {clip(message, 200)}"

    def _append(self, row: dict) -> None:
        self.writer.append(redact_row(row, self.secrets))
        self.seen.add(row["custom_id"])
        self.outcome.attempts += 1

    # -- Ctrl-C -----------------------------------------------------------------------------------
    def _interrupted(self) -> None:
        open_batches = [b for b in self._batches() if b.get("id") and not b.get("collected")]
        if not open_batches:
            return
        if self.cancel_on_interrupt:
            for record in open_batches:
                self.client.batches.cancel(record["id"])
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


def _chunks(lines: list, line_bytes: int) -> list[list]:
    per_file = max(1, min(MAX_LINES, MAX_BYTES // max(1, line_bytes)))
    return [lines[i : i + per_file] for i in range(0, len(lines), per_file)]


def _call_of(custom_id: str) -> tuple[int, int]:
    try:
        _, call, _, attempt = custom_id.split("-")
        return int(call), int(attempt)
    except ValueError:
        raise DataError(f"a batch line's custom_id {custom_id!r} is not detcheck's") from None


def to_micros_s(seconds: int | float) -> int:
    return int(seconds * 1_000_000)


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s"


def probe_batch(config, endpoint, poll_s: float = 15.0, log=None) -> dict:
    """Submit a one-request batch and say what its output line carries: logprobs, how many
    top logprobs of the 20 asked for, a fingerprint. (No provider documents whether batch
    output keeps logprobs: this finds out.)"""
    from dataclasses import replace

    import openai

    log = log or (lambda message: None)
    config = replace(config, top_logprobs=20)
    client = openai.OpenAI(
        base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=endpoint.timeout_s
    )
    url = "/v1" + config.path
    line = {"custom_id": "probe", "method": "POST", "url": url, "body": config.request_body()}
    uploaded = client.files.create(
        file=("detcheck-probe.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch"
    )
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=url, completion_window=WINDOW)
    log(f"batch {batch.id} submitted: one request; waiting (it can take up to {WINDOW})")
    while batch.status not in DONE:
        time.sleep(poll_s)
        batch = client.batches.retrieve(batch.id)
    out: dict = {"endpoint": endpoint.shown, "model": config.model, "api": config.api}
    out.update(via="batch", batch_id=batch.id, batch_status=batch.status)
    text = client.files.content(batch.output_file_id).text if batch.output_file_id else ""
    answer = json.loads(text.splitlines()[0]) if text.strip() else {}
    response = answer.get("response") or {}
    body = response.get("body")
    out["status"] = response.get("status_code")
    try:
        parsed = config.shape.parse(json.dumps(body).encode()) if body else None
    except MalformedResponse as exc:
        parsed, out["error"] = None, str(exc)
    out["logprobs"] = parsed is not None
    out["top_logprobs_requested"] = 20
    out["top_logprobs_returned"] = len(parsed.top_logprobs) if parsed else 0
    fingerprint = body.get("system_fingerprint") if isinstance(body, dict) else None
    out["system_fingerprint"] = bool(fingerprint)
    out["fingerprint_value"] = fingerprint
    return out
