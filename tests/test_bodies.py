"""Odd response bodies never crash detcheck: each becomes a stored row or a recorded failure."""

from __future__ import annotations

import json
import math

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from detcheck.send.record import redact_row, success_fields
from detcheck.shapes._parse import MalformedResponse
from detcheck.shapes.chat import parse as parse_chat_body
from detcheck.store import rows_to_table

odd_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(-9999.0),  # OpenAI's sentinel for "too unlikely to say"
    st.just(0.0),
    st.integers(-(2**70), 2**70),  # JSON integers, some beyond float64's exact range
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)
odd_tokens = st.one_of(
    st.text(max_size=12),  # any unicode, control characters included
    st.sampled_from(["\ud800", "a\udfffb", "\x00", " Heads", "", "\n"]),  # lone surrogates
    st.none(),
    st.integers(),
)
odd_bytes = st.one_of(
    st.none(),
    st.lists(st.integers(-5, 300), max_size=6),  # out-of-range "bytes"
    st.lists(st.integers(0, 255), max_size=6),  # valid, not necessarily UTF-8
    st.text(max_size=3),
)
entry = st.fixed_dictionaries(
    {"token": odd_tokens, "logprob": odd_floats, "bytes": odd_bytes},
    optional={"extra": st.integers()},
)
top_list = st.one_of(st.lists(entry, max_size=25), st.none(), st.just("not a list"))
content_item = st.fixed_dictionaries(
    {"token": odd_tokens, "logprob": odd_floats}, optional={"top_logprobs": top_list}
)
body = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=10), st.none(), st.integers()),
        "model": st.one_of(st.text(max_size=10), st.none()),
        "system_fingerprint": st.one_of(st.text(max_size=10), st.none(), st.integers()),
        "choices": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "logprobs": st.one_of(
                            st.none(),
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "content": st.one_of(
                                        st.lists(content_item, max_size=2), st.none()
                                    )
                                },
                            ),
                        ),
                        "message": st.just({"content": ""}),
                    },
                ),
                max_size=2,
            ),
            st.none(),
            st.text(max_size=3),
        ),
        "usage": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {}, optional={"prompt_tokens": odd_floats, "prompt_tokens_details": st.none()}
            ),
        ),
    },
)


def store(raw: bytes) -> pa.Table | None:
    """What a live run does with a 200 body: parse, build the row, journal it, write Parquet."""
    try:
        parsed = parse_chat_body(raw)
    except MalformedResponse as exc:
        assert exc.kind in ("malformed_body", "no_logprobs")
        return None
    row = redact_row(
        {
            "run_id": "r",
            "seq": 0,
            "call": 0,
            "attempt": 1,
            "ok": True,
            "raw_body": raw.decode("utf-8", "replace"),
            **success_fields(parsed),
        },
        ["sk-secret-key-1234"],
    )
    journalled = json.loads(json.dumps(row))  # the journal is strict JSON (no NaN)
    return rows_to_table([journalled], {"run_id": "r"})


@settings(max_examples=400, deadline=None)
@given(body)
def test_any_body_shape_is_stored_or_rejected_cleanly(data):
    table = store(json.dumps(data).encode())
    if table is not None:
        assert table.num_rows == 1
        lp = table.column("logprob")[0].as_py()
        assert lp is None or math.isfinite(lp)  # NaN / inf are stored as null
        for e in table.column("top_logprobs")[0].as_py():
            assert e["logprob"] is None or math.isfinite(e["logprob"])
            assert e["bytes"] is None or all(0 <= b <= 255 for b in e["bytes"])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_not_crashing(raw):
    store(raw)


def test_nan_and_infinity_literals_and_sentinel():
    raw = (
        b'{"choices": [{"logprobs": {"content": [{"token": "Heads", "logprob": NaN, '
        b'"top_logprobs": [{"token": "Heads", "logprob": -Infinity, "bytes": null}, '
        b'{"token": "T", "logprob": -9999.0, "bytes": [84]}]}]}}]}'
    )
    table = store(raw)
    tops = table.column("top_logprobs")[0].as_py()
    assert table.column("logprob")[0].as_py() is None
    assert [e["logprob"] for e in tops] == [None, -9999.0]


def test_non_utf8_bytes_and_lone_surrogates_survive():
    raw = json.dumps(
        {
            "choices": [
                {
                    "logprobs": {
                        "content": [
                            {
                                "token": "\ud83d",
                                "logprob": -0.1,
                                "top_logprobs": [
                                    {"token": "\ud83d", "logprob": -0.1, "bytes": [240, 159]}
                                ],
                            }
                        ]
                    }
                }
            ]
        }
    ).encode()
    table = store(raw)
    entry = table.column("top_logprobs")[0].as_py()[0]
    assert entry["bytes"] == [240, 159]  # half an emoji, kept as sent
    assert entry["token"] == "\ufffd"  # the unpaired surrogate cannot be stored as text


def test_huge_body():
    top = [{"token": f"t{i}" * 50, "logprob": -float(i), "bytes": None} for i in range(20)]
    raw = json.dumps(
        {
            "choices": [
                {"logprobs": {"content": [{"token": "t0", "logprob": 0.0, "top_logprobs": top}]}}
            ],
            "padding": "x" * 5_000_000,
        }
    ).encode()
    table = store(raw)
    assert len(table.column("raw_body")[0].as_py()) > 5_000_000


def test_only_allow_listed_response_headers_are_kept_whatever_their_case():
    import httpx2

    from detcheck.send.record import allowed_headers

    headers = httpx2.Headers(
        {
            "X-Request-Id": "req_1",
            "Set-Cookie": "session=secret",
            "openai-organization": "org-secret",
            "x-ratelimit-remaining-requests": "0",
            "Content-Type": "application/json",
        }
    )
    assert allowed_headers(headers) == {
        "x-request-id": "req_1",
        "x-ratelimit-remaining-requests": "0",
    }
    assert allowed_headers({"Retry-After": "2", "Authorization": "Bearer sk-x"}) == {
        "retry-after": "2"
    }
    assert allowed_headers(None) is None
