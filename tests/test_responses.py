"""The Responses API (`--api responses`) over real HTTP on 127.0.0.1: the request it sends, the
rows it stores (the same as chat's), its refusals, probe, replay and experiment files."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI, Reply, coin_flip_any_api, responses_body

runner = CliRunner()
KEY = "sk-test-responses-0123456789"


def flip(server, out, *args):
    return runner.invoke(
        app,
        ["flip", "--out", str(out), "-q", "--json", "--api", "responses", *map(str, args)],
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
    )


def test_a_flip_through_the_responses_api(tmp_path):
    with FakeOpenAI(coin_flip_any_api) as server:
        result = flip(server, tmp_path, "--n", 30, "--concurrency", 4)
    assert result.exit_code == 0, result.stderr
    assert server.paths[0] == "/v1/responses"
    assert server.requests[0] == {
        "model": "gpt-4o-2024-08-06",
        "input": "Flip a coin. Return Heads or Tails only.",
        "temperature": 0.0,
        "top_logprobs": 20,
        "include": ["message.output_text.logprobs"],
        "max_output_tokens": 16,  # the smallest the API accepts; the first token is measured
    }  # no seed: the API takes none
    data = json.loads(result.stdout)
    assert data["n"] == 30 and data["distinct"] == 2  # the same analysis as chat
    (run_dir,) = tmp_path.iterdir()
    run = read_run(run_dir)
    assert run.meta["api"] == "responses" and run.meta["config"]["seed"] is None
    assert run.table.column("token").to_pylist()[0] == "Heads"
    assert len(run.table.column("top_logprobs")[0].as_py()) == 20
    assert run.table.column("prompt_tokens").to_pylist() == [18] * 30

    # and it replays offline like any recorded run, through the same parser
    replay = runner.invoke(
        app, ["flip", "--replay", str(run_dir), "--n", 30, "--out", str(tmp_path / "r"), "--json"]
    )
    assert replay.exit_code == 0, replay.stderr
    again = json.loads(replay.stdout)
    assert (again["distinct"], again["fingerprints"]) == (data["distinct"], data["fingerprints"])


def test_a_seed_is_refused_for_the_responses_api(tmp_path):
    with FakeOpenAI(coin_flip_any_api) as server:
        result = flip(server, tmp_path, "--n", 2, "--seed", 7)
        assert not server.requests
    assert result.exit_code == 2 and "takes no seed" in result.stderr


def test_a_model_without_logprobs_stops_the_run_at_once(tmp_path):
    def reasoning(i, request):  # answers, but gives no logprobs (reasoning models)
        body = responses_body(i, -0.04, model="o3-mini")
        del body["output"][0]["content"][0]["logprobs"]
        body["output"].insert(0, {"type": "reasoning", "id": "rs_1", "summary": []})
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(reasoning) as server:
        result = flip(server, tmp_path, "--n", 50, "--concurrency", 1)
        assert len(server.requests) == 1  # not retried: asking again won't help
    assert result.exit_code == 3
    assert "o3-mini answered without logprobs" in result.stderr

    def refuses(i, request):
        message = {"error": {"message": "logprobs are not supported with reasoning models"}}
        return Reply(400, json.dumps(message).encode())

    with FakeOpenAI(refuses) as server:
        result = flip(server, tmp_path / "b", "--n", 50, "--concurrency", 1)
        assert len(server.requests) == 1
    assert result.exit_code == 3 and "not supported with reasoning models" in result.stderr


def test_probe_asks_in_the_responses_shape():
    with FakeOpenAI(coin_flip_any_api) as server:
        result = runner.invoke(
            app,
            ["probe", "--api", "responses", "--base-url", server.base_url, "--json"],
            env={"OPENAI_API_KEY": KEY},
        )
        assert result.exit_code == 0, result.stderr
        assert server.paths[0] == "/v1/responses" and "seed" not in server.requests[0]
    out = json.loads(result.stdout)
    assert out["api"] == "responses" and out["logprobs"] is True
    assert out["top_logprobs_returned"] == 20 and out["seed_accepted"] is None
    assert "not asked" in result.stderr  # the rendered table says why


def test_experiment_files_can_choose_the_api(tmp_path):
    with FakeOpenAI(coin_flip_any_api) as server:
        exp = tmp_path / "e.toml"
        exp.write_text(
            f'[[measurement]]\nname = "r"\nbase_url = "{server.base_url}"\napi = "responses"\n'
            "n = 5\n"
        )
        result = runner.invoke(
            app, ["run", str(exp), "--out", str(tmp_path / "runs")], env={"OPENAI_API_KEY": KEY}
        )
        assert result.exit_code == 0, result.stderr
        assert server.paths == ["/v1/responses"] * 5


def _two_part_answer(i: int, request: dict) -> Reply:
    """An answer in two message items, the second in two output_text parts; calls differ only
    in the last part (odd calls say " down")."""
    body = responses_body(i, -0.04)
    last = " down" if i % 2 else " up"

    def part(token: str) -> dict:
        entry = {"token": token, "logprob": -0.5, "bytes": list(token.encode())}
        entry["top_logprobs"] = [dict(entry)]
        return {"type": "output_text", "text": token, "annotations": [], "logprobs": [entry]}

    body["output"].append(
        {"type": "message", "id": f"msg_b{i}", "role": "assistant",
         "content": [part(" side"), part(last)]}
    )  # fmt: skip
    return Reply(200, json.dumps(body).encode())


def test_every_output_text_part_is_read_in_order(tmp_path):
    """Before (20a5643): only the first part was read, so the two answers counted as one."""
    with FakeOpenAI(_two_part_answer) as server:
        result = runner.invoke(
            app,
            ["generate", "--api", "responses", "-n", 6, "-o", str(tmp_path), "-q", "--json"],
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
        )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["unique_completions"] == 2
    (run_dir,) = tmp_path.iterdir()
    texts = set(read_run(run_dir).table.column("text").to_pylist())
    assert texts == {"Heads side up", "Heads side down"}


def test_a_refusal_stops_the_run_at_once_with_its_text(tmp_path):
    """Before: retried as malformed_body until attempts ran out, the refusal never shown."""

    def refusal(i, request):
        body = responses_body(i, -0.04)
        body["output"][0]["content"] = [{"type": "refusal", "refusal": "I can't flip coins."}]
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(refusal) as server:
        result = flip(server, tmp_path, "--n", 20, "--concurrency", 1)
        assert len(server.requests) == 1
    assert result.exit_code == 3
    assert "the model refused: I can't flip coins." in result.stderr
