"""What a run will cost before it starts, and what it did cost (list prices, tokens counted
with tiktoken)."""

from __future__ import annotations

from collections.abc import Callable

from detcheck.config import FlipConfig

Log = Callable[[str], None]


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
        f"({outcome.attempts:,} attempts)\nusage: {outcome.prompt_tokens:,} prompt tokens "
        f"({outcome.cached_tokens:,} cached) + {outcome.completion_tokens:,} completion tokens"
    )
    cost = usage_cost_usd(
        config.model, outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens
    )
    if cost is not None and not replay:
        line += f" = {fmt_usd(cost)} at list prices"
    return line
