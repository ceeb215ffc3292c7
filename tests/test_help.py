"""`--help` reads as a person expects: value labels in words (TEXT, FLOAT, INTEGER, LIST, PATH),
not Python types; defaults as values; each unit said once; usage lines as shells write them;
and prose folded at word boundaries, never broken mid-sentence. Checked for every command at
the two widths people use."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from detcheck import spec
from detcheck.cli import app

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = [[], *([name] for name in sorted(GROUP.commands))]


def help_of(command: list[str], width: int) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "detcheck")
def test_help_reads_as_a_person_expects(command, width):
    text = help_of(command, width)
    # value labels a person reads, not Python types (<str>, <list[str]>, <bool>, <path>)
    assert not re.search(r"<[a-z][\w\[\], ]*>", text), re.search(r"<[a-z][\w\[\], ]*>", text)
    assert "{" not in text.splitlines()[1]  # the usage line: PATHS..., not {paths}...
    # a default is a value, not a value in parentheses
    assert "[default: (" not in text
    # each unit once: in the words of the help, never appended again in brackets
    for param in spec.PARAMS.values():
        if param.unit:
            assert f"[{param.unit}]" not in text, param.name
    # prose is folded at word boundaries: no line ends where the next word would have fit
    prose = [line.strip() for line in text.split("╭", 1)[0].splitlines()]
    for line, after in zip(prose, prose[1:]):
        command_lines = line.startswith(("Usage:", "detcheck ")) or after.startswith("detcheck ")
        if line and after and not command_lines:
            next_word = after.split()[0]
            assert len(line) + 1 + len(next_word) > width - 2, f"broken: {line!r} / {after!r}"


def test_the_value_labels_say_what_to_type():
    flip = help_of(["flip"], 100)
    assert re.search(r"--model\s+TEXT\s", flip)
    assert re.search(r"--n\s+-n\s+INTEGER\s", flip)
    assert re.search(r"--temperature\s+FLOAT\s", flip)
    assert re.search(r"--labels\s+LIST\s", flip)
    assert re.search(r"--no-seed\s+Send no seed", flip)  # a flag takes no value
    assert "[default: gpt-4o-2024-08-06]" in flip and "[default: 0.01]" in flip
    analyze = help_of(["analyze"], 100)
    assert "analyze [OPTIONS] [PATHS]..." in analyze  # optional: runs/ by default
    assert "[default: runs]" in analyze  # the paths default to runs/ as flip -o does
    assert re.search(r"--help\s+Show this message and exit", analyze)
