"""The `detcheck` command line: parse options, call one plain function, print. Nothing else.

Heavy imports (openai, pyarrow, numpy) happen inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from detcheck.errors import DetcheckError

app = typer.Typer(
    help="Measure how non-deterministic an LLM endpoint's token log-probabilities are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
AsJson = Annotated[
    bool,
    typer.Option("--json", help="Print exactly one JSON object on stdout; the rest on stderr."),
]
Thresholds = Annotated[
    list[float] | None,
    typer.Option(
        "--threshold",
        help="Cluster gap in percentage points; a new cluster starts where neighbouring distinct "
        "values differ by more. Repeat for several.",
        show_default="0.01",
    ),
]
LabelMass = Annotated[
    bool,
    typer.Option(
        "--label-mass",
        help="Analyse the summed probability of every top token that is a prefix of the label "
        "(He, Head, Heads ... for Heads) instead of one token.",
    ),
]
Space = Annotated[
    str,
    typer.Option(
        help="Cluster on 'pct' (threshold in percentage points) or 'logprob' (threshold in "
        "nats: for rare tokens, where percentage-point gaps say nothing).",
    ),
]
Model = Annotated[str | None, typer.Option(help="Model name.", show_default="gpt-4o-2024-08-06")]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        envvar="OPENAI_BASE_URL",
        help="OpenAI-compatible endpoint. The key is read from OPENAI_API_KEY only.",
        show_default="https://api.openai.com/v1",
    ),
]
Token = Annotated[
    str | None,
    typer.Option("--token", help="Analyse this token instead of the one the run measured."),
]


def echo(text: str) -> None:
    """Everything printed goes through here or `err`: control characters that slipped into
    server text (ESC, BEL, CR ...) are shown escaped, so nothing can drive the terminal."""
    from detcheck.record import printable

    typer.echo(printable(text, keep_lines=True))


def err(message: str) -> None:
    from detcheck.record import printable

    typer.echo(printable(message, keep_lines=True), err=True)


def warn(message: str) -> None:
    err(f"detcheck: warning: {message}")


def cli_errors(func=None, *, internal_exit: int = 1):
    """One line on stderr and the error's exit code; a traceback only with --debug.
    `internal_exit`: the code for an unexpected failure (compare keeps 1 for "drift")."""
    if func is None:
        return functools.partial(cli_errors, internal_exit=internal_exit)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug") or os.environ.get("DETCHECK_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except DetcheckError as exc:
            if debug:
                raise
            err(f"detcheck: error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err("detcheck: interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if debug:
                raise
            err(f"detcheck: internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
            raise typer.Exit(internal_exit) from None

    return wrapper


def emit(report: dict, as_json: bool, extra: dict | None = None) -> None:
    from detcheck.report import render_text

    text = render_text(report)
    if as_json:
        err(text)
        echo(json.dumps({**report, **(extra or {})}, indent=2))
    else:
        echo(text)


@app.command()
@cli_errors
def flip(
    n: Annotated[
        int | None,
        typer.Option("--n", help="Successful responses to collect.", show_default="1000"),
    ] = None,
    model: Model = None,
    prompt: Annotated[
        str | None,
        typer.Option(
            help="The user message.", show_default="Flip a coin. Return Heads or Tails only."
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated answers; the first is reported.", show_default="Heads,Tails"
        ),
    ] = None,
    target_token: Annotated[
        str | None,
        typer.Option(
            help="The token the first label arrives as (for models tiktoken does not know)."
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Sampling temperature (it does not change the logits).", show_default="0"
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.", show_default="42")] = None,
    no_seed: Annotated[
        bool,
        typer.Option(
            "--no-seed", help="Send no seed (for an endpoint that refuses one; probe tells)."
        ),
    ] = False,
    top_logprobs: Annotated[
        int | None, typer.Option(help="Top tokens per response, 0-20.", show_default="20")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Output tokens.", show_default="1")] = None,
    base_url: BaseUrl = None,
    api: Annotated[
        str | None,
        typer.Option(
            help="'chat' (/v1/chat/completions), 'completions' (the legacy /v1/completions, "
            "for base models) or 'responses' (/v1/responses; it takes no seed, and none is sent).",
            show_default="chat",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Requests in flight at once (a resumed run keeps its own unless given).",
            show_default="16",
        ),
    ] = None,
    rpm: Annotated[float | None, typer.Option(help="Cap on requests per minute.")] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            help="Attempts per call before the run stops. Retried: 408, 409, 429, 5xx, "
            "timeouts, dropped connections, bodies without logprobs; waits 0.5 s doubling to "
            "30 s with jitter, or the server's Retry-After (up to 120 s)."
        ),
    ] = 6,
    backoff_s: Annotated[
        float, typer.Option(help="First wait before a retry, doubling each time (with jitter).")
    ] = 0.5,
    max_backoff_s: Annotated[float, typer.Option(help="Longest wait between retries.")] = 30.0,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a whole request may take, connect to last byte (a server that drips "
            "its answer times out too)."
        ),
    ] = 60.0,
    out: Annotated[
        str,
        typer.Option(
            help="Directory the run is written under, or an object-store URI "
            "(s3://bucket/prefix, gs://...; pyarrow.fs options as a query string).",
        ),
    ] = "runs",
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Serve the responses of this stored run instead of calling an endpoint "
            "(no key, no network)."
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue this interrupted or crashed run (its directory, or its s3:// / gs:// "
            "URI) to its own N, with its own parameters. One process writes a run at a time.",
        ),
    ] = None,
    threshold: Thresholds = None,
    as_json: AsJson = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: Debug = False,
) -> None:
    """Send one single-token request N times, store every response, report distinct values."""
    from detcheck.commands import FlipOptions, flip_command

    options = FlipOptions(
        n=n,
        model=model,
        prompt=prompt,
        labels=labels,
        target_token=target_token,
        temperature=temperature,
        seed=seed,
        no_seed=no_seed,
        top_logprobs=top_logprobs,
        max_tokens=max_tokens,
        base_url=base_url,
        api=api,
        concurrency=concurrency,
        rpm=rpm,
        max_attempts=max_attempts,
        backoff_s=backoff_s,
        max_backoff_s=max_backoff_s,
        resume=resume,
        timeout_s=timeout,
        out=out,
        replay=replay,
        progress=not quiet,
    )
    report, run_path, outcome = flip_command(options, thresholds=threshold or [0.01], log=err)
    emit(report, as_json, {"run_path": str(run_path)})
    if outcome.interrupted:
        raise typer.Exit(130)


@app.command()
@cli_errors
def analyze(
    paths: Annotated[
        list[str],
        typer.Argument(help="Runs, run directories, directories of runs, or s3:// / gs:// URIs."),
    ],
    threshold: Thresholds = None,
    token: Token = None,
    label_mass: LabelMass = False,
    space: Space = "pct",
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """Report the distinct values, clusters and statistics of stored runs."""
    from detcheck.report import build_report
    from detcheck.store import read_runs

    runs = read_runs(paths, warn=warn)
    report = build_report(
        runs, threshold or [0.01], token=token, label_mass=label_mass, space=space
    )
    emit(report, as_json)


@app.command()
@cli_errors
def plot(
    paths: Annotated[
        list[str],
        typer.Argument(help="Runs, run directories, directories of runs, or s3:// / gs:// URIs."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image to write (.png, .svg, .pdf).")
    ],
    threshold: Thresholds = None,
    token: Token = None,
    debug: Debug = False,
) -> None:
    """Draw the distinct values (by fingerprint, clusters shaded) and the accumulation curve."""
    from detcheck.plot import plot_report
    from detcheck.report import build_report
    from detcheck.store import read_runs

    runs = read_runs(paths, warn=warn)
    report = build_report(runs, threshold or [0.01], token=token)
    echo(f"wrote {plot_report(report, output)}")


@app.command()
@cli_errors
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


@app.command()
@cli_errors
def run(
    experiment: Annotated[Path, typer.Argument(help="An experiment file (TOML).")],
    out: Annotated[
        str,
        typer.Option(
            help="Runs go under OUT/model=<model>/date=<YYYY-MM-DD>/ (a directory or URI)."
        ),
    ] = "runs",
    as_json: AsJson = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per measurement.")] = False,
    debug: Debug = False,
) -> None:
    """Run every measurement of an experiment file; one summary line each."""
    from detcheck.commands import run_experiment, summary_line

    summaries = run_experiment(experiment, out, log=err, progress=progress)
    if as_json:
        echo(json.dumps(summaries, indent=2))
    for s in summaries:
        (err if as_json else echo)(summary_line(s))
    if any("error" in s for s in summaries):
        raise typer.Exit(3)


@app.command()
@cli_errors(internal_exit=2)
def compare(
    baseline: Annotated[str, typer.Argument(help="Baseline runs (a run, directory or URI).")],
    candidate: Annotated[str, typer.Argument(help="Candidate runs (a run, directory or URI).")],
    threshold: Annotated[float, typer.Option(help="Cluster gap in percentage points.")] = 0.01,
    token: Token = None,
    fail_on: Annotated[
        str,
        typer.Option(
            help="Findings that fail (exit 1), comma-separated, from: clusters, shares, modal, "
            "fingerprints, flips, values.",
        ),
    ] = "clusters,shares,modal,fingerprints,flips",
    alpha: Annotated[float, typer.Option(help="Significance level of every test.")] = 0.001,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the markdown report to this file.")
    ] = None,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """Compare two sets of runs; exit 0 no drift, 1 drift, 2 error."""
    from detcheck.commands import compare_command

    text, data, drifted = compare_command(
        baseline, candidate, threshold, token, fail_on, alpha, markdown, warn
    )
    if as_json:
        err(text)
        echo(json.dumps(data, indent=2))
    else:
        echo(text)
    if drifted:
        raise typer.Exit(1)


@app.command()
@cli_errors
def history(
    paths: Annotated[
        list[str], typer.Argument(help="Directories of runs (or runs, or s3:// / gs:// URIs).")
    ],
    threshold: Annotated[float, typer.Option(help="Cluster gap in percentage points.")] = 0.01,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """One line per run: date, endpoint, model, fingerprints, n, distinct, clusters, modal."""
    from detcheck.history import history as history_lines
    from detcheck.history import render
    from detcheck.store import read_runs

    lines = history_lines(read_runs(paths, warn=warn), threshold)
    echo(json.dumps(lines, indent=2) if as_json else render(lines))


@app.command()
@cli_errors
def probe(
    model: Model = None,
    base_url: BaseUrl = None,
    api: Annotated[
        str | None,
        typer.Option(
            help="'chat', 'completions' or 'responses': the shape the main questions are asked "
            "in (the legacy completions API is always tried too).",
            show_default="chat",
        ),
    ] = None,
    no_seed: Annotated[bool, typer.Option("--no-seed", help="Ask without a seed.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds a whole request may take, connect to last byte.")
    ] = 60.0,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """Find out what an endpoint honours (top_logprobs, fingerprint, seed, temperature, legacy
    completions) with a handful of requests."""
    from detcheck.commands import probe_command

    result = probe_command(model, base_url, timeout, api, no_seed)
    from detcheck.probe import render

    if as_json:
        err(render(result))
        echo(json.dumps(result, indent=2))
    else:
        echo(render(result))


@app.command()
@cli_errors
def sweep(
    concurrency: Annotated[
        str, typer.Option(help="Comma-separated concurrency levels, one run each.")
    ] = "1,8,64",
    n: Annotated[int, typer.Option("--n", help="Successful responses per level.")] = 500,
    model: Model = None,
    prompt: Annotated[str | None, typer.Option(help="The user message.")] = None,
    target_token: Annotated[
        str | None, typer.Option(help="The token the first label arrives as.")
    ] = None,
    base_url: BaseUrl = None,
    api: Annotated[
        str | None,
        typer.Option(help="'chat', 'completions' or 'responses'.", show_default="chat"),
    ] = None,
    replay: Annotated[Path | None, typer.Option(help="Replay a stored run instead.")] = None,
    out: Annotated[str, typer.Option(help="Directory (or URI) the runs go under.")] = "runs",
    threshold: Thresholds = None,
    as_json: AsJson = False,
    debug: Debug = False,
) -> None:
    """The same measurement at several concurrency levels: a batch-variance probe for servers
    you run yourself (vLLM, SGLang, llama.cpp)."""
    from tabulate import tabulate

    from detcheck.commands import FlipOptions, sweep_command

    try:
        levels = [int(x) for x in concurrency.split(",") if x.strip()]
    except ValueError:
        raise DetcheckError(
            f"--concurrency takes integers like 1,8,64, got {concurrency!r}"
        ) from None
    options = FlipOptions(
        n=n,
        model=model,
        prompt=prompt,
        target_token=target_token,
        base_url=base_url,
        api=api,
        replay=replay,
        out=out,
        progress=False,
    )
    rows = sweep_command(options, levels, threshold or [0.01], log=err)
    table = tabulate(
        [
            [
                r["concurrency"],
                f"{r['n']:,}",
                r["distinct"],
                r["clusters"],
                f"{r['modal_share']:.1%}" if r["modal_share"] is not None else "",
                r["run_path"],
            ]
            for r in rows
        ],
        headers=["concurrency", "n", "distinct", "clusters", "modal share", "run"],
    )
    if as_json:
        err(table)
        echo(json.dumps(rows, indent=2))
    else:
        echo(table)


def main() -> None:
    app(prog_name="detcheck")


if __name__ == "__main__":
    sys.exit(main())
