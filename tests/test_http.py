"""Real HTTP on 127.0.0.1: the SDK's own networking, our error handling, what reaches disk."""

from __future__ import annotations

import gc
import json

from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI, Reply, chat_body, coin_flip

runner = CliRunner()
KEY = "sk-proj-TESTKEY-abcdefghijklmnopqrstuvwxyz"


def flip(server, tmp_path, *args):
    return runner.invoke(
        app,
        ["flip", "--out", str(tmp_path), "-q", "--json", *map(str, args)],
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
    )


def only_run(tmp_path):
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return read_run(run_dir)


def test_round_trip_sends_the_publication_request(tmp_path):
    with FakeOpenAI() as server:
        result = flip(server, tmp_path, "--n", 30, "--concurrency", 4)
    assert result.exit_code == 0, result.stderr
    assert len(server.requests) == 30
    assert server.requests[0] == {
        "model": "gpt-4o-2024-08-06",
        "messages": [{"role": "user", "content": "Flip a coin. Return Heads or Tails only."}],
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": 20,
        "max_tokens": 1,
        "seed": 42,
    }
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    data = json.loads(result.stdout)
    assert data["n"] == 30 and data["distinct"] == 2 and data["fingerprints"] == {"fp_test": 30}
    run = only_run(tmp_path)
    assert run.table.num_rows == 30
    assert sorted(run.table.column("request_id").to_pylist()) == sorted(
        f"req_{i}" for i in range(30)
    )
    assert run.meta["endpoint"] == server.base_url
    assert max(run.table.column("in_flight").to_pylist()) <= 4


def test_key_never_reaches_disk_even_when_echoed(tmp_path):
    def echo_key(i, request):
        if i == 0:  # an endpoint that echoes the key in an error body and a header
            body = json.dumps({"error": {"message": f"overloaded for key {KEY}"}}).encode()
            return Reply(503, body, {"x-request-id": f"req for {KEY}", "retry-after": "0"})
        return coin_flip(i, request)

    with FakeOpenAI(echo_key) as server:
        result = flip(
            server,
            tmp_path,
            "--n",
            5,
            "--base-url",
            server.base_url.replace("http://", "http://user:pw@") + "?token=zzz",
        )
    assert result.exit_code == 0, result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert KEY.encode() not in raw and b"pw@" not in raw and b"zzz" not in raw, path
    run = only_run(tmp_path)
    errors = [e for e in run.table.column("error").to_pylist() if e]
    assert errors == ["overloaded for key [REDACTED]"]
    assert run.meta["endpoint"] == server.base_url


def test_missing_fingerprint_and_short_top_list(tmp_path):
    def quirky(i, request):
        body = chat_body(i, -0.04, fingerprint=None, top_k=5)
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(quirky) as server:
        result = flip(server, tmp_path, "--n", 4)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["fingerprints"] == {"null": 4}
    assert "fewer than the 20 top logprobs" in result.stderr


