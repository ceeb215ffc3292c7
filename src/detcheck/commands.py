"""What each CLI command does, as plain functions the CLI calls (and tests can call too)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from detcheck.config import DEFAULT_BASE_URL, FlipConfig, parse_labels
from detcheck.errors import DataError, UsageError

Log = Callable[[str], None]


@dataclass
class FlipOptions:
    n: int = 1000
    model: str | None = None
    prompt: str | None = None
    labels: str | None = None
    target_token: str | None = None
    temperature: float | None = None
    seed: int | None = None
    top_logprobs: int | None = None
    max_tokens: int | None = None
    base_url: str | None = None
    concurrency: int = 16
    rpm: float | None = None
    max_attempts: int = 6
    timeout_s: float = 60.0
    out: Path = Path("runs")
    replay: Path | None = None
    progress: bool = True


def resolve_config(options: FlipOptions, recorded: dict | None = None):
    """Options given on the command line, else the recorded run's, else the publication's."""
    from detcheck.tokens import resolve_targets

    base = FlipConfig.from_dict(recorded) if recorded else FlipConfig()
    given = {
        "model": options.model,
        "prompt": options.prompt,
        "temperature": options.temperature,
        "seed": options.seed,
        "top_logprobs": options.top_logprobs,
        "max_tokens": options.max_tokens,
    }
    config = replace(base, **{k: v for k, v in given.items() if v is not None})
    if options.labels is not None:
        config = replace(config, labels=parse_labels(options.labels))
    config.validate()
    recorded_target = (recorded or {}).get("targets", {}).get(config.labels[0])
    if options.target_token:
        targets = resolve_targets(config.model, config.labels, options.target_token)
    elif recorded_target and config.model == recorded.get("model"):
        targets = resolve_targets(
            config.model, config.labels, recorded_target, "as the recorded run measured it"
        )
    else:
        targets = resolve_targets(config.model, config.labels)
    return replace(config, targets={t.label: t.token for t in targets}), targets


def flip_command(options: FlipOptions, thresholds: Sequence[float], log: Log):
    """Run a measurement; return (report, run path, outcome)."""
    from detcheck.measure import open_run, replay_source, run_meta
    from detcheck.progress import ProgressBar
    from detcheck.report import ANALYSIS_COLUMNS, build_report, check_thresholds
    from detcheck.request import Endpoint, Flip, RetryPolicy, run_flip
    from detcheck.store import read_run, utc_now

    if options.n < 1:
        raise UsageError(f"--n must be at least 1, got {options.n}")
    if options.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {options.concurrency}")
    if options.rpm is not None and options.rpm <= 0:
        raise UsageError(f"--rpm must be positive, got {options.rpm}")
    if options.max_attempts < 1:
        raise UsageError(f"--max-attempts must be at least 1, got {options.max_attempts}")
    check_thresholds(thresholds)

    recorded = None
    if options.replay is not None:
        from detcheck.transport import ReplayTransport

        bodies, recorded_meta = replay_source(options.replay)
        recorded = recorded_meta.get("config")
        endpoint = Endpoint("http://replay.invalid/v1", "replay", ReplayTransport(bodies))
        endpoint_name = f"replay:{options.replay}"
        if options.n > len(bodies):
            log(f"note: the recording has {len(bodies):,} responses; replay wraps around")
    else:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise UsageError(
                "OPENAI_API_KEY is not set. Export it, or try the offline demo: "
                "detcheck flip --replay recordings/gpt-4o-2024-08-06-coinflip-10000"
            )
        base_url = options.base_url or DEFAULT_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url must start with http:// or https://, got {base_url!r}")
        endpoint = Endpoint(base_url, key, timeout_s=options.timeout_s)
        endpoint_name = base_url
    config, targets = resolve_config(options, recorded)
    policy = RetryPolicy(max_attempts=options.max_attempts)
    meta = run_meta(
        config,
        targets,
        n=options.n,
        endpoint=endpoint_name,
        concurrency=options.concurrency,
        rpm=options.rpm,
        policy=policy,
        replay_of=str(options.replay) if options.replay is not None else None,
    )
    for t in targets:
        log(f"{t.label!r} is measured as token {t.token!r} ({t.how})")
    log(cost_line(config, options.n, replay=options.replay is not None))
    writer = open_run(options.out, meta)
    log(f"writing {writer.run_dir}")
    flip = Flip(
        config,
        endpoint,
        writer,
        n=options.n,
        concurrency=options.concurrency,
        rpm=options.rpm,
        policy=policy,
        on_notice=log,
    )
    status = "failed"
    try:
        with ProgressBar(options.n, enabled=options.progress) as bar:
            flip.on_progress = bar.update
            outcome = run_flip(flip)
        status = "interrupted" if outcome.interrupted else "complete"
    finally:
        o = flip.outcome
        writer.close(
            status=status,
            ended_at=utc_now().isoformat(),
            successes=o.successes,
            attempts=o.attempts,
        )
    log(usage_line(config, outcome, replay=options.replay is not None))
    if outcome.short_top_logprobs:
        log(
            f"warning: {outcome.short_top_logprobs:,} response(s) carried fewer than the "
            f"{config.top_logprobs} top logprobs asked for"
        )
    run = read_run(writer.run_dir, ANALYSIS_COLUMNS)
    return build_report([run], thresholds), writer.run_dir, outcome


def cost_line(config: FlipConfig, n: int, replay: bool) -> str:
    from detcheck.tokens import count_prompt_tokens, estimate_cost_usd

    if replay:
        return f"replaying {n:,} calls: no endpoint is called, nothing is spent"
    prompt_tokens = count_prompt_tokens(config.model, config.prompt)
    if prompt_tokens is None:
        return f"{n:,} calls to {config.model} (no token count or price known for this model)"
    cost = estimate_cost_usd(config.model, prompt_tokens, config.max_tokens, n)
    price = f", at most {fmt_usd(cost)} at list prices" if cost is not None else ""
    return (
        f"{n:,} calls x ({prompt_tokens} prompt + {config.max_tokens} completion tokens)"
        f"{price} (cached prompts cost less)"
    )


def fmt_usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def usage_line(config: FlipConfig, outcome, replay: bool) -> str:
    from detcheck.tokens import usage_cost_usd

    line = (
        f"{outcome.successes:,} responses in {outcome.elapsed_s:,.1f} s "
        f"({outcome.attempts:,} attempts); usage: {outcome.prompt_tokens:,} prompt tokens "
        f"({outcome.cached_tokens:,} cached) + {outcome.completion_tokens:,} completion tokens"
    )
    cost = usage_cost_usd(
        config.model, outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens
    )
    if cost is not None and not replay:
        line += f" = {fmt_usd(cost)} at list prices"
    return line


def show_command(path: Path, row: int) -> str:
    import math

    from tabulate import tabulate

    from detcheck.store import find_runs, read_run

    found = find_runs(Path(path))
    if len(found) != 1:
        raise UsageError(f"{path} holds {len(found)} runs; show takes one run")
    run = read_run(found[0], columns=["ok", "seq", "system_fingerprint", "top_logprobs"])
    table = run.table.filter(run.table.column("ok")).sort_by("seq")
    if not 0 <= row < table.num_rows:
        raise UsageError(f"--row must be between 0 and {table.num_rows - 1}, got {row}")
    entries = table.column("top_logprobs")[row].as_py() or []
    if not entries:
        raise DataError(f"response {row} of {path} has no top logprobs")
    rows, total = [], 0.0
    for e in entries:
        lp = e["logprob"]
        pct = math.exp(lp) * 100 if lp is not None else float("nan")
        total += 0 if math.isnan(pct) else pct
        # json.dumps shows what the published table could not: leading spaces, control chars
        rows.append([json.dumps(e["token"], ensure_ascii=False), f"{lp:.10f}", f"{pct:.10f}"])
    fp = table.column("system_fingerprint")[row].as_py()
    header = (
        f"response {row} of {table.num_rows:,} (seq {table.column('seq')[row].as_py()}, "
        f"fingerprint {fp or 'none'})"
    )
    body = tabulate(
        rows,
        headers=["Token", "Log Probability", "Percentage"],
        disable_numparse=True,
        colalign=("left", "right", "right"),
    )
    return f"{header}\n\n{body}\n\ntotal probability covered: {total:.10f}%"
