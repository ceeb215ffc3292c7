"""The manual: README.md is a front page (at most 250 lines), docs/ has one page per task, each
opening with what it is for and a command to try and ending with links onward; what can be
generated (the options reference, the column table) is, and is current; every relative link and
anchor resolves; and the commands the front page and the pages show run as written, offline."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    linked = set(LINK.findall("\n".join(lines)))
    # every page of the manual is one click from the front page
    assert {f"docs/{p.name}" for p in PAGES if p.name != "README.md"} <= linked


@pytest.mark.parametrize("name", [p.name for p in PAGES])
def test_every_page_says_what_it_is_for_gives_a_command_and_links_onward(name):
    text = (DOCS / name).read_text()
    title, _, rest = text.partition("\n\n")
    assert title.startswith("# ")
    intro, _, rest = rest.partition("\n\n")
    assert len(intro) > 30 and not intro.startswith(("#", "`", "|"))
    assert rest.startswith("```sh\n")  # then a command to try
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("Read on:") and LINK.search(last)


@pytest.mark.parametrize("name", ["options.md", "columns.md"])
def test_the_generated_pages_are_what_the_script_writes(name):
    written = generator().PAGES[name]()
    assert (DOCS / name).read_text() == written, "run: uv run python docs/generate.py"


def test_every_column_has_its_meaning():
    from detcheck.store.schema import COLUMN_MEANINGS, RUN_SCHEMA

    assert list(COLUMN_MEANINGS) == RUN_SCHEMA.names
    assert all(len(meaning) > 3 for meaning in COLUMN_MEANINGS.values())


def anchors(path: Path) -> set[str]:
    """GitHub's ids for a Markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return out


def links() -> list[tuple[Path, str]]:
    files = [ROOT / "README.md", *PAGES, ROOT / "recordings" / "README.md"]
    found = []
    for path in files:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not inside code
        for target in LINK.findall(text):
            if not re.match(r"[a-z]+:", target):
                found.append((path, target))
    return found


def test_the_link_check_sees_the_links():
    found = links()
    assert len(found) > 60
    assert any("#" in target for _, target in found)


@pytest.mark.parametrize(
    "path, target", links(), ids=lambda x: x.name if isinstance(x, Path) else x
)
def test_every_relative_link_and_anchor_resolves(path, target):
    file, _, anchor = target.partition("#")
    goal = (path.parent / file).resolve() if file else path
    assert goal.exists(), f"{path.name}: {target}"
    if anchor:
        assert anchor in anchors(goal), f"{path.name}: {target}"


def shown_commands(path: Path) -> list[str]:
    """The commands in a page's ```sh blocks (continuation lines joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


# set-up (done by CI before the tests), the test command itself, suites that need more
SETUP = ("pip install uv", "uv sync", "uv run pytest", "uv run --group interop")
SHOWN = [
    (path, command)
    for path in [ROOT / "README.md", *PAGES]
    for command in (shown_commands(path) if path.name == "README.md" else shown_commands(path)[:1])
    if not command.startswith(SETUP) and not command.startswith("uv run python bench/")
]


def run_as_written(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """`uv run detcheck ...` as this interpreter's `python -m detcheck ...` (uv run would sync
    the environment: the network, and the extras CI installed, gone)."""
    env = {**os.environ, "DETCHECK": f"{sys.executable} -m detcheck", "OUT": str(cwd / "tour")}
    env.pop("OPENAI_API_KEY", None)  # none is needed
    words = shlex.split(command)
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    if words[0] == "detcheck":
        words = [sys.executable, "-m", "detcheck", *words[1:]]
    elif words[0] == "python":
        words = [sys.executable, *words[1:]]
    # a path with a wildcard, as the shell would expand it (not a Python snippet's)
    words = [
        x
        for w in words
        for x in (
            sorted(map(str, ROOT.glob(w))) if re.fullmatch(r"[\w./-]*\*[\w./*-]*", w) else [w]
        )
    ]
    for name in ("recordings", "examples"):  # what the commands read; they write under cwd
        (cwd / name).symlink_to(ROOT / name)
    if words[0] == "bash":
        words[1] = str(ROOT / words[1])
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_walk_through_sees_the_commands():
    commands = [c for _, c in SHOWN]
    assert any("--replay recordings/gpt-4o" in c for c in commands)
    assert "bash examples/tour.sh" in commands and len(commands) >= 15


@pytest.mark.slow
@pytest.mark.parametrize("path, command", SHOWN, ids=[f"{p.name}:{c[:50]}" for p, c in SHOWN])
def test_every_command_shown_runs_as_written(path, command, tmp_path):
    done = run_as_written(command, tmp_path)
    assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    if "coinflip-10000" in command and command.startswith("uv run detcheck flip"):
        # what the front page says it prints
        assert "42 distinct Heads probabilities in 10,000 calls" in done.stdout
        assert "clusters: 12 at 0.01 pp" in done.stdout
