"""Runs on disk: a crash-safe writer and the readers every command shares.

A run is a directory:
    run.json                 run metadata (parameters, endpoint, versions, times, status)
    part-00000.parquet ...   the attempts, zstd-compressed, each file carrying the metadata too
    _journal-00001.jsonl     attempts not yet in a part: one JSON line per attempt, written as it
                             arrives, so a killed process loses nothing it received

A journal becomes `part-NNNNN.parquet` (written to a temp name, then renamed) and is deleted
afterwards; a journal whose part exists is a leftover and ignored, so no row is ever read twice.
Files starting with `_` or `.` are invisible to pyarrow.dataset / duckdb globs on `*.parquet`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from detcheck.errors import DataError
from detcheck.schema import RUN_META_KEY, RUN_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY

RUN_JSON = "run.json"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _journal_name(index: int) -> str:
    return f"_journal-{index:05d}.jsonl"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_micros(when: dt.datetime) -> int:
    """Timestamps travel as integer microseconds since the epoch (JSON-safe, exact)."""
    return int(round(when.timestamp() * 1_000_000))


def rows_to_table(rows: Sequence[dict], meta: dict) -> pa.Table:
    table = pa.Table.from_pylist(list(rows), schema=RUN_SCHEMA)
    return table.replace_schema_metadata(
        {RUN_META_KEY: json.dumps(meta).encode(), SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}
    )


class RunWriter:
    """Appends attempt rows to a run directory; every row is on disk as soon as `append` returns."""

    def __init__(
        self, run_dir: Path, meta: dict, rows_per_part: int = 10_000, flush_every_s: float = 60.0
    ):
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.rows_per_part = rows_per_part
        self.flush_every_s = flush_every_s
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_meta()
        self._part = _recover_journals(self.run_dir, meta)
        self._buffer: list[dict] = []
        self._journal = open(self.run_dir / _journal_name(self._part), "a", encoding="utf-8")
        self._last_flush = time.monotonic()
        self._last_sync = time.monotonic()

    def write_meta(self) -> None:
        _write_atomic(self.run_dir / RUN_JSON, json.dumps(self.meta, indent=2).encode())

    def append(self, row: dict) -> None:
        self._journal.write(json.dumps(row, separators=(",", ":")) + "\n")
        # A write() reaches the OS at once (kill -9 safe); fsync at most once a second (power cut).
        self._journal.flush()
        now = time.monotonic()
        if now - self._last_sync > 1.0:
            os.fsync(self._journal.fileno())
            self._last_sync = now
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_part or now - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Turn the buffered rows into a Parquet part and start a new journal."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        _write_part(self.run_dir, self._part, rows_to_table(self._buffer, self.meta))
        self._journal.close()
        (self.run_dir / _journal_name(self._part)).unlink(missing_ok=True)
        self._buffer = []
        self._part += 1
        self._journal = open(self.run_dir / _journal_name(self._part), "a", encoding="utf-8")

    def close(self, **meta_updates) -> None:
        self.flush()
        self._journal.close()
        (self.run_dir / _journal_name(self._part)).unlink(missing_ok=True)
        self.meta.update(meta_updates)
        self.write_meta()


def _write_part(run_dir: Path, index: int, table: pa.Table) -> None:
    path = run_dir / _part_name(index)
    tmp = run_dir / f".{path.name}.tmp"
    pq.write_table(table, tmp, row_group_size=max(table.num_rows, 1), **PARQUET_OPTIONS)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_journal(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # the line being written when the process died
    return rows


def _orphan_journals(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(run_dir.glob("_journal-*.jsonl")):
        index = int(path.stem.split("-")[1])
        if (run_dir / _part_name(index)).exists():
            continue  # already compacted; the delete did not happen before a crash
        found.append((index, path))
    return found


def _recover_journals(run_dir: Path, meta: dict) -> int:
    """Compact what a crashed process left in journals; return the next free part index."""
    for index, path in _orphan_journals(run_dir):
        rows = _read_journal(path)
        if rows:
            _write_part(run_dir, index, rows_to_table(rows, meta))
        path.unlink()
    for path in run_dir.glob("_journal-*.jsonl"):
        path.unlink()
    indices = [int(p.stem.split("-")[1]) for p in run_dir.glob("part-*.parquet")]
    return max(indices, default=-1) + 1


# --- reading -------------------------------------------------------------------------------


class Run:
    """One stored run: where it is, its metadata, and its attempts.

    `table` holds the columns asked for in `read_run`; `batches()` streams any columns without
    holding the whole run in memory (what analysis of large datasets uses).
    """

    def __init__(
        self,
        path: Path,
        meta: dict,
        parts: list[Path],
        pending: list[dict],
        columns: Sequence[str] | None,
    ):
        self.path = path
        self.meta = meta
        self.parts = parts
        self.pending = pending
        self.columns = columns
        self._table: pa.Table | None = None

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            tables = [_read_parquet(p, self.columns) for p in self.parts]
            if self.pending:
                tables.append(self._pending_table(self.columns))
            self._table = (
                pa.concat_tables(tables, promote_options="permissive")
                if tables
                else _empty(self.columns)
            )
        return self._table

    def _pending_table(self, columns: Sequence[str] | None) -> pa.Table:
        table = rows_to_table(self.pending, self.meta).replace_schema_metadata(None)
        return table.select(list(columns)) if columns else table

    def num_rows(self) -> int:
        """Rows in the run, from the Parquet footers (nothing is decoded)."""
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.parts) + len(self.pending)

    def batches(
        self,
        columns: Sequence[str],
        batch_size: int = 65_536,
        read_dictionary: Sequence[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of `columns`, which may name nested fields
        ("top_logprobs.list.element.token"); `read_dictionary` columns come back
        dictionary-encoded as Parquet stores them (no string is materialised)."""
        top_level = sorted({c.split(".")[0] for c in columns})
        for part in self.parts:
            try:
                yield from pq.ParquetFile(part, read_dictionary=read_dictionary).iter_batches(
                    batch_size=batch_size, columns=list(columns)
                )
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{part}: cannot read ({_first_line(exc)})") from None
        if self.pending:
            yield from self._pending_table(top_level).to_batches(max_chunksize=batch_size)


