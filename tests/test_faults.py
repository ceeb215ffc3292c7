"""Faults over real HTTP on 127.0.0.1: exactly N successes, every fault recorded, none twice."""

from __future__ import annotations

import json
import random
import time

from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI, Reply, coin_flip

runner = CliRunner()
KEY = "sk-test-0123456789abcdef"


def faulty(p429=0.05, p500=0.03, p_malformed=0.01, p_drop=0.01, p_nologprobs=0.0, seed=7):
    def respond(i, request):
        r = random.Random(seed * 1_000_003 + i).random()
        if r < p429:
            headers = {"retry-after-ms": "5"} if i % 2 else {}  # with and without Retry-After
            return Reply(429, b'{"error": {"message": "Rate limit reached"}}', headers)
        r -= p429
        if r < p500:
            return Reply(500, b'{"error": {"message": "The server had an error"}}')
        r -= p500
        if r < p_malformed:
            return Reply(200, b'{"id": "chatcmpl-broken", "choices": [', usable=False)  # cut off
        r -= p_malformed
        if r < p_drop:
            return Reply(drop=True)
        r -= p_drop
        if r < p_nologprobs:
            body = {"id": f"x{i}", "choices": [{"message": {"content": "Heads"}}]}
            return Reply(200, json.dumps(body).encode(), usable=False)
        return coin_flip(i, request)

    return respond


def run_flip(server, out, *args, quiet=True):
    return runner.invoke(
        app,
        [
            "flip",
            "--out",
            str(out),
            *(["-q"] if quiet else []),
            "--json",
            "--backoff-s",
            "0.01",
            "--max-backoff-s",
            "0.05",
            "--max-attempts",
            "10",
            *map(str, args),
        ],
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
    )


def test_exactly_n_successes_under_mixed_faults(tmp_path):
    n = 600
    with FakeOpenAI(faulty(p_nologprobs=0.01)) as server:
        result = run_flip(server, tmp_path, "--n", n, "--concurrency", 16)
    assert result.exit_code == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    table = read_run(run_dir).table
    ok = table.column("ok").to_pylist()
    assert sum(ok) == n
    # the server answered exactly n good responses, and every one of them was kept once
    assert server.successes == n
    ids = [i for i, good in zip(table.column("response_id").to_pylist(), ok) if good]
    assert len(set(ids)) == n
    # every fault the server sent is a row
    faults = [
        r
        for r in server.replies
        if r.status != 200 or r.drop or b'choices": [' in r.body and b"logprobs" not in r.body
    ]
    assert table.num_rows == len(server.replies) == n + len(faults)
    kinds = json.loads(result.stdout)["errors_by_type"]
    assert kinds["http_429"] == sum(r.status == 429 for r in server.replies)
    assert kinds["http_500"] == sum(r.status == 500 for r in server.replies)
    assert kinds["malformed_body"] >= 1 and kinds["connection"] >= 1 and kinds["no_logprobs"] >= 1
    assert json.loads(result.stdout)["errors"] == len(faults)
    # retried attempts keep their call number: each call has exactly one success
    calls = [c for c, good in zip(table.column("call").to_pylist(), ok) if good]
    assert sorted(calls) == list(range(n))


def test_sustained_429s_lower_the_concurrency(tmp_path):
    def burst(i, request):
        if i < 40:
            return Reply(429, b'{"error": {"message": "Rate limit reached"}}')
        return coin_flip(i, request)

    with FakeOpenAI(burst) as server:
        result = run_flip(server, tmp_path, "--n", 100, "--concurrency", 16, quiet=False)
    assert result.exit_code == 0, result.stderr
    assert "429s lowered concurrency to" in result.stderr  # a note: -q would silence it
    assert server.successes == 100


def test_ratelimit_headers_pause_new_requests(tmp_path):
    arrivals = []

    def exhausted(i, request):
        arrivals.append(time.monotonic())
        reply = coin_flip(i, request)
        if i == 3:
            reply.headers.update(
                {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "400ms"}
            )
        return reply

    with FakeOpenAI(exhausted) as server:
        result = run_flip(server, tmp_path, "--n", 8, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    assert arrivals[4] - arrivals[3] >= 0.3  # waited for the reset before the next request


def test_a_call_that_keeps_failing_stops_the_run_with_a_resume_hint(tmp_path):
    with FakeOpenAI(faulty(p429=0, p500=1.0, p_malformed=0, p_drop=0)) as server:
        result = run_flip(server, tmp_path, "--n", 50, "--concurrency", 2, "--max-attempts", 3)
    assert result.exit_code == 3
    assert "failed 3 times in a row" in result.stderr
    assert "continue with: detcheck flip --resume" in result.stderr
    assert len(server.requests) <= 2 * 3 + 2
