"""What a terminal shows: every table and line of text fits 80 columns (or wraps), -q leaves
only warnings on stderr, and a note is said once however many runs a command makes."""

from __future__ import annotations

from typer.testing import CliRunner

from conftest import ROOT
from detcheck.cli import app
from fake_openai import FakeOpenAI, story_reply
from test_audit import Engine

runner = CliRunner()
ENV = {"OPENAI_API_KEY": "sk-test"}


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def test_an_audit_fits_80_columns_and_says_each_note_once(tmp_path):
    with FakeOpenAI(Engine(batch=True)) as server:
        args = ["audit", "--base-url", server.base_url, "--model", "smol", "-n", "8",
                "--out", str(tmp_path)]  # fmt: skip
        loud = runner.invoke(app, args, env=ENV)
        quiet = runner.invoke(app, [*args, "-q"], env=ENV)
    assert loud.exit_code == 0, loud.stderr
    assert widest(loud.stdout) <= 80, loud.stdout
    notes = loud.stderr.splitlines()
    assert sum("'Heads': tiktoken does not know 'smol'" in line for line in notes) == 1  # not 9x
    assert quiet.exit_code == 0 and widest(quiet.stdout) <= 80
    # -q: warnings only (the fake answers as another model; it has no 'Tails')
    assert quiet.stderr and all(line.startswith("warning:") for line in quiet.stderr.splitlines())


def test_whole_generations_fit_80_columns():
    for recording in ("story-generate-200", "smollm2-f32-prompts-c8"):
        result = runner.invoke(app, ["analyze", str(ROOT / "recordings" / recording)])
        assert result.exit_code == 0, result.stderr
        assert widest(result.stdout) <= 80, result.stdout


def test_a_generate_run_is_quiet_under_q(tmp_path):
    with FakeOpenAI(story_reply()) as server:
        args = ["generate", "-n", "4", "--base-url", server.base_url, "--model", "story",
                "-o", str(tmp_path), "-q"]  # fmt: skip
        result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "" and widest(result.stdout) <= 80


def test_a_sweep_table_fits_80_columns(tmp_path):
    with FakeOpenAI() as server:
        args = ["sweep", "--concurrency", "1,2", "-n", "6", "--base-url", server.base_url,
                "--model", "gpt-4o-2024-08-06", "-o", str(tmp_path / "a-long-directory-name"),
                "-q"]  # fmt: skip
        result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.stderr
    table, where = result.stdout.split("the runs are under:\n")
    assert widest(table) <= 80, result.stdout
    assert where.startswith(str(tmp_path / "a-long-directory-name"))  # a path cannot wrap
    assert result.stderr == ""


def test_an_import_is_quiet_under_q(tmp_path):
    files = [str(ROOT / "examples" / "import" / f"run-{k}.csv") for k in range(3)]
    args = ["import", *files, "--text", "response", "--id", "question", "-o", str(tmp_path), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "" and widest(result.stdout) <= 80, result.stdout


def test_a_comparison_fits_80_columns():
    recordings = ROOT / "recordings"
    result = runner.invoke(
        app,
        ["compare", str(recordings / "smollm2-q4_1-coinflip-c8-300"),
         str(recordings / "smollm2-f32-coinflip-c8-300")],
    )  # fmt: skip
    assert result.exit_code == 1  # they differ
    assert widest(result.stdout) <= 80, result.stdout
