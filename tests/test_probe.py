"""`detcheck probe` over real HTTP on 127.0.0.1, against endpoints that differ in what they honour:
how many top logprobs, a fingerprint, `seed`, what temperature does to logprobs, the legacy API."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI, Reply

runner = CliRunner()
KEY = "sk-test-probe-0123456789"
LOGITS = {"Heads": 5.0, "T": 3.0, "H": 1.0, **{f"tok{j}": -3.0 - 0.1 * j for j in range(22)}}


def log_softmax(temperature: float) -> dict[str, float]:
    scaled = {t: v / temperature for t, v in LOGITS.items()}
    norm = math.log(sum(math.exp(v) for v in scaled.values()))
    return {t: v - norm for t, v in scaled.items()}


def raw(t):  # the same logprobs whatever the temperature (llama.cpp)
    return log_softmax(1.0)


def scaled_zero_as_one(t):
    return log_softmax(t or 1.0)


def scaled_greedy_at_zero(t):
    if t == 0:  # only the top token keeps mass
        return {tok: (0.0 if tok == "Heads" else -9999.0) for tok in LOGITS}
    return log_softmax(t)


def endpoint(temperature_rule, fingerprint="fp_probe", cap=20, refuse_seed=False, legacy=True):
    def respond(i, request):
        ranked = lambda lps, k: sorted(lps.items(), key=lambda kv: -kv[1])[:k]  # noqa: E731
        if "prompt" in request:  # the legacy /v1/completions shape
            if not legacy:
                return Reply(404, b'{"error": {"message": "Not found"}}')
            top = dict(ranked(log_softmax(1.0), request["logprobs"]))
            logprobs = {
                "tokens": ["Heads"],
                "token_logprobs": [top["Heads"]],
                "top_logprobs": [top],
            }
            body = {"id": f"cmpl-{i}", "choices": [{"text": "Heads", "logprobs": logprobs}]}
            return Reply(200, json.dumps(body).encode())
        if refuse_seed and "seed" in request:
            message = b'{"error": {"message": "Unrecognized request argument supplied: seed"}}'
            return Reply(400, message)
        top = [
            {"token": t, "logprob": lp, "bytes": list(t.encode())}
            for t, lp in ranked(temperature_rule(request["temperature"]), min(cap, 20))
        ]
        choice = {"index": 0, "message": {"role": "assistant", "content": "Heads"}}
        choice["logprobs"] = {
            "content": [dict(top[0], top_logprobs=top[: request["top_logprobs"]])]
        }
        body = {"id": f"chatcmpl-{i}", "choices": [choice]}
        if fingerprint:
            body["system_fingerprint"] = fingerprint
        return Reply(200, json.dumps(body).encode())

    return respond


def probe(respond):
    with FakeOpenAI(respond) as server:
        result = runner.invoke(
            app,
            ["probe", "--base-url", server.base_url, "--model", "m", "--json"],
            env={"OPENAI_API_KEY": KEY},
        )
        requests = list(server.requests)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr, requests


def test_probe_of_an_openai_like_endpoint():
    data, text, requests = probe(endpoint(scaled_greedy_at_zero))
    assert data["status"] == 200 and data["logprobs"] is True
    assert (data["top_logprobs_requested"], data["top_logprobs_returned"]) == (20, 20)
    assert data["fingerprint_value"] == "fp_probe" and data["seed_accepted"] is True
    assert data["temperature_semantics"].startswith("scaled, special-cased at 0")
    assert data["completions_api"] is True
    # a handful of requests: the full one, one per temperature, the legacy API
    assert [r.get("temperature") for r in requests[:4]] == [0.0, 0.0, 1.0, 2.0]
    assert len(requests) == 5 and "prompt" in requests[4]
    assert "20 of 20 asked for" in text and "fp_probe" in text


def test_probe_tells_temperature_semantics_apart():
    assert probe(endpoint(raw))[0]["temperature_semantics"] == "raw"
    semantics = probe(endpoint(scaled_zero_as_one))[0]["temperature_semantics"]
    assert semantics == "scaled, with temperature 0 treated as 1"


def test_probe_of_a_capped_endpoint_without_fingerprint_or_legacy_api():
    data, text, _ = probe(endpoint(raw, fingerprint=None, cap=5, legacy=False))
    assert data["top_logprobs_returned"] == 5 and data["system_fingerprint"] is False
    assert data["completions_api"] is False
    assert "5 of 20 asked for" in text and "not sent" in text


def test_probe_of_an_endpoint_refusing_seed_says_so_and_probes_the_rest_without_it():
    data, text, requests = probe(endpoint(scaled_zero_as_one, refuse_seed=True))
    assert data["seed_accepted"] is False and "refused" in text
    assert data["status"] == 200 and data["logprobs"] is True and "error" not in data
    assert data["temperature_semantics"] == "scaled, with temperature 0 treated as 1"
    assert data["completions_api"] is True
    assert "seed" in requests[0] and all("seed" not in r for r in requests[1:])


def probe_failing(respond, *args):
    """A probe of an endpoint that answers nothing usable: (exit code, JSON, text, requests)."""
    with FakeOpenAI(respond) as server:
        result = runner.invoke(
            app,
            ["probe", "--base-url", server.base_url, "--model", "m", "--json", *args],
            env={"OPENAI_API_KEY": KEY},
        )
        requests = list(server.requests)
    return result.exit_code, json.loads(result.stdout), result.stderr, requests


def lines_of(text: str) -> dict[str, str]:
    """The probe's table as {row: what it says}."""
    rows = {}
    for line in text.splitlines():
        key, _, value = line.partition("  ")
        if value.strip():
            rows[key.strip()] = value.strip()
    return rows


