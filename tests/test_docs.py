"""The manual: README.md is a front page (at most 250 lines), docs/ has one page per task, each
opening with what it is for and a command to try and ending with links onward; what can be
generated (the options reference, the column table) is, and is current; every relative link and
anchor resolves; and the commands the front page and the pages show run as written, offline."""

from __future__ import annotations

import importlib.util
import os
import re
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


FENCE = re.compile(r"```(sh|python|sql)\n(.*?)```", re.S)
# a block that cannot run offline says so in its first line: "# needs a live endpoint ...",
# "# needs the network ...", "# takes about 15 minutes ..." (SQL: "-- needs ...")
NOT_HERE = re.compile(r"^(#|--) (needs|takes) ")


def blocks(path: Path) -> list[tuple[str, str]]:
    """The page's shell, Python and SQL blocks, in order: (language, text)."""
    return FENCE.findall(path.read_text())


def runnable(text: str) -> bool:
    return not NOT_HERE.match(text.lstrip())


def shown_commands(path: Path) -> list[str]:
    """The commands in a page's ```sh blocks (continuation lines joined, comments dropped)."""
    commands = []
    for language, block in blocks(path):
        if language != "sh":
            continue
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


# How a reader's shell meets the commands, offline and without syncing the environment: uv run X
# is this interpreter's X; set-up (pip install uv, uv sync) is done already; `uv run pytest` is
# the test suite itself, running now.
PREAMBLE = """
set -euo pipefail
detcheck() { "$PYTHON" -m detcheck "$@"; }
python() { "$PYTHON" "$@"; }
pip() { :; }
uv() {
  case "$1 ${2:-}" in
    "sync "*|"run pytest") return 0 ;;
    "run "*) shift; "$@" ;;
    *) echo "uv $*: not a command the docs test knows" >&2; return 97 ;;
  esac
}
"""


def page_dir(tmp_path: Path) -> Path:
    """Where a page's blocks run: empty but for what the commands read."""
    for name in ("recordings", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def run_block(language: str, block: str, cwd: Path) -> subprocess.CompletedProcess:
    """A block as a reader would run it: a shell block in bash, Python with this interpreter (a
    test file under pytest), SQL with duckdb; all in `cwd`, no key in the environment."""
    env = {**os.environ, "PYTHON": sys.executable, "DETCHECK": f"{sys.executable} -m detcheck"}
    env["OUT"] = str(cwd / "tour")
    env.pop("OPENAI_API_KEY", None)  # none is needed
    if language == "sh":
        words = ["bash", "-c", PREAMBLE + block]
    elif language == "python" and "def test_" in block:
        (cwd / "test_from_the_docs.py").write_text(block)
        words = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p",
                 "no:cacheprovider", "test_from_the_docs.py"]  # fmt: skip
    elif language == "python":
        words = [sys.executable, "-c", block]
    else:
        words = [sys.executable, "-c", f"import duckdb; print(duckdb.sql({block!r}))"]
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


PAGES_RUN = [ROOT / "README.md", *PAGES]


def test_the_walk_through_sees_the_blocks():
    every = [(p, lang, b) for p in PAGES_RUN for lang, b in blocks(p)]
    assert len(every) >= 30 and {"sh", "python", "sql"} <= {lang for _, lang, _ in every}
    skipped = [b for _, _, b in every if not runnable(b)]
    assert 0 < len(skipped) < len(every) / 3  # most of the manual runs here
    commands = [c for p in PAGES_RUN for c in shown_commands(p)]
    assert any("--replay gpt-4o-coinflip" in c for c in commands)
    assert "bash examples/tour.sh" in commands


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES_RUN, ids=lambda p: p.name)
def test_every_block_of_the_page_runs_as_written(path, tmp_path):
    """Each page top to bottom in one directory, as a reader follows it: a later block may read
    what an earlier one wrote (runs/)."""
    cwd = page_dir(tmp_path)
    for language, block in blocks(path):
        if not runnable(block):
            continue
        done = run_block(language, block, cwd)
        assert done.returncode == 0, f"{path.name}:\n{block}\n{done.stderr[-2000:]}"
        if "--replay gpt-4o-coinflip" in block and "--n 10000" in block:
            # what the front page says the demo prints
            assert "42 distinct Heads probabilities in 10,000 calls" in done.stdout
            assert "clusters: 12 at 0.01 pp" in done.stdout
