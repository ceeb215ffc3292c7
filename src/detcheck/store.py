"""Runs on disk: a crash-safe writer and the readers every command shares.

A run is a directory:
    run.json                 run metadata (parameters, endpoint, versions, times, status)
    part-00000.parquet ...   the attempts, zstd-compressed, each file carrying the metadata too
    _journal-00001.jsonl     attempts not yet in a part: one JSON line per attempt, written as it
                             arrives, so a killed process loses nothing it received

A journal becomes `part-NNNNN.parquet` (written to a temp name, then renamed) and is deleted
afterwards; a journal whose part exists is a leftover and ignored, so no row is ever read twice.
Files starting with `_` or `.` are invisible to pyarrow.dataset / duckdb globs on `*.parquet`.

Object stores (s3://, gs://, through pyarrow.fs) cannot append, so a run bound for one is written
locally first (journals and all) and each finished part and run.json is uploaded as it is made;
readers take the same URIs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
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


def is_uri(location) -> bool:
    """An object-store location (s3://, gs://, ...) rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """A filesystem and path for a URI; query parameters configure it, e.g.
    s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise DataError(f"{display_uri(uri)}: cannot open ({_first_line(exc)})") from None


def display_uri(uri: str) -> str:
    """The URI without its query string (which may carry credentials or endpoints)."""
    return str(uri).split("?", 1)[0]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_micros(when: dt.datetime) -> int:
    """Timestamps travel as integer microseconds since the epoch (JSON-safe, exact)."""
    return int(round(when.timestamp() * 1_000_000))


def rows_to_table(rows: Sequence[dict], meta: dict) -> pa.Table:
    table = pa.Table.from_pylist(list(rows), schema=RUN_SCHEMA)
    return table.replace_schema_metadata(_schema_metadata(meta))


def _schema_metadata(meta: dict) -> dict[str, bytes]:
    """What every part carries in its Parquet footer: the run metadata and the schema version."""
    return {
        RUN_META_KEY: json.dumps(meta).encode(),
        SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode(),
    }


# Attempts per Parquet part: a journal is compacted into a part when it holds this many.
ROWS_PER_PART = 10_000
# Rows per Parquet row group. Reading pays a fixed cost per row group and column (~0.1 ms), so
# small groups slow analysis (10M responses: 2,000-row groups 5.5 s of decoding, 10,000-row
# groups 3.8 s); compacting a journal holds a group's rows as Arrow (~2.5 KB each with the raw
# body, so ~25 MB).
ROW_GROUP_ROWS = 10_000


class RunWriter:
    """Appends attempt rows to a run directory; every row is on disk as soon as `append` returns."""

    def __init__(
        self,
        run_dir: Path,
        meta: dict,
        rows_per_part: int = ROWS_PER_PART,
        flush_every_s: float = 60.0,
        mirror: tuple[pafs.FileSystem, str] | None = None,
    ):
        """`mirror`: an object-store directory that receives each finished part and run.json."""
        self.run_dir = Path(run_dir)
        self.mirror = mirror
        self.meta = meta
        self.rows_per_part = rows_per_part
        self.flush_every_s = flush_every_s
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_meta()
        self._part = _recover_journals(self.run_dir, meta)
        # The journal is the buffer: rows are not kept in memory, so memory stays flat however
        # many calls a run makes; a flush reads the journal back into a Parquet part.
        self._pending = 0
        self._journal = open(self.run_dir / _journal_name(self._part), "a", encoding="utf-8")
        self._last_flush = time.monotonic()
        self._last_sync = time.monotonic()

    def write_meta(self) -> None:
        _write_atomic(self.run_dir / RUN_JSON, json.dumps(self.meta, indent=2).encode())
        self._upload(self.run_dir / RUN_JSON)

    def _upload(self, path: Path) -> None:
        if self.mirror is None:
            return
        fs, directory = self.mirror
        try:
            with fs.open_output_stream(f"{directory}/{path.name}") as out:
                out.write(path.read_bytes())
        except OSError as exc:
            raise DataError(
                f"upload of {path.name} failed ({_first_line(exc)}); the run is "
                f"kept in {self.run_dir}"
            ) from None

    def append(self, row: dict) -> None:
        headers = row.get("response_headers")
        if isinstance(headers, dict):  # pairs: what Arrow's JSON reader can turn into a map
            row = {**row, "response_headers": list(headers.items())}
        self._journal.write(json.dumps(row, separators=(",", ":")) + "\n")
        # A write() reaches the OS at once (kill -9 safe); fsync at most once a second (power cut).
        self._journal.flush()
        now = time.monotonic()
        if now - self._last_sync > 1.0:
            os.fsync(self._journal.fileno())
            self._last_sync = now
        self._pending += 1
        if self._pending >= self.rows_per_part or now - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Turn the buffered rows into a Parquet part and start a new journal."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        self._journal.flush()
        journal = self.run_dir / _journal_name(self._part)
        if _write_part(self.run_dir, self._part, _journal_groups(journal, self.meta)):
            self._upload(self.run_dir / _part_name(self._part))
        self._journal.close()
        journal.unlink(missing_ok=True)
        self._pending = 0
        # hand back what the conversion borrowed: Arrow's allocator keeps freed memory otherwise,
        # and a long run's resident size would sit at its largest flush
        pa.default_memory_pool().release_unused()
        self._part += 1
        self._journal = open(self.run_dir / _journal_name(self._part), "a", encoding="utf-8")

    def close(self, **meta_updates) -> None:
        self.flush()
        self._journal.close()
        (self.run_dir / _journal_name(self._part)).unlink(missing_ok=True)
        self.meta.update(meta_updates)
        self.write_meta()


def _write_part(run_dir: Path, index: int, tables: Iterable[pa.Table]) -> int:
    """Write `tables` (one row group each) as part `index`, if there are any; return the rows
    written."""
    path = run_dir / _part_name(index)
    tmp = run_dir / f".{path.name}.tmp"
    rows = 0
    writer = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, **PARQUET_OPTIONS)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return 0
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rows


