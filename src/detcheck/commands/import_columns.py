"""The fast path of `detcheck import`: a file read in chunks of whole lines, and chat.completion
bodies parsed by Arrow's JSON reader straight into the columns a run stores, each line once.

It takes only what it can do exactly as the per-line reader (import_formats) would: a
batch of bodies with anything else in it (another API, several choices, a refusal, a token that
is not ASCII or whose bytes are not its text, a number JSON does not allow) is split in halves
until the odd lines are found, and those go the per-line way. Lines that may hold a credential
(a key's shape, a credential's field name, an escaped lone surrogate) never come here."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.store.journal import _json_type
from detcheck.store.schema import RUN_SCHEMA

CHUNK_BYTES = 8 * 1024 * 1024  # lines read, checked and parsed at once
SMALLEST_FAST = 32  # a batch of bodies smaller than this that fails goes line by line

# a row as import stores it, before the run's own columns (run_id, seq, constants) are added
ROW_FIELDS = (
    "attempt", "ok", "http_status", "error_type", "error", "response_id", "request_id",
    "system_fingerprint", "token", "logprob", "top_logprobs", "prompt_tokens",
    "completion_tokens", "cached_tokens", "raw_body", "finish_reason", "text", "gen_tokens",
    "gen_logprobs", "gen_top_tokens", "gen_top_logprobs", "response_model", "custom_id", "answer",
)  # fmt: skip
# the spill's own: the row's place in the input (file, line), its group, and its response's
# identity (a response logged twice is counted once)
ORDER, GROUP, MARK = "_line", "_group", "_mark"
SPILL_SCHEMA = pa.schema(
    [pa.field(f.name, _json_type(f.type)) for f in RUN_SCHEMA if f.name in ROW_FIELDS]
    + [pa.field(ORDER, pa.int64()), pa.field(GROUP, pa.int32()), pa.field(MARK, pa.int64())]
)

# What a line may hold that the fast path must not take: a key-like string (the shapes of
# import_secrets.KEY_LIKE, without its look-arounds: RE2 has none, and a wider net only costs
# speed), a field named like a credential ("token" alone is counted apart: logprobs use it), an
# escaped lone surrogate, and a NaN or infinity (not JSON; Python's reader takes them)
SUSPECT = (
    r"sk-[A-Za-z0-9_\-]{16}|(?i:bearer)\s|(?i:basic)\s+[A-Za-z0-9+/]{8}|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{35}|gh[pousr]_[A-Za-z0-9]{30}|github_pat_|xox[abposr]-|hf_[A-Za-z0-9]{30}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ|://[^/\s:@\"']+:[^/\s@\"']+@"
    r"|\\[uU][dD][89a-fA-F]"
    r'|"[^"\\]*(?i:key|secret|password|passwd|header|headers|authorization|cookie|auth|credentials)"'
    r'\s*:|"[^"\\]+(?i:token)"\s*:'
)

_TOP = pa.struct(
    [("token", pa.string()), ("logprob", pa.float64()), ("bytes", pa.list_(pa.int64()))]
)
_ENTRY = pa.struct([*_TOP, pa.field("top_logprobs", pa.list_(_TOP))])
_CHOICE = pa.struct(
    [
        ("finish_reason", pa.string()),
        ("message", pa.struct([("content", pa.string()), ("refusal", pa.string())])),
        ("logprobs", pa.struct([("content", pa.list_(_ENTRY))])),
    ]
)
_USAGE = pa.struct(
    [
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("prompt_tokens_details", pa.struct([("cached_tokens", pa.int64())])),
    ]
)
BODY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("object", pa.string()),
        ("model", pa.string()),
        ("system_fingerprint", pa.string()),
        ("choices", pa.list_(_CHOICE)),
        ("usage", _USAGE),
    ]
)
INT32 = (-(2**31), 2**31 - 1)


@dataclass
class Chunk:
    """Whole lines of a file: each non-blank one's bytes and 1-based number, and the numbers
    and lengths of lines over the limit of one response (read past, not held)."""

    lines: list[bytes]
    numbers: np.ndarray
    overlong: list[tuple[int, int]]


def blocks(path, cap: int) -> Iterator[tuple[bytes, int, list]]:
    """`path` (gzip or not, past a byte order mark) as blocks of whole lines of about
    CHUNK_BYTES: (bytes, lines before it, [(number, length)] of lines too long to be in one,
    read past without being held). Cheap: the splitting is `split_block`'s, on another thread."""
    from detcheck.commands.import_files import open_input, readline_capped

    with open_input(path) as f:
        before = 0  # lines in earlier blocks
        carry = b""
        while True:
            block = f.read(CHUNK_BYTES)
            data = carry + block if carry else block
            if not data:
                return
            cut = len(data) if not block else data.rfind(b"\n") + 1
            if cut == 0:  # no line ends in it: a line longer than a block
                if len(data) <= cap:
                    carry = data
                    continue
                length = len(data)
                while (rest := readline_capped(f, 1 << 20, path)) and not rest.endswith(b"\n"):
                    length += len(rest)
                before += 1
                yield b"", before, [(before, length + len(rest))]
                carry = b""
                continue
            chunk, carry = data[:cut], data[cut:]
            yield chunk, before, []
            before += chunk.count(b"\n") + (not chunk.endswith(b"\n"))


