"""The formats `detcheck import` reads, each streamed a line (or a CSV row) at a time into
Records: a row as detcheck stores it, and which prompt it answers. A line that cannot be read
is yielded as the reason, naming its file and line, for the caller to stop or skip on."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detcheck.errors import DataError, UsageError

FORMATS = ("openai", "batch", "csv", "jsonl")
OBJECTS = {"chat.completion": "chat", "text_completion": "completions", "response": "responses"}
API_OF_URL = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
              "/v1/responses": "responses"}  # fmt: skip
# what a logged request carries beside its parameters: never stored
NOT_PARAMETERS = ("headers", "api_key", "authorization", "extra_headers")


@dataclass
class Record:
    key: str  # which prompt: records with the same key are repeated calls of one request
    prompt: str | None
    request: dict | None  # the request's parameters, if the data has them
    api: str | None
    row: dict  # the stored row, without run_id/seq/call (the run's writer numbers them)


def read_records(paths: list[Path], fmt: str, columns: dict, *,
                 batch_input: Path | None = None) -> Iterator[Record | str]:  # fmt: skip
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt in ("csv", "jsonl"):
        if not columns.get("text"):
            raise UsageError(f"--format {fmt} needs --text COLUMN (the completion)")
        for path in paths:
            yield from _table(path, fmt, columns)
        return
    if batch_input is not None and fmt != "batch":
        raise UsageError("--batch-input is for --format batch")
    requests = _batch_requests(batch_input) if batch_input else {}
    for path in paths:
        for number, raw in _lines(path):
            where = f"{path}:{number}"
            item = _batch_line(raw, requests, where) if fmt == "batch" else _openai_line(raw, where)
            yield item


def _lines(path: Path) -> Iterator[tuple[int, bytes | int]]:
    """Each non-blank line; one over MAX_LINE_BYTES arrives as its length (not held)."""
    from detcheck.send.batch_api import MAX_LINE_BYTES

    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        number = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                length = len(raw)
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    length += len(rest)
                yield number, length + len(rest)
            elif raw.strip():
                yield number, raw


def _json(raw: bytes | int, where: str) -> object:
    if isinstance(raw, int):
        return f"{where}: a line of {raw:,} bytes, over the limit of one response"
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return f"{where}: not JSON ({exc})"


def _openai_line(raw: bytes, where: str) -> Record | str:
    """A response object as the API returned it, or {"request": ..., "response": ...}."""
    line = _json(raw, where)
    if isinstance(line, str):
        return line
    if not isinstance(line, dict):
        return f"{where}: not a JSON object"
    request, wrapped = None, "response" in line and "object" not in line
    if wrapped:
        request, line = line.get("request"), line["response"]
        if isinstance(line, dict) and isinstance(line.get("body"), dict):
            line = line["body"]  # a logger that keeps the HTTP response: its body
    if not isinstance(line, dict):
        return f"{where}: the response is not a JSON object"
    # a bare response line is its body as received (not encoded again); a wrapped one is not,
    # as it holds the request's headers too
    received = None if wrapped else raw.decode("utf-8", "replace").strip()
    return _response(line, _parameters(request), None, where, text=received)


def _response(
    body: dict, request: dict | None, api: str | None, where: str, *, row=None, text=None
) -> Record | str:
    from detcheck.send.record import error_code_from_body, error_message_from_body, success_fields
    from detcheck.shapes import shape
    from detcheck.shapes._parse import MalformedResponse

    row = {"attempt": 1, "ok": False, **(row or {})}
    text = text or json.dumps(body, separators=(",", ":"))
    row["raw_body"] = text
    key, prompt = _prompt_key(request)
    if "error" in body and not body.get("choices") and not body.get("output"):
        row.update(error_type=error_code_from_body(text) or "error",
                   error=error_message_from_body(text))  # fmt: skip
        return Record(key, prompt, request, api, row)
    api = OBJECTS.get(body.get("object")) or api
    if api is None:
        return f"{where}: not a chat.completion, text_completion or response object"
    parse = shape(api).parse
    try:
        try:
            parsed = parse(text, whole=True)
        except MalformedResponse as exc:
            if exc.kind != "no_logprobs":
                raise
            parsed = parse(text, whole=True, logprobs=False)
    except MalformedResponse as exc:
        return f"{where}: {exc}"
    row.update(success_fields(parsed), ok=True)
    return Record(key, prompt, request, api, row)


def _parameters(request) -> dict | None:
    """A logged request's body parameters, without what is not one (headers, keys, URLs)."""
    if not isinstance(request, dict):
        return None
    if isinstance(request.get("body"), dict):  # {method, url, body}: a batch input line's shape
        request = request["body"]
    return {k: v for k, v in request.items() if k.lower() not in NOT_PARAMETERS and k != "url"}


