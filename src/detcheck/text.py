"""Text that came from a server, made safe to keep and to show: secrets redacted, long
messages clipped, control characters escaped; and counted nouns ("1 call", "2 calls").
Every stage uses these, so they sit at the bottom with the vocabulary."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

REDACTED = "[REDACTED]"


# An error message as stored and shown: a hostile endpoint can send megabytes of it.
MAX_ERROR_CHARS = 500


def clip(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """Text cut to `limit` characters, saying how much was cut."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit:,} more characters]"


def redact(text: str | None, secrets: Sequence[str]) -> str | None:
    """Remove every secret (the API key) from text bound for disk or the terminal, even if an
    endpoint echoed it: as it is, JSON-escaped (`\\u0073k-...`, any mix of escaped and plain
    characters), or as a JSON list of its byte values (a top logprob's `bytes`)."""
    if text is None:
        return None
    for secret in secrets:
        if not secret or len(secret) < 8:
            continue
        if secret in text:
            text = text.replace(secret, REDACTED)
        escaped, as_bytes = _secret_patterns(secret)
        if "\\u" in text:  # only then can an escaped form be there: the common case stays cheap
            text = escaped.sub(REDACTED, text)
        if as_bytes.search(text):
            text = as_bytes.sub(_bytes_replacement, text)
    return text


_REDACTED_BYTES = ",".join(str(b) for b in REDACTED.encode())


def _bytes_replacement(match: re.Match) -> str:
    # "1115, 107, ..." is not the secret's list: checked here, as a look-behind in the pattern
    # would cost ~40 us per body instead of ~1.5 us
    start = match.start()
    return match.group(0) if start and match.string[start - 1].isdigit() else _REDACTED_BYTES


@functools.lru_cache(maxsize=16)
def _secret_patterns(secret: str) -> tuple[re.Pattern, re.Pattern]:
    """The secret as JSON may spell it: each character as itself or as a \\uXXXX escape (any
    case); and as a list of its UTF-8 byte values ("115, 107, 45, ...")."""
    chars = []
    for c in secret:
        escape = "".join(f"[{h.lower()}{h.upper()}]" if h.isalpha() else h for h in f"{ord(c):04x}")
        slash = "|\\\\/" if c == "/" else ""
        chars.append(f"(?:{re.escape(c)}|\\\\u{escape}{slash})")
    values = r"\s*,\s*".join(str(b) for b in secret.encode())
    return re.compile("".join(chars)), re.compile(rf"{values}(?![0-9])")


_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
# bidirectional overrides and line/paragraph separators reorder or break what a reader sees
_CONTROLS.update(
    {
        c: f"\\u{c:04x}"
        for c in [0x2028, 0x2029, *range(0x202A, 0x202F), 0x200E, 0x200F, *range(0x2066, 0x206A)]
    }
)


_CONTROLS_KEEP_LINES = {k: v for k, v in _CONTROLS.items() if k not in (ord("\n"), ord("\t"))}


def printable(text: str | None, keep_lines: bool = False) -> str | None:
    """Server-sent text (fingerprints, tokens, error messages) made safe for a terminal or a log:
    control characters escaped, so it cannot move the cursor, retitle the terminal or forge a
    log line. `keep_lines` keeps newlines and tabs (for text detcheck itself laid out)."""
    if text is None:
        return None
    return text.translate(_CONTROLS_KEEP_LINES if keep_lines else _CONTROLS)


def count(n: int, noun: str) -> str:
    """ "1 call", "2 calls", "10,000 calls"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
