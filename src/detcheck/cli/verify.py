"""`detcheck verify`, as a Typer function over commands.verify (registered by cli.main)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detcheck import spec
from detcheck.cli.options import AsJson, Debug, DryRun, KeyEnv, Quiet, Yes, key_env_of
from detcheck.cli.output import asker, notes, print_out, show_plan

# what verify sends is fixed (one token, temperature 0): these are how, where and how much
VERIFIED = (
    "model", "base_url", "api", "seed", "top_logprobs", "n", "concurrency", "timeout_s", "out",
    "max_cost", "max_attempts", "backoff_s", "max_backoff_s", "rpm",
)  # fmt: skip
HELP = {
    "model": "The model the candidate endpoint is asked for (the reference's too, unless "
    "--reference-model).",
    "base_url": "The candidate endpoint: the one being verified.",
    "n": "Calls per prompt on each side, over 3 rounds (a third alone, the rest batched).",
    "concurrency": "Requests in flight at once when a side answers batched (every prompt sent "
    "together, at most this many at a time).",
    "out": "Where the verification's directory goes: reference/ and candidate/ (ordinary runs, "
    "one per prompt, condition and round) and _verify.json.",
    "rpm": "Cap on requests per minute, on each side.",
}


def verify(
    given: dict,
    *,  # registered in cli.main: these are its command-line options
    reference: Annotated[
        str,
        typer.Option(
            help="The reference: its base URL (http://...), or the directory an earlier "
            "`verify -o DIR` wrote (its reference side is reused: nothing is sent to it).",
            rich_help_panel=spec.REQUEST,
        ),
    ],
    reference_model: Annotated[
        str | None,
        typer.Option(
            help="The model the reference is asked for (default: --model).",
            rich_help_panel=spec.REQUEST,
        ),  # fmt: skip
    ] = None,
    reference_key_env: Annotated[
        str | None,
        typer.Option(
            help="The environment variable holding the reference's key (default: the "
            "candidate's, OPENAI_API_KEY).",
            rich_help_panel=spec.REQUEST,
        ),  # fmt: skip
    ] = None,
    key_env: KeyEnv = "OPENAI_API_KEY",
    prompts: Annotated[
        Path | None,
        typer.Option(
            help='A JSONL file of prompts ({"id": ..., "prompt": ...} per line) '
            "instead of the built-in 24.",
            rich_help_panel=spec.REQUEST,
        ),  # fmt: skip
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            help="The chance of calling the reference's own model `differs` (the "
            "test's level, over all rounds).",
            rich_help_panel=spec.OUTPUT,
        ),  # fmt: skip
    ] = 0.01,
    as_json: AsJson = False,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    debug: Debug = False,
) -> None:
    """Is this endpoint serving the reference's model? Both answer the same prompts, alone and
    batched; the reference's own variation is what a difference must exceed.

    Verdict: identical (every answer is one the reference gave), consistent (no more change
    than the reference shows against itself), or differs. Exit 0, 0, 1; 2 for usage errors, 3
    when an endpoint cannot be measured."""
    from detcheck.commands import FlipOptions
    from detcheck.commands.verify import exit_code, verify_command
    from detcheck.render.verify import render

    options = FlipOptions(**given, key_env=key_env_of(key_env), progress=not quiet,
                          dry_run=dry_run, confirm=asker(yes))  # fmt: skip
    result = verify_command(
        options, notes(quiet), reference=reference, reference_model=reference_model,
        reference_key_env=key_env_of(reference_key_env) if reference_key_env else None,
        prompts_path=prompts, alpha=alpha,
    )  # fmt: skip
    if dry_run:
        return show_plan(result, as_json)
    print_out(render(result), result, as_json)
    raise typer.Exit(exit_code(result))
