"""What a second thread does ahead of `detcheck import`'s reading (import_read): split the
next block of a log into lines, find those that may hold a credential (RE2), parse the bare
chat.completion bodies with Arrow's JSON reader, and cut the body out of {request, response}
and Batch API lines in their usual layout (the request read by json on its own), so that the
first thread only groups, checks and spills."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from detcheck.commands import import_columns as ic

WRAPPED = (b'{"request"', b'{"response"')


@dataclass
class Prepared:
    """A chunk with what a second thread found out ahead of it: which lines may hold a
    credential, which are bare bodies (parsed) and which are wrapped."""

    chunk: ic.Chunk
    suspect: np.ndarray
    bare: list[int]
    wrapped: list[int]
    parsed: pa.Table | None
    tokens: np.ndarray | None  # the "token" fields in each bare line
    unwrapped: list  # per wrapped line: its body and what it carries, or None (read by json)


def prepare(block: tuple, fmt: str) -> Prepared:
    from detcheck.commands.import_files import MAX_LINE_BYTES

    chunk = ic.split_block(*block[:2], MAX_LINE_BYTES, block[2])
    lines = chunk.lines
    suspect = ic.suspects(pa.array(lines, pa.binary())) if lines else np.zeros(0, bool)
    bare, wrapped = [], []
    if fmt == "batch":
        wrapped = np.flatnonzero(~suspect).tolist()
    elif not suspect.any() and not any(line.startswith(WRAPPED) for line in lines):
        bare = list(range(len(lines)))  # the usual bare log
    else:
        for k, line in enumerate(lines):
            if not suspect[k]:
                (wrapped if line.startswith(WRAPPED) else bare).append(k)
    parsed = tokens = None
    if bare:
        bodies = lines if len(bare) == len(lines) else [lines[k] for k in bare]
        parsed = ic.parse_bodies(bodies)
        if parsed is not None:
            tokens = ic.token_fields(pa.array(bodies, pa.binary()))
    unwrap = _batch_layout if fmt == "batch" else _logged_layout
    unwrapped = [unwrap(lines[k]) for k in wrapped]
    return Prepared(chunk, suspect, bare, wrapped, parsed, tokens, unwrapped)


_DECODER = json.JSONDecoder()
_REQUEST_KEY = re.compile(rb'\{\s*"request"\s*:\s*')
_RESPONSE_KEY = re.compile(r'\s*,\s*"response"\s*:\s*')
_STRING = rb'"(?:[^"\\]|\\.)*"'
_BATCH_HEAD = re.compile(
    rb'\{\s*"id"\s*:\s*' + _STRING + rb'\s*,\s*"custom_id"\s*:\s*(' + _STRING
    + rb')\s*,\s*"response"\s*:\s*\{\s*"status_code"\s*:\s*200\s*,\s*"request_id"\s*:\s*('
    + _STRING + rb'|null)\s*,\s*"body"\s*:\s*'
)  # fmt: skip
_BATCH_TAIL = re.compile(rb'\s*\}\s*(?:,\s*"error"\s*:\s*null\s*)?\}\s*$')


def _logged_layout(line: bytes):
    """(the response body's bytes as logged, the request) of {"request": ..., "response":
    {...}} in that order and nothing after (what a logger's json.dumps writes), without
    parsing the body in Python; None for any other layout (then json reads the line)."""
    head = _REQUEST_KEY.match(line)
    if head is None or not line.isascii():  # ASCII: a character is a byte
        return None
    text = line.decode("ascii")
    try:
        request, end = _DECODER.raw_decode(text, head.end())
    except (ValueError, RecursionError):
        return None
    key = _RESPONSE_KEY.match(text, end)
    body = text[key.end() :].rstrip() if key else ""
    if not body.endswith("}") or not isinstance(request, dict):
        return None
    body = body[:-1].rstrip()  # the wrapper's own closing brace
    if not body.startswith("{") or not body.endswith("}"):
        return None
    return line[key.end() : key.end() + len(body)], request


def _batch_layout(line: bytes):
    """(the body's bytes, the line's own fields) of a Batch API output line of status 200 in
    the API's layout (id, custom_id, response {status_code, request_id, body}, error null);
    None for any other (then json reads the line)."""
    head = _BATCH_HEAD.match(line)
    tail = _BATCH_TAIL.search(line) if head else None
    if tail is None or tail.start() <= head.end():
        return None
    try:
        custom_id = json.loads(head.group(1))
        request_id = json.loads(head.group(2))
    except ValueError:
        return None
    body = line[head.end() : tail.start()]
    if not body.startswith(b"{") or not body.endswith(b"}"):
        return None
    return body, {"custom_id": custom_id, "http_status": 200, "request_id": request_id}


def ahead(items, work, *args):
    """work(item, *args) for each item, the next one done by a second thread meanwhile
    (Arrow's JSON reader and RE2 let go of the GIL: the two cores share the reading)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="detcheck-import") as pool:
        pending = None
        for item in items:
            future = pool.submit(work, item, *args)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()