def _json_type(t: pa.DataType) -> pa.DataType:
    """How a RUN_SCHEMA type is spelled in a journal line."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if pa.types.is_timestamp(t):
        return pa.int64()  # microseconds
    if pa.types.is_map(t):
        return pa.list_(pa.list_(t.key_type))  # [[key, value], ...]
    return t


JOURNAL_SCHEMA = pa.schema([pa.field(f.name, _json_type(f.type), f.nullable) for f in RUN_SCHEMA])


def _journal_table(path: Path, meta: dict) -> pa.Table:
    """A whole journal written by this process, parsed by Arrow's JSON reader: ~7x faster
    than json.loads + from_pylist (10,000 coin flips 1.5 -> 0.2 s). Raises ArrowInvalid for
    anything it cannot read (a torn last line, an older journal's layout)."""
    import pyarrow.compute as pc
    import pyarrow.json as pj

    options = pj.ParseOptions(explicit_schema=JOURNAL_SCHEMA, unexpected_field_behavior="ignore")
    # one thread, and the 1 MB blocks kept as chunks (not joined): parsing 10,000 rows then
    # borrows ~80 MB, not ~135 MB, for the same time
    parsed = pj.read_json(
        path, read_options=pj.ReadOptions(use_threads=False), parse_options=options
    )
    columns = []
    for f in RUN_SCHEMA:
        column = parsed.column(f.name)
        if pa.types.is_map(f.type):
            maps = []
            for chunk in column.chunks:
                pairs = chunk.flatten()
                maps.append(
                    pa.MapArray.from_arrays(
                        chunk.offsets,
                        pc.list_element(pairs, 0),
                        pc.list_element(pairs, 1),
                        type=f.type,
                        mask=chunk.is_null(),
                    )
                )
            column = pa.chunked_array(maps, type=f.type)
        else:
            column = column.cast(f.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=RUN_SCHEMA).replace_schema_metadata(
        _schema_metadata(meta)
    )


def _journal_groups(path: Path, meta: dict) -> Iterator[pa.Table]:
    """A finished journal as row groups: read whole by Arrow where it can, else line by line."""
    try:
        table = _journal_table(path, meta)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        yield from journal_tables(path, meta)
        return
    for start in range(0, table.num_rows, ROW_GROUP_ROWS):
        yield table.slice(start, ROW_GROUP_ROWS)


def _iter_journal(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return  # the line being written when the process died
            headers = row.get("response_headers")
            if isinstance(headers, list):
                row["response_headers"] = [tuple(pair) for pair in headers]
            yield row


def _read_journal(path: Path) -> list[dict]:
    return list(_iter_journal(path))


def journal_tables(
    path: Path, meta: dict, chunk_rows: int = ROW_GROUP_ROWS, parse_rows: int = 500
) -> Iterator[pa.Table]:
    """A journal as Arrow tables of `chunk_rows` rows (none for an empty journal), parsed
    `parse_rows` lines at a time: a parsed line is ~12 KB of Python objects, its Arrow form
    ~4 KB, so a flush holds little more than one row group."""
    parsed: list[pa.Table] = []
    rows: list[dict] = []
    held = 0
    for row in _iter_journal(path):
        rows.append(row)
        if len(rows) >= parse_rows:
            parsed.append(rows_to_table(rows, meta))
            held += len(rows)
            rows = []
            if held >= chunk_rows:
                yield pa.concat_tables(parsed)
                parsed, held = [], 0
    if rows:
        parsed.append(rows_to_table(rows, meta))
    if parsed:
        yield pa.concat_tables(parsed)


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
        _write_part(run_dir, index, journal_tables(path, meta))  # nothing for an empty journal
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
        path,
        meta: dict,
        parts: list,
        pending: list[dict],
        columns: Sequence[str] | None,
        fs: pafs.FileSystem | None = None,
    ):
        self.path = path  # a Path, or the display URI of a run in an object store
        self.fs = fs  # None for local runs
        self.meta = meta
        self.parts = parts
        self.pending = pending
        self.columns = columns
        self._table: pa.Table | None = None
        self._footers: dict = {}

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            tables = [_read_parquet(p, self.columns, self.fs) for p in self.parts]
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

    def footer(self, part) -> pq.FileMetaData:
        """A part's Parquet footer, parsed once per run (row counts, row groups, schema)."""
        if part not in self._footers:
            self._footers[part] = _footer(part, self.fs)
        return self._footers[part]

    def part_meta(self, part) -> dict:
        """The run metadata a part carries in its footer, checked (detcheck's, a schema version
        this detcheck reads)."""
        md = self.footer(part).schema.to_arrow_schema().metadata or {}
        if RUN_META_KEY not in md:
            raise DataError(f"{part}: a Parquet file, but not one detcheck wrote (no run metadata)")
        version = int(md.get(SCHEMA_VERSION_KEY, b"0"))
        if version > SCHEMA_VERSION:
            raise DataError(
                f"{part}: written with schema version {version}; this detcheck reads up to "
                f"{SCHEMA_VERSION}. Upgrade detcheck."
            )
        return json.loads(md[RUN_META_KEY])

    def num_rows(self) -> int:
        """Rows in the run, from the Parquet footers (nothing is decoded)."""
        return sum(self.footer(p).num_rows for p in self.parts) + len(self.pending)

    def read_tasks(
        self,
        columns: Sequence[str],
        batch_size: int = 65_536,
        read_dictionary: Sequence[str] | None = None,
    ) -> Iterator[Callable[[], list[pa.RecordBatch]]]:
        """The run's record batches of `columns` as independent reads, in stored order, each
        returning a list of batches: consecutive small row groups (of any parts) up to
        `batch_size` rows joined into one batch, a large row group in batches, or the pending
        journal rows. `columns` may name nested fields ("top_logprobs.list.element.token");
        `read_dictionary` columns come back dictionary-encoded as Parquet stores them (no string
        is materialised). Each read opens its own file handles, so reads may run on different
        threads (a pyarrow ParquetFile shared between threads crashes)."""
        read = partial(
            self._read_groups,
            columns=columns,
            batch_size=batch_size,
            read_dictionary=read_dictionary,
        )
        pieces: list[tuple] = []
        held = 0
        for part in self.parts:
            footer = self.footer(part)
            for g in range(footer.num_row_groups):
                rows = footer.row_group(g).num_rows
                if pieces and held + rows > batch_size:
                    yield partial(read, pieces)
                    pieces, held = [], 0
                pieces.append((part, g))
                held += rows
        if pieces:
            yield partial(read, pieces)
        if self.pending:
            top_level = sorted({c.split(".")[0] for c in columns})
            yield lambda: self._pending_table(top_level).to_batches(max_chunksize=batch_size)

    def _read_groups(self, pieces, columns, batch_size, read_dictionary) -> list[pa.RecordBatch]:
        opened: dict = {}
        tables = []
        for part, g in pieces:
            try:
                if part not in opened:
                    opened[part] = _parquet_file(part, self.fs, read_dictionary, self.footer(part))
                parquet = opened[part]
                if parquet.metadata.row_group(g).num_rows > batch_size:  # alone in its read
                    return list(
                        parquet.iter_batches(
                            batch_size, row_groups=[g], columns=list(columns), use_threads=False
                        )
                    )
                tables.append(parquet.read_row_group(g, columns=list(columns), use_threads=False))
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{part}: cannot read ({_first_line(exc)})") from None
        # One batch from many row groups: Arrow merges their dictionaries, and the analysis pays
        # its fixed cost per batch once, not per group
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()
        return table.to_batches(max_chunksize=batch_size)

    def batches(
        self,
        columns: Sequence[str],
        batch_size: int = 65_536,
        read_dictionary: Sequence[str] | None = None,
        workers: int = 1,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of `columns` in stored order (see `read_tasks`), read by `workers`
        threads."""
        tasks = self.read_tasks(columns, batch_size, read_dictionary)
        if workers <= 1:
            for task in tasks:
                yield from task()
        else:
            yield from read_parallel(tasks, workers)


LEAN_ANALYSIS_ROWS = 2_000_000


def read_plan(rows: int) -> tuple[int, int]:
    """Rows per batch and reading threads for an analysis of `rows` stored responses. Small
    analyses (a run's end-of-run report, a history line) are kept lean, large ones fast:
    per-batch numpy temporaries (~10 MB per 8,192 rows) against a fixed cost per batch (~1.5 ms),
    and one reading thread against one per core, at most 4 (decoding releases the GIL, so they
    share the cores with the analysing thread): +20 MB for 1M responses, 1.2 -> 0.9 s."""
    if rows <= LEAN_ANALYSIS_ROWS:
        return 8_192, 1
    return 65_536, max(1, min(4, os.cpu_count() or 1))


def read_parallel(
    tasks: Iterable[Callable[[], list]], workers: int, ahead: int | None = None
) -> Iterator:
    """The items of each task's list, tasks run by `workers` threads up to `ahead` tasks ahead
    of the consumer, in the order of `tasks`. A task's error reaches the consumer; stopping
    early cancels the tasks not yet started."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    ahead = ahead or 2 * workers
    pool = ThreadPoolExecutor(workers, thread_name_prefix="detcheck-read")
    queued: deque = deque()
    try:
        for task in tasks:
            queued.append(pool.submit(task))
            if len(queued) > ahead:
                yield from queued.popleft().result()
        while queued:
            yield from queued.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _parquet_file(path, fs: pafs.FileSystem | None = None, read_dictionary=None, footer=None):
    source = fs.open_input_file(path) if fs is not None else path
    return pq.ParquetFile(source, read_dictionary=read_dictionary, metadata=footer)


def _footer(path, fs: pafs.FileSystem | None = None) -> pq.FileMetaData:
    try:
        return _parquet_file(path, fs).metadata
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_parquet(path, columns: Sequence[str] | None, fs=None) -> pa.Table:
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None, filesystem=fs)
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
        run = Run(path, {}, [path], [], columns)
        run.meta = run.part_meta(path)
        return run
    meta_path = path / RUN_JSON
    if not meta_path.exists():
        raise DataError(f"{path}: not a detcheck run (no {RUN_JSON})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc})") from None
    parts = sorted(path.glob("part-*.parquet"))
    pending = [row for _, j in _orphan_journals(path) for row in _read_journal(j)]
    run = Run(path, meta, parts, pending, columns)
    for part in parts:
        run.part_meta(part)
    return run


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


def _find_remote(fs: pafs.FileSystem, base: str) -> list[str]:
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{base}: no such object or prefix")
    if info.type == pafs.FileType.File:
        return [base]
    files = [
        i.path
        for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))
        if i.type == pafs.FileType.File
    ]
    dirs = sorted({f.rsplit("/", 1)[0] for f in files if f.endswith("/" + RUN_JSON)})
    loose = sorted(
        f
        for f in files
        if f.endswith(".parquet")
        and not f.rsplit("/", 1)[-1].startswith((".", "_"))
        and not any(f.startswith(d + "/") for d in dirs)
    )
    if not dirs and not loose:
        raise DataError(f"{base}: no detcheck runs under this prefix")
    return dirs + loose


