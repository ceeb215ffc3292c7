"""CSV tables for `detcheck import`, read by Arrow's CSV reader into the spill (import_read's
Reader takes this in): each batch's rows become spill rows in columns, grouped by their prompt
(and the model, when a column names it), a row with a key in a cell redacted as the per-line
reader would. A table with anything odd in it (a row over the limit of one response, a cell
count that does not match, text that is not UTF-8, a logprob that is not a number) is left to
the per-line reader (Python's csv module), which names the line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.commands import import_columns as ic
from detcheck.commands.import_secrets import keys_in, secrets_of


class TableReading:
    """The CSV part of import_read.Reader (it has the groups, the spill and the row count)."""

    def _csv(self, path: Path, columns: dict) -> bool:
        """A CSV table read by Arrow's reader into the spill; False (nothing spilled) if the
        file needs the per-line reader: odd rows, a cell over the limit, bad UTF-8."""
        import pyarrow.csv as pcsv

        from detcheck.commands.import_files import MAX_LINE_BYTES, open_input

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
        table = ic.with_order(table, order, index[codes], pa.nulls(n, pa.int64()))
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
        return pa.concat_tables([clean, ic.rows_table(rows)])


class _Odd(Exception):
    """A CSV table the columnar reader does not take as it is."""


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
