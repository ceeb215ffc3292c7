"""Pass 1 of `detcheck import`: every input read once, a chunk at a time, into spill tables
(import_columns.SPILL_SCHEMA), each row numbered by its file and line and given its group.

Each chunk's lines are split three ways: bare chat.completion bodies, parsed by Arrow's reader
(import_columns); logged {request, response} objects and Batch API lines, whose wrapper is read
by Python's json and whose bodies then take the same columnar path; and everything else (other
APIs, several choices, refusals, error bodies, whatever may hold a credential) read line by
line by import_formats, redacted before it is counted, as it always was. A CSV table is read by
Arrow's CSV reader, or, if anything in it is odd, by Python's csv module with its rows capped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.commands import import_columns as ic
from detcheck.commands.import_ahead import Prepared, ahead, prepare
from detcheck.commands.import_formats import (
    Record,
    _BatchRequests,
    _openai_line,
    _parameters,
    _prompt_text,
    group_key,
    read_table,
)
from detcheck.commands.import_runs import Groups, Spill
from detcheck.commands.import_secrets import keys_in, redacted_json, secrets_of
from detcheck.commands.import_tables import TableReading
from detcheck.errors import DataError, UsageError

Log = Callable[[str], None]


class Reader(TableReading):
    """Pass 1's state: the groups, the spill, the lines skipped."""

    def __init__(self, spill: Spill, groups: Groups, *, skip_bad: bool, log: Log):
        self.spill, self.groups = spill, groups
        self.skip_bad, self.log = skip_bad, log
        self.skipped = self.rows = 0
        self.file = 0
        self.requests = None

    def read(self, paths: list[Path], fmt: str, columns: dict, batch_input: Path | None) -> None:
        from detcheck.commands.import_files import MAX_LINE_BYTES

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
                    self._records(read_table(path, "csv", columns), path)
            elif fmt == "jsonl":
                self._records(read_table(path, "jsonl", columns), path)
            else:
                for ready in ahead(ic.blocks(path, MAX_LINE_BYTES), prepare, fmt):
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

    def _chunk(self, ready: Prepared, path: Path, fmt: str, requests) -> None:
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
            tables.append(ic.rows_table(rows))
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
        return ic.with_order(rows, order, groups, marks)

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
        table = ic.rows_table(rows)
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


def _mark(response_id, choice: int) -> int | None:
    """A response's identity (id and choice) as a number, the same for the same response
    within this process (Python's own string hash: a collision drops a row once in ~10^19)."""
    if not isinstance(response_id, str):
        return None
    return hash(response_id) if choice == 0 else hash((response_id, choice))
