"""`detcheck run` and `detcheck compare`: the commands of a scheduled job (an experiment file's
measurements, then a baseline against a candidate), registered by cli.main."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detcheck import spec
from detcheck.cli.options import AsJson, Debug, Quiet, Token, flag
from detcheck.cli.output import echo, err, print_out, warn


def run(
    experiment: Annotated[Path, typer.Argument(help="An experiment file (TOML).")],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Runs go under OUT/model=<model>/date=<YYYY-MM-DD>/ (a directory or URI).",
        ),
    ] = "runs",
    as_json: AsJson = False,
    quiet: Quiet = False,
    progress: Annotated[
        bool, typer.Option(hidden=True, help="Progress is shown by default now; kept for old jobs.")
    ] = True,
    debug: Debug = False,
) -> None:
    """Run every measurement of an experiment file; one summary line each.

    Exit 3 if a measurement failed, 1 if a verification (a measurement with `reference`)
    found the endpoint differs from its reference, else 0."""
    from detcheck.commands import run_experiment, summary_line

    summaries = run_experiment(experiment, out, log=err, progress=progress and not quiet)
    if as_json:
        failed = sum("error" in s for s in summaries)
        echo(json.dumps({"measurements": summaries, "failed": failed}, indent=2))
    for s in summaries:
        (err if as_json else echo)(summary_line(s))
    if any("error" in s for s in summaries):
        raise typer.Exit(3)
    if any(s.get("verdict") == "differs" for s in summaries):  # a verification failed
        raise typer.Exit(1)


def compare(
    baseline: Annotated[str, typer.Argument(help="Baseline runs (a run, directory or URI).")],
    candidate: Annotated[str, typer.Argument(help="Candidate runs (a run, directory or URI).")],
    given: dict,
    *,  # registered in cli.main: these are its command-line options
    token: Token = None,
    fail_on: Annotated[
        str,
        typer.Option(
            help="Findings that fail (exit 1), comma-separated, from: clusters, shares, modal, "
            "fingerprints, flips, values.",
        ),
    ] = "clusters,shares,modal,fingerprints,flips",
    alpha: Annotated[float, typer.Option(help="Significance level of every test.")] = 0.001,
    allow_setup_change: flag(
        "--allow-setup-change",
        "Compare runs of different setups (model, prompt, labels, temperature, top_logprobs, "
        "API); refused by default, naming what differs.",
    ) = False,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the markdown report to this file.")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(help="Also write the report as one self-contained HTML page."),
    ] = None,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """Compare two sets of runs; exit 0 no drift, 1 drift, 2 error."""
    from detcheck.commands import compare_command

    thresholds = given["thresholds"] or spec.default("thresholds")
    text, data, drifted = compare_command(
        baseline,
        candidate,
        thresholds=thresholds,
        token=token,
        fail_on=fail_on,
        alpha=alpha,
        markdown=markdown,
        warn=warn,
        allow_setup_change=allow_setup_change,
        html=html,
    )
    print_out(text, data, as_json)
    if drifted:
        raise typer.Exit(1)
