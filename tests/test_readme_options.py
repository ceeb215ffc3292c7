"""Every option of every command is in the manual (README.md and docs/, as sqlite-utils checks its
docs): an option a user cannot find there does not exist for them."""

from __future__ import annotations

import re

import pytest
import typer

from conftest import manual_text
from detcheck.cli import app

README = manual_text()
GROUP = typer.main.get_command(app)


def _options():
    for name, command in sorted(GROUP.commands.items()):
        for param in command.params:
            if getattr(param, "hidden", False) or param.param_type_name != "option":
                continue
            for opt in [*param.opts, *param.secondary_opts]:
                if opt.startswith("--") and opt != "--help":
                    yield name, opt
    for param in GROUP.params:  # the root's own: --version, completion
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                yield "detcheck", opt


@pytest.mark.parametrize("command, option", sorted(set(_options())))
def test_every_option_is_in_the_readme(command, option):
    # the option as a whole word: --n is not found inside --no-seed
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", README), f"{command} {option}"


def test_the_check_sees_the_options():
    found = set(_options())
    assert ("flip", "--max-cost") in found and ("detcheck", "--install-completion") in found
    assert len(found) > 60
