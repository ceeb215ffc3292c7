"""Pin the stored schema: changing a column without bumping SCHEMA_VERSION fails here."""

from detcheck.store.schema import RUN_SCHEMA, SCHEMA_VERSION

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
PINNED_V2 = [*PINNED_V1, ("final_url", "string")]
PINNED_V3 = [
    *PINNED_V2,
    ("finish_reason", "dictionary<values=string, indices=int32, ordered=0>"),
    ("text", "string"),
    ("gen_tokens", "list<item: string>"),
    ("gen_logprobs", "list<item: double>"),
    ("gen_top_tokens", "list<item: list<item: string>>"),
    ("gen_top_logprobs", "list<item: list<item: double>>"),
]

DICT = "dictionary<values=string, indices=int32, ordered=0>"
PINNED_V4 = [
    *PINNED_V3,
    ("response_model", DICT),
    ("endpoint", DICT),
    ("measurement", DICT),
    ("target_token", DICT),
    ("target_logprob", "double"),
    ("batch_id", DICT),
    ("custom_id", "string"),
    ("answer", "string"),
]


def test_schema_is_pinned():
    assert SCHEMA_VERSION == 5
    assert [(f.name, str(f.type)) for f in RUN_SCHEMA] == PINNED_V4


def test_version_1_parts_read_with_the_new_columns_as_nulls(recording):
    from detcheck.store import read_run

    run = read_run(recording, columns=["seq", "final_url"])  # written at schema version 1
    assert run.table.num_rows == 10_000
    assert run.table.column("final_url").null_count == 10_000
    batch = next(run.batches(["ok", "final_url"], batch_size=1_000))
    assert batch.num_rows == 1_000 and batch.column("final_url").null_count == 1_000
