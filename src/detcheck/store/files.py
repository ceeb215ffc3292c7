"""The files of a run: names, atomic writes, directories, timestamps, the Parquet footer's
metadata, and tolerant JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from detcheck.errors import StorageError
from detcheck.store.schema import RUN_META_KEY, RUN_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY

# Named with a leading "_" so dataset readers (pyarrow, pandas, duckdb, Spark) skip it; runs
# written before 0.2 have `run.json`, which every reader still takes.
RUN_JSON = "_run.json"
OLD_RUN_JSON = "run.json"
META_NAMES = (RUN_JSON, OLD_RUN_JSON)


def meta_file(run_dir: Path) -> Path | None:
    """The metadata file of a local run directory (either name), or None."""
    for name in META_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    return None


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
    return with_run_columns(table, meta).replace_schema_metadata(_schema_metadata(meta))


def run_constants(meta: dict) -> dict[str, str | None]:
    """The columns whose value is the run's own, the same in every row: written from the run's
    metadata (not the journal), and read from it for parts written before they existed."""
    config = meta.get("config") or {}
    flip = config.get("kind", "flip") == "flip"
    return {
        "model": config.get("model"),
        "endpoint": meta.get("endpoint"),
        "measurement": meta.get("measurement"),
        "target_token": meta.get("target") if flip else None,
    }


def constant_column(value, rows: int, type_: pa.DataType) -> pa.Array:
    if value is None:
        return pa.nulls(rows, type_)
    if pa.types.is_dictionary(type_):
        indices = pa.array(np.zeros(rows, dtype=np.int32))
        return pa.DictionaryArray.from_arrays(indices, pa.array([value], type_.value_type))
    return pa.array([value] * rows, type_)


def target_logprobs(top_logprobs, token: str | None) -> pa.Array:
    """Per row, the logprob of `token` among its top logprobs (the first entry that is it),
    null where it is not there."""
    import pyarrow.compute as pc

    top = (
        top_logprobs.combine_chunks() if isinstance(top_logprobs, pa.ChunkedArray) else top_logprobs
    )
    rows = len(top)
    if token is None or rows == 0:
        return pa.nulls(rows, pa.float64())
    flat = pc.list_flatten(top)
    hit = pc.fill_null(pc.equal(flat.field("token"), token), False)
    where = pc.list_parent_indices(top).filter(hit).to_numpy()
    values = flat.field("logprob").filter(hit).to_numpy(zero_copy_only=False)
    out = np.zeros(rows)
    found = np.zeros(rows, dtype=bool)
    out[where[::-1]] = values[::-1]  # reversed: the first entry of a row is written last
    found[where] = True
    return pa.array(out, mask=~found)


def with_run_columns(table: pa.Table, meta: dict) -> pa.Table:
    """`table` with the run's constant columns filled in, less the partition keys of its path
    (a column that is also a partition key breaks dataset readers: pyarrow infers the key as a
    string, pandas as a dictionary, and neither merges with the file's type)."""
    for name, value in run_constants(meta).items():
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, constant_column(value, table.num_rows, field.type))
    target = run_constants(meta)["target_token"]
    index = table.schema.get_field_index("target_logprob")
    table = table.set_column(
        index, table.schema.field(index), target_logprobs(table.column("top_logprobs"), target)
    )
    keys = [k for k in (meta.get("partition") or {}) if k in table.schema.names]
    return table.drop_columns(keys) if keys else table


# A text longer than this (a long prompt) is in _run.json once, and a footer names it by its
# hash: Parquet readers refuse footers over ~100 MB, and every part would carry it again
FOOTER_TEXT_CHARS = 4096


def elide_long_texts(value, limit: int = FOOTER_TEXT_CHARS):
    """`value` (JSON-like) with every string over `limit` characters replaced by its length
    and hash: what a footer, or a second copy in _run.json, keeps of a long text."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        import hashlib

        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return f"[{len(value):,} characters, sha256 {digest}: the text is in _run.json]"
    if isinstance(value, dict):
        return {k: elide_long_texts(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [elide_long_texts(v, limit) for v in value]
    return value


def _schema_metadata(meta: dict) -> dict[str, bytes]:
    """What every part carries in its Parquet footer: the run metadata (long texts by their
    hash) and the schema version."""
    return {
        RUN_META_KEY: json.dumps(elide_long_texts(meta)).encode(),
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
