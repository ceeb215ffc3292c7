"""Where runs live: local paths or object-store URIs (s3://, gs://), shown and stored without
credentials."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs

from detcheck.errors import DataError
from detcheck.store.files import _first_line


def is_uri(location) -> bool:
    """An object-store location (s3://, gs://, ...) rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """A filesystem and path for a URI; query parameters configure it, e.g.
    s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise DataError(f"{display_uri(uri)}: cannot open ({_first_line(exc)})") from None


def display_uri(uri: str) -> str:
    """The URI without user:password and without its query string (which may carry
    credentials or endpoints): what is shown and stored."""
    base = str(uri).split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


_SECRET_QUERY_WORDS = ("key", "secret", "token", "password", "credential", "session", "sig")


def safe_uri(uri: str) -> str:
    """The URI without user:password and without query parameters that may hold credentials
    (access_key, secret_key, session_token, ...); endpoint_override, scheme, region stay, so
    the location can be opened again (credentials then come from the environment)."""
    from urllib.parse import parse_qsl, urlencode

    query = str(uri).split("#", 1)[0].partition("?")[2]
    kept = [
        (k, v)
        for k, v in parse_qsl(query, keep_blank_values=True)
        if not any(word in k.lower() for word in _SECRET_QUERY_WORDS)
    ]
    return display_uri(uri) + (f"?{urlencode(kept)}" if kept else "")
