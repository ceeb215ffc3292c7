"""Credentials in data that came from elsewhere: a request logger keeps headers, keys and tokens
under whatever names its authors chose, and a completion may quote a key. There is no key of
ours to look for, so two nets: values under a credential's name (anywhere in a logged line,
outside the logprobs, whose `token` fields are generated text), and strings shaped like a key
(wherever they appear). Both are applied before anything is counted, written or printed."""

from __future__ import annotations

import json
import re

from detcheck.text import REDACTED, redact

# strings that are credentials by their shape: OpenAI and Anthropic keys (sk-), bearer and
# basic authorization values, AWS key ids, Google API keys, GitHub, Slack and Hugging Face
# tokens, JSON web tokens, and user:password in a URL
KEY_LIKE = re.compile(
    r"sk-[A-Za-z0-9_\-]{16,}"
    r"|(?i:bearer\s+[A-Za-z0-9._~+/\-]{12,}=*)"
    r"|(?i:basic\s+[A-Za-z0-9+/]{8,}=*)"
    r"|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|(?<=://)[^/\s:@\"']+:[^/\s@\"']+(?=@)"
)
# names whose whole value is a credential (or holds some: a headers object)
_WHOLE = ("authorization", "proxy_authorization", "cookie", "set_cookie", "auth", "credentials")
_ENDINGS = ("key", "token", "secret", "password", "passwd", "headers", "header")
# request parameters whose names end like a credential's but are not one
_PARAMETERS = frozenset({"prompt_cache_key", "idempotency_key"})
# subtrees of a response whose field names are not chosen by a logger: `token` there is the
# generated text, and a legacy completion's top_logprobs are keyed by token
_GENERATED = frozenset({"logprobs", "top_logprobs"})


def is_credential_name(name: str) -> bool:
    name = name.lower().replace("-", "_")
    if name in _PARAMETERS:
        return False
    return name in _WHOLE or name.endswith(_ENDINGS)


def scrub(value, found: set[str], *, generated: bool = False):
    """`value` (parsed JSON) with every credential-named field's value replaced by [REDACTED];
    the strings taken out are added to `found` (to be redacted wherever else they appear).
    Returns `value` itself when nothing was taken out."""
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            if not generated and is_credential_name(k) and v not in (None, "", [], {}):
                _strings(v, found)
                new = REDACTED
            else:
                new = scrub(v, found, generated=generated or k in _GENERATED)
            if new is not v:
                out = dict(value) if out is None else out
                out[k] = new
        return value if out is None else out
    if isinstance(value, list):
        items = [scrub(v, found, generated=generated) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _strings(value, found: set[str]) -> None:
    if isinstance(value, str):
        found.add(value)
        # "Bearer sk-..." and "Basic ...": the credential itself too, for where it stands alone
        found.update(m.group(0).split()[-1] for m in KEY_LIKE.finditer(value))
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, found)
    elif isinstance(value, list):
        for v in value:
            _strings(v, found)
    elif value is not None and not isinstance(value, bool):
        found.add(str(value))


def keys_in(texts) -> set[str]:
    """Every key-like string in `texts`, with the credential inside "Bearer ..." on its own."""
    found = set()
    for text in texts:
        for m in KEY_LIKE.finditer(text):
            found.add(m.group(0))
            found.add(m.group(0).split()[-1])
    return found


def secrets_of(secrets: set[str]) -> list[str]:
    """The secrets to redact, longest first (a key inside a longer header value goes with it)."""
    return sorted((s for s in secrets if s and len(s) >= 8), key=len, reverse=True)


def redacted_json(value, secrets: set[str]):
    """A JSON value without any secret or key-like string in it."""
    text = json.dumps(value)
    found = secrets_of(keys_in([text]) | secrets)
    if not any(s in text for s in found) and "\\u" not in text:
        return value
    return json.loads(redact(text, found))
