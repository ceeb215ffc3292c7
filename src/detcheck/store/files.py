"""The files of a run: names, atomic writes, directories, timestamps, the Parquet footer's
metadata, and tolerant JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from detcheck.errors import StorageError
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_NOTHING = object()


def _json_or_nothing(data: bytes | str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _NOTHING


# Attempts per Parquet part: a journal is compacted into a part when it holds this many.
ROWS_PER_PART = 10_000
GENERATE_ROWS_PER_PART = 1_000  # rows of whole generations (~30-60 KB of raw body each)
# Rows per Parquet row group. Reading pays a fixed cost per row group and column (~0.1 ms), so
# small groups slow analysis (10M responses: 2,000-row groups 5.5 s of decoding, 10,000-row
# groups 3.8 s); compacting a journal holds a group's rows as Arrow (~2.5 KB each with the raw
# body, so ~25 MB).
ROW_GROUP_ROWS = 10_000
