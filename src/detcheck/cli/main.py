"""The commands of `detcheck`, each a Typer function over one plain function of
detcheck.commands; the app and `main`, the console script."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from detcheck import spec
from detcheck.cli import reading
from detcheck.cli.help import ReadableCommand, ReadableGroup
from detcheck.cli.options import (
    AnswerRegex,
    AsJson,
    Debug,
    DryRun,
    KeyEnv,
    Quiet,
    Token,
    Yes,
    flag,
    key_env_of,
    spec_options,
)
from detcheck.cli.output import (
    asker,
    cli_errors,
    echo,
    emit,
    err,
    notes,
    print_out,
    show_plan,
    warn,
)

app = typer.Typer(
    cls=ReadableGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


MEASUREMENT = tuple(name for name in spec.PARAMS if name != "thresholds")


@app.command(cls=ReadableCommand)
@cli_errors
@spec_options(*MEASUREMENT, "thresholds")
def flip(
    given: dict,
    key_env: KeyEnv = "OPENAI_API_KEY",
    as_json: AsJson = False,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    debug: Debug = False,
) -> None:
    """Send one single-token request N times, store every response, report distinct values."""
    from detcheck.commands import FlipOptions, flip_command

    options = FlipOptions(
        **given,
        progress=not quiet,
        dry_run=dry_run,
        confirm=asker(yes),
        key_env=key_env_of(key_env),
    )
    report, run_path, outcome = flip_command(options, log=notes(quiet))
    if run_path is None:
        return show_plan(report, as_json)
    emit(report, as_json, {"run_path": str(run_path)})
    if outcome.interrupted:
        raise typer.Exit(130)


@app.command(cls=ReadableCommand)
@cli_errors
@spec_options(*(n for n in MEASUREMENT if n not in ("labels", "target_token")), kind="generate")
def generate(
    given: dict,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help='A JSONL file of prompts ({"id": ..., "prompt": ...} per line): each is '
            "sent N times, as its own run; the report adds TARr@N (and TARa@N).",
            rich_help_panel=spec.REQUEST,
        ),
    ] = None,
    answer_regex: AnswerRegex = None,
    key_env: KeyEnv = "OPENAI_API_KEY",
    as_json: AsJson = False,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    debug: Debug = False,
) -> None:
    """Send the same request N times, whole answers: how many differ, and where they part.

    The report says why they part: the near-tie at the split, and the drift before it."""
    from detcheck.commands import FlipOptions, generate_command

    options = FlipOptions(
        **given,
        progress=not quiet,
        kind="generate",
        answer_regex=answer_regex,
        dry_run=dry_run,
        confirm=asker(yes),
        key_env=key_env_of(key_env),
    )
    report, run_paths, interrupted = generate_command(options, prompts, log=notes(quiet))
    if dry_run:
        return show_plan(report, as_json)
    extra = {"run_path": str(run_paths[0])} if len(run_paths) == 1 else {}
    emit(report, as_json, {**extra, "run_paths": [str(p) for p in run_paths]})
    if interrupted:
        raise typer.Exit(130)


# the commands that read stored runs (detcheck.cli.reading), in --help's order
app.command(cls=ReadableCommand)(cli_errors(spec_options("thresholds")(reading.analyze)))
app.command(cls=ReadableCommand)(cli_errors(spec_options("thresholds")(reading.plot)))
app.command("report", cls=ReadableCommand)(
    cli_errors(spec_options("thresholds")(reading.report_command))
)
app.command(cls=ReadableCommand)(cli_errors(reading.show))


@app.command(cls=ReadableCommand)
@cli_errors
def run(
    experiment: Annotated[Path, typer.Argument(help="An experiment file (TOML).")],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Runs go under OUT/model=MODEL/date=YYYY-MM-DD/ (a directory or URI).",
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

    summaries = run_experiment(experiment, out, log=notes(quiet), progress=progress and not quiet)
    if as_json:
        failed = sum("error" in s for s in summaries)
        echo(json.dumps({"measurements": summaries, "failed": failed}, indent=2))
    for s in summaries:
        (err if as_json else echo)(summary_line(s))
    if any("error" in s for s in summaries):
        raise typer.Exit(3)
    if any(s.get("verdict") == "differs" for s in summaries):  # a verification failed
        raise typer.Exit(1)


@app.command(cls=ReadableCommand)
@cli_errors(internal_exit=2)
@spec_options("thresholds")
def compare(
    baseline: Annotated[str, typer.Argument(help="Baseline runs (a run, directory or URI).")],
    candidate: Annotated[str, typer.Argument(help="Candidate runs (a run, directory or URI).")],
    given: dict,
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


app.command(cls=ReadableCommand)(cli_errors(spec_options("thresholds")(reading.history)))


PROBED = ("model", "prompt", "labels", "target_token", "seed", "no_seed", "top_logprobs")
PROBED += ("api", "base_url", "timeout_s", "via", "batch_poll_s")


@app.command(cls=ReadableCommand)
@cli_errors
@spec_options(
    *PROBED,
    help={
        "api": "'chat', 'completions' or 'responses': the shape the main questions are asked "
        "in (the legacy completions API is always tried too)."
    },
)
def probe(
    given: dict,
    key_env: KeyEnv = "OPENAI_API_KEY",
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """Find out what an endpoint honours, with a handful of requests.

    top_logprobs, fingerprint, seed, temperature, legacy completions; --via batch: what a
    batch's output carries."""
    from detcheck.commands import FlipOptions, probe_command
    from detcheck.send.probe import render, usable

    result = probe_command(FlipOptions(**given, key_env=key_env_of(key_env)), log=notes())
    if usable(result):
        return print_out(render(result), result, as_json)
    from detcheck.commands.endpoints import version_hint

    # nothing a measurement could use came back: the table says what was (not) seen, exit 3
    hint = version_hint(result["endpoint"], result.get("status"))
    why = (result.get("error") or "the answer carries no logprobs") + hint
    result.update(error=why, exit_code=3)
    print_out(render(result), result, as_json)
    err(f"detcheck: error: {why}" + ("" if hint else ": nothing to measure there"))
    raise typer.Exit(3)


