"""The commands that read stored runs, as Typer functions registered by cli.main: analyze,
plot, report (and --open), show, history. Each reads runs/ when given no path, as flip -o
writes there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detcheck import spec
from detcheck.cli.options import (
    AllowMixed,
    AnswerRegex,
    AsJson,
    Debug,
    LabelMass,
    Runs,
    Space,
    Token,
    flag,
    runs_or_default,
)
from detcheck.cli.output import echo, emit, warn


def analyze(
    paths: Runs() = None,
    *,
    given: dict = None,
    token: Token = None,
    label_mass: LabelMass = False,
    space: Space = "pct",
    answer_regex: AnswerRegex = None,
    allow_mixed: AllowMixed = False,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """Report the distinct values, clusters and statistics of stored runs.

    For generate runs: the distinct completions and where they part."""
    from detcheck.analysis.report import report_of
    from detcheck.store import read_runs

    runs = read_runs(runs_or_default(paths, "analyse", "analyze"), warn=warn)
    thresholds = given["thresholds"] or spec.default("thresholds")
    report = report_of(
        runs,
        thresholds,
        token=token,
        label_mass=label_mass,
        space=space,
        answer_regex=answer_regex,
        allow_mixed=allow_mixed,
    )
    emit(report, as_json)


def plot(
    paths: Runs() = None,
    output: Annotated[
        Path,
        typer.Option("--out", "-o", "--output", help="Image to write (.png, .svg, .pdf, .jpg)."),
    ] = Path("plot.png"),
    *,
    given: dict = None,
    token: Token = None,
    allow_mixed: AllowMixed = False,
    dpi: Annotated[int, typer.Option(help="Resolution of a .png or .jpg (dots per inch).")] = 150,
    title: Annotated[
        str | None,
        typer.Option(help="The figure's title (default: model, endpoint, date, run, n)."),
    ] = None,
    debug: Debug = False,
) -> None:
    """Draw the distinct values (by fingerprint, clusters shaded) and the accumulation curve."""
    from detcheck.analysis.report import report_of
    from detcheck.render.plot import plot_report
    from detcheck.store import read_runs

    runs = read_runs(runs_or_default(paths, "plot", "plot"), warn=warn)
    thresholds = given["thresholds"] or spec.default("thresholds")
    report = report_of(runs, thresholds, token=token, allow_mixed=allow_mixed)
    echo(f"wrote {plot_report(report, output, dpi=dpi, title=title)}")


def report_command(
    paths: Runs(
        "Runs, run directories, directories of runs, s3:// / gs:// URIs, or an audit's directory"
    ) = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="The page to write (.html).")] = Path(
        "report.html"
    ),
    *,
    given: dict = None,
    token: Token = None,
    space: Space = "pct",
    answer_regex: AnswerRegex = None,
    allow_mixed: AllowMixed = False,
    title: Annotated[
        str | None, typer.Option(help="The page's title (default: detcheck report).")
    ] = None,
    open_page: flag("--open", "Open the page in the web browser once it is written.") = False,
    debug: Debug = False,
) -> None:
    """Write one self-contained HTML page to share what stored runs show.

    What was measured, the headline, the figure, the values, the analysis in words, the JSON."""
    from detcheck.analysis.report import report_of
    from detcheck.commands.report import write_audit_page, write_report_page, write_verify_page
    from detcheck.store import read_runs

    paths = runs_or_default(paths, "report on", "report")
    for state, write in (("_audit.json", write_audit_page), ("_verify.json", write_verify_page)):
        if len(paths) == 1 and (Path(paths[0]) / state).is_file():  # an audit's, a verification's
            echo(f"wrote {write(Path(paths[0]), output, title)}")
            return open_in_browser(output) if open_page else None
    runs = read_runs(paths, warn=warn)
    thresholds = given["thresholds"] or spec.default("thresholds")
    report = report_of(
        runs,
        thresholds,
        token=token,
        space=space,
        answer_regex=answer_regex,
        allow_mixed=allow_mixed,
    )
    echo(f"wrote {write_report_page(runs, report, output, title)}")
    if open_page:
        open_in_browser(output)


def show(
    path: Annotated[Path, typer.Argument(help="A run (directory or Parquet file).")],
    row: Annotated[
        int, typer.Option(help="Which successful response, 0 = the first received.")
    ] = 0,
    debug: Debug = False,
) -> None:
    """Print one response's top-logprobs table and the probability it covers."""
    from detcheck.commands import show_command

    echo(show_command(path, row))


def history(
    paths: Runs("Directories of runs (or runs, or s3:// / gs:// URIs)") = None,
    *,
    given: dict = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Only runs of this model (a name, or a pattern: 'gpt-4o*')."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only runs started since: a date (2026-01-31), a date and time "
            "(2026-01-31T12:00, UTC unless it says), or a time ago (36h, 7d, 2w)."
        ),
    ] = None,
    last: Annotated[
        int | None, typer.Option("-n", "--last", help="Only the last N runs (newest last).")
    ] = None,
    as_csv: flag(
        "--csv", "Print CSV, one row per run (for a spreadsheet or pandas).", spec.OUTPUT
    ) = False,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """One line per run: date, endpoint, model, fingerprints, n, distinct, clusters, modal."""
    from detcheck.commands.history import history_command
    from detcheck.render.history import render, to_csv

    if as_csv and as_json:
        from detcheck.errors import UsageError

        raise UsageError("give --csv or --json, not both")
    thresholds = given["thresholds"] or spec.default("thresholds")
    paths = runs_or_default(paths, "list", "history")
    lines = history_command(paths, thresholds, model=model, since=since, last=last, warn=warn)
    if as_csv:
        return typer.echo(to_csv(lines), nl=False)  # server text stays as sent: it is quoted
    echo(json.dumps({"runs": lines}, indent=2) if as_json else render(lines))


def open_in_browser(page: Path) -> None:
    """The page in the user's web browser ($BROWSER, else the system's); say so if none."""
    import webbrowser

    if not webbrowser.open(page.resolve().as_uri()):
        warn(f"no web browser found to open {page}: open it yourself")
