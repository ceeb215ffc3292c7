"""The readers every command shares: one run, a directory of runs, or an object-store prefix;
metadata checked, parts read in parallel, journals included."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from detcheck.errors import DataError
from detcheck.store.files import (
    _NOTHING,
    META_NAMES,
    RUN_JSON,
    _first_line,
    _json_or_nothing,
    _os_reason,
    constant_column,
    meta_file,
    run_constants,
)
from detcheck.store.journal import _orphan_journals, _read_journal, _storable_table
from detcheck.store.location import is_uri, open_uri
from detcheck.store.schema import RUN_META_KEY, RUN_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY

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
            tables = [_read_parquet(p, self.columns, self.meta, self.fs) for p in self.parts]
            if self.pending:
                tables.append(self._pending_table(self.columns))
            self._table = (
                pa.concat_tables(tables, promote_options="permissive")
                if tables
                else _empty(self.columns)
            )
        return self._table

    def _pending_table(self, columns: Sequence[str] | None) -> pa.Table:
        # the journal's rows as a part would hold them, read back like a part
        table = _storable_table(self.pending, self.meta)
        plan = _Plan(columns or RUN_SCHEMA.names, table.schema)
        return plan.finish(table.select(plan.present), self.meta).replace_schema_metadata(None)

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
                plan = _Plan(columns, parquet.schema_arrow)
                if parquet.metadata.row_group(g).num_rows > batch_size:  # alone in its read
                    return [
                        plan.finish(b, self.meta)
                        for b in parquet.iter_batches(
                            batch_size, row_groups=[g], columns=plan.present, use_threads=False
                        )
                    ]
                table = parquet.read_row_group(g, columns=plan.present, use_threads=False)
                tables.append(plan.finish(table, self.meta))
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{part}: cannot read ({_first_line(exc)})") from None
        # One batch from many row groups: Arrow merges their dictionaries, and the analysis pays
        # its fixed cost per batch once, not per group
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()
        return table.to_batches(max_chunksize=batch_size)

    def row(self, seq: int, columns: Sequence[str]) -> dict | None:
        """The attempt `seq` (those `columns` of it), reading only the row groups whose `seq`
        statistics can hold it: one response of a large run without decoding the rest."""
        for part in self.parts:
            footer = self.footer(part)
            index = footer.schema.to_arrow_schema().get_field_index("seq")
            for g in range(footer.num_row_groups):
                s = footer.row_group(g).column(index).statistics
                if s is not None and s.has_min_max and not s.min <= seq <= s.max:
                    continue
                parquet = _parquet_file(part, self.fs, None, footer)
                plan = _Plan(["seq", *columns], parquet.schema_arrow)
                table = plan.finish(parquet.read_row_group(g, columns=plan.present), self.meta)
                hit = table.filter(pc.equal(table.column("seq"), seq))
                if hit.num_rows:
                    return hit.slice(0, 1).to_pylist()[0]
        for row in self.pending:
            if row.get("seq") == seq:
                return {c: row.get(c) for c in columns}
        return None

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
INLINE_ANALYSIS_ROWS = 20_000


def read_plan(rows: int) -> tuple[int, int]:
    """Rows per batch and reading threads for an analysis of `rows` stored responses. Small
    analyses (a run's end-of-run report, a history line) are kept lean, large ones fast:
    per-batch numpy temporaries (~10 MB per 8,192 rows) against a fixed cost per batch (~1.5 ms),
    and one reading thread against one per core, at most 4 (decoding releases the GIL, so they
    share the cores with the analysing thread): +20 MB for 1M responses, 1.2 -> 0.9 s."""
    if rows <= INLINE_ANALYSIS_ROWS:
        return 8_192, 0  # read in the consumer's thread: a thread pool costs more than it saves
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

    if workers < 1:  # no threads: each task when the consumer gets to it
        for task in tasks:
            yield from task()
        return
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


def _read_parquet(path, columns: Sequence[str] | None, meta: dict, fs=None) -> pa.Table:
    try:
        schema = pq.read_schema(fs.open_input_file(path) if fs else path)
        plan = _Plan(columns or RUN_SCHEMA.names, schema)
        table = pq.read_table(path, columns=plan.present, filesystem=fs)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from None
    return plan.finish(table, meta).replace_schema_metadata(None)


class _Plan:
    """How the asked-for columns come out of one part: those it stores are read (`present`),
    renamed where an older schema called them otherwise; the run's constants it lacks take the
    run's value; other columns it lacks (an older schema) read as nulls."""

    def __init__(self, columns: Sequence[str], schema: pa.Schema):
        version = int((schema.metadata or {}).get(SCHEMA_VERSION_KEY, SCHEMA_VERSION))
        self.names = list(dict.fromkeys(c.split(".")[0] for c in columns))
        self.present: list[str] = []
        self.renamed: dict[str, str] = {}
        self.missing: list[str] = []
        for c in columns:
            top = c.split(".")[0]
            if version < 4 and top == "model":  # then the response's model: a constant now
                self.missing.append(top)
            elif version < 4 and top == "response_model" and "model" in schema.names:
                self.present.append("model")
                self.renamed["model"] = "response_model"
            elif top in schema.names:
                self.present.append(c)
            else:
                self.missing.append(top)

    def finish(self, data, meta: dict):
        if self.renamed:
            data = data.rename_columns([self.renamed.get(n, n) for n in data.schema.names])
        constants = run_constants(meta)
        for name in dict.fromkeys(self.missing):
            field = RUN_SCHEMA.field(name)
            column = (
                constant_column(constants[name], data.num_rows, field.type)
                if name in constants
                else pa.nulls(data.num_rows, field.type)
            )
            data = data.append_column(field, column)
        return data.select(self.names)


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
    meta_path = meta_file(path)
    if meta_path is None:
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
    if path.is_file() or meta_file(path):
        return [path]
    found = sorted({p.parent for name in META_NAMES for p in path.rglob(name)})
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
    dirs = sorted({f.rsplit("/", 1)[0] for f in files for m in META_NAMES if f.endswith("/" + m)})
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


def remote_meta_name(fs: pafs.FileSystem, path: str) -> str:
    """The metadata file's name in a run directory of an object store (either name)."""
    for name in META_NAMES:
        if fs.get_file_info(f"{path}/{name}").type == pafs.FileType.File:
            return name
    return RUN_JSON


def _read_remote_run(
    fs: pafs.FileSystem, path: str, scheme: str, columns: Sequence[str] | None = None
) -> Run:
    shown = f"{scheme}://{path}"
    if path.endswith(".parquet"):
        run = Run(shown, {}, [path], [], columns, fs)
        run.meta = run.part_meta(path)
        return run
    name = remote_meta_name(fs, path)
    try:
        with fs.open_input_stream(f"{path}/{name}") as f:
            text = f.read()
    except OSError as exc:
        raise DataError(f"{shown}/{name}: not readable ({_first_line(exc)})") from None
    meta = check_meta(_json_or_nothing(text), f"{shown}/{name}")
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
            from detcheck.recordings import locate

            named = locate(given)  # a path, or the name of a recording that ships
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
