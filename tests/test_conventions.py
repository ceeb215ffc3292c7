"""Command-line conventions: -o/--out and -q/--quiet wherever they apply, plain progress lines
when stderr is not a terminal, and shell completion."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import typer
from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()
GROUP = typer.main.get_command(app)
# the commands that write to a path
WRITES = {"flip", "generate", "sweep", "run", "plot", "report", "audit", "import", "verify"}
PROGRESS = {"flip", "generate", "sweep", "run", "audit", "import", "verify"}


def _opts(command: str) -> set[str]:
    return {o for p in GROUP.commands[command].params for o in [*p.opts, *p.secondary_opts]}


def test_o_and_out_mean_where_the_output_goes_on_every_command():
    for name in GROUP.commands:
        opts = _opts(name)
        assert ("-o" in opts) == ("--out" in opts) == (name in WRITES), name


def test_q_and_quiet_on_every_command_that_shows_progress():
    for name in GROUP.commands:
        assert ({"-q", "--quiet"} <= _opts(name)) == (name in PROGRESS), name


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path, recording):
    env = {**os.environ, "DETCHECK_PROGRESS_EVERY_S": "0"}
    args = ["flip", "-n", "40", "--replay", str(recording), "-o", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "detcheck", *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("flip ")]
    assert lines and lines[-1].startswith("flip 40/40 (100%)")
    assert "\x1b[" not in done.stderr  # no terminal control sequences in a log
    quiet = subprocess.run(
        [sys.executable, "-m", "detcheck", *args, "-q"], capture_output=True, text=True, env=env
    )
    assert not [x for x in quiet.stderr.splitlines() if x.startswith("flip ")]


def test_shell_completion_completes_commands_and_options():
    env = {**os.environ, "_DETCHECK_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    done = subprocess.run(
        [sys.executable, "-c", "from detcheck.cli import main; main()"],
        capture_output=True,
        text=True,
        env={**env, "COMP_WORDS": "detcheck flip --max-c"},
    )
    assert done.stdout.split() == ["--max-cost"]
    # typer finds the shell among the parent processes (shellingham): run under bash, so that
    # the test does not depend on what started pytest
    shown = subprocess.run(
        ["bash", "-c", '"$0" -c "from detcheck.cli import main; main()" --show-completion; exit',
         sys.executable],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "_detcheck_completion" in shown.stdout, shown.stderr


def test_the_nightly_workflow_calls_commands_and_options_that_exist():
    import re
    import shlex
    from pathlib import Path

    workflow = Path(__file__).parent.parent / "examples/github-actions/detcheck-nightly.yml"
    lines = re.findall(r"uv run (detcheck [^\n]+)", workflow.read_text())
    assert len(lines) >= 3
    for line in lines:
        words = shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "X", line))[1:]
        command = GROUP.commands[words[0]]
        command.make_context(words[0], words[1:])  # raises on an unknown option or a bad value


def _flip_into(runs, n, recording, *args):
    result = runner.invoke(app, ["flip", "-n", str(n), "--replay", str(recording), "-o",
                                 str(runs), "-q", *args])  # fmt: skip
    assert result.exit_code == 0, result.stderr


def test_the_commands_that_read_runs_read_runs_by_default(tmp_path, monkeypatch, recording):
    monkeypatch.chdir(tmp_path)
    _flip_into("runs", 30, recording)  # where flip -o puts them by default
    analysed = runner.invoke(app, ["analyze", "--json"])
    assert analysed.exit_code == 0, analysed.stderr
    assert json.loads(analysed.stdout)["n"] == 30
    history = runner.invoke(app, ["history", "--json"])
    assert history.exit_code == 0 and len(json.loads(history.stdout)["runs"]) == 1
    plotted = runner.invoke(app, ["plot"])
    assert plotted.exit_code == 0, plotted.stderr
    assert plotted.stdout == "wrote plot.png\n" and (tmp_path / "plot.png").stat().st_size
    page = runner.invoke(app, ["report"])
    assert page.exit_code == 0, page.stderr
    assert page.stdout == "wrote report.html\n" and (tmp_path / "report.html").is_file()


def test_without_runs_the_default_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["analyze"])
    assert result.exit_code == 2
    assert result.stderr == (
        "detcheck: error: no runs/ here to analyse: give the runs (detcheck analyze PATH...), "
        "or make some (detcheck flip --replay gpt-4o-coinflip writes one under runs/)\n"
    )


def test_report_open_opens_the_page_in_the_browser(tmp_path, monkeypatch, recording):
    monkeypatch.chdir(tmp_path)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    result = runner.invoke(app, ["report", str(recording), "--open"], env={"BROWSER": str(browser)})
    assert result.exit_code == 0, result.stderr
    assert opened.read_text().strip() == (tmp_path / "report.html").as_uri()


def _history_dataset(root):
    """Four runs: two models, three days."""
    from conftest import write_run

    for k, (model, day) in enumerate(
        [("gpt-4o", "2026-01-01"), ("llama", "2026-01-02"), ("gpt-4o", "2026-01-03"),
         ("gpt-4o", "2026-01-04")]
    ):  # fmt: skip
        values = [math.log(0.9), math.log(0.95)] * (5 + k)
        write_run(root / f"run-{k}", values, ["fp_a"] * len(values), model=model,
                  started_at=f"{day}T12:00:00+00:00")  # fmt: skip


def _history(*args):
    result = runner.invoke(app, ["history", *args, "--json"])
    assert result.exit_code == 0, result.stderr
    return [(x["model"], x["started_at"][:10]) for x in json.loads(result.stdout)["runs"]]


def test_history_filters_as_llm_logs_does(tmp_path):
    _history_dataset(tmp_path)
    root = str(tmp_path)
    assert _history(root, "--model", "gpt-4o") == [
        ("gpt-4o", "2026-01-01"), ("gpt-4o", "2026-01-03"), ("gpt-4o", "2026-01-04")
    ]  # fmt: skip
    assert _history(root, "--since", "2026-01-03") == [
        ("gpt-4o", "2026-01-03"), ("gpt-4o", "2026-01-04")
    ]  # fmt: skip
    assert _history(root, "-n", "2") == [("gpt-4o", "2026-01-03"), ("gpt-4o", "2026-01-04")]
    assert _history(root, "--model", "llama", "-n", "5") == [("llama", "2026-01-02")]
    bad = runner.invoke(app, ["history", root, "--since", "last tuesday"])
    assert bad.exit_code == 2 and "--since takes a date (2026-01-31)" in bad.stderr


def test_history_since_takes_a_duration_too(tmp_path):
    from datetime import datetime, timedelta, timezone

    from conftest import write_run

    now = datetime.now(timezone.utc)
    for k, age in enumerate([timedelta(days=10), timedelta(hours=5)]):
        values = [math.log(0.9)] * 4
        write_run(tmp_path / f"r{k}", values, ["fp"] * 4, started_at=(now - age).isoformat())
    assert len(_history(str(tmp_path), "--since", "1d")) == 1
    assert len(_history(str(tmp_path), "--since", "2w")) == 2


def test_history_csv_is_one_row_per_run_with_a_header(tmp_path):
    import csv
    import io

    _history_dataset(tmp_path)
    result = runner.invoke(app, ["history", str(tmp_path), "--csv"])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4 and rows[0]["model"] == "gpt-4o" and rows[1]["model"] == "llama"
    assert {"started_at", "status", "endpoint", "model", "n", "distinct", "modal_share"} <= set(
        rows[0]
    )
    assert rows[0]["n"] == "10" and rows[0]["fingerprints"] == "fp_a:10"
    assert rows[0]["clusters_at_0.01_pp"] == "2"


def test_the_history_table_fits_80_columns(tmp_path):
    from conftest import write_run

    for k in range(3):
        values = [math.log(0.9), math.log(0.95)] * 5
        write_run(
            tmp_path / f"run-{k}", values, ["fp_0123456789ab"] * 5 + ["fp_ba9876543210"] * 5,
            model="meta-llama/Llama-3.1-8B-Instruct", started_at=f"2026-01-0{k + 1}T12:00:00+00:00",
            endpoint="https://my-inference-gateway.example.com/openai/v1",
        )  # fmt: skip
    result = runner.invoke(app, ["history", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    text = " ".join(result.stdout.split())
    assert "https://my-inference-gateway.example.com/openai/v1" in text.replace(" ", "") or (
        "my-inference-gateway" in text
    )
    assert "fp_0123456789ab" in text and "meta-llama/Llama-3.1-8B-Instruct" in text.replace(" ", "")
