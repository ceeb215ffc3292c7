"""The legacy `/v1/completions` (base models, many self-hosted servers): the prompt is sent as
is, and `logprobs` is the number of top tokens."""

from __future__ import annotations

import math
from collections.abc import Mapping

from detcheck.shapes import chat
from detcheck.shapes._parse import (
    Generation,
    MalformedResponse,
    Parsed,
    first_choice,
    float_or_none,
    generation_of,
    int_or_none,
    load_json,
    str_or_none,
    text_only,
    with_seed,
)

NAME = "completions"
PATH = "/completions"
TAKES_SEED = True


def request_body(config) -> dict:
    body = {
        "model": config.model,
        "prompt": config.prompt,
        "temperature": config.temperature,
        "logprobs": config.top_logprobs,
        "max_tokens": config.max_tokens,
    }
    if not config.logprobs:
        del body["logprobs"]
    return with_seed(body, config.seed)


def parse(body: bytes | str, whole: bool = False, logprobs: bool = True) -> Parsed:
    """The legacy /v1/completions shape: `logprobs.top_logprobs` is a list of {token: logprob}
    dicts (one per generated token), `tokens` / `token_logprobs` the generated ones. A server
    that answers with the chat shape's `logprobs.content` instead (llama.cpp's) is read as chat."""
    data = load_json(body)
    choice = first_choice(data)
    if not logprobs:
        return text_only(data, choice.get("text"), choice.get("finish_reason"), data.get("usage"))
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, Mapping) and "content" in logprobs and "tokens" not in logprobs:
        return chat.from_content(data, choice, choice.get("text"), whole)
    tokens = logprobs.get("tokens") if isinstance(logprobs, Mapping) else None
    if not isinstance(tokens, list) or not tokens:
        raise MalformedResponse("no_logprobs", "response carries no logprobs")
    token_lps = logprobs.get("token_logprobs") or [None]
    tops = logprobs.get("top_logprobs") or [None]
    first_top = tops[0] if isinstance(tops, list) and isinstance(tops[0], Mapping) else {}
    entries = _ranked(first_top)
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    return Parsed(
        response_id=str_or_none(data.get("id")),
        model=str_or_none(data.get("model")),
        system_fingerprint=str_or_none(data.get("system_fingerprint")),
        token=str_or_none(tokens[0]),
        logprob=float_or_none(token_lps[0] if isinstance(token_lps, list) else None),
        top_logprobs=entries,
        prompt_tokens=int_or_none(usage.get("prompt_tokens")),
        completion_tokens=int_or_none(usage.get("completion_tokens")),
        cached_tokens=None,
        generation=_generation(choice, tokens, token_lps, tops) if whole else None,
    )


def _ranked(top: Mapping) -> list[dict]:
    """A {token: logprob} dict as ranked entries, most likely first."""
    entries = [
        {"token": str_or_none(t), "logprob": float_or_none(lp), "bytes": None}
        for t, lp in top.items()
        if isinstance(t, str)
    ]
    entries.sort(key=lambda e: -(e["logprob"] if e["logprob"] is not None else -math.inf))
    return entries


def _generation(choice: Mapping, tokens: list, token_lps, tops) -> Generation:
    token_lps = token_lps if isinstance(token_lps, list) else []
    tops = tops if isinstance(tops, list) else []
    entries = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], Mapping) else {}
        entries.append(
            {
                "token": token,
                "logprob": token_lps[i] if i < len(token_lps) else None,
                "top_logprobs": _ranked(top),
            }
        )
    return generation_of(entries, choice.get("text"), choice.get("finish_reason"))
