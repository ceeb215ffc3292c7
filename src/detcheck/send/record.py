"""Turning one HTTP exchange into one stored row: parse the body, keep allowed headers, redact.

Parsing is our own (json + dict walking) rather than the SDK's pydantic models: we keep the raw
body anyway, and odd bodies (missing fields, NaN, non-UTF-8 bytes) must become rows, not crashes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from itertools import chain

from detcheck.shapes._parse import (
    Generation,
    MalformedResponse,
    Parsed,
    json_safe_float,
    load_json,
    str_or_none,
)
from detcheck.store.schema import RESPONSE_HEADER_ALLOWLIST
from detcheck.text import REDACTED, clip, redact

MAX_ERROR_BODY_CHARS = 16_384
_ALLOWED = frozenset(RESPONSE_HEADER_ALLOWLIST)


def _usable_logprob(value) -> bool:
    # a logprob is the log of a probability: finite and at most 0 (-1e308 is extreme, not wrong)
    return type(value) is float and math.isfinite(value) and value <= 0.0


def unusable_reason(parsed: Parsed, targets: Collection[str] = ()) -> str | None:
    """Why a parsed 200 cannot count as a measurement (None if it can): the generated token's
    logprob, or a measured token's logprob in the top list, is missing, not a number, NaN,
    infinite or positive. Other top entries may be null (an engine's -inf for an impossible
    token): they are stored as null and the response still counts."""
    if not _usable_logprob(parsed.logprob):
        return f"the generated token's logprob is unusable: {parsed.logprob!r}"
    g = parsed.generation
    if g is not None and g.logprobs:
        values = g.logprobs
        # the common case checked at once: every one a float, finite, none positive
        if not (
            all(type(v) is float for v in values)
            and math.isfinite(math.fsum(values))
            and max(values) <= 0.0
        ):
            k = next(k for k, v in enumerate(values) if not _usable_logprob(v))
            return f"the logprob at position {k} is unusable: {values[k]!r}"
    for entry in parsed.top_logprobs:
        if entry["token"] in targets and not _usable_logprob(entry["logprob"]):
            return f"the logprob of {entry['token']!r} is unusable: {entry['logprob']!r}"
    return None


def allowed_headers(headers: Mapping[str, str] | None) -> dict | None:
    """Only the allow-listed response headers (a dict: it survives the JSON journal as is)."""
    if headers is None:
        return None
    # one pass over what arrived: a lookup per allowed name costs 5x more on httpx2's Headers
    return {name: v for k, v in headers.items() if (name := k.lower()) in _ALLOWED}


def redact_row(row: dict, secrets: Sequence[str]) -> dict:
    """The last step before a row reaches disk: no secret survives in any text it carries, nor
    in a join of the tokens it was generated as."""
    shares = _redact_across(row, secrets) if row.get("gen_tokens") else {}
    for key, value in row.items():
        if isinstance(value, str):
            row[key] = redact(_without_shares(value, shares), secrets)
        elif key == "response_headers" and value:
            row[key] = {k: redact(v, secrets) for k, v in value.items()}
        elif key in ("gen_tokens", "gen_top_tokens") and value:
            row[key] = _redact_tokens(value, secrets)
        elif key == "top_logprobs" and value:
            for entry in value:
                entry["token"] = redact(shares.get(entry["token"], entry["token"]), secrets)
                raw = entry.get("bytes")
                if raw and any(s and len(s) >= 8 and s.encode() in bytes(raw) for s in secrets):
                    entry["bytes"] = list(REDACTED.encode())
                elif raw and entry["token"] in shares.values():
                    entry["bytes"] = list(entry["token"].encode())
    return row


def _redact_tokens(tokens: list, secrets: Sequence[str]) -> list:
    """Tokens (or lists of them) are decoded text: only the plain secret can be in one. One
    search over all of them; each is looked at only when it is there."""
    secrets = [s for s in secrets if s and len(s) >= 8]
    flat = chain.from_iterable(t if type(t) is list else (t,) for t in tokens)
    joined = "\x00".join(t for t in flat if type(t) is str)
    if not any(s in joined for s in secrets):
        return tokens
    return [
        _redact_tokens(t, secrets) if isinstance(t, list) else redact(t, secrets) for t in tokens
    ]


def _redact_across(row: dict, secrets: Sequence[str]) -> dict[str, str]:
    """A secret the server split over several generated tokens: each token's share of it goes
    (the first becomes [REDACTED]), in `gen_tokens` and at the same position among the top
    tokens, so no join of stored tokens gives it back. Returns {share: what replaced it}, for
    the raw body and the first token's top list."""
    tokens = row["gen_tokens"]
    texts = [t if type(t) is str else "" for t in tokens]
    joined = "".join(texts)
    spans = [
        (m.start(), m.end())
        for s in secrets
        if s and len(s) >= 8 and s in joined
        for m in re.finditer(re.escape(s), joined)
    ]
    if not spans:
        return {}
    shares: dict[str, str] = {}
    tops = row.get("gen_top_tokens") or []
    at = 0
    for k, text in enumerate(texts):
        start, end = at, at + len(text)
        at = end
        if not any(a < end and start < b for a, b in spans):
            continue
        kept = []
        for i, ch in enumerate(text, start):
            inside = next((a for a, b in spans if a <= i < b), None)
            if inside is None:
                kept.append(ch)
            elif i == inside:  # where the secret begins; the rest of it is dropped
                kept.append(REDACTED)
        shares[text] = tokens[k] = "".join(kept)
        if k < len(tops) and type(tops[k]) is list:
            tops[k] = [shares[text] if t == text else t for t in tops[k]]
    if row.get("token") in shares:
        row["token"] = shares[row["token"]]
    return shares