def split_block(data: bytes, before: int, cap: int, overlong: list) -> Chunk:
    """A block's non-blank lines, numbered; those over `cap` named in `overlong` instead."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the block ended with a newline
        lines.pop()
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    if not len(lines) or ((lengths > 0) & (lengths <= cap)).all():
        odd = np.zeros(0, np.int64)
    else:
        odd = np.flatnonzero((lengths == 0) | (lengths > cap))
    # blank: empty, or only whitespace (a line that starts with one is looked at: rare)
    odd = set(odd.tolist()) | {k for k, line in enumerate(lines) if line[:1].isspace()
                               and (not line.strip() or len(line) > cap)}  # fmt: skip
    overlong = overlong + [(before + k + 1, len(lines[k])) for k in sorted(odd)
                           if len(lines[k]) > cap]  # fmt: skip
    if not odd:
        return Chunk(lines, np.arange(before + 1, before + 1 + len(lines)), overlong)
    keep = [k for k in range(len(lines)) if k not in odd]
    return Chunk([lines[k] for k in keep], np.array(keep, np.int64) + before + 1, overlong)


def chunks(path, cap: int) -> Iterator[Chunk]:
    """`path` as Chunks of lines (blocks split in this thread)."""
    for data, before, overlong in blocks(path, cap):
        yield split_block(data, before, cap, overlong)


def suspects(lines: pa.Array) -> np.ndarray:
    """Per line: may it hold a credential or anything the fast path must not take? (a field
    named "token" more often than the logprobs account for is checked after parsing)."""
    if not len(lines):
        return np.zeros(0, bool)
    return pc.match_substring_regex(lines, SUSPECT).to_numpy(zero_copy_only=False)


def token_fields(lines: pa.Array) -> np.ndarray:
    return pc.count_substring(lines, '"token"').to_numpy(zero_copy_only=False)


def parse_bodies(lines: list[bytes]) -> pa.Table | None:
    """chat.completion bodies (one per line) by Arrow's reader, or None if any cannot be."""
    import pyarrow.json as pj

    if not lines:
        return None
    buffer = b"\n".join(lines)
    try:
        table = pj.read_json(
            io.BytesIO(buffer),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(buffer) + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=BODY_SCHEMA, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == len(lines) else None


def chat_rows(bodies: pa.Table, raw: pa.Array, counted_tokens: np.ndarray) -> pa.Table | None:
    """The stored columns of parsed chat.completion bodies (`raw`: each body's text, kept as
    received), or None unless every one is exactly what the per-line reader would make of it."""
    n = bodies.num_rows
    if not n:
        return None
    obj = bodies.column("object").combine_chunks()
    if not pc.all(pc.fill_null(pc.equal(obj, "chat.completion"), False)).as_py():
        return None
    choices = bodies.column("choices").combine_chunks()
    if not pc.all(pc.fill_null(pc.equal(pc.list_value_length(choices), 1), False)).as_py():
        return None  # no choices, or several: the per-line reader says why, or reads each
    choice = pc.list_element(choices, 0)
    message = pc.struct_field(choice, "message")
    if pc.any(pc.is_valid(pc.struct_field(message, "refusal"))).as_py():
        return None
    content = pc.struct_field(pc.struct_field(choice, "logprobs"), "content")
    lengths = pc.fill_null(pc.list_value_length(content), 0).to_numpy(zero_copy_only=False)
    entries = pc.list_flatten(content)  # the null or empty content of a text-only body adds none
    has = lengths > 0
    tokens = pc.struct_field(entries, "token")
    values = pc.struct_field(entries, "logprob")
    tops = pc.struct_field(entries, "top_logprobs")
    top_lengths = pc.fill_null(pc.list_value_length(tops), 0).to_numpy(zero_copy_only=False)
    flat_tops = pc.list_flatten(tops)
    top_tokens = pc.struct_field(flat_tops, "token")
    top_values = pc.struct_field(flat_tops, "logprob")
    # every "token" field in the text is one of these (else a credential may be named so)
    offsets = _offsets(lengths)
    top_sums = _offsets(top_lengths)
    expected = lengths + top_sums[offsets[1:]] - top_sums[offsets[:-1]]
    if not np.array_equal(counted_tokens, expected):
        return None
    if not (
        _clean(tokens, values, pc.struct_field(entries, "bytes"))
        and _clean(top_tokens, top_values, pc.struct_field(flat_tops, "bytes"))
    ):
        return None
    usage = bodies.column("usage").combine_chunks()
    first_top_lengths = np.zeros(n, np.int64)
    first_top_lengths[has] = top_lengths[offsets[:-1][has]]
    first_tops = _first_tops(flat_tops, top_lengths, offsets, has, first_top_lengths)
    first = offsets[:-1][has]
    token = _scatter(tokens.take(pa.array(first)), has, pa.string())
    logprob = _scatter(values.take(pa.array(first)), has, pa.float64())
    mask = pa.array(~has)
    columns = {
        "attempt": pa.array(np.ones(n, np.int32)),
        "ok": pa.array(np.ones(n, bool)),
        "response_id": bodies.column("id").combine_chunks(),
        "system_fingerprint": bodies.column("system_fingerprint").combine_chunks(),
        "token": token,
        "logprob": logprob,
        "top_logprobs": first_tops,
        "prompt_tokens": _int32(pc.struct_field(usage, "prompt_tokens")),
        "completion_tokens": _int32(pc.struct_field(usage, "completion_tokens")),
        "cached_tokens": _int32(
            pc.struct_field(pc.struct_field(usage, "prompt_tokens_details"), "cached_tokens")
        ),
        "raw_body": raw,
        "finish_reason": pc.struct_field(choice, "finish_reason"),
        "text": pc.struct_field(message, "content"),
        "gen_tokens": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), tokens, mask=mask),
        "gen_logprobs": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, mask=mask),
        "gen_top_tokens": _nested(top_tokens, top_lengths, offsets, mask),
        "gen_top_logprobs": _nested(top_values, top_lengths, offsets, mask),
        "response_model": bodies.column("model").combine_chunks(),
    }
    # a text-only body: no logprobs, so no cached count is read either (as text_only does)
    columns["cached_tokens"] = pc.if_else(pa.array(has), columns["cached_tokens"], None)
    return table_of(columns, n)