def test_a_probe_of_an_endpoint_answering_404_to_everything_says_it_tested_nothing():
    def not_found(i, request):
        return Reply(404, b'{"error": {"message": "Not Found"}}')

    code, data, text, requests = probe_failing(not_found)
    assert code == 3
    rows = lines_of(text)
    assert rows["chat API"] == "HTTP 404: Not Found"
    for row in ("logprobs", "top_logprobs", "system_fingerprint", "seed", "temperature"):
        assert rows[row] == "not tested (HTTP 404: Not Found)", row
    assert rows["legacy /v1/completions"] == "no (HTTP 404: Not Found)"
    assert "accepted" not in text and "0 of 20" not in text
    assert data["seed_accepted"] is None and data["logprobs"] is None
    assert data["top_logprobs_returned"] is None and data["system_fingerprint"] is None
    assert data["exit_code"] == 3 and data["error"] == "HTTP 404: Not Found"
    # nothing to learn from temperatures when the request itself fails: not sent
    assert len(requests) == 2 and "prompt" in requests[1]


def test_a_4xx_that_does_not_name_seed_does_not_make_the_seed_accepted():
    def bad_request(i, request):
        if "prompt" in request:
            return Reply(404, b'{"error": {"message": "Not found"}}')
        return Reply(400, b'{"error": {"message": "top_logprobs must be at most 5"}}')

    code, data, text, _ = probe_failing(bad_request)
    assert code == 3 and data["seed_accepted"] is None
    assert lines_of(text)["seed"] == "not tested (HTTP 400: top_logprobs must be at most 5)"


def test_a_200_without_logprobs_is_seen_as_such_and_exits_3():
    def no_logprobs(i, request):
        if "prompt" in request:
            return Reply(404, b'{"error": {"message": "Not found"}}')
        choice = {"index": 0, "message": {"role": "assistant", "content": "Heads"}}
        return Reply(200, json.dumps({"id": "x", "choices": [choice]}).encode())

    code, data, text, _ = probe_failing(no_logprobs)
    rows = lines_of(text)
    assert code == 3 and data["logprobs"] is False
    assert rows["logprobs"] == "no (the answer carries none)"
    assert rows["seed"] == "accepted"  # a request carrying it succeeded
    assert rows["top_logprobs"] == "0 of 20 asked for"


def test_a_probe_of_a_base_url_without_v1_asks_whether_v1_was_meant():
    with FakeOpenAI() as server:
        root = server.base_url.removesuffix("/v1")
        result = runner.invoke(
            app, ["probe", "--base-url", root, "--model", "m"], env={"OPENAI_API_KEY": KEY}
        )
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == (
        "detcheck: error: HTTP 404: Invalid URL (POST /chat/completions): did you mean "
        f"--base-url {root}/v1?"
    )