def test_retry_after_is_honoured_and_every_attempt_recorded(tmp_path):
    def throttled(i, request):
        if i < 2:
            return Reply(429, b'{"error": {"message": "slow down"}}', {"retry-after-ms": "50"})
        return coin_flip(i, request)

    with FakeOpenAI(throttled) as server:
        result = flip(server, tmp_path, "--n", 3, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 3 and data["errors"] == 2
    run = only_run(tmp_path).table.sort_by("seq")
    assert run.column("ok").to_pylist() == [False, False, True, True, True]
    assert run.column("attempt").to_pylist()[:3] == [1, 2, 3]
    assert run.column("http_status").to_pylist()[:2] == [429, 429]
    headers = dict(run.column("response_headers")[0].as_py())
    assert headers["retry-after-ms"] == "50" and "authorization" not in headers


def _fatal(status, message, code=None):
    def respond(i, request):
        error = {"message": message, **({"code": code} if code else {})}
        return Reply(status, json.dumps({"error": error}).encode())

    return respond


def test_errors_retrying_cannot_fix_stop_the_run_at_once(tmp_path):
    cases = [
        (_fatal(401, "Incorrect API key provided"), "rejected the API key (401)"),
        (_fatal(404, "The model `gpt-9` does not exist"), "is 'gpt-4o-2024-08-06' a model"),
        (_fatal(400, "logprobs is not supported for this model"), "logprobs is not supported"),
        (_fatal(400, "top_logprobs must be <= 5"), "top_logprobs must be <= 5"),
        (_fatal(429, "You exceeded your current quota", "insufficient_quota"), "no quota left"),
    ]
    for i, (respond, message) in enumerate(cases):
        out = tmp_path / str(i)
        with FakeOpenAI(respond) as server:
            result = flip(server, out, "--n", 100, "--concurrency", 2)
        assert result.exit_code == 3, (message, result.stderr)
        assert message in result.stderr
        assert len(server.requests) <= 2  # not 100 attempts
        # the first calls refused: a configuration error, and no empty run is left behind
        assert not out.exists() or not any(out.iterdir())
        assert "--resume" not in result.stderr and "nothing was kept" in result.stderr


def test_unreachable_endpoint(tmp_path):
    with FakeOpenAI() as server:
        url = server.base_url
    result = runner.invoke(
        app,
        [
            "flip",
            "--n",
            "2",
            "--max-attempts",
            "2",
            "--out",
            str(tmp_path),
            "-q",
            "--base-url",
            url,
        ],
        env={"OPENAI_API_KEY": KEY},
    )
    assert result.exit_code == 3
    assert f"connection to {url} failed" in result.stderr


def test_probe_of_an_unreachable_endpoint_says_so():
    with FakeOpenAI() as server:
        url = server.base_url
    result = runner.invoke(
        app, ["probe", "--base-url", url, "--model", "m"], env={"OPENAI_API_KEY": KEY}
    )
    assert result.exit_code == 3
    assert "connection to" in result.stderr and "127.0.0.1" in result.stderr
    assert "internal error" not in result.stderr


def test_calls_that_succeed_leave_no_reference_cycles(tmp_path):
    """Only the garbage collector frees reference cycles, and each of its pauses holds up every
    call in flight. Per-call retry state built up front made ~40 cyclic objects a call; the
    count here is what two runs of different length leave, so fixed costs cancel out."""

    def cyclic_garbage(n, out):
        gc.collect()
        gc.disable()
        try:
            with FakeOpenAI() as server:
                result = flip(server, out, "--n", n, "--concurrency", 4)
            assert result.exit_code == 0, result.stderr
            return gc.collect()
        finally:
            gc.enable()

    per_call = (cyclic_garbage(600, tmp_path / "b") - cyclic_garbage(200, tmp_path / "a")) / 400
    assert per_call < 10


def test_no_seed_for_an_endpoint_that_refuses_one(tmp_path):
    def refuses_seed(i, request):
        if "seed" in request:
            message = b'{"error": {"message": "Unrecognized request argument supplied: seed"}}'
            return Reply(400, message)
        return coin_flip(i, request)

    with FakeOpenAI(refuses_seed) as server:
        refused = flip(server, tmp_path / "a", "--n", 5)
        sent = len(server.requests)
        result = flip(server, tmp_path / "b", "--n", 5, "--no-seed")
        requests = server.requests[sent:]
        both = flip(server, tmp_path / "c", "--n", 5, "--seed", 1, "--no-seed")
    assert refused.exit_code == 3 and "seed" in refused.stderr
    assert result.exit_code == 0, result.stderr
    assert len(requests) == 5 and all("seed" not in r for r in requests)
    run = only_run(tmp_path / "b")
    assert run.meta["config"]["seed"] is None and "seed" not in run.meta["request"]
    assert both.exit_code == 2 and "not both" in both.stderr