def table_of(columns: dict, n: int) -> pa.Table:
    """A spill table: `columns` in SPILL_SCHEMA's types, every other column null."""
    arrays = []
    for f in SPILL_SCHEMA:
        value = columns.get(f.name)
        arrays.append(pa.nulls(n, f.type) if value is None else value.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=SPILL_SCHEMA)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _clean(tokens: pa.Array, values: pa.Array, raw: pa.Array) -> bool:
    """Every token text and ASCII, every logprob a finite number, every `bytes` null or the
    token's own bytes: what the per-line reader keeps as it is."""
    if not len(tokens):
        return True
    if tokens.null_count or values.null_count:
        return False
    if not pc.all(pc.string_is_ascii(tokens)).as_py():
        return False
    v = values.to_numpy(zero_copy_only=False)
    if not np.isfinite(v).all():
        return False
    given = pc.is_valid(raw).to_numpy(zero_copy_only=False)
    if not given.any():
        return True
    t, r = tokens.filter(pa.array(given)), raw.filter(pa.array(given))
    if not np.array_equal(pc.binary_length(t).to_numpy(), pc.list_value_length(r).to_numpy()):
        return False
    t = pa.concat_arrays([t])  # its own buffers, offsets from 0
    offsets = np.frombuffer(t.buffers()[1], np.int32)[t.offset : t.offset + len(t) + 1]
    text = np.frombuffer(t.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return np.array_equal(text, pc.list_flatten(r).to_numpy(zero_copy_only=False))


def _scatter(values: pa.Array, has: np.ndarray, type_: pa.DataType) -> pa.Array:
    """`values` (one per row where `has`) at those rows, null elsewhere."""
    if has.all():
        return values.cast(type_)
    index = np.full(len(has), -1)
    index[has] = np.arange(int(has.sum()))
    return values.cast(type_).take(pa.array(index, mask=~has))


def _first_tops(flat_tops, top_lengths, offsets, has, first_top_lengths) -> pa.Array:
    """Each row's first position's top logprobs ({token, logprob, bytes}; [] when it has
    none), the list the flip analysis reads."""
    starts = _offsets(top_lengths)[offsets[:-1][has]]
    counts = first_top_lengths[has]
    out = _offsets(counts)
    index = np.arange(out[-1]) - np.repeat(out[:-1], counts) + np.repeat(starts, counts)
    picked = flat_tops.take(pa.array(index.astype(np.int64)))
    raw = pc.struct_field(picked, "bytes")
    as_bytes = pa.ListArray.from_arrays(
        pa.array(
            _offsets(pc.fill_null(pc.list_value_length(raw), 0).to_numpy(zero_copy_only=False)),
            pa.int32(),
        ),  # fmt: skip
        pc.list_flatten(raw).cast(pa.uint8()),
        mask=pc.is_null(raw),
    )
    entries = pa.StructArray.from_arrays(
        [pc.struct_field(picked, "token"), pc.struct_field(picked, "logprob"), as_bytes],
        names=["token", "logprob", "bytes"],
    )
    return pa.ListArray.from_arrays(pa.array(_offsets(first_top_lengths), pa.int32()), entries)


def _nested(values: pa.Array, top_lengths, offsets, mask) -> pa.Array:
    """Per row, per position, the ranked top tokens (or logprobs): [] where a position has
    none; null for a row without logprobs."""
    inner = pa.ListArray.from_arrays(pa.array(_offsets(top_lengths), pa.int32()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=mask)


def _int32(values: pa.Array) -> pa.Array:
    """A count that fits the int32 columns; null beyond (the raw body keeps it)."""
    inside = pc.and_(pc.greater_equal(values, INT32[0]), pc.less_equal(values, INT32[1]))
    return pc.if_else(pc.fill_null(inside, False), values, None).cast(pa.int32())


def with_order(table: pa.Table, order, groups, marks) -> pa.Table:
    for name, values in ((ORDER, order), (GROUP, groups), (MARK, marks)):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(values, field.type))
    return table


def rows_table(rows: list[dict]) -> pa.Table:
    """Row dicts as a spill table; a row that does not fit (a number out of its column's
    range) is kept as a failed row with its raw body, as a journal keeps it."""
    try:
        return pa.Table.from_pylist(rows, schema=SPILL_SCHEMA)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    fixed = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=SPILL_SCHEMA)
            fixed.append(row)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raw = row.get("raw_body")
            fixed.append({
                "attempt": 1, "ok": False, "error_type": "unstorable",
                "error": f"the row did not fit the schema: {exc}"[:500],
                "raw_body": raw if isinstance(raw, str) else None,
                ORDER: row[ORDER], GROUP: row[GROUP], MARK: None,
            })  # fmt: skip
    return pa.Table.from_pylist(fixed, schema=SPILL_SCHEMA)
