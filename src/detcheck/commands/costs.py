"""What a run will cost before it starts, and what it did cost (list prices, tokens counted
with tiktoken)."""

from __future__ import annotations

from collections.abc import Callable

from detcheck.config import FlipConfig

Log = Callable[[str], None]


# The Batch API's price: half the list price of the same requests online
BATCH_DISCOUNT = 0.5


def tier_factor(via: str) -> float:
    return BATCH_DISCOUNT if via == "batch" else 1.0


def cost_line(config: FlipConfig, n: int, replay: bool, via: str = "online") -> str:
    from detcheck.send.tokens import count_prompt_tokens, estimate_cost_usd

    if replay:
        return f"replaying {n:,} calls: no endpoint is called, nothing is spent"
    prompt_tokens = count_prompt_tokens(config.model, config.prompt)
    if prompt_tokens is None:
        return f"{n:,} calls to {config.model} (no token count or price known for this model)"
    cost = estimate_cost_usd(config.model, prompt_tokens, config.max_tokens, n)
    prices = "Batch API prices (half the list price)" if via == "batch" else "list prices"
    cost = cost * tier_factor(via) if cost is not None else None
    price = f", at most {fmt_usd(cost)} at {prices}" if cost is not None else ""
    return (
        f"{n:,} calls x ({prompt_tokens} prompt + {config.max_tokens} completion tokens)"
        f"{price} (cached prompts cost less)"
    )


# A live run estimated above this asks before it starts, in a terminal (--yes skips the question)
CONFIRM_ABOVE_USD = 5.0


def spend_of(config: FlipConfig, n: int, endpoint: str, replay: bool, via: str = "online") -> dict:
    """What a run will send and, at list prices, cost at most (the --dry-run answer)."""
    from detcheck.send.tokens import count_prompt_tokens, estimate_cost_usd

    prompt_tokens = None if replay else count_prompt_tokens(config.model, config.prompt)
    cost = (
        0.0
        if replay
        else estimate_cost_usd(config.model, prompt_tokens, config.max_tokens, n)
        if prompt_tokens is not None
        else None
    )
    if cost:
        cost *= tier_factor(via)
    return {
        "dry_run": True,
        "via": via,
        "model": config.model,
        "endpoint": endpoint,
        "api": config.api,
        "requests": n,
        "prompt_tokens_per_request": prompt_tokens,
        "completion_tokens_per_request": config.max_tokens,
        "estimated_cost_usd": cost,  # null: no token count or price known for the model
        "replay": replay,
    }


def check_spend(spend: dict, max_cost: float | None, confirm) -> None:
    """Refuse a run above --max-cost (or one whose cost cannot be known, when a limit is
    set); ask before one above CONFIRM_ABOVE_USD when there is someone to ask."""
    from detcheck.errors import UsageError

    cost = spend["estimated_cost_usd"]
    if max_cost is not None:
        if cost is None:
            raise UsageError(
                f"--max-cost {fmt_usd(max_cost)}: no list price is known for "
                f"{spend['model']!r}, so the cost cannot be checked; run without --max-cost"
            )
        if cost > max_cost:
            raise UsageError(
                f"the run is estimated at up to {fmt_usd(cost)}, above --max-cost "
                f"{fmt_usd(max_cost)}; lower --n or raise --max-cost"
            )
    if confirm is not None and cost is not None and cost > CONFIRM_ABOVE_USD:
        question = (
            f"{spend['requests']:,} calls to {spend['model']} are estimated at up to "
            f"{fmt_usd(cost)}. Go ahead?"
        )
        if not confirm(question):
            raise UsageError("not started: nothing was sent (--yes skips this question)")


def fmt_usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def usage_line(config: FlipConfig, outcome, replay: bool, via: str = "online") -> str:
    from detcheck.send.tokens import usage_cost_usd

    line = (
        f"{outcome.successes:,} responses in {outcome.elapsed_s:,.1f} s "
        f"({outcome.attempts:,} attempts)\nusage: {outcome.prompt_tokens:,} prompt tokens "
        f"({outcome.cached_tokens:,} cached) + {outcome.completion_tokens:,} completion tokens"
    )
    cost = usage_cost_usd(
        config.model, outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens
    )
    if cost is not None and not replay:
        prices = "Batch API prices" if via == "batch" else "list prices"
        line += f" = {fmt_usd(cost * tier_factor(via))} at {prices}"
    return line
