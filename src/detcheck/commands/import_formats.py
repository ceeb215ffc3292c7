"""The formats `detcheck import` reads, each streamed a line (or a CSV row) at a time into
Records: a row as detcheck stores it, and which prompt it answers. A line that cannot be read
is yielded as the reason, naming its file and line, for the caller to stop or skip on. This is
the per-line reader: import_read sends it what the columnar path (import_columns) does not
take, and the tables the CSV reader (import_tables) leaves.

Files may be gzip-compressed and may start with a UTF-8 byte order mark; every line (and every
CSV row) is capped at the size of one response, so no input holds more than that at once."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from detcheck.commands.import_files import MAX_LINE_BYTES, open_input, readline_capped
from detcheck.commands.import_secrets import scrub
from detcheck.errors import DataError, UsageError

FORMATS = ("openai", "batch", "csv", "jsonl")
OBJECTS = {"chat.completion": "chat", "text_completion": "completions", "response": "responses"}
API_OF_URL = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
              "/v1/responses": "responses"}  # fmt: skip
# what a logged request carries beside its parameters: never stored
NOT_PARAMETERS = ("headers", "api_key", "authorization", "extra_headers")


NO_MODEL = "?"  # the model part of a group key when the response names none (an error body)


@dataclass
class Record:
    key: tuple  # (request, api, model): records with the same key are repeated calls of one
    # request to one model
    prompt: str | None
    request: dict | None  # the request's parameters, if the data has them
    api: str | None
    row: dict  # the stored row, without run_id/seq/call (the run's writer numbers them)
    secrets: set = field(default_factory=set)  # credentials taken out of the line by their name
    choice: int = 0  # which of the response's choices the row is
    prompt_id: str | None = None  # a table's own id of the prompt (else the key is the id)


def group_key(request: dict | None, api: str | None, model: str | None) -> tuple:
    """What a response is grouped by: its request's parameters when logged (the same key for the
    same parameters; a seed per call aside: a repeat of one prompt, not another), and always the
    API and the model that answered, so responses of different models never share a run."""
    if request is None:
        digest = "bare"
    else:
        same = {k: v for k, v in request.items() if k not in ("seed", "user", "metadata", "stream")}
        digest = hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:12]
    return digest, api or NO_MODEL, model or NO_MODEL


def read_table(path: Path, fmt: str, columns: dict) -> Iterator[Record | str]:
    """A CSV file's or a JSONL table's rows, one completion each, line by line (the per-line
    reader: import_read takes openai and batch lines by itself)."""
    if not columns.get("text"):
        raise UsageError(f"--format {fmt} needs --text COLUMN (the completion)")
    yield from _table(path, fmt, columns)


def _lines(path: Path) -> Iterator[tuple[int, bytes | int]]:
    """Each non-blank line; one over MAX_LINE_BYTES arrives as its length (not held)."""
    with open_input(path) as f:
        for number, raw in _capped_lines(f, path):
            if isinstance(raw, int) or raw.strip():
                yield number, raw


def _capped_lines(f, path: Path) -> Iterator[tuple[int, bytes | int]]:
    """Every line of `f`, numbered from 1; one over MAX_LINE_BYTES is read past without being
    held and arrives as its length."""
    number = 0
    while raw := readline_capped(f, MAX_LINE_BYTES + 1, path):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            length = len(raw)
            while (rest := readline_capped(f, 1 << 20, path)) and not rest.endswith(b"\n"):
                length += len(rest)
            yield number, length + len(rest)
        else:
            yield number, raw


def _json(raw: bytes | int, where: str) -> object:
    if isinstance(raw, int):
        return f"{where}: a line of {raw:,} bytes, over the limit of one response"
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return f"{where}: not JSON ({exc})"


def _openai_line(raw: bytes, where: str) -> list[Record] | str:
    """A response object as the API returned it, or {"request": ..., "response": ...}."""
    line = _json(raw, where)
    if isinstance(line, str):
        return line
    if not isinstance(line, dict):
        return f"{where}: not a JSON object"
    found: set[str] = set()
    scrubbed = scrub(line, found)
    if scrubbed is not line:  # a credential by its name: the line as received is not kept
        line, raw = scrubbed, None
    request, wrapped = None, "response" in line and "object" not in line
    if wrapped:
        request, line = line.get("request"), line["response"]
        if isinstance(line, dict) and isinstance(line.get("body"), dict):
            line = line["body"]  # a logger that keeps the HTTP response: its body
    if not isinstance(line, dict):
        return f"{where}: the response is not a JSON object"
    # a bare response line is its body as received (not encoded again); a wrapped one is not,
    # as it holds the request's headers too
    received = None if wrapped or raw is None else raw.decode("utf-8", "replace").strip()
    return _response(line, _parameters(request), None, where, text=received, secrets=found)


def _response(
    body: dict, request: dict | None, api: str | None, where: str, *, row=None, text=None,
    secrets: set | None = None,
) -> list[Record] | str:  # fmt: skip
    """The records of one response body: one per choice (n > 1 gives several completions)."""
    from detcheck.send.record import error_code_from_body, error_message_from_body
    from detcheck.shapes._parse import str_or_none

    row = {"attempt": 1, "ok": False, **(row or {})}
    text = text or json.dumps(body, separators=(",", ":"))
    row["raw_body"] = text
    prompt = _prompt_text(request) if request is not None else None
    secrets = secrets or set()
    model = str_or_none(body.get("model"))
    if "error" in body and not body.get("choices") and not body.get("output"):
        row.update(error_type=error_code_from_body(text) or "error",
                   error=error_message_from_body(text))  # fmt: skip
        return [Record(group_key(request, api, model), prompt, request, api, row, secrets)]
    api = OBJECTS.get(body.get("object")) or api
    if api is None:
        return f"{where}: not a chat.completion, text_completion or response object"
    key = group_key(request, api, model)
    choices = body.get("choices")
    if isinstance(choices, list) and len(choices) > 1:
        records = []
        for k, choice in enumerate(choices):  # each choice parsed as the only one of its body
            one = json.dumps({**body, "choices": [choice]}, separators=(",", ":"))
            item = _refused(choice, dict(row)) or _parsed_row(api, one, dict(row), where)
            if isinstance(item, str):
                return item
            records.append(Record(key, prompt, request, api, item, secrets, choice=k))
        return records
    first = choices[0] if isinstance(choices, list) and choices else None
    item = _refused(first, row) or _parsed_row(api, text, row, where)
    return item if isinstance(item, str) else [Record(key, prompt, request, api, item, secrets)]


def _refused(choice, row: dict) -> dict | None:
    """A chat choice the model refused (a `refusal` and no content): a failed row, as a live
    run records it; None for any other choice."""
    from detcheck.text import clip

    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict) or message.get("content") is not None:
        return None
    refusal = message.get("refusal")
    if not isinstance(refusal, str):
        return None
    row.update(error_type="refused", error=clip(f"the model refused: {refusal}"))
    return row


def _parsed_row(api: str, text: str, row: dict, where: str) -> dict | str:
    """`row` with what the body says; a refusal is a failed row (the response the data holds),
    anything else that cannot be read is why not."""
    from detcheck.send.record import success_fields
    from detcheck.shapes import shape
    from detcheck.shapes._parse import FINAL_KINDS, MalformedResponse

    parse = shape(api).parse
    try:
        try:
            parsed = parse(text, whole=True)
        except MalformedResponse as exc:
            if exc.kind != "no_logprobs":
                raise
            parsed = parse(text, whole=True, logprobs=False)
    except MalformedResponse as exc:
        if exc.kind in FINAL_KINDS:
            row.update(error_type=exc.kind, error=str(exc))
            return row
        return f"{where}: {exc}"
    row.update(success_fields(parsed), ok=True)
    return row


def _parameters(request) -> dict | None:
    """A logged request's body parameters, without what is not one (headers, keys, URLs)."""
    if not isinstance(request, dict):
        return None
    if isinstance(request.get("body"), dict):  # {method, url, body}: a batch input line's shape
        request = request["body"]
    return {k: v for k, v in request.items() if k.lower() not in NOT_PARAMETERS and k != "url"}


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