def _read_remote_run(
    fs: pafs.FileSystem, path: str, scheme: str, columns: Sequence[str] | None = None
) -> Run:
    shown = f"{scheme}://{path}"
    if path.endswith(".parquet"):
        run = Run(shown, {}, [path], [], columns, fs)
        run.meta = run.part_meta(path)
        return run
    try:
        with fs.open_input_stream(f"{path}/{RUN_JSON}") as f:
            meta = json.loads(f.read())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{shown}/{RUN_JSON}: not readable ({_first_line(exc)})") from None
    parts = sorted(
        i.path
        for i in fs.get_file_info(pafs.FileSelector(path))
        if i.base_name.startswith("part-") and i.base_name.endswith(".parquet")
    )
    run = Run(shown, meta, parts, [], columns, fs)
    for part in parts:
        run.part_meta(part)
    return run


def read_runs(paths: Iterable[Path], columns: Sequence[str] | None = None, warn=None) -> list[Run]:
    """Every run under `paths` (directories or object-store URIs). Inside a directory a bad run
    is skipped with a warning; a bad run named directly is an error."""
    runs = []
    for given in paths:
        if is_uri(given):
            fs, named = open_uri(str(given))
            candidates = _find_remote(fs, named)
            load = partial(_read_remote_run, fs, scheme=str(given).split("://", 1)[0])
        else:
            named = Path(given)
            candidates = find_runs(named)
            load = read_run
        for candidate in candidates:
            try:
                runs.append(load(candidate, columns=columns))
            except DataError as exc:
                if candidate == named:
                    raise
                if warn:
                    warn(f"skipped {exc}")
    if not runs:
        raise DataError("no readable detcheck runs in " + ", ".join(str(p) for p in paths))
    return runs
