"""The runs directory is a dataset: pyarrow, pandas and duckdb read both layouts (`flip --out`
and `run --out`) with no options, partition values equal the column values, and the manual's
column table and duckdb query agree with what is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run, read_runs
from detcheck.store.schema import RUN_SCHEMA
from fake_openai import FakeOpenAI

runner = CliRunner()
README = Path(__file__).parent.parent / "docs" / "runs.md"
COLUMNS_PAGE = Path(__file__).parent.parent / "docs" / "columns.md"
SLASHED = "Qwen/Qwen3-8B"  # a model name that is not a valid path segment as it stands


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A `run --out` tree (two measurements, one model name with a slash) and a `flip --out`
    directory, from a fake endpoint."""
    root = tmp_path_factory.mktemp("dataset")
    with FakeOpenAI() as server:
        exp = root / "nightly.toml"
        exp.write_text(
            f'[defaults]\nn = 9\nbase_url = "{server.base_url}"\n\n'
            f'[[measurement]]\nname = "qwen"\nmodel = "{SLASHED}"\ntarget_token = "Heads"\n\n'
            '[[measurement]]\nname = "openai"\n'
        )
        env = {"OPENAI_API_KEY": "sk-test"}
        result = runner.invoke(app, ["run", str(exp), "--out", str(root / "runs")], env=env)
        assert result.exit_code == 0, result.stderr
        for _ in range(2):
            args = ["flip", "-n", "6", "--base-url", server.base_url, "--out", str(root / "flat")]
            result = runner.invoke(app, [*args, "--quiet"], env=env)
            assert result.exit_code == 0, result.stderr
    return root


def test_metadata_files_are_hidden_from_dataset_readers(runs):
    names = {p.name for p in (runs / "runs").rglob("*") if p.is_file()}
    assert "_run.json" in names and "run.json" not in names
    assert all(n.startswith("_") or n.endswith(".parquet") for n in names), names


def test_partition_directories_escape_the_model_hive_style(runs):
    dirs = {p.name for p in (runs / "runs").iterdir()}
    assert dirs == {"model=Qwen%2FQwen3-8B", "model=gpt-4o-2024-08-06"}


@pytest.mark.parametrize("layout, rows", [("runs", 18), ("flat", 12)])
def test_pyarrow_pandas_and_duckdb_read_both_layouts_without_options(runs, layout, rows):
    root = runs / layout
    table = ds.dataset(root, partitioning="hive").to_table()
    frame = pd.read_parquet(root)
    query = f"select * from read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    duck = duckdb.sql(query).df()
    assert table.num_rows == len(frame) == len(duck) == rows
    for models in (table.column("model").to_pylist(), list(frame["model"]), list(duck["model"])):
        expected = {SLASHED, "gpt-4o-2024-08-06"} if layout == "runs" else {"gpt-4o-2024-08-06"}
        assert set(models) == expected


def test_a_where_on_the_model_finds_a_slashed_name(runs):
    glob = f"{runs / 'runs'}/**/*.parquet"
    for options in (", hive_partitioning = true", ""):  # duckdb finds the partitions itself
        count = duckdb.sql(
            f"select count(*) from read_parquet('{glob}'{options}) where model = '{SLASHED}'"
        ).fetchall()[0][0]
        assert count == 9
    table = ds.dataset(runs / "runs", partitioning="hive").to_table(
        filter=ds.field("model") == SLASHED
    )
    assert table.num_rows == 9


def test_detcheck_reads_the_model_the_path_holds(runs):
    [qwen] = [r for r in read_runs([runs / "runs"]) if r.meta["measurement"] == "qwen"]
    assert set(qwen.table.column("model").to_pylist()) == {SLASHED}
    assert qwen.meta["partition"]["model"] == SLASHED
    # what the endpoint said it was is kept apart
    assert set(qwen.table.column("response_model").to_pylist()) == {"gpt-4o-2024-08-06"}


