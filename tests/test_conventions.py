"""Command-line conventions: -o/--out and -q/--quiet wherever they apply, plain progress lines
when stderr is not a terminal, and shell completion."""

from __future__ import annotations

import os
import subprocess
import sys

import typer
from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()
GROUP = typer.main.get_command(app)
WRITES = {"flip", "generate", "sweep", "run", "plot", "report", "audit", "import"}  # to a path
PROGRESS = {"flip", "generate", "sweep", "run", "audit", "import"}


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
