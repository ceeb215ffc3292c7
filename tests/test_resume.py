"""--resume refuses a different measurement and does nothing to a finished one."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()


def flip(*args):
    return runner.invoke(app, ["flip", "-q", *map(str, args)])


def test_resume_refuses_different_parameters(recording, tmp_path):
    assert flip("--n", 20, "--replay", recording, "--out", tmp_path).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    result = flip(
        "--resume",
        run_dir,
        "--n",
        30,
        "--seed",
        7,
        "--prompt",
        "Roll a die.",
        "--api",
        "completions",
    )
    assert result.exit_code == 2
    for name in (
        "--n 30 (stored 20)",
        "--seed 7 (stored 42)",
        "--prompt 'Roll a die.'",
        "--api 'completions' (stored 'chat')",
    ):
        assert name in result.stderr


def test_resume_of_a_complete_run_changes_nothing(recording, tmp_path):
    assert flip("--n", 20, "--replay", recording, "--out", tmp_path).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    before = sorted(p.name for p in run_dir.iterdir())
    # not -q, which would silence the note that says so
    result = runner.invoke(app, ["flip", "--resume", str(run_dir), "--json"])
    assert result.exit_code == 0, result.stderr
    assert "nothing to do" in result.stderr and json.loads(result.stdout)["n"] == 20
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_resume_needs_a_run(tmp_path):
    result = flip("--resume", tmp_path / "nope")
    assert result.exit_code == 2 and "no such file" in result.stderr
