"""The crash-safe writer: every attempt on disk as it arrives (the journal), compacted into
Parquet parts, run.json written atomically, uploads to an object store as parts finish."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from detcheck.errors import StorageError
from detcheck.store.files import (
    GENERATE_ROWS_PER_PART,
    OLD_RUN_JSON,
    PARQUET_OPTIONS,
    ROWS_PER_PART,
    RUN_JSON,
    _first_line,
    _journal_name,
    _make_dir,
    _os_reason,
    _part_name,
    _write_atomic,
)
from detcheck.store.journal import _orphan_journals, journal_groups, journal_tables
from detcheck.store.lock import RunLock

# A part is written once its journal holds this much (or rows_per_part rows): a compaction
# reads one journal, so this bounds what a part costs however long the rows
JOURNAL_BYTES = 256 * 1024 * 1024


class RunWriter:
    """Appends attempt rows to a run directory; every row is on disk as soon as `append` returns."""

    def __init__(
        self,
        run_dir: Path,
        meta: dict,
        *,
        rows_per_part: int | None = None,
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
        # a whole generation's row is ~50x a first token's: smaller parts keep a flush small
        kind = (meta.get("config") or {}).get("kind", "flip")
        self.rows_per_part = rows_per_part or (
            ROWS_PER_PART if kind == "flip" else GENERATE_ROWS_PER_PART
        )
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
            self._pending = self._pending_bytes = 0
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
        # a run written before 0.2, resumed: its metadata now has the new name only
        old = self.run_dir / OLD_RUN_JSON
        if old.exists():
            old.unlink()
            if self.mirror is not None:
                fs, directory = self.mirror
                with contextlib.suppress(OSError):
                    fs.delete_file(f"{directory}/{OLD_RUN_JSON}")

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
        self._pending_bytes += len(line)
        if (
            self._pending >= self.rows_per_part
            or self._pending_bytes >= JOURNAL_BYTES
            or now - self._last_flush > self.flush_every_s
        ):
            self.flush()

    def flush(self) -> None:
        """Turn the buffered rows into a Parquet part and start a new journal."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        journal = self.run_dir / _journal_name(self._part)
        try:
            try:
                written = _write_part(self.run_dir, self._part, journal_groups(journal, self.meta))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # read line by line instead
                written = _write_part(self.run_dir, self._part, journal_tables(journal, self.meta))
        except OSError as exc:  # the journal stays: a resume compacts it
            raise StorageError(
                f"cannot write a part in {self.run_dir}: {_os_reason(exc)}"
            ) from None
        if written:
            self._upload(self.run_dir / _part_name(self._part))
        self._journal.close()
        journal.unlink(missing_ok=True)
        self._pending = self._pending_bytes = 0
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


def _recover_journals(run_dir: Path, meta: dict) -> int:
    """Compact what a crashed process left in journals; return the next free part index."""
    for index, path in _orphan_journals(run_dir):
        _write_part(run_dir, index, journal_tables(path, meta))  # nothing for an empty journal
        path.unlink()
    for path in run_dir.glob("_journal-*.jsonl"):
        path.unlink()
    indices = [int(p.stem.split("-")[1]) for p in run_dir.glob("part-*.parquet")]
    return max(indices, default=-1) + 1
