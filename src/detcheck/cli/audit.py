"""`detcheck audit`, as a Typer function over commands.audit (registered by cli.main)."""

from __future__ import annotations

from typing import Annotated

import typer

from detcheck import spec
from detcheck.cli.options import AsJson, Debug, DryRun, KeyEnv, Quiet, Yes, key_env_of
from detcheck.cli.output import asker, err, notes, print_out, show_plan

# what an audit varies itself is not an option: concurrency is the batch it tries
AUDITED = (
    "model", "prompt", "base_url", "api", "seed", "no_seed", "n", "concurrency", "max_tokens",
    "top_logprobs", "timeout_s", "out", "max_cost", "max_attempts", "backoff_s", "max_backoff_s",
    "rpm", "resume",
)  # fmt: skip
HELP = {
    "n": "Calls per arm (each check compares two arms; arms shared between checks are sent once).",
    "concurrency": "The batch the batch check tries, and the in-flight total of the background "
    "checks (concurrency - 1 background streams beside one measured call).",
    "out": "Where the audit's directory goes: one directory per arm, one run per round, and "
    "_audit.json.",
    "resume": "Carry on an audit a kill or Ctrl-C left (its directory, OUT/AUDIT_ID), with its "
    "own checks and settings: finished runs are kept, a cut one is continued.",
    "max_tokens": "Tokens per answer of the whole-generation arms (seed, temperature_zero, "
    "logprobs_toggle); the first-token arms ask for one.",
}


def audit(
    given: dict,
    *,  # registered in cli.main: these are its command-line options
    require: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated checks that must hold: exit 1 if any is broken or was not "
            "decided (not tested, and why, on stderr), 0 if all hold, 2 for usage errors, 3 "
            "when the endpoint could not be measured (e.g. batch,seed).",
            rich_help_panel=spec.OUTPUT,
        ),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated checks to run (default: all).")
    ] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated checks not to run.")] = None,
    key_env: KeyEnv = "OPENAI_API_KEY",
    as_json: AsJson = False,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    debug: Debug = False,
) -> None:
    """Which known cause breaks determinism here: each check a control arm against a treatment.

    Checks: batch, mixed_load, shared_prefix, logprobs_toggle, top_logprobs, seed,
    temperature_zero, first_call. Each holds, is broken (beyond the control's own variation),
    or is not tested (and why); an arm stops once every verdict it serves is settled."""
    from detcheck.commands import FlipOptions
    from detcheck.commands.audit import audit_command, choose, required_unmet
    from detcheck.errors import UsageError
    from detcheck.render.audit import render

    if given.get("resume") and (only or skip):
        raise UsageError("--resume carries on the audit's own checks: it takes no --only/--skip")
    checks = choose(only, skip)
    required = choose(require, None) if require else []
    missing = [c for c in required if c not in checks]
    if missing and not given.get("resume"):  # a resumed audit's checks are its own: see below
        raise UsageError(f"--require {missing[0]}: that check is not run (see --only/--skip)")
    options = FlipOptions(
        **given,
        progress=not quiet,
        dry_run=dry_run,
        confirm=asker(yes),
        key_env=key_env_of(key_env),
    )
    result = audit_command(options, log=notes(quiet), checks=checks)
    if dry_run:
        return show_plan(result, as_json)
    print_out(render(result), result, as_json)
    unmet = required_unmet(result, required)
    if unmet:  # said even under -q: it is why the gate fails
        err(f"detcheck: --require not met: {'; '.join(unmet)}")
        raise typer.Exit(1)