def read_meta_from_parquet(path: Path) -> dict:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    md = schema.metadata or {}
    if RUN_META_KEY not in md:
        raise DataError(f"{path}: a Parquet file, but not one detcheck wrote (no run metadata)")
    version = int(md.get(SCHEMA_VERSION_KEY, b"0"))
    if version > SCHEMA_VERSION:
        raise DataError(
            f"{path}: written with schema version {version}; this detcheck reads up to "
            f"{SCHEMA_VERSION}. Upgrade detcheck."
        )
    return json.loads(md[RUN_META_KEY])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_parquet(path: Path, columns: Sequence[str] | None) -> pa.Table:
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from None
    return table.replace_schema_metadata(None)


def _empty(columns: Sequence[str] | None) -> pa.Table:
    schema = RUN_SCHEMA if not columns else pa.schema([RUN_SCHEMA.field(c) for c in columns])
    return schema.empty_table()


def read_run(path: Path, columns: Sequence[str] | None = None) -> Run:
    """A run directory or a single part file, journals included, parts in order.

    Every part's footer and metadata are checked here, so a bad file fails before any analysis.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        return Run(path, read_meta_from_parquet(path), [path], [], columns)
    meta_path = path / RUN_JSON
    if not meta_path.exists():
        raise DataError(f"{path}: not a detcheck run (no {RUN_JSON})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc})") from None
    parts = sorted(path.glob("part-*.parquet"))
    for part in parts:
        read_meta_from_parquet(part)
    pending = [row for _, j in _orphan_journals(path) for row in _read_journal(j)]
    return Run(path, meta, parts, pending, columns)


def find_runs(path: Path) -> list[Path]:
    """Run directories (or loose detcheck Parquet files) at or below `path`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file() or (path / RUN_JSON).exists():
        return [path]
    found = sorted({p.parent for p in path.rglob(RUN_JSON)})
    loose = sorted(
        p
        for p in path.rglob("*.parquet")
        if not any(parent in found for parent in p.parents) and not p.name.startswith((".", "_"))
    )
    if not found and not loose:
        raise DataError(f"{path}: no detcheck runs in this directory")
    return found + loose


def read_runs(paths: Iterable[Path], columns: Sequence[str] | None = None, warn=None) -> list[Run]:
    """Every run under `paths`. Inside a directory a bad run is skipped with a warning; a bad
    path named directly is an error."""
    runs = []
    for given in paths:
        candidates = find_runs(Path(given))
        for candidate in candidates:
            try:
                runs.append(read_run(candidate, columns))
            except DataError as exc:
                if len(candidates) == 1 and Path(given) == candidate:
                    raise
                if warn:
                    warn(f"skipped {exc}")
    if not runs:
        raise DataError("no readable detcheck runs in " + ", ".join(str(p) for p in paths))
    return runs
