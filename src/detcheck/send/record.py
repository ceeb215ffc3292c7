"""Turning one HTTP exchange into one stored row: parse the body, keep allowed headers, redact.

Parsing is our own (json + dict walking) rather than the SDK's pydantic models: we keep the raw
body anyway, and odd bodies (missing fields, NaN, non-UTF-8 bytes) must become rows, not crashes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from detcheck.store.schema import RESPONSE_HEADER_ALLOWLIST
from detcheck.text import REDACTED, clip, redact

MAX_ERROR_BODY_CHARS = 16_384
# The int32 columns (token counts): a larger value is stored as null (the raw body keeps it).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_ALLOWED = frozenset(RESPONSE_HEADER_ALLOWLIST)


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
    """A whole generated answer: each position's token and logprob, and its ranked top tokens."""

    text: str | None
    finish_reason: str | None
    tokens: list[str | None]
    logprobs: list[float | None]
    top_tokens: list[list[str | None]]
    top_logprobs: list[list[float | None]]


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


def json_safe_float(value: float | None) -> float | None:
    """NaN and infinities cannot travel through JSON journals; they are stored as null."""
    return value if value is None or math.isfinite(value) else None


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
