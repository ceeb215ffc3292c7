"""`/v1/chat/completions`, the publication's API: the prompt as one user message, logprobs on,
`top_logprobs` top tokens of each generated one."""

from __future__ import annotations

from collections.abc import Mapping

from detcheck.shapes._parse import (
    MalformedResponse,
    Parsed,
    first_choice,
    float_or_none,
    generation_of,
    int_or_none,
    load_json,
    str_or_none,
    text_only,
    top_entry,
    with_seed,
)

NAME = "chat"
PATH = "/chat/completions"
TAKES_SEED = True


def request_body(config) -> dict:
    """The JSON body of every call (identical for all of them)."""
    body = {
        "model": config.model,
        "messages": [{"role": "user", "content": config.prompt}],
        "temperature": config.temperature,
        "logprobs": True,
        "top_logprobs": config.top_logprobs,
        "max_tokens": config.max_tokens,
    }
    if not config.logprobs:
        del body["logprobs"], body["top_logprobs"]
    return with_seed(body, config.seed)


def parse(body: bytes | str, whole: bool = False, logprobs: bool = True) -> Parsed:
    """The first generated token of a chat completion, with its top logprobs (and with `whole`,
    every position's; without `logprobs`, the text only)."""
    data = load_json(body)
    choice = first_choice(data)
    if not logprobs:
        return text_only(data, _text(choice), choice.get("finish_reason"), data.get("usage"))
    return from_content(data, choice, _text(choice), whole)


def from_content(data: Mapping, choice: Mapping, text, whole: bool = False) -> Parsed:
    """A response whose `logprobs.content` lists each generated token as {token, logprob, bytes,
    top_logprobs}: chat completions, and llama.cpp's server on /v1/completions too."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], Mapping):
        raise MalformedResponse("no_logprobs", "response carries no logprobs")
    first = content[0]
    top = first.get("top_logprobs")
    top_entries = [e for e in map(top_entry, top if isinstance(top, list) else []) if e]
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return Parsed(
        response_id=str_or_none(data.get("id")),
        model=str_or_none(data.get("model")),
        system_fingerprint=str_or_none(data.get("system_fingerprint")),
        token=str_or_none(first.get("token")),
        logprob=float_or_none(first.get("logprob")),
        top_logprobs=top_entries,
        prompt_tokens=int_or_none(usage.get("prompt_tokens")),
        completion_tokens=int_or_none(usage.get("completion_tokens")),
        cached_tokens=int_or_none(cached),
        generation=generation_of(content, text, choice.get("finish_reason")) if whole else None,
    )


def _text(choice: Mapping):
    message = choice.get("message")
    return message.get("content") if isinstance(message, Mapping) else None
