"""Turning one HTTP exchange into one stored row: parse the body, keep allowed headers, redact.

Parsing is our own (json + dict walking) rather than the SDK's pydantic models: we keep the raw
body anyway, and odd bodies (missing fields, NaN, non-UTF-8 bytes) must become rows, not crashes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detcheck.schema import RESPONSE_HEADER_ALLOWLIST

REDACTED = "[REDACTED]"
MAX_ERROR_BODY_CHARS = 16_384
_ALLOWED = frozenset(RESPONSE_HEADER_ALLOWLIST)


class MalformedResponse(Exception):
    """A 200 whose body is not a usable chat completion with logprobs."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _bytes_or_none(value) -> list[int] | None:
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


def _str_or_none(value) -> str | None:
    """Text that can be stored: JSON allows lone surrogates ("\\ud800"), UTF-8 does not; they
    become U+FFFD (the token's `bytes` keep what was really sent)."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _top_entry(entry) -> dict | None:
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
        "token": _str_or_none(entry["token"]),
        "logprob": _float_or_none(entry.get("logprob")),
        "bytes": _bytes_or_none(entry.get("bytes")),
    }


def parse_chat_body(body: bytes | str) -> Parsed:
    """The first generated token of a chat completion, with its top logprobs."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedResponse("malformed_body", f"response body is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise MalformedResponse("malformed_body", "response body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponse("malformed_body", "response has no choices")
    logprobs = choices[0].get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], Mapping):
        raise MalformedResponse("no_logprobs", "response carries no logprobs")
    first = content[0]
    top = first.get("top_logprobs")
    top_entries = [e for e in map(_top_entry, top if isinstance(top, list) else []) if e]
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return Parsed(
        response_id=_str_or_none(data.get("id")),
        model=_str_or_none(data.get("model")),
        system_fingerprint=_str_or_none(data.get("system_fingerprint")),
        token=_str_or_none(first.get("token")),
        logprob=_float_or_none(first.get("logprob")),
        top_logprobs=top_entries,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        cached_tokens=_int_or_none(cached),
    )


def parse_completions_body(body: bytes | str) -> Parsed:
    """The legacy /v1/completions shape: `logprobs.top_logprobs` is a list of {token: logprob}
    dicts (one per generated token), `tokens` / `token_logprobs` the generated ones."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedResponse("malformed_body", f"response body is not JSON: {exc}") from None
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponse("malformed_body", "response has no choices")
    logprobs = choices[0].get("logprobs")
    tokens = logprobs.get("tokens") if isinstance(logprobs, Mapping) else None
    if not isinstance(tokens, list) or not tokens:
        raise MalformedResponse("no_logprobs", "response carries no logprobs")
    token_lps = logprobs.get("token_logprobs") or [None]
    tops = logprobs.get("top_logprobs") or [None]
    first_top = tops[0] if isinstance(tops, list) and isinstance(tops[0], Mapping) else {}
    entries = [
        {"token": _str_or_none(t), "logprob": _float_or_none(lp), "bytes": None}
        for t, lp in first_top.items()
        if isinstance(t, str)
    ]
    entries.sort(key=lambda e: -(e["logprob"] if e["logprob"] is not None else -math.inf))
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    return Parsed(
        response_id=_str_or_none(data.get("id")),
        model=_str_or_none(data.get("model")),
        system_fingerprint=_str_or_none(data.get("system_fingerprint")),
        token=_str_or_none(tokens[0]),
        logprob=_float_or_none(token_lps[0] if isinstance(token_lps, list) else None),
        top_logprobs=entries,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        cached_tokens=None,
    )


PARSERS = {"chat": parse_chat_body, "completions": parse_completions_body}


def redact(text: str | None, secrets: Sequence[str]) -> str | None:
    """Remove every secret (the API key) from text bound for disk, even if an endpoint echoed it."""
    if text is None:
        return None
    for secret in secrets:
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def allowed_headers(headers: Mapping[str, str] | None) -> dict | None:
    """Only the allow-listed response headers (a dict: it survives the JSON journal as is)."""
    if headers is None:
        return None
    # one pass over what arrived: a lookup per allowed name costs 5x more on httpx2's Headers
    return {name: v for k, v in headers.items() if (name := k.lower()) in _ALLOWED}


def redact_row(row: dict, secrets: Sequence[str]) -> dict:
    """The last step before a row reaches disk: no secret survives in any text it carries."""
    for key, value in row.items():
        if isinstance(value, str):
            row[key] = redact(value, secrets)
        elif key == "response_headers" and value:
            row[key] = {k: redact(v, secrets) for k, v in value.items()}
        elif key == "top_logprobs" and value:
            for entry in value:
                entry["token"] = redact(entry["token"], secrets)
    return row


def json_safe_float(value: float | None) -> float | None:
    """NaN and infinities cannot travel through JSON journals; they are stored as null."""
    return value if value is None or math.isfinite(value) else None


def success_fields(parsed: Parsed) -> dict:
    return {
        "response_id": parsed.response_id,
        "model": parsed.model,
        "system_fingerprint": parsed.system_fingerprint,
        "token": parsed.token,
        "logprob": json_safe_float(parsed.logprob),
        "top_logprobs": [
            {**e, "logprob": json_safe_float(e["logprob"])} for e in parsed.top_logprobs
        ],
        "prompt_tokens": parsed.prompt_tokens,
        "completion_tokens": parsed.completion_tokens,
        "cached_tokens": parsed.cached_tokens,
    }


def error_message_from_body(body: bytes | str | None) -> str | None:
    """The `error.message` of an OpenAI-style error body, if there is one."""
    if not body:
        return None
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return _str_or_none(error["message"])
    return _str_or_none(error)


def error_code_from_body(body: bytes | str | None) -> str | None:
    try:
        data = json.loads(body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping):
        return _str_or_none(error.get("code") or error.get("type"))
    return None


def body_text(body: bytes | None, limit: int | None = None) -> str | None:
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace")
    return text if limit is None else text[:limit]
