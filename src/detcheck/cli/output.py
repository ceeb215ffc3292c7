"""What the commands print and how they fail: every line through `echo`/`err` (server text
escaped), detcheck's errors as exit codes (and a JSON object with --json), the plan of a dry run."""

from __future__ import annotations

import functools
import json
import os
import sys

import typer

from detcheck.errors import DetcheckError


def echo(text: str) -> None:
    """Everything printed goes through here or `err`: control characters that slipped into
    server text (ESC, BEL, CR ...) are shown escaped, so nothing can drive the terminal."""
    from detcheck.text import printable

    typer.echo(printable(text, keep_lines=True))


def err(message: str) -> None:
    from detcheck.text import printable

    typer.echo(printable(message, keep_lines=True), err=True)


def warn(message: str) -> None:
    err(f"detcheck: warning: {message}")


# what -q keeps: a warning, the answer to a Ctrl-C, and how to carry on a stopped run
LOUD = ("warning:", "detcheck: warning:", "stopping:", "kept ")


def notes(quiet: bool = False):
    """Where a command's notes go: stderr, each line said once (an audit's forty arms share one
    tokenizer note); under -q only what LOUD begins."""
    said: set[str] = set()

    def log(message: str) -> None:
        if (quiet and not message.startswith(LOUD)) or message in said:
            return
        said.add(message)
        err(message)

    return log


def cli_errors(func=None, *, internal_exit: int = 1):
    """One line on stderr and the error's exit code; a traceback only with --debug.
    `internal_exit`: the code for an unexpected failure (compare keeps 1 for "drift")."""
    if func is None:
        return functools.partial(cli_errors, internal_exit=internal_exit)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug") or os.environ.get("DETCHECK_DEBUG") == "1"
        as_json = kwargs.get("as_json", False)
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except DetcheckError as exc:
            if debug:
                raise
            fail(f"error: {exc}", exc.exit_code, as_json)
        except KeyboardInterrupt:
            fail("interrupted", 130, as_json)
        except Exception as exc:
            if debug:
                raise
            message = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)"
            fail(message, internal_exit, as_json)

    return wrapper


def fail(message: str, exit_code: int, as_json: bool = False):
    """Say why on stderr and exit; under --json the same as one object on stdout too, so a
    pipe into jq never meets an empty stdout."""
    err(f"detcheck: {message}")
    if as_json:
        from detcheck.text import printable

        reason = message.removeprefix("error: ")  # its own lines kept (a resume hint's)
        reason = printable(reason, keep_lines=True)
        typer.echo(json.dumps({"error": reason, "exit_code": exit_code}))
    raise typer.Exit(exit_code) from None


def asker(yes: bool):
    """How a run asks before spending much: a yes/no question in a terminal, else nobody is
    asked (a scheduled job, a pipe) and --max-cost is the limit."""
    if yes or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    return lambda question: typer.confirm(question, default=False, err=True)


def show_plan(plan: dict, as_json: bool) -> None:
    from detcheck.commands.costs import fmt_usd
    from detcheck.render.table import wrap

    cost = plan["estimated_cost_usd"]
    prompt = plan["prompt_tokens_per_request"]
    background = plan.get("background_requests") or 0
    requests = f"{plan['requests']:,} requests"
    if background:
        requests += f" ({plan['measured_requests']:,} measured + at most {background:,} background)"
    where = f"{plan['model']} at {plan['endpoint']}"
    if plan.get("reference_endpoint"):  # verify: both sides
        where = (f"{where} (the candidate) and {plan['reference_model']} at "
                 f"{plan['reference_endpoint']} (the reference), half each")  # fmt: skip
    lines = [
        f"dry run: nothing was sent. {requests} to {where} ({plan['api']} API)",
        "tokens per request: "
        + (f"{prompt} prompt + " if prompt is not None else "prompt unknown + ")
        + f"up to {plan['completion_tokens_per_request']} completion",
        "estimated cost: "
        + (
            f"up to {fmt_usd(cost)} at "
            + (
                "Batch API prices (half the list price)"
                if plan.get("via") == "batch"
                else "list prices"
            )
            if cost is not None
            else "no price known"
        ),
    ]
    print_out("\n".join(wrap(line) for line in lines), plan, as_json)


def emit(report: dict, as_json: bool, extra: dict | None = None) -> None:
    from detcheck.render.text import render_text

    print_out(render_text(report), {**report, **(extra or {})}, as_json)


def print_out(text: str, data: dict, as_json: bool) -> None:
    """The human text on stdout; under --json the text on stderr and `data` as the one object
    on stdout."""
    if as_json:
        err(text)
        echo(json.dumps(data, indent=2))
    else:
        echo(text)
