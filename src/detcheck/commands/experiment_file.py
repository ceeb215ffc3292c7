"""Experiment files: one or more measurements declared in TOML, run by `detcheck run`.

    [defaults]                      # optional; every key a measurement may set
    n = 1000
    thresholds = [0.01, 0.001]

    [[measurement]]
    name = "openai-gpt4o"
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"  # the environment variable holding the key (never the key)
    model = "gpt-4o-2024-08-06"

    [[measurement]]                 # a verification: is the endpoint still the reference's model?
    name = "provider-is-llama"
    base_url = "https://provider.example/v1"
    model = "llama-3.1-8b"
    reference = "refs/20261201T000000Z-verify-abc123"   # or the reference's base URL

Errors name the file, the line and the field.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from detcheck import spec
from detcheck.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FIELDS = spec.file_fields()  # field -> (types accepted, what it must be)


@dataclass
class Measurement:
    name: str
    settings: dict = field(default_factory=dict)
    line: int = 0


def _line_of(text: str, key: str, section: str | None, index: int) -> int:
    """1-based line of `key =` inside the index-th [[section]] (or [defaults]), best effort."""
    lines = text.splitlines()
    header = re.compile(
        r"^\s*\[\[\s*measurement\s*\]\]" if section == "measurement" else r"^\s*\[\s*defaults\s*\]"
    )
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    if not starts or index >= len(starts):
        return 1
    start = starts[index]
    for i in range(start + 1, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            break
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1


def load(path: Path) -> list[Measurement]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None

    def fail(message: str, key: str, section: str | None, index: int = 0):
        raise UsageError(f"{path}:{_line_of(text, key, section, index)}: {message}")

    unknown_top = set(data) - {"defaults", "measurement"}
    if unknown_top:
        key = sorted(unknown_top)[0]
        line = next((i + 1 for i, s in enumerate(text.splitlines()) if key in s), 1)
        raise UsageError(
            f"{path}:{line}: unknown section or key {key!r} "
            "(expected [defaults] and [[measurement]])"
        )
    defaults = data.get("defaults", {})
    measurements = data.get("measurement", [])
    if not isinstance(measurements, list) or not measurements:
        raise UsageError(f"{path}: no [[measurement]] declared")
    _check_fields(defaults, lambda m, k: fail(m, k, "defaults"))
    out, names = [], set()
    for i, m in enumerate(measurements):
        _check_fields(m, lambda msg, k, i=i: fail(msg, k, "measurement", i))
        settings = {**defaults, **m}
        name = settings.get("name") or settings.get("model") or f"measurement-{i + 1}"
        if name in names:
            fail(
                f"field 'name': {name!r} is used twice; names must differ", "name", "measurement", i
            )
        names.add(name)
        if "base_url" not in settings and "replay" not in settings:
            fail("needs 'base_url' (or 'replay')", "name", "measurement", i)
        out.append(Measurement(name, settings, _line_of(text, "name", "measurement", i)))
    return out


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_KEY_PREFIXES = ("sk-", "sk_", "gsk_", "xai-", "AIza", "hf_", "pk-", "rk-")


def _looks_like_key(value) -> bool:
    """A value that is probably a key rather than a variable name: a known key prefix, or a long
    run of mixed-case letters and digits, which variable names are not."""
    if not isinstance(value, str):
        return False
    if value.startswith(_KEY_PREFIXES):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    return len(value) >= 24 and mixed and any(c.isdigit() for c in value)


def names_a_variable(value: str) -> bool:
    """Whether `value` is an environment variable's name, not a key given in its place."""
    return bool(_ENV_NAME.fullmatch(value)) and not _looks_like_key(value)


def _check_fields(table: dict, fail) -> None:
    for key, value in table.items():
        if key not in FIELDS:
            fail(f"unknown field {key!r} (known: {', '.join(sorted(FIELDS))})", key)
        types, what = FIELDS[key]
        if key == "seed" and value is False:  # no seed: for an endpoint that refuses one
            continue
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            shown = "" if key.endswith("key_env") else f", got {value!r:.80}"
            fail(f"field {key!r} must be {what}{shown}", key)
        if key == "labels" and not all(isinstance(v, str) for v in value):
            fail("field 'labels' must be a list of strings", key)
        if key.endswith("key_env") and not names_a_variable(value):
            # never echo it: it may be the key itself
            fail(
                f"field {key!r} must name an environment variable (like OPENAI_API_KEY) "
                "that holds the key, not the key itself (the value is not shown)",
                key,
            )
        if key == "thresholds" and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            fail("field 'thresholds' must be a list of numbers", key)
        param = spec.PARAMS.get(key)
        if param is not None and value is not False:
            try:
                param.validate(tuple(value) if key == "labels" else value)
            except UsageError as exc:  # "--n must be ..." said of the file's field
                fail(f"field {key!r} {str(exc).split(' ', 1)[1]}", key)