from detcheck.cli import audit as _audit  # noqa: E402
from detcheck.cli import imports as _imports  # noqa: E402

app.command("import", cls=ReadableCommand)(cli_errors(_imports.import_responses))

app.command("audit", cls=ReadableCommand)(
    cli_errors(spec_options(*_audit.AUDITED, help=_audit.HELP, kind="audit")(_audit.audit))
)

from detcheck.cli import verify as _verify  # noqa: E402

app.command("verify", cls=ReadableCommand)(
    cli_errors(spec_options(*_verify.VERIFIED, help=_verify.HELP, kind="verify")(_verify.verify))
)


SWEPT = tuple(name for name in MEASUREMENT if name not in ("concurrency", "resume"))


@app.command(cls=ReadableCommand)
@cli_errors
@spec_options(*SWEPT, "thresholds")
def sweep(
    given: dict,
    concurrency: Annotated[
        str,
        typer.Option(
            help="Comma-separated concurrency levels, one run each.",
            rich_help_panel=spec.RUN,
        ),
    ] = "1,8,64",
    background_loads: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated background loads (see --background-load): every "
            "concurrency level is run at each.",
            rich_help_panel=spec.RUN,
        ),
    ] = None,
    key_env: KeyEnv = "OPENAI_API_KEY",
    adaptive: flag(
        "--adaptive",
        "Let 429s halve the requests in flight, as flip does (by default a sweep holds each "
        "level, and a level that met 429s is marked as not held).",
        spec.RUN,
    ) = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    debug: Debug = False,
) -> None:
    """The same measurement at several concurrency levels (and background loads).

    A batch-variance probe for servers you run yourself (vLLM, SGLang, llama.cpp)."""
    from detcheck.commands import FlipOptions, sweep_command
    from detcheck.commands.sweep import parse_levels
    from detcheck.render.table import fit

    levels = parse_levels(concurrency, "--concurrency", 1)
    loads = parse_levels(background_loads, "--background-loads", 0) if background_loads else None
    result = sweep_command(
        FlipOptions(
            **given,
            progress=not quiet,
            key_env=key_env_of(key_env),
            dry_run=dry_run,
            confirm=asker(yes),
        ),  # fmt: skip
        levels,
        log=notes(quiet),
        loads=loads,
        adaptive=adaptive,
    )
    if dry_run:
        return show_plan(result, as_json)
    rows = result["levels"]
    loaded = any(r["background_load"] for r in rows)
    table = fit(
        [
            [
                r["concurrency"],
                *([r["background_load"]] if loaded else []),
                f"{r['n']:,}",
                r["distinct"],
                r["clusters"],
                f"{r['modal_share']:.1%}" if r["modal_share"] is not None else "",
                f"{r['mean_in_flight']:.2f}" if r["mean_in_flight"] is not None else "",
                "yes" if r["held"] else f"no ({r['throttled']:,} x 429)",
                Path(str(r["run_path"])).name,
            ]
            for r in rows
        ],
        ["concurrency", *(["background"] if loaded else []), "n", "distinct", "clusters",
         "modal", "in flight", "held", "run"],
        wrap={5 + loaded: 6, 7 + loaded: 12},
    )  # fmt: skip
    if rows:
        table += f"\nthe runs are under:\n{Path(str(rows[0]['run_path'])).parent}"
    if result["test"]:
        table += f"\nacross levels: {result['test']['verdict']}"
    print_out(table, result, as_json)


def _print_version(value: bool) -> None:
    if value:
        from detcheck import __version__

        echo(f"detcheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print detcheck's version and exit.",
            metavar="",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Measure how non-deterministic an LLM endpoint's token log-probabilities are.

    \b
    Start here, no key (GPT-4o's coin flip, rebuilt from published figures):
      detcheck flip --n 10000 --replay gpt-4o-coinflip
    Then your endpoint (OpenAI-compatible; its key in OPENAI_API_KEY):
      detcheck flip --base-url http://localhost:8000/v1 --model NAME
    """


def main() -> None:
    if "--json" not in sys.argv[1:]:
        app(prog_name="detcheck")
        return
    # --json: a usage error (an unknown option, a bad value) is a JSON object on stdout too
    try:
        code = app(prog_name="detcheck", standalone_mode=False)
    except typer.Abort:
        err("detcheck: interrupted")
        code = 130
    except typer.exceptions.TyperException as exc:  # click's usage errors
        exc.show()
        typer.echo(json.dumps({"error": exc.format_message(), "exit_code": exc.exit_code}))
        code = exc.exit_code
    except KeyboardInterrupt:
        err("detcheck: interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