def _prompt_key(request: dict | None) -> tuple[str, str | None]:
    """(key, prompt text) of a request: the same key for the same parameters (a seed per call
    aside: it is a repeat of one prompt, not another one)."""
    if request is None:
        return "", None
    prompt = _prompt_text(request)
    same = {k: v for k, v in request.items() if k not in ("seed", "user", "metadata", "stream")}
    digest = hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:12]
    return digest, prompt


def _prompt_text(request: dict) -> str | None:
    if isinstance(request.get("messages"), list):
        users = [m for m in request["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        content = users[-1].get("content") if users else None
        if isinstance(content, list):  # parts: their texts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else None
    for name in ("prompt", "input"):
        if isinstance(request.get(name), str):
            return request[name]
    return None


def _batch_requests(path: Path) -> dict[str, dict]:
    """custom_id -> the request's parameters, from a batch's input file."""
    requests = {}
    for number, raw in _lines(path):
        line = _json(raw, f"{path}:{number}")
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            raise UsageError(f"{path}:{number}: not a batch input line (custom_id, body)")
        requests[line["custom_id"]] = {"api": API_OF_URL.get(line.get("url")),
                                       "body": _parameters(line)}  # fmt: skip
    return requests


def _batch_line(raw: bytes, requests: dict, where: str) -> Record | str:
    from detcheck.send.batch_api import failure_of, read_output_line

    line = read_output_line(raw)
    if isinstance(line, str):
        return f"{where}: {line}"
    sent = requests.get(line.custom_id) or {}
    row = {"custom_id": line.custom_id, "http_status": line.status, "request_id": line.request_id}
    if line.status != 200 or not isinstance(line.body, dict):
        kind, message = failure_of(line)
        key, prompt = _prompt_key(sent.get("body"))
        row.update(attempt=1, ok=False, error_type=kind, error=message,
                   raw_body=raw.decode("utf-8", "replace"))  # fmt: skip
        return Record(key, prompt, sent.get("body"), sent.get("api"), row)
    return _response(line.body, sent.get("body"), sent.get("api"), where, row=row)


def _table(path: Path, fmt: str, columns: dict) -> Iterator[Record | str]:
    """Rows of a CSV file or a JSONL table: one completion each."""
    if fmt == "csv":
        csv.field_size_limit(sys.maxsize)  # a completion may be long; the default is 128 KiB
        try:
            f = open(path, encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
        with f:
            reader = csv.DictReader(f)
            try:
                names = reader.fieldnames or []
                missing = [c for c in columns.values() if c and c not in names]
                if missing:
                    raise UsageError(f"{path}: no column {missing[0]!r} (it has: "
                                     f"{', '.join(names)})")  # fmt: skip
                for item in reader:
                    yield _table_row(item, columns, f"{path}:{reader.line_num}")
            except UnicodeDecodeError as exc:  # the rest of the file cannot be read either
                raise DataError(f"{path}:{reader.line_num + 1}: not UTF-8 text ({exc.reason} "
                                f"at byte {exc.start} of a block)") from None  # fmt: skip
        return
    for number, raw in _lines(path):
        where = f"{path}:{number}"
        item = _json(raw, where)
        if isinstance(item, str) or not isinstance(item, dict):
            yield item if isinstance(item, str) else f"{where}: not a JSON object"
            continue
        missing = [c for c in columns.values() if c and c not in item]
        yield f"{where}: no {missing[0]!r}" if missing else _table_row(item, columns, where)


def _table_row(item: dict, columns: dict, where: str) -> Record | str:
    text = item[columns["text"]]
    if not isinstance(text, str):
        return f"{where}: {columns['text']!r} is not text ({text!r:.40})"
    row: dict = {"attempt": 1, "ok": True, "text": text}
    if columns.get("model"):
        row["response_model"] = _text_or_none(item[columns["model"]])
    if columns.get("answer"):  # an empty cell: no answer was found in this completion
        row["answer"] = _text_or_none(item[columns["answer"]])
    if columns.get("logprob"):
        try:
            row["logprob"] = float(item[columns["logprob"]])
        except (TypeError, ValueError):
            return f"{where}: {columns['logprob']!r} is not a number"
    prompt = _text_or_none(item[columns["prompt"]]) if columns.get("prompt") else None
    if columns.get("id"):
        key = _text_or_none(item[columns["id"]])
        if key is None:
            return f"{where}: no {columns['id']!r}"
    else:
        key = "" if prompt is None else hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return Record(key, prompt, None, None, row)


def _text_or_none(value) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)