class _BatchRequests:
    """custom_id -> the request it carried, from a batch's input file, never held whole: each
    group of requests (the same parameters, a seed per call aside) is held once, as its first
    line has it, and each custom_id is a 64-bit hash beside its group's number (16 bytes a
    line: 1,000,000 lines take 16 MB)."""

    def __init__(self, path: Path):
        from array import array

        import numpy as np

        from detcheck.commands import import_columns as ic

        self.path = path
        self.unknown = 0
        self.requests: list[tuple[str | None, dict | None, set]] = []
        numbers: dict[str, int] = {}
        hashes, groups = array("q"), array("q")
        for chunk in ic.chunks(path, MAX_LINE_BYTES):
            if chunk.overlong:
                number = chunk.overlong[0][0]
                raise UsageError(f"{path}:{number}: not a batch input line (over the limit)")
            suspect = ic.suspects(_binary(chunk.lines))
            for k, raw in enumerate(chunk.lines):
                number = int(chunk.numbers[k])
                line = _json(raw, f"{path}:{number}")
                if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                    raise UsageError(f"{path}:{number}: not a batch input line (custom_id, body)")
                found: set[str] = set()
                if suspect[k]:
                    line = scrub(line, found)
                api, request = API_OF_URL.get(line.get("url")), _parameters(line)
                digest = group_key(request, api, None)[0] + (api or "")
                if digest not in numbers:
                    numbers[digest] = len(self.requests)
                    self.requests.append((api, request, found))
                elif found:
                    self.requests[numbers[digest]][2].update(found)
                hashes.append(hash(line["custom_id"]))
                groups.append(numbers[digest])
        self.hashes = np.frombuffer(hashes, np.int64)
        order = np.argsort(self.hashes, kind="stable")
        self.hashes = self.hashes[order]
        self.groups = np.frombuffer(groups, np.int64)[order]

    def peek(self, custom_id: str) -> tuple[str | None, dict | None, set]:
        import numpy as np

        h = hash(custom_id)
        at = int(np.searchsorted(self.hashes, h))
        if at < len(self.hashes) and self.hashes[at] == h:
            return self.requests[int(self.groups[at])]
        return None, None, set()

    def get(self, custom_id: str) -> tuple[str | None, dict | None, set]:
        """The request, counting a custom_id the input file lacks."""
        found = self.peek(custom_id)
        if found[1] is None and found[0] is None:
            self.unknown += 1
        return found