def test_the_columns_a_person_needs_are_flat(runs):
    frame = pd.read_parquet(runs / "runs")
    qwen = frame[frame["model"] == SLASHED]
    assert set(qwen["measurement"]) == {"qwen"}
    assert set(qwen["target_token"]) == {"Heads"}
    assert qwen["endpoint"].str.startswith("http://127.0.0.1:").all()
    # the target's logprob, found among the top logprobs of each row
    for top, lp in zip(qwen["top_logprobs"], qwen["target_logprob"]):
        assert lp == next(e["logprob"] for e in top if e["token"] == "Heads")


def test_a_run_written_before_the_rename_is_still_read(recording):
    run = read_run(recording, columns=["model", "response_model", "endpoint", "target_token"])
    assert (recording / "run.json").exists() and not (recording / "_run.json").exists()
    assert set(run.table.column("model").to_pylist()) == {run.meta["config"]["model"]}
    # a schema-3 part's `model` was the model the response named: now `response_model`
    assert None not in set(run.table.column("response_model").to_pylist())
    assert set(run.table.column("target_token").to_pylist()) == {run.meta["target"]}


def _readme_columns() -> dict[str, str]:
    text = COLUMNS_PAGE.read_text()
    section = text[text.index("| Column | Type |") :]
    table = section[: section.index("\n\n")]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    return {name.strip().strip("`"): kind.strip().strip("`") for name, kind, *_ in rows}


def test_the_readme_documents_every_column_with_its_type():
    assert _readme_columns() == {f.name: _kind(f.type) for f in RUN_SCHEMA}


def _kind(arrow_type) -> str:
    text = str(arrow_type)
    return re.sub(r"dictionary<values=(\w+), indices=int32, ordered=0>", r"\1 (dictionary)", text)


def test_the_readme_duckdb_query_runs(runs, tmp_path):
    text = README.read_text()
    query = re.search(r"```sql\n(.*?)```", text, re.S).group(1)
    assert "read_parquet('runs/**/*.parquet'" in query
    rows = duckdb.sql(query.replace("runs/**", f"{runs / 'runs'}/**")).fetchall()
    # one fingerprint (the fake's), one day, two models: distinct values each
    assert len(rows) == 2
    assert {r[1] for r in rows} == {"fp_test"}
    assert all(r[3] == 2 for r in rows), rows  # the fake's two distinct Heads logprobs
    json.dumps([list(map(str, r)) for r in rows])  # plain values
    # and on what `flip -o` writes (no partitions in the path: there was no `date` to read)
    (flat,) = duckdb.sql(query.replace("runs/**", f"{runs / 'flat'}/**")).fetchall()
    assert flat[0] == "gpt-4o-2024-08-06" and flat[3] == 2 and flat[4] == 12


def test_mixing_the_two_layouts_in_one_directory_is_warned_about(runs, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(runs / "runs", mixed)
    with FakeOpenAI() as server:
        args = ["flip", "-n", "2", "--base-url", server.base_url, "--out", str(mixed), "-q"]
        result = runner.invoke(app, args, env={"OPENAI_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.stderr
    assert "no longer reads" not in result.stderr  # the other direction's words
    assert "stops the directory reading as one Parquet dataset" in result.stderr
    with pytest.raises(duckdb.Error, match="(?i)hive partition"):  # why it is worth saying
        duckdb.sql(
            f"select count(*) from read_parquet('{mixed}/**/*.parquet', hive_partitioning = true)"
        ).fetchall()


def test_a_run_written_before_the_rename_keeps_one_metadata_file_when_written_again(
    recording, tmp_path
):
    import shutil

    from detcheck.store import RunWriter

    old = tmp_path / "old"
    shutil.copytree(recording, old)
    meta = json.loads((old / "run.json").read_text())
    RunWriter(old, meta).close(status="complete")  # what a resume does at its end
    assert (old / "_run.json").exists() and not (old / "run.json").exists()
    assert read_run(old).meta["run_id"] == meta["run_id"]
