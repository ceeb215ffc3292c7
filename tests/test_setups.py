"""Runs that measured different things are not added up (analyze, plot) or compared as if
nothing changed (compare), unless asked: the refusal names what differs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()


def _run(out, recording, *args):
    result = runner.invoke(
        app, ["flip", "-n", "20", "--replay", str(recording), "--out", str(out), "-q", *args]
    )
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    "args, named",
    [
        (["--model", "other-model"], "model 'gpt-4o-2024-08-06' (1 run), 'other-model' (1 run)"),
        (["--prompt", "Pick one."], "prompt "),
        (["--temperature", "0.7"], "temperature 0.0 (1 run), 0.7 (1 run)"),
        (["--top-logprobs", "5"], "top_logprobs 20 (1 run), 5 (1 run)"),
    ],
)
def test_analyze_refuses_runs_of_different_setups_naming_what_differs(
    tmp_path, recording, args, named
):
    _run(tmp_path, recording)
    _run(tmp_path, recording, *args)
    result = runner.invoke(app, ["analyze", str(tmp_path)])
    assert result.exit_code == 2
    assert "measure different setups" in result.stderr and named in result.stderr
    assert "--allow-mixed" in result.stderr
    allowed = runner.invoke(app, ["analyze", str(tmp_path), "--allow-mixed", "--json"])
    assert allowed.exit_code == 0, allowed.stderr
    assert json.loads(allowed.stdout)["n"] == 40  # added up, as asked


def test_runs_of_one_setup_are_added_up_without_asking(tmp_path, recording):
    _run(tmp_path, recording)
    _run(tmp_path, recording)
    result = runner.invoke(app, ["analyze", str(tmp_path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 40


def test_compare_refuses_another_prompt_and_temperature_as_no_drift(tmp_path, recording):
    _run(tmp_path / "base", recording)
    _run(tmp_path / "cand", recording, "--prompt", "Pick one.", "--temperature", "1")
    result = runner.invoke(app, ["compare", str(tmp_path / "base"), str(tmp_path / "cand")])
    assert result.exit_code == 2, result.stdout
    assert "prompt" in result.stderr and "temperature" in result.stderr
    assert "--allow-setup-change" in result.stderr
    forced = ["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--allow-setup-change"]
    assert runner.invoke(app, forced).exit_code in (0, 1)  # compared: drift or not


def test_plot_refuses_mixed_setups_too(tmp_path, recording):
    _run(tmp_path, recording)
    _run(tmp_path, recording, "--model", "other-model")
    result = runner.invoke(app, ["plot", str(tmp_path), "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "model" in result.stderr


def test_compare_prints_tables_in_the_terminal_and_markdown_to_a_file(tmp_path, recording):
    _run(tmp_path / "cand", recording)
    md = tmp_path / "report.md"
    result = runner.invoke(
        app, ["compare", str(recording), str(tmp_path / "cand"), "--markdown", str(md)]
    )
    assert result.exit_code in (0, 1), result.stderr
    text = result.stdout
    assert "###" not in text and "|---" not in text and "| " not in text
    assert "cluster (%) at 0.01 pp  baseline" in " ".join(text.split("\n"))  # aligned columns
    assert max(len(line) for line in text.splitlines()) <= 80
    markdown = md.read_text()
    assert markdown.startswith("### detcheck compare") and "|---|---|---|---|" in markdown