def _binary(lines: list[bytes]):
    import pyarrow as pa

    return pa.array(lines, pa.binary())


def _batch_line(raw: bytes, requests: _BatchRequests | None, where: str) -> list[Record] | str:
    from detcheck.send.batch_api import failure_of, read_output_line

    line = read_output_line(raw)
    if isinstance(line, str):
        return f"{where}: {line}"
    api, request, found = requests.get(line.custom_id) if requests else (None, None, set())
    found = set(found)
    body = scrub(line.body, found)
    text = None
    if body is not line.body or scrub(line.error, found) is not line.error:
        raw = None  # a credential by its name in the line: it is not kept as received
    row = {"custom_id": line.custom_id, "http_status": line.status, "request_id": line.request_id}
    if line.status != 200 or not isinstance(body, dict):
        kind, message = failure_of(line)
        model = body.get("model") if isinstance(body, dict) else None
        text = (
            raw.decode("utf-8", "replace")
            if raw is not None
            else json.dumps(
                {
                    "custom_id": line.custom_id,
                    "response": {"status_code": line.status, "body": body},
                }
            )
        )
        row.update(attempt=1, ok=False, error_type=kind, error=message, raw_body=text)
        prompt = _prompt_text(request) if request is not None else None
        return [Record(group_key(request, api, model), prompt, request, api, row, found)]
    return _response(body, request, api, where, row=row, secrets=found)


def _table(path: Path, fmt: str, columns: dict) -> Iterator[Record | str]:
    """Rows of a CSV file or a JSONL table: one completion each."""
    if fmt == "csv":
        yield from _csv_rows(path, columns)
        return
    for number, raw in _lines(path):
        where = f"{path}:{number}"
        item = _json(raw, where)
        if isinstance(item, str) or not isinstance(item, dict):
            yield item if isinstance(item, str) else f"{where}: not a JSON object"
            continue
        missing = [c for c in columns.values() if c and c not in item]
        yield f"{where}: no {missing[0]!r}" if missing else _table_row(item, columns, where)


def _csv_rows(path: Path, columns: dict) -> Iterator[Record | str]:
    """A CSV file's rows, each capped at the size of one response: an overlong line is read
    past without being held, and the row holding it is a bad line."""

    overlong: dict[int, int] = {}

    def text_lines(f) -> Iterator[str]:
        for number, raw in _capped_lines(f, path):
            if isinstance(raw, int):
                overlong[number] = raw
                yield "overlong\n"  # a row of its own, for the reader to name
                continue
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # the rest of the file cannot be read either
                raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte "
                                f"{exc.start} of the line)") from None  # fmt: skip

    csv.field_size_limit(MAX_LINE_BYTES)  # a completion may be long; the default is 128 KiB
    with open_input(path) as f:
        reader = csv.DictReader(text_lines(f))
        names = reader.fieldnames or []
        missing = [c for c in columns.values() if c and c not in names]
        if missing:
            raise UsageError(f"{path}: no column {missing[0]!r} (it has: {', '.join(names)})")
        last = reader.line_num
        while True:
            try:
                item = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a quoted cell over the limit, spread over many lines
                last = reader.line_num
                yield f"{path}:{last}: {exc}"
                continue
            where = f"{path}:{reader.line_num}"
            cut = [overlong.pop(n) for n in range(last + 1, reader.line_num + 1) if n in overlong]
            last = reader.line_num
            if cut:
                yield f"{where}: a row of {sum(cut):,} bytes, over the limit of one response"
            elif None in item.values():
                cells = sum(v is not None for v in item.values())
                yield f"{where}: {cells} cells, not {len(names)}"
            else:
                yield _table_row(item, columns, where)


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
        prompt_id = _text_or_none(item[columns["id"]])
        if prompt_id is None:
            return f"{where}: no {columns['id']!r}"
    else:
        prompt_id = "" if prompt is None else hashlib.sha256(prompt.encode()).hexdigest()[:12]
    # rows of one prompt answered by different models are not one run
    key = (prompt_id, "table", row.get("response_model") or NO_MODEL)
    return Record(key, prompt, None, None, row, prompt_id=prompt_id)


def _text_or_none(value) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)
