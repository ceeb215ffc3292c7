"""Writes the parts of the manual that can be generated, so that they cannot drift: the options
reference (docs/options.md, from the CLI itself: every option of every command, its default,
unit and help) and the column table (docs/columns.md, from the run schema). tests/test_docs.py
fails when the committed pages differ from what this writes.

    uv run python docs/generate.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def options_page() -> str:
    import typer

    from detcheck.cli import app

    group = typer.main.get_command(app)
    out = [
        "# Options reference",
        "",
        "Every option of every command, as `detcheck COMMAND --help` shows it. Written by",
        "`docs/generate.py` from the CLI itself (a test fails when this page is out of date);",
        "the task pages say when to use which.",
        "",
        "```sh",
        "uv run detcheck flip --help",
        "```",
        "",
    ]
    root = [p for p in group.params if p.name != "help"]
    out += ["## detcheck", "", *_table(root), ""]
    for name, command in sorted(group.commands.items()):
        summary = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        out += [f"## detcheck {name}", "", summary, ""]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        if arguments:
            from detcheck.cli.help import readable

            for a in arguments:
                readable(a)
            out.append("Arguments: " + ", ".join(f"`{a.metavar}`" for a in arguments))
            out.append("")
        options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
        out += [*_table(options), ""]
    out += ["Read on: [the manual's pages](README.md)."]
    return "\n".join(out) + "\n"


def _table(params) -> list[str]:
    """One row per option, with the value it takes as --help labels it (TEXT, FLOAT ...); its
    unit is in its words, once, as --help says it."""
    from detcheck.cli.help import readable

    rows = ["| option | default | what it does |", "|---|---|---|"]
    for p in params:
        if getattr(p, "hidden", False):
            continue
        readable(p)
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        names += f" {p.metavar}" if p.metavar else ""
        rows.append(f"| {names} | {_default(p)} | {_cell(p.help or '')} |")
    return rows


def _default(p) -> str:
    if p.is_flag and not p.default:
        return ""
    value = p.default
    if value is None and isinstance(p.show_default, str):  # a spec default, applied later
        value = p.show_default.strip("()")
    if value is None or value == () or callable(value):
        return ""
    return f"`{value}`"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|").strip()


def columns_page() -> str:
    from detcheck.store.schema import COLUMN_MEANINGS, RUN_SCHEMA, SCHEMA_VERSION

    out = [
        "# The run columns",
        "",
        f"One row per request attempt (schema version {SCHEMA_VERSION}). Written by",
        "`docs/generate.py` from the schema (`src/detcheck/store/schema.py`); how to read them:",
        "[Runs as a dataset](runs.md).",
        "",
        "```sh",
        'uv run python -c "import pyarrow.parquet as pq; '
        "print(pq.read_schema(next(__import__('pathlib').Path('recordings').rglob('*.parquet'))))\"",
        "```",
        "",
        "| Column | Type | What it holds |",
        "|---|---|---|",
    ]
    for field in RUN_SCHEMA:
        out.append(f"| `{field.name}` | `{kind(field.type)}` | {COLUMN_MEANINGS[field.name]} |")
    out += ["", "Read on: [Runs as a dataset](runs.md), [the manual's pages](README.md)."]
    return "\n".join(out) + "\n"


def kind(arrow_type) -> str:
    text = str(arrow_type)
    return re.sub(r"dictionary<values=(\w+), indices=int32, ordered=0>", r"\1 (dictionary)", text)


PAGES = {"options.md": options_page, "columns.md": columns_page}


def main() -> None:
    for name, page in PAGES.items():
        (DOCS / name).write_text(page())
        print(f"wrote {DOCS / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
