"""The two passes of `detcheck import` behind its reading: pass 1 spills each chunk of rows,
sorted by prompt, as an Arrow file under the staging directory (one record batch per prompt in
it); pass 2 writes each prompt's run from its batches, in the order the data has its prompts,
straight to Parquet (no journal: the staging directory is what makes the import all or
nothing). Memory holds one chunk, or one prompt's rows up to RUN_BYTES (more is read twice,
a chunk at a time), never the input."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.commands.import_columns import GROUP, MARK, ORDER, SPILL_SCHEMA
from detcheck.commands.import_formats import NO_MODEL

RUN_BYTES = 32 * 1024 * 1024  # a run's rows held at once when it is no larger
WRITERS = 2  # runs written at once
LACKS = {
    "timing": "timing unknown: the time and concurrency tests are not run",
    "fingerprint": "no system_fingerprint in the data",
    "logprobs": "no logprobs: completions are compared by their text only",
    "request": "the request is unknown: its parameters are null",
}
# a one-token answer is a flip row: its first token is all there is
FLIP_NULLS = ("text", "finish_reason", "gen_tokens", "gen_logprobs", "gen_top_tokens",
              "gen_top_logprobs")  # fmt: skip


@dataclass
class Prompt:
    """One group of rows (a request to one model, or a table's prompt): what pass 1 saw of it
    first, and what pass 2 counts of its rows to write its run's metadata."""

    index: int
    key: tuple
    prompt: str | None
    request: dict | None
    api: str | None
    prompt_id: str | None = None
    model: str | None = None
    n: int = 0
    ok: int = 0
    twice: int = 0  # rows dropped: the same response logged again
    one_token: bool = True  # every usable response generated one token, with logprobs
    logprobs: bool = True
    fingerprinted: bool = False
    first_tokens: Counter = field(default_factory=Counter)
    several: bool = False  # one of a prompt set: compared by whole answers, prompt by prompt

    @property
    def kind(self) -> str:
        flip = self.ok and self.one_token and self.logprobs and not self.several
        return "flip" if flip else "generate"


class Groups:
    """The prompts seen so far, numbered in the order the data has them."""

    def __init__(self):
        self.by_key: dict[tuple, Prompt] = {}

    def __len__(self) -> int:
        return len(self.by_key)

    def index(self, key: tuple, prompt=None, request=None, api=None, prompt_id=None) -> int:
        p = self.by_key.get(key)
        if p is None:
            p = self.by_key[key] = Prompt(len(self.by_key), key, prompt, request, api, prompt_id)
        return p.index

    def prompts(self) -> list[Prompt]:
        return list(self.by_key.values())


class Spill:
    """Pass 1's rows on disk: a file per chunk, its rows sorted by group and line, a record
    batch per group."""

    def __init__(self, where: Path):
        self.where = where
        self.files: list[Path] = []
        self.batches: list[dict[int, int]] = []  # per file: group -> its batch
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        groups = table.column(GROUP).to_numpy()
        lines = table.column(ORDER).to_numpy()
        if not ((np.diff(groups) >= 0).all() and (np.diff(lines)[np.diff(groups) == 0] > 0).all()):
            order = pc.sort_indices(table, [(GROUP, "ascending"), (ORDER, "ascending")])
            table = table.take(order)
            groups = table.column(GROUP).to_numpy()
        table = table.combine_chunks()
        cuts = np.flatnonzero(np.diff(groups)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(groups)]])
        path = self.where / f"_spill-{len(self.files):05d}.arrow"
        index = {}
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SPILL_SCHEMA) as writer:
            for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
                writer.write_batch(table.slice(a, b - a).to_batches()[0])
                index[int(groups[a])] = k
        self.files.append(path)
        self.batches.append(index)
        self.rows += table.num_rows

    def readers(self) -> list:
        return [pa.ipc.open_file(pa.OSFile(str(p))) for p in self.files]

    def remove(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


def attach_unknown_models(prompts: list[Prompt]) -> dict[int, int]:
    """Rows that name no model (an error body) join the one group of their request that does,
    if there is exactly one; else they stay a run of their own. Returns {index: into index};
    marks every prompt as one of a set when more than one run will be written."""
    aliases = {}
    for p in prompts:
        if p.key[2] != NO_MODEL:
            continue
        known = [q for q in prompts if q.key[0] == p.key[0] and q.key[2] != NO_MODEL]
        if len(known) == 1:
            aliases[p.index] = known[0].index
    several = len(prompts) - len(aliases) > 1
    for p in prompts:
        p.several = several
    return aliases


def write_runs(spill: Spill, prompts: list[Prompt], aliases: dict[int, int], staging: Path, *,
               set_id: str, meta_of, progress=lambda _: None) -> list[str]:  # fmt: skip
    """Pass 2: each run from its rows in the spill; returns the runs' directory names in the
    data's order. `meta_of(prompt, run_id)` is a run's metadata, once its rows are counted."""
    from detcheck.store.runs import new_run_id

    members: dict[int, list[int]] = {}
    for p in prompts:
        members.setdefault(aliases.get(p.index, p.index), []).append(p.index)
    by_index = {p.index: p for p in prompts}
    width = len(str(max(len(members) - 1, 0)))
    several = len(members) > 1
    local = threading.local()

    def write(number: int, index: int, groups: list[int]) -> str:
        if not hasattr(local, "readers"):  # each thread its own readers of the spill
            local.readers = spill.readers()
        readers = local.readers
        p = by_index[index]
        model = (p.request or {}).get("model") or _first_model(readers, spill, groups)
        run_id = f"{set_id}-{number:0{width}d}" if several else new_run_id(model or "unknown")
        _write_run(readers, spill, groups, p, staging / run_id, run_id=run_id, meta_of=meta_of)
        return run_id

    # two threads: Parquet's encoding and compression let go of the GIL
    names = []
    with ThreadPoolExecutor(min(WRITERS, len(members))) as pool:
        jobs = [pool.submit(write, number, index, groups)
                for number, (index, groups) in enumerate(sorted(members.items()))]  # fmt: skip
        for number, job in enumerate(jobs):
            names.append(job.result())
            if not (number + 1) % 1000:
                progress(f"wrote {number + 1:,} of {len(members):,} runs")
    return names


def _first_model(readers, spill, groups) -> str | None:
    for reader, index in zip(readers, spill.batches):
        for g in groups:
            if g in index:
                models = reader.get_batch(index[g]).column("response_model").drop_null()
                if len(models):
                    return models[0].as_py()
    return None


def _run_tables(readers, spill: Spill, groups: list[int]) -> Iterator[pa.Table]:
    """The run's rows, a chunk at a time, in the data's order."""
    for reader, index in zip(readers, spill.batches):
        batches = [reader.get_batch(index[g]) for g in groups if g in index]
        if not batches:
            continue
        table = pa.Table.from_batches(batches, SPILL_SCHEMA)
        if len(batches) > 1:
            table = table.take(pc.sort_indices(table, [(ORDER, "ascending")]))
        yield table


def _write_run(readers, spill, groups, p: Prompt, run_dir: Path, *, run_id: str, meta_of) -> None:
    held, size = [], 0
    for t in _run_tables(readers, spill, groups):  # held while small, else read again
        held.append(t)
        size += t.nbytes
        if size > RUN_BYTES:
            held = None
            break
    if held is not None and len(held) > 1:
        held = [pa.concat_tables(held)]
    tables = (lambda: iter(held)) if held is not None else (
        lambda: _run_tables(readers, spill, groups))  # fmt: skip
    keep = _first_of_each(tables())
    _count(p, tables(), keep)
    meta = meta_of(p, run_id)
    _write_parquet(run_dir, meta, tables(), keep, p.kind)


def _first_of_each(tables) -> np.ndarray:
    """Per row of the run, in order: is it the first of its response (id and choice)?"""
    marks, valid = [], []
    for t in tables:
        column = t.column(MARK)
        valid.append(column.is_valid().to_numpy(zero_copy_only=False))
        marks.append(column.fill_null(0).to_numpy())
    marks, valid = np.concatenate(marks), np.concatenate(valid)
    keep = np.ones(len(marks), bool)
    if valid.any():
        where = np.flatnonzero(valid)
        _, first = np.unique(marks[where], return_index=True)
        keep[where] = False
        keep[where[first]] = True
    return keep


def _count(p: Prompt, tables, keep: np.ndarray) -> None:
    """What the run's metadata says of its rows: counts, kind, the most common first token."""
    at = 0
    for t in tables:
        mine = keep[at : at + t.num_rows]
        at += t.num_rows
        p.twice += int((~mine).sum())
        t = t.filter(pa.array(mine))
        ok = t.column("ok").to_numpy(zero_copy_only=False)
        p.n += t.num_rows
        p.ok += int(ok.sum())
        if p.model is None:
            models = t.column("response_model").drop_null()
            p.model = models[0].as_py() if len(models) else None
        p.fingerprinted = p.fingerprinted or t.column("system_fingerprint").null_count < len(t)
        tokens = t.column("gen_tokens").filter(pa.array(ok))
        lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        if tokens.null_count:
            p.logprobs = False
        one = pc.fill_null(pc.equal(pc.list_value_length(tokens), 1), False)
        if len(tokens) and not pc.all(pc.or_(one, pc.is_null(tokens))).as_py():
            p.one_token = False
        if len(lengths) and p.one_token:
            firsts = pc.list_element(tokens.filter(one), 0)
            for entry in pc.value_counts(firsts).to_pylist():
                p.first_tokens[entry["values"]] += entry["counts"]


def _write_parquet(run_dir: Path, meta: dict, tables, keep: np.ndarray, kind: str) -> None:
    """The run's rows as part-00000.parquet (row groups of ROW_GROUP_ROWS), and its _run.json."""
    import pyarrow.parquet as pq

    from detcheck.store.files import (
        PARQUET_OPTIONS,
        ROW_GROUP_ROWS,
        RUN_JSON,
        _part_name,
        _schema_metadata,
    )
    from detcheck.store.journal import GROUP_BYTES
    from detcheck.store.schema import RUN_SCHEMA

    run_dir.mkdir()
    path = run_dir / _part_name(0)
    metadata = _schema_metadata(meta)
    schema = RUN_SCHEMA.with_metadata(metadata)
    seq = 0
    pending: list[pa.Table] = []
    held = 0
    with pq.ParquetWriter(path, schema, **PARQUET_OPTIONS) as writer:
        at = 0
        for t in tables:
            mine = keep[at : at + t.num_rows]
            at += t.num_rows
            t = t.filter(pa.array(mine)) if not mine.all() else t
            pending.append(t)
            held += t.nbytes
            if sum(x.num_rows for x in pending) >= ROW_GROUP_ROWS or held >= GROUP_BYTES:
                seq = _flush(writer, pending, meta, seq, kind, ROW_GROUP_ROWS)
                pending, held = [], 0
        if pending:
            _flush(writer, pending, meta, seq, kind, ROW_GROUP_ROWS)
    (run_dir / RUN_JSON).write_text(json.dumps(meta, indent=2))


def _flush(writer, pending: list[pa.Table], meta: dict, seq: int, kind: str, rows: int) -> int:
    """Write `pending` spill rows as row groups of at most `rows`; returns the next seq."""
    table = pending[0] if len(pending) == 1 else pa.concat_tables(pending)
    table = _stored(table, meta, seq, kind)
    for start in range(0, table.num_rows, rows):
        writer.write_table(table.slice(start, rows), row_group_size=rows)
    return seq + table.num_rows


def sync_files(root: Path) -> None:
    """Everything written under `root` on disk before the import can become visible: the
    file system synced once (syncfs, Linux), else each file and directory fsynced."""
    import ctypes
    import ctypes.util

    fd = os.open(root, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if getattr(libc, "syncfs", None) is not None and libc.syncfs(fd) == 0:
            return
    except OSError:
        pass
    finally:
        os.close(fd)
    for where, _, files in os.walk(root):
        for name in [*files, "."]:
            try:
                handle = os.open(os.path.join(where, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(handle)
            except OSError:
                pass
            finally:
                os.close(handle)


def _stored(t: pa.Table, meta: dict, seq: int, kind: str) -> pa.Table:
    """Spill rows as the run stores them: numbered, in RUN_SCHEMA's types, with the run's
    constant columns."""
    from detcheck.store.files import _schema_metadata, with_run_columns
    from detcheck.store.schema import RUN_SCHEMA

    n = t.num_rows
    numbers = pa.array(np.arange(seq, seq + n, dtype=np.int64))
    given = {"seq": numbers, "call": numbers}
    given["run_id"] = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int32)), pa.array([meta["run_id"]])
    )
    columns = []
    for f in RUN_SCHEMA:
        if f.name in given:
            column = given[f.name]
        elif f.name in SPILL_SCHEMA.names and not (kind == "flip" and f.name in FLIP_NULLS):
            column = t.column(f.name).cast(f.type)
        else:
            column = pa.nulls(n, f.type)
        columns.append(column)
    table = pa.Table.from_arrays(columns, schema=RUN_SCHEMA)
    return with_run_columns(table, meta).replace_schema_metadata(_schema_metadata(meta))
