"""What a run will cost before it starts, and what it did cost (list prices, tokens counted
with tiktoken)."""

from __future__ import annotations

from collections.abc import Callable

from detcheck.config import FlipConfig, strip_credentials

Log = Callable[[str], None]


# The Batch API's price: half the list price of the same requests online
BATCH_DISCOUNT = 0.5


def tier_factor(via: str) -> float:
    return BATCH_DISCOUNT if via == "batch" else 1.0


def cost_line(spend: dict) -> str:
    """The plan's spend in one line (what spend_of counted), said before anything is sent."""
    n = spend["measured_requests"]
    if spend["replay"]:
        return f"replaying {n:,} calls: no endpoint is called, nothing is spent"
    prompt_tokens = spend["prompt_tokens_per_request"]
    if prompt_tokens is None:
        return f"{n:,} calls to {spend['model']} (no token count or price known for this model)"
    line = (
        f"{n:,} calls x ({prompt_tokens} prompt + {spend['completion_tokens_per_request']} "
        "completion tokens)"
    )
    if spend["background_requests"]:
        line += (
            f" + up to {spend['background_requests']:,} background requests x (up to "
            f"{spend['background_prompt_tokens_per_request']} prompt + "
            f"{spend['background_completion_tokens_per_request']} completion tokens)"
        )
    cost = spend["estimated_cost_usd"]
    prices = "Batch API prices (half the list price)" if spend["via"] == "batch" else "list prices"
    price = f", at most {fmt_usd(cost)} at {prices}" if cost is not None else ""
    return f"{line}{price} (cached prompts cost less)"


# A live run estimated above this asks before it starts, in a terminal (--yes skips the question)
CONFIRM_ABOVE_USD = 5.0


def spend_of(
    config: FlipConfig, n: int, endpoint: str, replay: bool, via: str = "online", *,
    background: int = 0, prefix: str = "",
) -> dict:  # fmt: skip
    """What a run will send and, at list prices, cost at most (the --dry-run answer): its n
    measured calls and, with --background-load, the most its background streams can send
    (each stays at most one request ahead of the measured calls begun: background x (n + 1),
    priced at the largest request a stream sends)."""
    from detcheck.send.background import largest_background_request
    from detcheck.send.tokens import count_prompt_tokens, estimate_cost_usd

    extra = background * (n + 1) if background and n > 0 else 0
    largest = largest_background_request(config, prefix)

    def priced(request, count: int) -> tuple[int | None, float | None]:
        if replay or not count:
            return (None if replay else count_prompt_tokens(request.model, request.prompt)), 0.0
        tokens = count_prompt_tokens(request.model, request.prompt)
        if tokens is None:
            return None, None
        return tokens, estimate_cost_usd(request.model, tokens, request.max_tokens, count)

    prompt_tokens, cost = priced(config, n)
    extra_tokens, extra_cost = priced(largest, extra) if extra else (None, 0.0)
    total = None if cost is None or extra_cost is None else (cost + extra_cost) * tier_factor(via)
    return {
        "dry_run": True,
        "via": via,
        "model": config.model,
        "endpoint": strip_credentials(endpoint),  # printed, and in --json: never a key
        "api": config.api,
        "requests": n + extra,  # every request it may send
        "measured_requests": n,
        "background_requests": extra,
        "prompt_tokens_per_request": prompt_tokens,
        "completion_tokens_per_request": config.max_tokens,
        "background_prompt_tokens_per_request": extra_tokens,
        "background_completion_tokens_per_request": largest.max_tokens if extra else None,
        "estimated_cost_usd": total,  # null: no token count or price known for the model
        "replay": replay,
    }


def total_spend(spends: list[dict], **extra) -> dict:
    """Several runs' spends as one plan (a prompt set, an audit): requests of each kind and
    the cost added up (unknown if any is), completion tokens as the longest any asks for (an
    audit's generate arms ask for more than its flips), the rest as the first run's."""
    costs = [s["estimated_cost_usd"] for s in spends]
    counted = ("requests", "measured_requests", "background_requests")
    return {
        **spends[0],
        **{key: sum(s[key] for s in spends) for key in counted},
        "completion_tokens_per_request": max(s["completion_tokens_per_request"] for s in spends),
        # the models whose price is unknown (why a total cannot be known)
        "unpriced_models": sorted({s["model"] for s in spends if s["estimated_cost_usd"] is None}),
        "estimated_cost_usd": None if None in costs else sum(costs),
        **extra,
    }


def check_spend(spend: dict, max_cost: float | None, confirm) -> None:
    """Refuse a run above --max-cost (or one whose cost cannot be known, when a limit is
    set); ask before one above CONFIRM_ABOVE_USD when there is someone to ask."""
    from detcheck.errors import UsageError

    cost = spend["estimated_cost_usd"]
    if max_cost is not None:
        if cost is None:
            unpriced = spend.get("unpriced_models") or [spend["model"]]
            raise UsageError(
                f"--max-cost {fmt_usd(max_cost)}: no list price is known for "
                f"{', '.join(map(repr, unpriced))}, so the cost cannot be checked; run without "
                "--max-cost"
            )
        if cost > max_cost:
            raise UsageError(
                f"the run is estimated at up to {fmt_usd(cost)}, above --max-cost "
                f"{fmt_usd(max_cost)}; lower --n or raise --max-cost"
            )
    if confirm is not None and cost is not None and cost > CONFIRM_ABOVE_USD:
        question = (
            f"{spend['requests']:,} requests to {spend['model']} are estimated at up to "
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
