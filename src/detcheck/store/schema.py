"""The stored form of a run: one row per request attempt. Changed in one place, pinned by a test.

Bump SCHEMA_VERSION whenever a column is added, removed, renamed or retyped. Older parts stay
readable: a column they lack reads as nulls (version 1 has no `final_url`, versions 1 and 2 no
whole-generation columns, versions 1 to 4 no `answer`), or, for the run's constants, as the
run's own value (see `store.files.run_constants`). Up to version 3, `model` held the model the
response named, which is `response_model` since 4.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 5

# Bump when a key of run.json is added, removed, renamed or retyped (tests/test_json_schema.py
# pins them). 1: the first pinned form (with `timeout_s`, `client`, `resumed` sessions).
# 2: `config.kind` ("flip" or "generate"). 3: `background_load`, and its counts in `notes`.
# 4: `measurement` (an experiment's name), `partition` (the Hive keys of the run's path), `via`
# ("online" or "batch") and, for a batch run, `batches` (each batch's id, input file, status).
# 5: `via` "import" and `imported` (when, the format, each source file's name, size and sha256,
# lines skipped, what the data lacks), in a run `detcheck import` wrote.
RUN_JSON_VERSION = 5

# Key of the run metadata (JSON) in every Parquet file's schema metadata.
RUN_META_KEY = b"detcheck.run"
SCHEMA_VERSION_KEY = b"detcheck.schema_version"

TOP_LOGPROB = pa.struct(
    [
        pa.field("token", pa.string()),
        pa.field("logprob", pa.float64()),
        pa.field("bytes", pa.list_(pa.uint8())),  # as the API sends it; null if not bytes
    ]
)

# Response headers worth keeping. Everything else is dropped: request headers never reach disk.
RESPONSE_HEADER_ALLOWLIST = (
    "x-request-id",
    "openai-processing-ms",
    "openai-version",
    "openai-model",
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "date",
    "server",
)

RUN_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.dictionary(pa.int32(), pa.string())),
        pa.field("seq", pa.int64(), nullable=False),  # attempt order within the run
        pa.field("call", pa.int64(), nullable=False),  # which of the n calls this attempt serves
        pa.field("attempt", pa.int32(), nullable=False),  # 1 for the first try of a call
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("latency_ms", pa.float64()),
        pa.field("in_flight", pa.int32()),  # requests in flight when this one started
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("error_type", pa.dictionary(pa.int32(), pa.string())),
        pa.field("error", pa.string()),
        pa.field("response_id", pa.string()),
        pa.field("request_id", pa.string()),
        # the model asked for (a run constant); in a partitioned layout it is in the path
        # (model=<model>), not in the file, as Hive and Spark lay out partition columns
        pa.field("model", pa.dictionary(pa.int32(), pa.string())),
        pa.field("system_fingerprint", pa.dictionary(pa.int32(), pa.string())),
        pa.field("token", pa.string()),
        pa.field("logprob", pa.float64()),
        pa.field("top_logprobs", pa.list_(TOP_LOGPROB)),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("cached_tokens", pa.int32()),
        pa.field("response_headers", pa.map_(pa.string(), pa.string())),
        pa.field("raw_body", pa.string()),
        # the URL that answered when the request was redirected (no credentials); else null
        pa.field("final_url", pa.string()),  # since version 2
        # whole generations (`detcheck generate`; null for flip): since version 3
        pa.field("finish_reason", pa.dictionary(pa.int32(), pa.string())),
        pa.field("text", pa.string()),  # the completion as the API gave it
        pa.field("gen_tokens", pa.list_(pa.string())),  # every generated token, in order
        pa.field("gen_logprobs", pa.list_(pa.float64())),
        pa.field("gen_top_tokens", pa.list_(pa.list_(pa.string()))),  # per position, ranked
        pa.field("gen_top_logprobs", pa.list_(pa.list_(pa.float64()))),
        # since version 4: what a person needs without unpacking nested lists
        pa.field("response_model", pa.dictionary(pa.int32(), pa.string())),  # as it answered
        pa.field("endpoint", pa.dictionary(pa.int32(), pa.string())),  # without credentials
        pa.field("measurement", pa.dictionary(pa.int32(), pa.string())),  # experiment name
        pa.field("target_token", pa.dictionary(pa.int32(), pa.string())),  # first label's token
        pa.field("target_logprob", pa.float64()),  # its logprob in top_logprobs; null if absent
        pa.field("batch_id", pa.dictionary(pa.int32(), pa.string())),  # --via batch: its batch
        pa.field("custom_id", pa.string()),  # --via batch: the line's id in the batch
        # since version 5: the answer the data gave with the completion (`import --answer`)
        pa.field("answer", pa.string()),
    ]
)

COLUMNS = tuple(RUN_SCHEMA.names)

# What each column holds: the column table (docs/columns.md) is written from it by docs/generate.py
COLUMN_MEANINGS = {
    "run_id": "the run's id (also its directory's name)",
    "seq": "attempt order within the run",
    "call": "which of the n calls this attempt serves",
    "attempt": "1 for a call's first try, 2 for its first retry, ...",
    "started_at": "when the request was sent",
    "finished_at": "when its answer (or failure) arrived",
    "latency_ms": "the two apart, in milliseconds",
    "in_flight": "requests in flight when it started (background load included)",
    "ok": "a usable response (failed attempts are rows too)",
    "http_status": "the HTTP status, null if none came",
    "error_type": "why an attempt failed: `http_<status>`, `timeout`, `connection`, "
    "`malformed_body`, `no_logprobs`, `unusable_logprob`, `body_rejected`, `client_error`, "
    "`unstorable`",
    "error": "the failure in words",
    "response_id": "the response's `id`",
    "request_id": "the `x-request-id` header",
    "model": "the model asked for (in the path for partitioned runs)",
    "system_fingerprint": "the backend configuration the response names",
    "token": "the first token the endpoint chose",
    "logprob": "its logprob (nats)",
    "top_logprobs": "the first position's top logprobs, ranked",
    "prompt_tokens": "usage",
    "completion_tokens": "usage",
    "cached_tokens": "usage: prompt tokens served from the provider's cache",
    "response_headers": "allow-listed response headers (request headers are never stored)",
    "raw_body": "the response body as received (keys redacted)",
    "final_url": "the URL that answered a redirected request (no credentials), else null",
    "finish_reason": "`generate`: why the completion stopped",
    "text": "`generate`: the completion",
    "gen_tokens": "`generate`: every generated token",
    "gen_logprobs": "`generate`: each token's logprob",
    "gen_top_tokens": "`generate`: per position, the ranked alternatives",
    "gen_top_logprobs": "`generate`: their logprobs",
    "response_model": "the model the response named (a dated snapshot, or another model)",
    "endpoint": "the base URL, without credentials (`replay:<path>` for a replay)",
    "measurement": "the experiment's measurement `name`; null for `flip`",
    "target_token": "the first label's token (`flip`)",
    "target_logprob": "that token's logprob among the row's top logprobs; null where it is not "
    "there",
    "batch_id": "`--via batch`: the batch the line came back in",
    "custom_id": "`--via batch`: the line's id in its batch (`call-<c>-attempt-<a>`)",
    "answer": "`import --answer`: the answer the table gave with the completion (TARa@N without "
    "`--answer-regex`); null elsewhere",
}
