"""`--json` prints exactly one JSON object on stdout on every command: on success, and on failure
too (`error` and `exit_code`), so `| jq` never meets an empty stdout or an array."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()

# Each command with --json, made to fail the way a user makes it fail.
FAILING = {
    "flip": ["flip", "--n", "0"],
    "generate": ["generate", "--n", "0"],
    "analyze": ["analyze", "/nonexistent/runs"],
    "compare": ["compare", "/nonexistent/a", "/nonexistent/b"],
    "history": ["history", "/nonexistent/runs"],
    "run": ["run", "/nonexistent/experiment.toml"],
    "probe": ["probe", "--top-logprobs", "-1"],
    "sweep": ["sweep", "--concurrency", "0"],
    "audit": ["audit", "--n", "3"],
    "import": ["import", "/nonexistent/log.jsonl", "--format", "openai"],
    "verify": ["verify", "--reference", "http://127.0.0.1:9/v1", "--n", "0"],
}


def _one_object(stdout: str) -> dict:
    data = json.loads(stdout)  # exactly one JSON document: anything else fails to parse
    assert isinstance(data, dict), type(data)
    return data


def test_every_command_with_json_is_in_the_table():
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    with_json = {
        name
        for name in commands
        if "--json" in runner.invoke(app, [name, "--help"], terminal_width=200).stdout
    }
    assert with_json == set(FAILING)


@pytest.mark.parametrize("command", sorted(FAILING))
def test_a_failure_is_one_json_object_too(command):
    result = runner.invoke(app, [*FAILING[command], "--json"], env={"OPENAI_API_KEY": "sk-x"})
    assert result.exit_code == 2, (result.stdout, result.stderr)
    data = _one_object(result.stdout)
    assert data["exit_code"] == 2 and data["error"]
    assert data["error"] in result.stderr  # the same words as the human message


def test_run_and_history_print_one_object(tmp_path, recording):
    exp = tmp_path / "e.toml"
    exp.write_text(f'[[measurement]]\nname = "r"\nreplay = "{recording}"\nn = 5\n')
    ran = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "runs"), "--json"])
    assert ran.exit_code == 0, ran.stderr
    data = _one_object(ran.stdout)
    assert data["failed"] == 0 and [m["name"] for m in data["measurements"]] == ["r"]
    history = runner.invoke(app, ["history", str(tmp_path / "runs"), "--json"])
    assert [line["n"] for line in _one_object(history.stdout)["runs"]] == [5]


def test_a_usage_error_is_one_json_object_from_the_installed_command():
    # click rejects an unknown option before any command runs: main() turns that into JSON too
    done = subprocess.run(
        [sys.executable, "-m", "detcheck", "analyze", ".", "--json", "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    data = _one_object(done.stdout)
    assert data == {"error": "No such option: --no-such-option", "exit_code": 2}
    assert "Usage:" in done.stderr
