"""Runs on disk: a crash-safe writer (writer.py, journal.py, lock.py) and the readers every
command shares (reader.py), for local directories and object stores alike (location.py).

A run is a directory:
    _run.json                run metadata (parameters, endpoint, versions, times, status);
                             `run.json` in runs written before detcheck 0.2
    part-00000.parquet ...   the attempts, zstd-compressed, each file carrying the metadata too
    _journal-00001.jsonl     attempts not yet in a part: one JSON line per attempt, written as it
                             arrives, so a killed process loses nothing it received
    _detcheck.lock           held (flock) by the one process writing the run, with its pid: a
                             second writer is refused; the kernel frees it when the holder dies

A journal becomes `part-NNNNN.parquet` (written to a temp name, then renamed) and is deleted
afterwards; a journal whose part exists is a leftover and ignored, so no row is ever read twice.
Files starting with `_` or `.` are invisible to pyarrow.dataset, pandas, Spark and duckdb globs on
`*.parquet`, so a directory of runs reads as one dataset.

Object stores (s3://, gs://, through pyarrow.fs) cannot append, so a run bound for one is written
locally first (journals and all) and each finished part and run.json is uploaded as it is made;
readers take the same URIs.

Also here: the Parquet schema (schema.py) and where a new run goes and what run.json starts with
(runs.py). May import the vocabulary only (detcheck.spec, config, plan, errors, text); every
other stage builds on this one.
"""

from detcheck.store.files import (
    META_NAMES,
    PARQUET_OPTIONS,
    ROW_GROUP_ROWS,
    ROWS_PER_PART,
    RUN_JSON,
    meta_file,
    rows_to_table,
    to_micros,
    utc_now,
)
from detcheck.store.journal import journal_tables
from detcheck.store.location import display_uri, is_uri, open_uri, safe_uri
from detcheck.store.lock import LOCK_NAME, RunLock
from detcheck.store.reader import (
    Run,
    check_meta,
    find_runs,
    read_parallel,
    read_plan,
    read_run,
    read_runs,
)
from detcheck.store.writer import RunWriter

__all__ = [
    "LOCK_NAME",
    "PARQUET_OPTIONS",
    "ROWS_PER_PART",
    "ROW_GROUP_ROWS",
    "META_NAMES",
    "RUN_JSON",
    "Run",
    "RunLock",
    "RunWriter",
    "check_meta",
    "display_uri",
    "find_runs",
    "is_uri",
    "journal_tables",
    "meta_file",
    "open_uri",
    "read_parallel",
    "read_plan",
    "read_run",
    "read_runs",
    "rows_to_table",
    "safe_uri",
    "to_micros",
    "utc_now",
]
