"""Runs in an object store: a local S3-compatible server (moto) on 127.0.0.1, started here."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from typer.testing import CliRunner

from detcheck.cli import app

pytest.importorskip("moto.server")
runner = CliRunner()


def test_write_analyze_compare_history_through_s3(bucket, recording, tmp_path):
    query, fs = bucket
    uri = f"s3://detcheck/runs?{query}"
    flip = runner.invoke(
        app, ["flip", "--n", "40", "--replay", str(recording), "--out", uri, "--json", "-q"]
    )
    assert flip.exit_code == 0, flip.stderr
    run_path = json.loads(flip.stdout)["run_path"]
    assert run_path.startswith("s3://detcheck/runs/") and "?" not in run_path
    exp = tmp_path / "e.toml"
    exp.write_text(f'[[measurement]]\nname = "r"\nreplay = "{recording}"\nn = 25\n')
    nightly = runner.invoke(app, ["run", str(exp), "--out", uri, "--json"])
    assert nightly.exit_code == 0, nightly.stderr

    keys = [i.path for i in fs.get_file_info(pafs.FileSelector("detcheck/runs", recursive=True))]
    assert any(
        "/model=gpt-4o-2024-08-06/date=" in k and k.endswith("part-00000.parquet") for k in keys
    )
    assert not any("_journal" in k for k in keys)  # journals stay local; parts are uploaded

    analyzed = runner.invoke(app, ["analyze", uri, "--json"])
    assert analyzed.exit_code == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)["n"] == 65
    history = runner.invoke(app, ["history", uri, "--json"])
    assert [x["n"] for x in json.loads(history.stdout)["runs"]] == [40, 25]
    compared = runner.invoke(app, ["compare", str(recording), uri, "--json"])
    assert compared.exit_code in (0, 1), compared.stderr
    assert json.loads(compared.stdout)["candidate_n"] == 65

    # other tools read the same files as a plain (hive-partitioned) Parquet dataset
    dataset = ds.dataset(
        "detcheck/runs", filesystem=fs, format="parquet", exclude_invalid_files=True
    )
    assert dataset.count_rows() == 65


def test_missing_prefix_is_a_clear_error(bucket):
    query, _ = bucket
    result = runner.invoke(app, ["analyze", f"s3://detcheck/nothing-here?{query}"])
    assert result.exit_code == 2
    assert "no such object or prefix" in result.stderr and "endpoint_override" not in result.stderr


def test_credentials_in_object_store_uris_are_never_shown(bucket, recording, tmp_path, monkeypatch):
    query, fs = bucket
    secret = "s3cr3tEXAMPLEkey0123456789"
    uri = f"s3://AKIAEXAMPLE0123:{secret}@detcheck/runs?{query}"
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    flip = runner.invoke(app, ["flip", "--n", "30", "--replay", str(recording), "--out", uri])
    assert flip.exit_code == 0, flip.stderr
    compared = runner.invoke(
        app, ["compare", uri, uri, "--markdown", str(tmp_path / "c.md"), "--json"]
    )
    assert compared.exit_code == 0, compared.stderr
    history = runner.invoke(app, ["history", uri])
    missing = runner.invoke(app, ["analyze", uri.replace("/runs?", "/nothing?")])
    assert missing.exit_code == 2
    texts = [flip.stdout, flip.stderr, compared.stdout, compared.stderr, history.stdout]
    texts += [missing.stderr, summary.read_text(), (tmp_path / "c.md").read_text()]
    for info in fs.get_file_info(pafs.FileSelector("detcheck/runs", recursive=True)):
        if info.type == pafs.FileType.File:  # run.json and every part's footer
            with fs.open_input_stream(info.path) as f:
                texts.append(f.read().decode("latin-1"))
    for text in texts:
        for hidden in (secret, "AKIAEXAMPLE0123"):
            assert hidden not in text
    assert "s3://detcheck/runs" in (tmp_path / "c.md").read_text()
