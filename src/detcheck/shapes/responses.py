"""`/v1/responses`, OpenAI's Responses API: the prompt as `input`, logprobs asked for with
`include: ["message.output_text.logprobs"]`. It takes no `seed`, and refuses an output limit
below 16 tokens: detcheck sends the smallest accepted one and measures the first output token.
A model that gives no logprobs (reasoning models) answers without them: that stops the run."""

from __future__ import annotations

from collections.abc import Mapping

from detcheck.record import (
    MalformedResponse,
    Parsed,
    float_or_none,
    generation_of,
    int_or_none,
    load_json,
    str_or_none,
    top_entry,
)

NAME = "responses"
PATH = "/responses"
TAKES_SEED = False
MIN_OUTPUT_TOKENS = 16  # the API refuses max_output_tokens below this


def request_body(config) -> dict:
    return {
        "model": config.model,
        "input": config.prompt,
        "temperature": config.temperature,
        "top_logprobs": config.top_logprobs,
        "include": ["message.output_text.logprobs"],
        "max_output_tokens": max(MIN_OUTPUT_TOKENS, config.max_tokens),
    }


def parse(body: bytes | str, whole: bool = False) -> Parsed:
    """The first output token of the first `output_text` part, with its top logprobs."""
    data = load_json(body)
    if not isinstance(data, Mapping):
        raise MalformedResponse("malformed_body", "response body is not a JSON object")
    output = data.get("output")
    if not isinstance(output, list):
        raise MalformedResponse("malformed_body", "response has no output")
    texts = [
        part
        for item in output
        if isinstance(item, Mapping) and item.get("type") == "message"
        for part in (item.get("content") if isinstance(item.get("content"), list) else [])
        if isinstance(part, Mapping) and part.get("type") == "output_text"
    ]
    if not texts:
        raise MalformedResponse("malformed_body", "response has no output_text")
    logprobs = texts[0].get("logprobs")
    if not isinstance(logprobs, list) or not logprobs or not isinstance(logprobs[0], Mapping):
        # a well-formed answer without logprobs: the model gives none, asking again won't help
        raise MalformedResponse(
            "logprobs_refused",
            f"{str_or_none(data.get('model')) or 'the model'} answered without logprobs "
            "(reasoning models give none)",
        )
    first = logprobs[0]
    top = first.get("top_logprobs")
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    details = usage.get("input_tokens_details")
    return Parsed(
        response_id=str_or_none(data.get("id")),
        model=str_or_none(data.get("model")),
        system_fingerprint=str_or_none(data.get("system_fingerprint")),
        token=str_or_none(first.get("token")),
        logprob=float_or_none(first.get("logprob")),
        top_logprobs=[e for e in map(top_entry, top if isinstance(top, list) else []) if e],
        prompt_tokens=int_or_none(usage.get("input_tokens")),
        completion_tokens=int_or_none(usage.get("output_tokens")),
        cached_tokens=int_or_none(details.get("cached_tokens"))
        if isinstance(details, Mapping)
        else None,
        generation=generation_of(logprobs, texts[0].get("text"), _finish_reason(data))
        if whole
        else None,
    )


def _finish_reason(data: Mapping) -> str | None:
    """As chat spells it: `stop` for a completed response, `length` for one cut by
    max_output_tokens, else the API's own reason or status."""
    status = data.get("status")
    if status == "completed":
        return "stop"
    details = data.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    if reason == "max_output_tokens":
        return "length"
    return str_or_none(reason) or str_or_none(status)
