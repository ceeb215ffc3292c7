"""Reading a response body the shapes share: JSON that may be odd (NaN, bad UTF-8, missing
fields) into a Parsed row or a MalformedResponse, never a crash. Not a shape itself (the
leading underscore keeps it out of detcheck.spec.shape_names)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain

from detcheck.text import clip

# The int32 columns (token counts): a larger value is stored as null (the raw body keeps it).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# Kinds of malformed body that asking again cannot fix: the run stops at once (exit 3)
FINAL_KINDS = frozenset({"logprobs_refused", "refused"})


class MalformedResponse(Exception):
    """A 200 whose body is not a usable chat completion with logprobs."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def load_json(body: bytes | str):
    """A body from the network as JSON; anything json cannot take (bad syntax or UTF-8, nesting
    deeper than the parser's recursion limit) is a malformed body, never a crash."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedResponse(
            "malformed_body", clip(f"response body is not JSON: {type(exc).__name__}: {exc}")
        ) from None


@dataclass
class Parsed:
    response_id: str | None
    model: str | None
    system_fingerprint: str | None
    token: str | None
    logprob: float | None
    top_logprobs: list[dict]
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    generation: Generation | None = None  # every position, when the whole answer is measured


@dataclass
class Generation:
    """A whole generated answer: each position's token and logprob, and its ranked top tokens
    (None, all four, for an answer asked for without logprobs: its text only)."""

    text: str | None
    finish_reason: str | None
    tokens: list[str | None] | None
    logprobs: list[float | None] | None
    top_tokens: list[list[str | None]] | None
    top_logprobs: list[list[float | None]] | None


def text_only(data: Mapping, text, finish_reason, usage: Mapping, names=("prompt", "completion")):
    """A response asked for without logprobs: its text is all there is (tokens unknown: null,
    never made up). `names` are the usage keys' stems (`input`/`output` on Responses)."""
    usage = usage if isinstance(usage, Mapping) else {}
    return Parsed(
        response_id=str_or_none(data.get("id")),
        model=str_or_none(data.get("model")),
        system_fingerprint=str_or_none(data.get("system_fingerprint")),
        token=None,
        logprob=None,
        top_logprobs=[],
        prompt_tokens=int_or_none(usage.get(f"{names[0]}_tokens")),
        completion_tokens=int_or_none(usage.get(f"{names[1]}_tokens")),
        cached_tokens=None,
        generation=Generation(
            str_or_none(text), str_or_none(finish_reason), None, None, None, None
        ),
    )


def generation_of(entries: list, text, finish_reason) -> Generation:
    """A Generation from the chat / responses form: a list of {token, logprob, top_logprobs}.
    Whole lists are checked at once (what every real endpoint sends: text tokens, finite float
    logprobs); only a list that fails is taken apart entry by entry."""
    entries = [e if type(e) is dict else {} for e in entries]
    tokens = [e.get("token") for e in entries]
    # a token is its bytes: where they are not its text's (invalid UTF-8, a lone surrogate)
    # the token is stored as what the bytes say, so completions that differ only there differ
    for k, e in enumerate(entries):
        token, raw = tokens[k], e.get("bytes")
        if type(token) is not str:
            continue
        if raw is None:
            if not token.isascii():
                tokens[k] = _storable_token(token)
        elif not token.isascii() or raw != list(token.encode()):
            tokens[k] = _token_of_bytes(token, raw)
    logprobs = [e.get("logprob") for e in entries]
    tops = [e.get("top_logprobs") for e in entries]
    tops = [t if type(t) is list else None for t in tops]
    if not all(type(x) is dict for x in chain.from_iterable(t for t in tops if t)):
        tops = [t if all(type(x) is dict for x in t or ()) else None for t in tops]
    top_tokens = [[x.get("token") for x in t] if t is not None else [] for t in tops]
    top_logprobs = [[x.get("logprob") for x in t] if t is not None else [] for t in tops]
    flat_tokens = [*tokens, *chain.from_iterable(top_tokens)]
    flat_values = [*logprobs, *chain.from_iterable(top_logprobs)]
    clean = (
        all(type(t) is str for t in flat_tokens)
        and all(type(v) is float for v in flat_values)
        and math.isfinite(math.fsum(flat_values))
        and "".join(flat_tokens).isascii()  # else a lone surrogate may hide in one
    )
    if not clean or None in tops:
        tokens = [str_or_none(t) for t in tokens]
        logprobs = [json_safe_float(float_or_none(v)) for v in logprobs]
        for k, top in enumerate(tops):
            ranked = [e for e in map(top_entry, top or []) if e]
            top_tokens[k] = [e["token"] for e in ranked]
            top_logprobs[k] = [json_safe_float(e["logprob"]) for e in ranked]
    return Generation(
        str_or_none(text), str_or_none(finish_reason), tokens, logprobs, top_tokens, top_logprobs
    )


