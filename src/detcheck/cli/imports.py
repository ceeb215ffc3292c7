"""`detcheck import`, as a Typer function over commands.imports (registered by cli.main)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detcheck.cli.options import AnswerRegex, AsJson, Debug, Quiet
from detcheck.cli.output import emit, notes


def _column(what: str):
    return Annotated[
        str | None, typer.Option(help=f"--format csv/jsonl: the column holding {what}.")
    ]


def import_responses(
    files: Annotated[list[Path], typer.Argument(help="The files to import (one prompt set).")],
    *,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory the runs are written under.")
    ] = Path("runs"),
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="openai (JSONL of chat.completion, text_completion or response objects, or "
            "{request, response}), batch (a Batch API output file), csv or jsonl (a table, one "
            "completion per row). Default: from the file's name and first line.",
        ),
    ] = None,
    batch_input: Annotated[
        Path | None,
        typer.Option(help="--format batch: the batch's input file (each line's request)."),
    ] = None,
    text: _column("the completion") = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="--format csv/jsonl: the column saying which prompt a row answers (rows with "
            "the same id are repeated calls of one prompt).",
        ),
    ] = None,
    prompt: _column("the prompt") = None,
    model: _column("the model that answered") = None,
    logprob: _column("the answer's logprob") = None,
    answer: _column("the answer parsed from the completion (TARa@N without --answer-regex)") = None,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Go on past lines that cannot be read, and count them."),
    ] = False,
    answer_regex: AnswerRegex = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Turn responses made elsewhere into runs: logged API objects, Batch API output, or a
    table of completions (one run per prompt; what the data lacks is null, never made up)."""
    from detcheck.commands.imports import import_command

    columns = {"text": text, "id": id_column, "prompt": prompt, "model": model,
               "logprob": logprob, "answer": answer}  # fmt: skip
    report = import_command(
        files, out, fmt, columns, batch_input=batch_input, skip_bad=skip_bad,
        answer_regex=answer_regex, log=notes(quiet),
    )  # fmt: skip
    extra = {k: report.pop(k) for k in ("run_paths", "imported")}
    emit(report, as_json, extra)
