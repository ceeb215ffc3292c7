"""Runs on disk: a crash-safe writer and the readers every command shares.

A run is a directory:
    run.json                 run metadata (parameters, endpoint, versions, times, status)
    part-00000.parquet ...   the attempts, zstd-compressed, each file carrying the metadata too
    _journal-00001.jsonl     attempts not yet in a part: one JSON line per attempt, written as it
                             arrives, so a killed process loses nothing it received
    _detcheck.lock           held (flock) by the one process writing the run, with its pid: a
                             second writer is refused; the kernel frees it when the holder dies

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

from detcheck.errors import DataError, RunBusy, StorageError
from detcheck.schema import RUN_META_KEY, RUN_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY

RUN_JSON = "run.json"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _journal_name(index: int) -> str:
    return f"_journal-{index:05d}.jsonl"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {_os_reason(exc)}") from None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _first_line(exc)


def _make_dir(path: Path, private: bool = False) -> None:
    """A run directory (and its parents), or a StorageError saying why not."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    except FileExistsError:
        raise StorageError(f"cannot write a run under {path}: not a directory") from None
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {_os_reason(exc)}") from None
    if not path.is_dir():
        raise StorageError(f"cannot write a run under {path}: not a directory")


LOCK_NAME = "_detcheck.lock"


class RunLock:
    """The right to write one run: an exclusive flock on `_detcheck.lock` holding the writer's
    pid. The kernel drops it when the holder dies (kill -9 included), so a dead holder never
    blocks a resume; a live one makes a second writer fail at once with its pid."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {_os_reason(exc)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunBusy(
                    f"{run_dir} is being written by another detcheck process (pid {holder}, "
                    f"lock {self.path}); wait for it to finish or stop it, then resume"
                ) from None
            # the holder before us may have removed the file between our open and our lock:
            # a lock on a removed file guards nothing, so take the one at the path
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: nobody can take the old file
        os.close(self._fd)
        self._fd = None


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
    """The URI without user:password and without its query string (which may carry
    credentials or endpoints): what is shown and stored."""
    base = str(uri).split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


_SECRET_QUERY_WORDS = ("key", "secret", "token", "password", "credential", "session", "sig")


def safe_uri(uri: str) -> str:
    """The URI without user:password and without query parameters that may hold credentials
    (access_key, secret_key, session_token, ...); endpoint_override, scheme, region stay, so
    the location can be opened again (credentials then come from the environment)."""
    from urllib.parse import parse_qsl, urlencode

    query = str(uri).split("#", 1)[0].partition("?")[2]
    kept = [
        (k, v)
        for k, v in parse_qsl(query, keep_blank_values=True)
        if not any(word in k.lower() for word in _SECRET_QUERY_WORDS)
    ]
    return display_uri(uri) + (f"?{urlencode(kept)}" if kept else "")


def uri_secrets(uri: str) -> list[str]:
    """What a URI holds that must never be shown: user, password, every query value."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(str(uri))
    found = [unquote(x) for x in (parts.username, parts.password) if x]
    found += [v for _, v in parse_qsl(parts.query) if v]
    return found


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
        lock: RunLock | None = None,
        private: bool = False,
    ):
        """`mirror`: an object-store directory that receives each finished part and run.json
        (what an earlier process of the run left unuploaded is uploaded first). `lock`: the
        run's lock if the caller already holds it (a resume takes it before reading the run).
        `private`: the directory is the user's alone (0700: a staging copy in a shared /tmp).
        """
        self.run_dir = Path(run_dir)
        self.mirror = mirror
        self.meta = meta
        self.rows_per_part = rows_per_part
        self.flush_every_s = flush_every_s
        _make_dir(self.run_dir, private)
        self.lock = lock or RunLock(self.run_dir)
        try:
            self.write_meta()
            self._part = _recover_journals(self.run_dir, meta)
            if mirror is not None:
                self._upload_missing()
            # The journal is the buffer: rows are not kept in memory, so memory stays flat
            # however many calls a run makes; a flush reads the journal back into a part.
            self._pending = 0
            self._torn = False
            self._open_journal()
        except BaseException:
            self.lock.release()
            raise
        self._last_flush = time.monotonic()
        self._last_sync = time.monotonic()

    def _open_journal(self) -> None:
        path = self.run_dir / _journal_name(self._part)
        try:
            # unbuffered: a write is in the OS when append() returns, and a failed one leaves
            # nothing in a buffer to be written again later
            self._journal = open(path, "ab", buffering=0)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {_os_reason(exc)}") from None

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
            raise StorageError(
                f"upload of {path.name} failed ({_first_line(exc)}); the run is "
                f"kept in {self.run_dir}"
            ) from None

    def _upload_missing(self) -> None:
        """Upload every local part the mirror lacks (or holds at another size): what a killed
        process wrote but never uploaded, and what recovering its journals just wrote."""
        try:
            remote = self._remote_sizes()
        except OSError as exc:
            raise StorageError(f"cannot list the upload location ({_first_line(exc)})") from None
        for part in sorted(self.run_dir.glob("part-*.parquet")):
            if remote.get(part.name) != part.stat().st_size:
                self._upload(part)

    def uploaded(self) -> bool:
        """Every part and run.json is in the mirror at its local size."""
        local = {p.name: p.stat().st_size for p in self.run_dir.glob("part-*.parquet")}
        local[RUN_JSON] = (self.run_dir / RUN_JSON).stat().st_size
        try:
            remote = self._remote_sizes()
        except OSError:
            return False
        return all(remote.get(name) == size for name, size in local.items())

    def _remote_sizes(self) -> dict[str, int]:
        """File name -> size in the mirror directory (empty before anything was uploaded)."""
        fs, directory = self.mirror
        selector = pafs.FileSelector(directory, allow_not_found=True)
        return {i.base_name: i.size for i in fs.get_file_info(selector)}

    def append(self, row: dict) -> None:
        headers = row.get("response_headers")
        if isinstance(headers, dict):  # pairs: what Arrow's JSON reader can turn into a map
            row = {**row, "response_headers": list(headers.items())}
        line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        if self._torn:  # an earlier write failed part-way: its fragment ends on a line of its own
            line = b"\n" + line
        try:
            view = memoryview(line)
            while view:
                view = view[self._journal.write(view) :]
            self._torn = False
            # in the OS at once (kill -9 safe); fsync at most once a second (power cut)
            now = time.monotonic()
            if now - self._last_sync > 1.0:
                os.fsync(self._journal.fileno())
                self._last_sync = now
        except OSError as exc:
            self._torn = True
            raise StorageError(
                f"cannot write to {self.run_dir}: {_os_reason(exc)}; the response of call "
                f"{row.get('call')} is lost, everything before it is kept"
            ) from None
        self._pending += 1
        if self._pending >= self.rows_per_part or now - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Turn the buffered rows into a Parquet part and start a new journal."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        journal = self.run_dir / _journal_name(self._part)
        try:
            written = _write_part(self.run_dir, self._part, _journal_groups(journal, self.meta))
        except OSError as exc:  # the journal stays: a resume compacts it
            raise StorageError(
                f"cannot write a part in {self.run_dir}: {_os_reason(exc)}"
            ) from None
        if written:
            self._upload(self.run_dir / _part_name(self._part))
        self._journal.close()
        journal.unlink(missing_ok=True)
        self._pending = 0
        # hand back what the conversion borrowed: Arrow's allocator keeps freed memory otherwise,
        # and a long run's resident size would sit at its largest flush
        pa.default_memory_pool().release_unused()
        self._part += 1
        self._open_journal()

    def close(self, **meta_updates) -> None:
        try:
            self.flush()
            self._journal.close()
            (self.run_dir / _journal_name(self._part)).unlink(missing_ok=True)
            self.meta.update(meta_updates)
            self.write_meta()
        finally:
            self.lock.release()


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