def _storable_token(token: str) -> str:
    """A token as UTF-8 can hold it: a lone surrogate is escaped (`\\xed\\xa0\\x80`), not
    replaced, so two different ones stay two different tokens."""
    try:
        token.encode("utf-8")
        return token
    except UnicodeEncodeError:
        return token.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")


def _token_of_bytes(token: str, raw) -> str:
    """The token's text, or, where its `bytes` say otherwise, the bytes decoded with the invalid
    ones escaped (`\\xe2\\x80`)."""
    as_bytes = bytes_or_none(raw)
    storable = _storable_token(token)
    if as_bytes is None:
        return storable
    sent = bytes(as_bytes)
    if storable == token and token.encode("utf-8") == sent:
        return token
    return sent.decode("utf-8", "backslashreplace")


def int_or_none(value) -> int | None:
    """An integer that fits the int32 columns, else None (2**40 or 10**30 from a hostile endpoint
    would make the whole part unwritable)."""
    if isinstance(value, int) and not isinstance(value, bool) and INT32_MIN <= value <= INT32_MAX:
        return value
    return None


def float_or_none(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer literal beyond float64 (10**400)
        return None


def bytes_or_none(value) -> list[int] | None:
    """The `bytes` list as sent, if it is one of ints 0-255 (checked by bytes(), in C)."""
    if not isinstance(value, list):
        return None
    try:
        bytes(value)
    except (TypeError, ValueError):
        return None
    if True in value or False in value:  # bytes() takes booleans; JSON true is not a byte
        return None
    return value


def str_or_none(value) -> str | None:
    """Text that can be stored: JSON allows lone surrogates ("\\ud800"), UTF-8 does not; they
    become U+FFFD (the token's `bytes` keep what was really sent)."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def top_entry(entry) -> dict | None:
    if type(entry) is dict:
        token, logprob, raw = entry.get("token"), entry.get("logprob"), entry.get("bytes")
        # fast path: the well-formed entry every real endpoint sends
        if (
            type(token) is str
            and type(logprob) is float
            and token.isascii()
            and (
                raw is None
                or (type(raw) is list and len(raw) == len(token) and raw == list(token.encode()))
            )
        ):
            return {"token": token, "logprob": logprob, "bytes": raw}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("token"), str):
        return None
    return {
        "token": str_or_none(entry["token"]),
        "logprob": float_or_none(entry.get("logprob")),
        "bytes": bytes_or_none(entry.get("bytes")),
    }


def first_choice(data) -> Mapping:
    """`choices[0]` of a chat or legacy completions body, or a MalformedResponse saying why not."""
    if not isinstance(data, Mapping):
        raise MalformedResponse("malformed_body", "response body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponse("malformed_body", "response has no choices")
    return choices[0]


def with_seed(body: dict, seed: int | None) -> dict:
    """The request body with `seed` added, unless there is none to send."""
    if seed is not None:
        body["seed"] = seed
    return body


def json_safe_float(value: float | None) -> float | None:
    """NaN and infinities cannot travel through JSON journals; they are stored as null."""
    return value if value is None or math.isfinite(value) else None
