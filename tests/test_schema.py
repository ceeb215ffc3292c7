"""Pin the stored schema: changing a column without bumping SCHEMA_VERSION fails here."""

from detcheck.schema import RUN_SCHEMA, SCHEMA_VERSION

PINNED_V1 = [
    ("run_id", "dictionary<values=string, indices=int32, ordered=0>"),
    ("seq", "int64"),
    ("call", "int64"),
    ("attempt", "int32"),
    ("started_at", "timestamp[us, tz=UTC]"),
    ("finished_at", "timestamp[us, tz=UTC]"),
    ("latency_ms", "double"),
    ("in_flight", "int32"),
    ("ok", "bool"),
    ("http_status", "int32"),
    ("error_type", "dictionary<values=string, indices=int32, ordered=0>"),
    ("error", "string"),
    ("response_id", "string"),
    ("request_id", "string"),
    ("model", "dictionary<values=string, indices=int32, ordered=0>"),
    ("system_fingerprint", "dictionary<values=string, indices=int32, ordered=0>"),
    ("token", "string"),
    ("logprob", "double"),
    (
        "top_logprobs",
        "list<item: struct<token: string, logprob: double, bytes: list<item: uint8>>>",
    ),
    ("prompt_tokens", "int32"),
    ("completion_tokens", "int32"),
    ("cached_tokens", "int32"),
    ("response_headers", "map<string, string>"),
    ("raw_body", "string"),
]


def test_schema_is_pinned():
    assert SCHEMA_VERSION == 1
    assert [(f.name, str(f.type)) for f in RUN_SCHEMA] == PINNED_V1
