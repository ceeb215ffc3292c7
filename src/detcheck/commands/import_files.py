"""Opening what `detcheck import` reads: gzip-compressed or not, past a UTF-8 byte order mark,
refused with the reason if it cannot be read or is empty; and the limit of one line (or CSV
row), which every reader applies so that no input is held whole."""

from __future__ import annotations

import gzip
from pathlib import Path

from detcheck.errors import DataError, UsageError

# one line (or CSV row) at most: send.batch_api.MAX_LINE_BYTES, a response body and the line
# around it (not imported from there: that module brings in the SDK, 2 s of start-up)
MAX_LINE_BYTES = 8 * 1024 * 1024 + 64 * 1024
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


def open_input(path: Path):
    """A file to import, opened for reading as bytes: decompressed if it is gzip, past a UTF-8
    byte order mark, and refused with the reason if it cannot be read or is empty."""
    try:
        f = open(path, "rb")
        head = f.read(3)
        if head[:2] == GZIP_MAGIC:
            f.seek(0)
            f = gzip.GzipFile(fileobj=f, mode="rb")
            head = f.read(3)
        if head != BOM:
            f.seek(0)
        if not head:
            f.close()
            raise UsageError(f"{path}: empty (nothing to import)")
    except (OSError, EOFError) as exc:
        raise UsageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return f


def readline_capped(f, limit: int, path: Path) -> bytes:
    try:
        return f.readline(limit)
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot be read to its end ({exc})") from None
