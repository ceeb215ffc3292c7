"""Pass 1 of `detcheck import`: every input read once, a chunk at a time, into spill tables
(import_columns.SPILL_SCHEMA), each row numbered by its file and line and given its group.

Each chunk's lines are split three ways: bare chat.completion bodies, parsed by Arrow's reader
(import_columns); logged {request, response} objects and Batch API lines, whose wrapper is read
by Python's json and whose bodies then take the same columnar path; and everything else (other
APIs, several choices, refusals, error bodies, whatever may hold a credential) read line by
line by import_formats, redacted before it is counted, as it always was. A CSV table is read by
Arrow's CSV reader, or, if anything in it is odd, by Python's csv module with its rows capped."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.commands import import_columns as ic
from detcheck.commands.import_formats import (
    Record,
    _BatchRequests,
    _openai_line,
    _parameters,
    _prompt_text,
    group_key,
    read_records,
)
from detcheck.commands.import_runs import Groups, Spill
from detcheck.commands.import_secrets import keys_in, redacted_json, secrets_of
from detcheck.errors import DataError, UsageError

Log = Callable[[str], None]
ROW_NAMES = [f.name for f in ic.SPILL_SCHEMA if not f.name.startswith("_")]
WRAPPED = (b'{"request"', b'{"response"')


class Reader:
    """Pass 1's state: the groups, the spill, the lines skipped."""

    def __init__(self, spill: Spill, groups: Groups, *, skip_bad: bool, log: Log):
        self.spill, self.groups = spill, groups
        self.skip_bad, self.log = skip_bad, log
        self.skipped = self.rows = 0
        self.file = 0
        self.requests = None

    def read(self, paths: list[Path], fmt: str, columns: dict, batch_input: Path | None) -> None:
        from detcheck.commands.import_formats import MAX_LINE_BYTES

        if fmt in ("csv", "jsonl") and not columns.get("text"):
            raise UsageError(f"--format {fmt} needs --text COLUMN (the completion)")
        if batch_input is not None and fmt != "batch":
            raise UsageError("--batch-input is for --format batch")
        requests = None
        if fmt == "batch":
            if batch_input is not None:
                requests = self.requests = _BatchRequests(batch_input)
            else:
                self.log(
                    "no --batch-input: the requests are unknown, so responses are grouped by the "
                    "model and API that answered (give the batch's input file to group them by "
                    "request)"
                )
        for self.file, path in enumerate(paths):
            if fmt == "csv":
                if not self._csv(path, columns):
                    self._records(read_records([path], "csv", columns), path)
            elif fmt == "jsonl":
                self._records(read_records([path], "jsonl", columns), path)
            else:
                for ready in _ahead(ic.blocks(path, MAX_LINE_BYTES), _prepare, fmt):
                    self._chunk(ready, path, fmt, requests)
        if requests is not None and requests.unknown:
            self.log(
                f"{requests.unknown:,} responses whose custom_id is not in {batch_input.name}: "
                "grouped by the model and API that answered, apart from the known requests"
            )
        if self.skipped:
            self.log(f"skipped {self.skipped:,} line(s) that could not be read (--skip-bad)")

    # ---- bad lines ------------------------------------------------------------------------

    def _bad(self, reasons: list[tuple[int, str]]) -> None:
        """Stop at the first line (in the file's order) that could not be read, or count them."""
        if not reasons:
            return
        if not self.skip_bad:
            raise DataError(f"{min(reasons)[1]} (--skip-bad goes on without it)")
        self.skipped += len(reasons)

    def _order(self, number: int, choice: int = 0) -> int:
        return (self.file << 48) | (number << 8) | min(choice, 255)

    # ---- openai and batch lines -----------------------------------------------------------

    def _chunk(self, ready: _Prepared, path: Path, fmt: str, requests) -> None:
        chunk = ready.chunk
        bad = [(n, f"{path}:{n}: a line of {size:,} bytes, over the limit of one response")
               for n, size in chunk.overlong]  # fmt: skip
        lines = chunk.lines
        slow: list[int] = [k for k in range(len(lines)) if ready.suspect[k]]
        tables: list[pa.Table] = []
        bare = [(k, None, None, None) for k in ready.bare]
        bodies = lines if len(ready.bare) == len(lines) else [lines[k] for k in ready.bare]
        slow += self._columnar(bodies, bare, chunk.numbers, tables, (ready.parsed, ready.tokens))
        bodies: list[bytes] = []  # wrapped bodies for the columnar path, with what they carry
        carried: list[tuple] = []  # (line position, request, api, extra row fields)
        for k, found in zip(ready.wrapped, ready.unwrapped):
            if found is None:  # not in the usual layout: read by json
                if fmt == "batch":
                    self._batch_body(k, lines[k], requests, bodies, carried, slow)
                else:
                    self._wrapped_body(k, lines[k], bodies, carried, slow)
            elif fmt == "batch":
                body, extra = found
                api, request, secret = requests.peek(extra["custom_id"]) if requests else (
                    None, None, set())  # fmt: skip
                if secret:  # its request held a credential: redacted line by line
                    slow.append(k)
                    continue
                bodies.append(body)
                carried.append((k, request, api, extra))
            else:
                body, request = found
                bodies.append(body)
                carried.append((k, _parameters(request), None, None))
        slow += self._columnar(bodies, carried, chunk.numbers, tables)
        rows: list[dict] = []
        for k in sorted(slow):
            number = int(chunk.numbers[k])
            where = f"{path}:{number}"
            raw = lines[k]
            if fmt == "batch":
                from detcheck.commands.import_formats import _batch_line

                item = _batch_line(raw, requests, where)
            else:
                item = _openai_line(raw, where)
            if isinstance(item, str):
                bad.append((number, item))
            else:
                rows += [self._slow_row(r, self._order(number, r.choice)) for r in item]
        self._bad(bad)
        if rows:
            tables.append(_rows_table(rows))
        for t in tables:
            self.rows += t.num_rows
            self.spill.add(t)

    def _wrapped_body(self, k, line, bodies, carried, slow) -> None:
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            slow.append(k)
            return
        if not isinstance(data, dict) or "object" in data or "response" not in data:
            slow.append(k)
            return
        body = data["response"]
        if isinstance(body, dict) and isinstance(body.get("body"), dict):
            body = body["body"]
        if not isinstance(body, dict):
            slow.append(k)
            return
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
        carried.append((k, _parameters(data.get("request")), None, None))

    def _batch_body(self, k, line, requests, bodies, carried, slow) -> None:
        from detcheck.send.batch_api import read_output_line

        out = read_output_line(line)
        if isinstance(out, str) or out.status != 200 or not isinstance(out.body, dict):
            slow.append(k)
            return
        api, request, found = requests.peek(out.custom_id) if requests else (None, None, set())
        if found:  # its request held a credential: redacted line by line
            slow.append(k)
            return
        extra = {"custom_id": out.custom_id, "http_status": out.status,
                 "request_id": out.request_id}  # fmt: skip
        bodies.append(json.dumps(out.body, separators=(",", ":")).encode())
        carried.append((k, request, api, extra))

    def _columnar(self, bodies, carried, numbers, tables, parsed=None) -> list[int]:
        """Parse `bodies` the columnar way (`parsed`: all of them, parsed ahead), halving a
        batch that cannot be until the odd lines are found; returns the line positions left
        for the per-line reader."""
        left: list[int] = []
        stack = [(0, len(bodies))]
        while stack:
            a, b = stack.pop()
            if a == b:
                continue
            ahead = parsed if (a, b) == (0, len(bodies)) else None
            table = self._fast(bodies[a:b], carried[a:b], numbers, *(ahead or (None, None)))
            if table is not None:
                tables.append(table)
            elif b - a <= ic.SMALLEST_FAST:
                left += [c[0] for c in carried[a:b]]
            else:
                middle = (a + b) // 2
                stack += [(middle, b), (a, middle)]
        return left

    def _fast(self, bodies: list[bytes], carried: list[tuple], numbers, parsed=None,
              tokens=None) -> pa.Table | None:  # fmt: skip
        parsed = parsed if parsed is not None else ic.parse_bodies(bodies)
        if parsed is None:
            return None
        try:
            raw = pa.array(bodies, pa.binary()).cast(pa.string())  # UTF-8, or the per-line way
        except pa.ArrowInvalid:
            return None
        rows = ic.chat_rows(parsed, raw, ic.token_fields(raw) if tokens is None else tokens)
        if rows is None:
            return None
        n = rows.num_rows
        positions = np.fromiter((c[0] for c in carried), np.int64, n)
        order = (self.file << 48) | (numbers[positions] << 8)
        models = pc.dictionary_encode(rows.column("response_model").combine_chunks())
        if all(c[1] is None and c[3] is None for c in carried):  # bare bodies: by model alone
            index = [self.groups.index(group_key(None, "chat", m), api="chat")
                     for m in models.dictionary.to_pylist()]  # fmt: skip
            codes = pc.fill_null(models.indices, len(index)).to_numpy(zero_copy_only=False)
            index.append(self.groups.index(group_key(None, "chat", None), api="chat"))
            groups = np.array(index, np.int32)[codes]
        else:
            groups, rows = self._wrapped_groups(rows, carried)
        ids = rows.column("response_id").to_pylist()
        marks = pa.array([None if rid is None else hash(rid) for rid in ids], pa.int64())
        return _with_order(rows, order, groups, marks)

    def _wrapped_groups(self, rows: pa.Table, carried: list[tuple]) -> tuple[np.ndarray, pa.Table]:
        """Each row's group (its request and model), and a batch line's own fields."""
        models = rows.column("response_model").to_pylist()
        groups = np.empty(len(carried), np.int32)
        extra: dict[str, list] = {"custom_id": [], "http_status": [], "request_id": []}
        for i, (_, request, _, more) in enumerate(carried):
            if more is not None and request is None and self.requests is not None:
                self.requests.unknown += 1  # a batch line whose custom_id the input lacks
            key = group_key(request, "chat", models[i])
            groups[i] = self.groups.index(key, _prompt_text(request) if request else None,
                                          request, "chat")  # fmt: skip
            for name in extra:
                extra[name].append((more or {}).get(name))
        if any(v is not None for v in extra["custom_id"]):
            for name, values in extra.items():
                index = rows.schema.get_field_index(name)
                field = rows.schema.field(index)
                rows = rows.set_column(index, field, pa.array(values, field.type))
        return groups, rows

    # ---- the per-line reader --------------------------------------------------------------

    def _records(self, records, path: Path) -> None:
        """Records of the per-line reader (a table's rows), spilled a few thousand at a time."""
        batch: list[tuple[Record, int]] = []
        bad: list[tuple[int, str]] = []
        count = 0
        for item in records:
            count += 1
            if isinstance(item, str):
                bad.append((count, item))
                self._bad(bad)
                bad = []
                continue
            batch.append((item, count))
            if len(batch) >= 20_000:
                self._spill_records(batch)
                batch = []
        self._spill_records(batch)

    def _spill_records(self, batch: list[tuple[Record, int]]) -> None:
        if not batch:
            return
        rows = [self._slow_row(item, self._order(number, item.choice)) for item, number in batch]
        table = _rows_table(rows)
        self.rows += table.num_rows
        self.spill.add(table)

    def _slow_row(self, item: Record, order: int) -> dict:
        """A record redacted (before anything is counted), grouped and numbered."""
        from detcheck.send.record import redact_row

        texts = [v for v in item.row.values() if isinstance(v, str)]
        if isinstance(item.prompt, str):
            texts.append(item.prompt)
        secrets = secrets_of(keys_in(texts) | item.secrets)
        row = redact_row(item.row, secrets) if secrets else item.row
        if item.key not in self.groups.by_key:
            request, prompt = (redacted_json(v, set(secrets)) for v in (item.request, item.prompt))
            self.groups.index(item.key, prompt, request, item.api, item.prompt_id)
        rid = row.get("response_id")
        return {
            **row,
            ic.ORDER: order,
            ic.GROUP: self.groups.by_key[item.key].index,
            ic.MARK: _mark(rid, item.choice) if isinstance(rid, str) else None,
        }

    # ---- CSV by Arrow -----------------------------------------------------------------------

    def _csv(self, path: Path, columns: dict) -> bool:
        """A CSV table read by Arrow's reader into the spill; False (nothing spilled) if the
        file needs the per-line reader: odd rows, a cell over the limit, bad UTF-8."""
        import pyarrow.csv as pcsv

        from detcheck.commands.import_formats import MAX_LINE_BYTES, open_input

        wanted = [c for c in columns.values() if c]
        start, rows_before = len(self.spill.files), self.rows
        groups_before = dict(self.groups.by_key)
        try:
            with open_input(path) as f:
                reader = pcsv.open_csv(
                    f,
                    read_options=pcsv.ReadOptions(block_size=ic.CHUNK_BYTES, use_threads=True),
                    parse_options=pcsv.ParseOptions(newlines_in_values=True),
                    convert_options=pcsv.ConvertOptions(
                        column_types={c: pa.string() for c in wanted},
                        include_columns=wanted,
                        strings_can_be_null=False,
                        quoted_strings_can_be_null=False,
                    ),
                )
                at = 0
                for batch in reader:
                    table = self._csv_rows(batch, columns, at, MAX_LINE_BYTES)
                    if table is None:
                        raise _Odd
                    at += batch.num_rows
                    self.rows += table.num_rows
                    self.spill.add(table)
        except (_Odd, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowKeyError):
            for spilled in self.spill.files[start:]:  # start the file again, line by line
                spilled.unlink(missing_ok=True)
            del self.spill.files[start:], self.spill.batches[start:]
            self.groups.by_key = groups_before
            self.rows = rows_before
            return False
        return True

    def _csv_rows(self, batch: pa.RecordBatch, columns: dict, at: int, cap: int):
        n = batch.num_rows
        cells = {name: batch.column(col) for name, col in columns.items() if col}
        size = sum(pc.binary_length(c).to_numpy(zero_copy_only=False) for c in cells.values())
        if n and int(np.max(size)) > cap:
            return None
        values = {}
        for name in ("prompt", "model", "answer", "id"):  # an empty cell: nothing given
            if name in cells:
                values[name] = pc.if_else(pc.equal(cells[name], ""), None, cells[name])
        if "id" in values and values["id"].null_count:
            return None  # a row without its id: the per-line reader names it
        logprob = None
        if "logprob" in cells:
            try:
                logprob = pc.cast(cells["logprob"], pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            if not np.isfinite(logprob.to_numpy(zero_copy_only=False)).all():
                return None
        prompt_ids = values.get("id")
        if prompt_ids is None:
            prompt_ids = _prompt_digests(values.get("prompt"), n)
        models = values.get("model")
        order = (self.file << 48) | ((np.arange(n, dtype=np.int64) + at + 2) << 8)
        keys = pc.binary_join_element_wise(
            prompt_ids, models if models is not None else pa.nulls(n, pa.string()), "\x1f",
            null_handling="replace", null_replacement="\x00",
        )  # fmt: skip
        encoded = pc.dictionary_encode(keys)
        uniques = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy()
        _, first = np.unique(codes, return_index=True)
        index = np.empty(len(uniques), np.int32)
        prompts = values.get("prompt")
        for code, row in zip(np.unique(codes).tolist(), first.tolist()):
            prompt_id, _, model = uniques[code].partition("\x1f")
            model = None if model == "\x00" else model
            prompt = prompts[row].as_py() if prompts is not None else None
            index[code] = self.groups.index((prompt_id, "table", model or "?"), prompt, None,
                                            None, prompt_id)  # fmt: skip
        text = cells["text"]
        suspect = ic.suspects(pc.binary_join_element_wise(*cells.values(), "\n"))
        columns_out = {
            "attempt": pa.array(np.ones(n, np.int32)),
            "ok": pa.array(np.ones(n, bool)),
            "text": text,
            "response_model": models,
            "answer": values.get("answer"),
            "logprob": logprob,
        }
        table = ic.table_of(columns_out, n)
        table = _with_order(table, order, index[codes], pa.nulls(n, pa.int64()))
        if suspect.any():  # a key in a cell: those rows redacted as the per-line reader does
            table = self._redact_rows(table, suspect)
        return table

    def _redact_rows(self, table: pa.Table, suspect: np.ndarray) -> pa.Table:
        from detcheck.send.record import redact_row

        clean = table.filter(pa.array(~suspect))
        rows = table.filter(pa.array(suspect)).to_pylist()
        for row in rows:
            texts = [v for v in row.values() if isinstance(v, str)]
            secrets = secrets_of(keys_in(texts))
            if secrets:
                redact_row(row, secrets)
        return pa.concat_tables([clean, _rows_table(rows)])


@dataclass
class _Prepared:
    """A chunk with what a second thread found out ahead of it: which lines may hold a
    credential, which are bare bodies (parsed) and which are wrapped."""

    chunk: ic.Chunk
    suspect: np.ndarray
    bare: list[int]
    wrapped: list[int]
    parsed: pa.Table | None
    tokens: np.ndarray | None  # the "token" fields in each bare line
    unwrapped: list  # per wrapped line: its body and what it carries, or None (read by json)


def _prepare(block: tuple, fmt: str) -> _Prepared:
    from detcheck.commands.import_formats import MAX_LINE_BYTES

    chunk = ic.split_block(*block[:2], MAX_LINE_BYTES, block[2])
    lines = chunk.lines
    suspect = ic.suspects(pa.array(lines, pa.binary())) if lines else np.zeros(0, bool)
    bare, wrapped = [], []
    if fmt == "batch":
        wrapped = np.flatnonzero(~suspect).tolist()
    elif not suspect.any() and not any(line.startswith(WRAPPED) for line in lines):
        bare = list(range(len(lines)))  # the usual bare log
    else:
        for k, line in enumerate(lines):
            if not suspect[k]:
                (wrapped if line.startswith(WRAPPED) else bare).append(k)
    parsed = tokens = None
    if bare:
        bodies = lines if len(bare) == len(lines) else [lines[k] for k in bare]
        parsed = ic.parse_bodies(bodies)
        if parsed is not None:
            tokens = ic.token_fields(pa.array(bodies, pa.binary()))
    unwrap = _batch_layout if fmt == "batch" else _logged_layout
    unwrapped = [unwrap(lines[k]) for k in wrapped]
    return _Prepared(chunk, suspect, bare, wrapped, parsed, tokens, unwrapped)


_DECODER = json.JSONDecoder()
_REQUEST_KEY = re.compile(rb'\{\s*"request"\s*:\s*')
_RESPONSE_KEY = re.compile(r'\s*,\s*"response"\s*:\s*')
_STRING = rb'"(?:[^"\\]|\\.)*"'
_BATCH_HEAD = re.compile(
    rb'\{\s*"id"\s*:\s*' + _STRING + rb'\s*,\s*"custom_id"\s*:\s*(' + _STRING
    + rb')\s*,\s*"response"\s*:\s*\{\s*"status_code"\s*:\s*200\s*,\s*"request_id"\s*:\s*('
    + _STRING + rb'|null)\s*,\s*"body"\s*:\s*'
)  # fmt: skip
_BATCH_TAIL = re.compile(rb'\s*\}\s*(?:,\s*"error"\s*:\s*null\s*)?\}\s*$')


def _logged_layout(line: bytes):
    """(the response body's bytes as logged, the request) of {"request": ..., "response":
    {...}} in that order and nothing after (what a logger's json.dumps writes), without
    parsing the body in Python; None for any other layout (then json reads the line)."""
    head = _REQUEST_KEY.match(line)
    if head is None or not line.isascii():  # ASCII: a character is a byte
        return None
    text = line.decode("ascii")
    try:
        request, end = _DECODER.raw_decode(text, head.end())
    except (ValueError, RecursionError):
        return None
    key = _RESPONSE_KEY.match(text, end)
    body = text[key.end() :].rstrip() if key else ""
    if not body.endswith("}") or not isinstance(request, dict):
        return None
    body = body[:-1].rstrip()  # the wrapper's own closing brace
    if not body.startswith("{") or not body.endswith("}"):
        return None
    return line[key.end() : key.end() + len(body)], request


def _batch_layout(line: bytes):
    """(the body's bytes, the line's own fields) of a Batch API output line of status 200 in
    the API's layout (id, custom_id, response {status_code, request_id, body}, error null);
    None for any other (then json reads the line)."""
    head = _BATCH_HEAD.match(line)
    tail = _BATCH_TAIL.search(line) if head else None
    if tail is None or tail.start() <= head.end():
        return None
    try:
        custom_id = json.loads(head.group(1))
        request_id = json.loads(head.group(2))
    except ValueError:
        return None
    body = line[head.end() : tail.start()]
    if not body.startswith(b"{") or not body.endswith(b"}"):
        return None
    return body, {"custom_id": custom_id, "http_status": 200, "request_id": request_id}


def _ahead(items, work, *args):
    """work(item, *args) for each item, the next one done by a second thread meanwhile
    (Arrow's JSON reader and RE2 let go of the GIL: the two cores share the reading)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="detcheck-import") as pool:
        pending = None
        for item in items:
            future = pool.submit(work, item, *args)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


class _Odd(Exception):
    """A CSV table the columnar reader does not take as it is."""


def _mark(response_id, choice: int) -> int | None:
    """A response's identity (id and choice) as a number, the same for the same response
    within this process (Python's own string hash: a collision drops a row once in ~10^19)."""
    if not isinstance(response_id, str):
        return None
    return hash(response_id) if choice == 0 else hash((response_id, choice))


def _prompt_digests(prompts, n: int) -> pa.Array:
    """A table's prompt id without --id: the prompt's digest ("" when there is no prompt)."""
    if prompts is None:
        return pa.array([""] * n, pa.string())
    encoded = pc.dictionary_encode(prompts)
    digests = [
        "" if p is None else hashlib.sha256(p.encode()).hexdigest()[:12]
        for p in encoded.dictionary.to_pylist()
    ]
    out = pa.array(digests, pa.string()).take(encoded.indices)
    return pc.if_else(pc.is_null(prompts), "", out)


def _with_order(table: pa.Table, order, groups, marks) -> pa.Table:
    for name, values in ((ic.ORDER, order), (ic.GROUP, groups), (ic.MARK, marks)):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(values, field.type))
    return table


def _rows_table(rows: list[dict]) -> pa.Table:
    """Row dicts as a spill table; a row that does not fit (a number out of its column's
    range) is kept as a failed row with its raw body, as a journal keeps it."""
    try:
        return pa.Table.from_pylist(rows, schema=ic.SPILL_SCHEMA)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    fixed = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=ic.SPILL_SCHEMA)
            fixed.append(row)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raw = row.get("raw_body")
            fixed.append({
                "attempt": 1, "ok": False, "error_type": "unstorable",
                "error": f"the row did not fit the schema: {exc}"[:500],
                "raw_body": raw if isinstance(raw, str) else None,
                ic.ORDER: row[ic.ORDER], ic.GROUP: row[ic.GROUP], ic.MARK: None,
            })  # fmt: skip
    return pa.Table.from_pylist(fixed, schema=ic.SPILL_SCHEMA)