_ROW_START = '{"run_id"'


def _iter_journal(path: Path) -> Iterator[dict]:
    """A journal's rows. A torn line (the line being written when a process died, or a write
    that failed part-way) costs that line only: reading goes on with the next line, and a row
    written straight after a fragment on the same line is recovered."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            row = _journal_row(line)
            if row is None:
                start = line.rfind(_ROW_START)
                row = _journal_row(line[start:]) if start > 0 else None
            if row is None:
                continue
            headers = row.get("response_headers")
            if isinstance(headers, list):
                row["response_headers"] = [tuple(pair) for pair in headers]
            yield row


def _journal_row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) and isinstance(row.get("seq"), int) else None


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
            parsed.append(_storable_table(rows, meta))
            held += len(rows)
            rows = []
            if held >= chunk_rows:
                yield pa.concat_tables(parsed)
                parsed, held = [], 0
    if rows:
        parsed.append(_storable_table(rows, meta))
    if parsed:
        yield pa.concat_tables(parsed)


_KEPT_WHEN_UNSTORABLE = ("run_id", "seq", "call", "attempt", "started_at", "finished_at")


def _storable_table(rows: list[dict], meta: dict) -> pa.Table:
    """`rows` as a table; a row that does not fit the schema (a value out of its column's range,
    a field of the wrong type: a journal from another version, or edited) is kept as a failed
    attempt with its raw body, so one bad row never makes a part unwritable."""
    try:
        return rows_to_table(rows, meta)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    fixed = []
    for row in rows:
        try:
            rows_to_table([row], meta)
            fixed.append(row)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            kept = {k: row[k] for k in _KEPT_WHEN_UNSTORABLE if isinstance(row.get(k), int)}
            raw = row.get("raw_body")
            fixed.append(
                {
                    **kept,
                    "seq": kept.get("seq", -1),
                    "call": kept.get("call", -1),
                    "attempt": kept.get("attempt", 0),
                    "ok": False,
                    "error_type": "unstorable",
                    "error": f"the row did not fit the schema: {_first_line(exc)}"[:500],
                    "raw_body": raw if isinstance(raw, str) else None,
                }
            )
    return rows_to_table(fixed, meta)


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

_NOTHING = object()


def _json_or_nothing(data: bytes | str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _NOTHING


# What the readers rely on in run metadata: key -> the types it may have (None: may be null).
_META_TYPES: dict[str, tuple] = {
    "run_id": (str,),
    "status": (str,),
    "started_at": (str, type(None)),
    "ended_at": (str, type(None)),
    "endpoint": (str, type(None)),
    "label": (str, type(None)),
    "target": (str, type(None)),
    "targets": (dict,),
    "target_how": (dict,),
    "config": (dict,),
    "request": (dict,),
    "tags": (dict, type(None)),
    "n_requested": (int,),
    "successes": (int, type(None)),
    "attempts": (int, type(None)),
    "concurrency": (int, type(None)),
    "replay_of": (str, type(None)),
    "upload_to": (str, type(None)),
    "client": (str,),
    "resumed": (list,),
}


def check_meta(meta, where: str) -> dict:
    """Run metadata as detcheck wrote it, or a DataError naming what is not (a hand-edited
    run.json, a garbage footer): readers then skip the run instead of failing later."""
    if meta is _NOTHING:
        raise DataError(f"{where}: not valid JSON")
    if not isinstance(meta, dict):
        raise DataError(f"{where}: not run metadata (a JSON {type(meta).__name__}, not an object)")
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if key in meta and (isinstance(value, bool) or not isinstance(value, types)):
            raise DataError(f"{where}: {key!r} is {value!r:.60}, not what detcheck writes")
    config = meta.get("config") or {}
    if not isinstance(config.get("model", ""), str):
        raise DataError(f"{where}: 'config.model' is not a model name")
    for key in ("targets", "target_how"):
        if not all(isinstance(v, str) for v in (meta.get(key) or {}).values()):
            raise DataError(f"{where}: {key!r} must map labels to text")
    return meta


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
        table = _storable_table(self.pending, self.meta).replace_schema_metadata(None)
        return table.select(list(columns)) if columns else table

    def footer(self, part) -> pq.FileMetaData:
        """A part's Parquet footer, parsed once per run (row counts, row groups, schema)."""
        if part not in self._footers:
            self._footers[part] = _footer(part, self.fs)
        return self._footers[part]

    def part_meta(self, part) -> dict:
        """The run metadata a part carries in its footer, checked (detcheck's, a schema version
        this detcheck reads)."""
        try:
            md = self.footer(part).schema.to_arrow_schema().metadata or {}
        except (pa.ArrowException, ValueError) as exc:
            raise DataError(f"{part}: unreadable schema ({_first_line(exc)})") from None
        if RUN_META_KEY not in md:
            raise DataError(f"{part}: a Parquet file, but not one detcheck wrote (no run metadata)")
        try:
            version = int(md.get(SCHEMA_VERSION_KEY, b"0"))
        except ValueError:
            raise DataError(
                f"{part}: its schema version is not a number: "
                f"{md[SCHEMA_VERSION_KEY][:40].decode(errors='replace')!r}"
            ) from None
        if version > SCHEMA_VERSION:
            raise DataError(
                f"{part}: written with schema version {version}; this detcheck reads up to "
                f"{SCHEMA_VERSION}. Upgrade detcheck."
            )
        if version < 1:
            raise DataError(f"{part}: schema version {version} was never written by detcheck")
        return check_meta(_json_or_nothing(md[RUN_META_KEY]), f"{part} (footer metadata)")

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
                present, missing = _split_columns(columns, parquet.schema_arrow)
                if parquet.metadata.row_group(g).num_rows > batch_size:  # alone in its read
                    return [
                        _with_nulls(b, missing)
                        for b in parquet.iter_batches(
                            batch_size, row_groups=[g], columns=present, use_threads=False
                        )
                    ]
                table = parquet.read_row_group(g, columns=present, use_threads=False)
                tables.append(_with_nulls(table, missing))
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
        present, missing = None, []
        if columns:
            schema = pq.read_schema(fs.open_input_file(path) if fs else path)
            present, missing = _split_columns(columns, schema)
        table = pq.read_table(path, columns=present, filesystem=fs)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from None
    return _with_nulls(table, missing).replace_schema_metadata(None)


def _split_columns(columns: Sequence[str], schema: pa.Schema) -> tuple[list[str], list[str]]:
    """The asked-for columns a part has, and the top-level ones it lacks (a part written at
    an older schema version): those read as nulls."""
    present, missing = [], []
    for c in columns:
        (present if c.split(".")[0] in schema.names else missing).append(c)
    return present, missing


def _with_nulls(data, missing: Sequence[str]):
    """A table or record batch with a null column of RUN_SCHEMA's type for each missing name."""
    for name in missing:
        field = RUN_SCHEMA.field(name)
        data = data.append_column(field, pa.nulls(data.num_rows, field.type))
    return data


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
        text = meta_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{meta_path}: cannot read ({_os_reason(exc)})") from None
    meta = check_meta(_json_or_nothing(text), str(meta_path))
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
            text = f.read()
    except OSError as exc:
        raise DataError(f"{shown}/{RUN_JSON}: not readable ({_first_line(exc)})") from None
    meta = check_meta(_json_or_nothing(text), f"{shown}/{RUN_JSON}")
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
