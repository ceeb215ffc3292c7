"""`/v1/responses`, OpenAI's Responses API: the prompt as `input`, logprobs asked for with
`include: ["message.output_text.logprobs"]`. It takes no `seed`, and refuses an output limit
below 16 tokens: detcheck sends the smallest accepted one and measures the first output token.
A model that gives no logprobs (reasoning models) answers without them: that stops the run."""

from __future__ import annotations

from collections.abc import Mapping

from detcheck.shapes._parse import (
    MalformedResponse,
    Parsed,
    float_or_none,
    generation_of,
    int_or_none,
    load_json,
    str_or_none,
    text_only,
    top_entry,
)
from detcheck.text import clip

NAME = "responses"
PATH = "/responses"
TAKES_SEED = False
MIN_OUTPUT_TOKENS = 16  # the API refuses max_output_tokens below this


def request_body(config) -> dict:
    body = {
        "model": config.model,
        "input": config.prompt,
        "temperature": config.temperature,
        "top_logprobs": config.top_logprobs,
        "include": ["message.output_text.logprobs"],
        "max_output_tokens": max(MIN_OUTPUT_TOKENS, config.max_tokens),
    }
    if not config.logprobs:
        del body["top_logprobs"], body["include"]
    return body


def parse(body: bytes | str, whole: bool = False, logprobs: bool = True) -> Parsed:
    """The output text of every message item, every `output_text` part, in order: the first
    token (with its top logprobs) is what a flip measures, all of it what a generation does. A
    refusal with no text stops the run with the refusal's words (asking again won't help)."""
    data = load_json(body)
    if not isinstance(data, Mapping):
        raise MalformedResponse("malformed_body", "response body is not a JSON object")
    output = data.get("output")
    if not isinstance(output, list):
        raise MalformedResponse("malformed_body", "response has no output")
    parts = [
        part
        for item in output
        if isinstance(item, Mapping) and item.get("type") == "message"
        for part in (item.get("content") if isinstance(item.get("content"), list) else [])
        if isinstance(part, Mapping)
    ]
    texts = [part for part in parts if part.get("type") == "output_text"]
    if not texts:
        refusals = [str_or_none(p.get("refusal")) for p in parts if p.get("type") == "refusal"]
        if refusals:
            words = " ".join(r for r in refusals if r) or "(no text)"
            raise MalformedResponse("refused", clip(f"the model refused: {words}"))
        raise MalformedResponse("malformed_body", "response has no output_text")
    text = "".join(t for t in (str_or_none(part.get("text")) for part in texts) if t is not None)
    if not logprobs:
        names = ("input", "output")
        return text_only(data, text, _finish_reason(data), data.get("usage"), names)
    # every part's logprobs, in order: answers that differ in a later part are not one answer
    logprobs = [
        entry
        for part in texts
        for entry in (part.get("logprobs") if isinstance(part.get("logprobs"), list) else [])
    ]
    if not logprobs or not isinstance(logprobs[0], Mapping):
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
        generation=generation_of(logprobs, text, _finish_reason(data)) if whole else None,
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
