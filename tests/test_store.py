"""Runs on disk: nothing received is lost on a crash, nothing is read twice, bad files are named."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from detcheck.errors import DataError
from detcheck.store import RunWriter, find_runs, read_run, read_runs


def row(i: int, ok: bool = True) -> dict:
    return {
        "run_id": "r1",
        "seq": i,
        "call": i,
        "attempt": 1,
        "ok": ok,
        "started_at": 1_700_000_000_000_000 + i,
        "system_fingerprint": "fp",
        "top_logprobs": [{"token": "Heads", "logprob": -0.01 * i, "bytes": [72]}],
        "response_headers": {"x-request-id": f"req_{i}"},
    }


META = {"run_id": "r1", "target": "Heads", "label": "Heads"}


def die(writer: RunWriter) -> None:
    """What a killed process leaves: its journal as written, its lock freed by the kernel."""
    writer._journal.close()
    writer.lock.release()


def test_rows_are_readable_before_close(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    for i in range(5):
        writer.append(row(i))
    # no close(): as if the process had been killed
    run = read_run(tmp_path / "r1")
    assert run.table.column("seq").to_pylist() == [0, 1, 2, 3, 4]
    assert list(tmp_path.joinpath("r1").glob("part-*.parquet")) == []


def test_truncated_last_journal_line_is_ignored(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    writer.append(row(0))
    writer.append(row(1))
    writer._journal.write(b'{"run_id": "r1", "seq": 2, "ca')  # died mid-write
    writer._journal.flush()
    assert read_run(tmp_path / "r1").table.num_rows == 2


def test_parts_and_journals_are_never_double_counted(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META), rows_per_part=3)
    for i in range(7):
        writer.append(row(i))
    run_dir = tmp_path / "r1"
    assert sorted(p.name for p in run_dir.glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    # a crash between writing a part and deleting its journal leaves both behind
    shutil.copy(run_dir / "_journal-00002.jsonl", run_dir / "_journal-00001.jsonl")
    assert read_run(run_dir).table.column("seq").to_pylist() == list(range(7))


def test_reopening_compacts_journals(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META), rows_per_part=100)
    for i in range(4):
        writer.append(row(i))
    die(writer)
    reopened = RunWriter(tmp_path / "r1", dict(META), rows_per_part=100)
    assert not list((tmp_path / "r1").glob("_journal-0000[0].jsonl"))
    reopened.append(row(4))
    reopened.close(status="complete")
    run = read_run(tmp_path / "r1")
    assert run.table.column("seq").to_pylist() == [0, 1, 2, 3, 4]
    assert run.meta["status"] == "complete"
    assert not list((tmp_path / "r1").glob("_journal-*"))


def test_a_part_read_by_arrow_equals_one_recovered_line_by_line(tmp_path):
    """A running writer turns its journal into a part with Arrow's JSON reader; after a crash
    the journal is read line by line instead. Both must store the same thing."""
    from detcheck.store.journal import journal_groups

    n = 1_234
    rows = [row(i, ok=i % 5 != 0) for i in range(n)]
    rows[3]["response_headers"] = {}
    rows[4]["response_headers"] = None
    rows[5]["top_logprobs"] = []
    rows[6]["error"] = 'HTTP 500: ünïcode, "quotes" and a\nnewline'
    live = RunWriter(tmp_path / "live", dict(META))
    crashed = RunWriter(tmp_path / "crashed", dict(META))
    for r in rows:
        live.append(r)
        crashed.append(r)
    live.close()
    die(crashed)  # killed here: no flush, no close
    (journal,) = (tmp_path / "crashed").glob("_journal-*.jsonl")
    # the fast path reads this journal itself
    by_arrow = pa.concat_tables(journal_groups(journal, dict(META)))
    RunWriter(tmp_path / "crashed", dict(META)).close()
    (a,) = (tmp_path / "live").glob("part-*.parquet")
    (b,) = (tmp_path / "crashed").glob("part-*.parquet")
    assert pq.read_table(a).equals(pq.read_table(b), check_metadata=True)
    got = pq.read_table(a)
    assert by_arrow.equals(got)
    assert got.column("seq").to_pylist() == list(range(n))
    headers = got.column("response_headers").to_pylist()
    assert headers[:7] == [[("x-request-id", f"req_{i}")] for i in range(3)] + [
        [],
        None,
        [("x-request-id", "req_5")],
        [("x-request-id", "req_6")],
    ]
    assert got.column("error")[6].as_py() == rows[6]["error"]


def test_parts_carry_the_run_metadata_and_zstd(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    writer.append(row(0))
    writer.close()
    part = next((tmp_path / "r1").glob("part-*.parquet"))
    assert read_run(part).meta["run_id"] == "r1"  # a loose part file is self-describing
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"


def test_foreign_and_corrupt_files_give_clear_errors(tmp_path):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    with pytest.raises(DataError, match="not one detcheck wrote"):
        read_run(foreign)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        read_run(garbage)
    with pytest.raises(DataError, match="no such file"):
        find_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no detcheck runs"):
        find_runs(tmp_path / "empty")


def test_bad_run_in_a_directory_is_skipped_with_a_warning(tmp_path):
    for name in ("good", "bad"):
        writer = RunWriter(tmp_path / name, dict(META, run_id=name))
        writer.append(row(0))
        writer.close()
    part = next((tmp_path / "bad").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2])  # truncated
    warnings = []
    runs = read_runs([tmp_path], warn=warnings.append)
    assert [r.meta["run_id"] for r in runs] == ["good"]
    assert len(warnings) == 1 and "bad" in warnings[0]
    with pytest.raises(DataError):
        read_runs([tmp_path / "bad"])


def test_newer_schema_version_is_refused(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    writer.append(row(0))
    writer.close()
    part = next((tmp_path / "r1").glob("part-*.parquet"))
    table = pq.read_table(part)
    md = dict(table.schema.metadata)
    md[b"detcheck.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(md), part)
    with pytest.raises(DataError, match="schema version 99"):
        read_run(tmp_path / "r1")


def test_run_json_is_valid_json_after_close(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    writer.close(status="complete", successes=0)
    meta = json.loads((tmp_path / "r1" / "_run.json").read_text())
    assert meta["status"] == "complete"


def test_a_part_is_written_a_row_group_at_a_time_and_reads_back_whole(tmp_path):
    from detcheck.store import ROW_GROUP_ROWS

    n = 2 * ROW_GROUP_ROWS + 123
    writer = RunWriter(tmp_path / "r1", dict(META), rows_per_part=n)
    for i in range(n):
        writer.append(row(i))
    writer.close(status="complete")
    (part,) = (tmp_path / "r1").glob("part-*.parquet")
    assert pq.ParquetFile(part).num_row_groups == 3
    run = read_run(tmp_path / "r1")
    assert run.table.column("seq").to_pylist() == list(range(n))
    # analysis reads tokens dictionary-encoded: each row group has its own dictionary
    batches = list(
        run.batches(
            ["seq", "top_logprobs.list.element.token"],
            batch_size=4096,
            read_dictionary=["top_logprobs.list.element.token"],
        )
    )
    assert sum(b.num_rows for b in batches) == n
    headers = run.table.column("response_headers")[n - 1].as_py()
    assert dict(headers) == {"x-request-id": f"req_{n - 1}"}


def test_read_parallel_keeps_order_raises_errors_and_stops_with_its_consumer():
    import threading
    import time

    from detcheck.store import read_parallel

    def task(i: int):
        def read() -> list[int]:
            time.sleep(0.001 * (i % 3))  # later tasks sometimes finish first
            return [2 * i, 2 * i + 1]

        return read

    assert list(read_parallel((task(i) for i in range(50)), workers=3)) == list(range(100))

    def failing():
        raise DataError("part-00001.parquet: cannot read")

    with pytest.raises(DataError, match="cannot read"):
        list(read_parallel([task(0), failing, task(2)], workers=2))

    started = []

    def counted(i: int):
        def read() -> list[int]:
            started.append(i)
            return [i]

        return read

    reader = read_parallel((counted(i) for i in range(10_000)), workers=2, ahead=4)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()  # the consumer stops early: queued reads are cancelled, none start after
    deadline = time.monotonic() + 5
    while any(t.name.startswith("detcheck-read") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a read thread outlived its consumer"
        time.sleep(0.05)
    assert len(started) <= 3 + 4 + 2  # taken, queued ahead, and in the workers' hands


def test_small_row_groups_of_many_parts_are_read_as_one_batch(tmp_path):
    """Runs are stored in parts of a few row groups; analysis reads them in batches that span
    parts, each row group bringing its own token dictionary, and must see every row, in order,
    with its own tokens."""
    writer = RunWriter(tmp_path / "r1", dict(META), rows_per_part=7)
    tokens = ["Heads", "Tails", " Heads", "H", "T", "heads"]
    for i in range(40):
        r = row(i)
        # tokens drawn so each part's dictionary differs in content and order
        r["top_logprobs"] = [
            {"token": tokens[(i * 5 + j) % 6], "logprob": -0.1 * j, "bytes": [72]} for j in range(3)
        ]
        writer.append(r)
    writer.close(status="complete")
    run = read_run(tmp_path / "r1")
    assert len(run.parts) == 6
    columns = ["seq", "top_logprobs.list.element.token"]
    tasks = list(run.read_tasks(columns, batch_size=16, read_dictionary=columns[1:]))
    assert len(tasks) == 3  # 7 + 7 / 7 + 7 / 7 + 5 rows: never more than 16 in one read
    batches = [b for read in tasks for b in read()]
    assert [b.num_rows for b in batches] == [14, 14, 12]
    assert pa.types.is_dictionary(batches[0].column(1).type.value_type.field("token").type)
    got = pa.Table.from_batches(batches)
    assert got.column("seq").to_pylist() == list(range(40))
    tops = got.column("top_logprobs").to_pylist()
    assert [[e["token"] for e in t] for t in tops] == [
        [tokens[(i * 5 + j) % 6] for j in range(3)] for i in range(40)
    ]
    # the same through the threaded reader, and through the sequential one
    assert pa.Table.from_batches(list(run.batches(columns, 16, columns[1:], workers=2))).equals(got)
    assert pa.Table.from_batches(list(run.batches(columns, 16, columns[1:]))).equals(got)


def test_a_torn_line_in_the_middle_of_a_journal_costs_that_line_only(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    for i in range(3):
        writer.append(row(i))
    writer._journal.write(b'{"run_id": "r1", "seq": 3, "ca')  # a write that failed part-way
    writer._journal.write(b"\n")
    writer.append(row(4))
    writer._journal.write(b'{"run_id": "r1", "se')  # a fragment with the next row on its line
    writer.append(row(5))
    writer.append(row(6))
    die(writer)
    # before: everything after the first torn line was dropped
    assert read_run(tmp_path / "r1").table.column("seq").to_pylist() == [0, 1, 2, 4, 5, 6]
    RunWriter(tmp_path / "r1", dict(META)).close()  # and compacted the same way
    assert read_run(tmp_path / "r1").table.column("seq").to_pylist() == [0, 1, 2, 4, 5, 6]


def test_a_row_that_does_not_fit_the_schema_is_kept_as_a_failed_attempt(tmp_path):
    writer = RunWriter(tmp_path / "r1", dict(META))
    writer.append(row(0))
    bad = {
        **row(1),
        "prompt_tokens": 2**40,
        "raw_body": '{"usage": {"prompt_tokens": 1099511627776}}',
    }
    writer.append(bad)  # a journal from another version, or edited: never one we parse today
    writer.append(row(2))
    writer.close()
    table = read_run(tmp_path / "r1").table
    assert table.column("seq").to_pylist() == [0, 1, 2]
    assert table.column("ok").to_pylist() == [True, False, True]
    assert table.column("error_type")[1].as_py() == "unstorable"
    assert "1099511627776" in table.column("raw_body")[1].as_py()


def _part_with_metadata(path, meta: bytes, version: bytes):
    from detcheck.store import rows_to_table
    from detcheck.store.schema import RUN_META_KEY, SCHEMA_VERSION_KEY

    table = rows_to_table([row(0)], dict(META))
    table = table.replace_schema_metadata({RUN_META_KEY: meta, SCHEMA_VERSION_KEY: version})
    pq.write_table(table, path)


@pytest.mark.parametrize(
    "meta,version,message",
    [
        (b'{"run_id": "x"}', b"two", "schema version is not a number"),
        (b'{"run_id": "x"}', b"-3", "never written by detcheck"),
        (b"{not json", b"2", "not valid JSON"),
        (b"[1, 2]", b"2", "not run metadata"),
        (b'{"run_id": 7}', b"2", "'run_id' is 7"),
    ],
)
def test_a_part_with_garbage_footer_metadata_is_named_and_skipped(tmp_path, meta, version, message):
    good = RunWriter(tmp_path / "good", dict(META))
    good.append(row(0))
    good.close()
    _part_with_metadata(tmp_path / "bad.parquet", meta, version)
    with pytest.raises(DataError, match=message):
        read_run(tmp_path / "bad.parquet")  # named directly: an error
    warned = []
    runs = read_runs([tmp_path], warn=warned.append)  # inside a directory: skipped, said
    assert [r.meta["run_id"] for r in runs] == ["r1"]
    assert len(warned) == 1 and message in warned[0]


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: [m],
        lambda m: {**m, "config": 5},
        lambda m: {**m, "targets": {"Heads": 1}},
        lambda m: {**m, "n_requested": "many"},
        lambda m: {**m, "label": ["Heads"]},
    ],
    ids=["array", "config", "targets", "n", "label"],
)
def test_a_hand_edited_run_json_is_skipped_inside_a_directory(tmp_path, edit):
    from detcheck.analysis.report import build_report

    for name in ("good", "edited"):
        writer = RunWriter(tmp_path / name, dict(META, run_id=name))
        writer.append(row(0))
        writer.close()
    meta = json.loads((tmp_path / "edited" / "_run.json").read_text())
    (tmp_path / "edited" / "_run.json").write_text(json.dumps(edit(meta)))
    warned = []
    runs = read_runs([tmp_path], warn=warned.append)
    assert [r.meta["run_id"] for r in runs] == ["good"] and "edited" in warned[0]
    assert build_report(runs, [0.01])["n"] == 1  # the rest of the directory still reads
    with pytest.raises(DataError):
        read_runs([tmp_path / "edited"])


def test_a_second_writer_of_a_run_is_refused_and_a_dead_ones_lock_is_not_kept(tmp_path):
    import os

    from detcheck.errors import RunBusy

    writer = RunWriter(tmp_path / "r1", dict(META))
    with pytest.raises(RunBusy, match=f"pid {os.getpid()}"):
        RunWriter(tmp_path / "r1", dict(META))
    die(writer)  # as the kernel does for a killed holder
    RunWriter(tmp_path / "r1", dict(META)).close()
    assert not (tmp_path / "r1" / "_detcheck.lock").exists()


def test_a_new_run_never_writes_into_a_directory_with_its_id(tmp_path):
    # two runs started in one second may draw the same 24 random bits: the second gets others
    from detcheck.store.runs import open_run

    taken = tmp_path / "20261208T000000Z-m-abcdef"
    taken.mkdir()
    (taken / "theirs").write_text("kept")
    meta = {"run_id": taken.name, "schema_version": 5, "config": {"kind": "flip"}}
    writer = open_run(str(tmp_path), meta)
    try:
        assert writer.run_dir != taken and writer.run_dir.parent == tmp_path
        assert meta["run_id"] == writer.run_dir.name and meta["run_id"].startswith(
            "20261208T000000Z-m-"
        )
    finally:
        writer.close(status="complete")
    assert sorted(p.name for p in taken.iterdir()) == ["theirs"]