def _without_shares(text: str, shares: dict[str, str]) -> str:
    """A raw body without the secret's shares: each as a JSON string, and as its bytes."""
    for share, replaced in shares.items():
        if not share:
            continue
        literal = json.dumps(share)
        if literal in text:
            text = text.replace(literal, json.dumps(replaced))
        values = r"\[\s*" + r"\s*,\s*".join(str(b) for b in share.encode()) + r"\s*\]"
        text = re.sub(values, json.dumps(list(replaced.encode())), text)
    return text


def success_fields(parsed: Parsed) -> dict:
    return {
        "response_id": parsed.response_id,
        "response_model": parsed.model,
        "system_fingerprint": parsed.system_fingerprint,
        "token": parsed.token,
        "logprob": json_safe_float(parsed.logprob),
        "top_logprobs": [
            {**e, "logprob": json_safe_float(e["logprob"])} for e in parsed.top_logprobs
        ],
        "prompt_tokens": parsed.prompt_tokens,
        "completion_tokens": parsed.completion_tokens,
        "cached_tokens": parsed.cached_tokens,
        **generation_fields(parsed.generation),
    }


def generation_fields(g: Generation | None) -> dict:
    if g is None:
        return {}
    return {
        "finish_reason": g.finish_reason,
        "text": g.text,
        "gen_tokens": g.tokens,
        "gen_logprobs": g.logprobs,
        "gen_top_tokens": g.top_tokens,
        "gen_top_logprobs": g.top_logprobs,
    }


def error_message_from_body(body: bytes | str | None) -> str | None:
    """The `error.message` of an OpenAI-style error body, if there is one (clipped)."""
    if not body:
        return None
    try:
        data = load_json(body)
    except MalformedResponse:
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return clip(str_or_none(error["message"]))
    return clip(str_or_none(error))


def error_code_from_body(body: bytes | str | None) -> str | None:
    try:
        data = load_json(body or b"")
    except MalformedResponse:
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping):
        return clip(str_or_none(error.get("code") or error.get("type")), 100)
    return None


def body_text(body: bytes | None, limit: int | None = None) -> str | None:
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace")
    return text if limit is None else text[:limit]
