"""The audit's fake engine on 127.0.0.1: deterministic unless told to break one cause, and the
helper that runs `detcheck audit --json` against it (tests/test_audit*.py)."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field

from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI, Reply, chat_body, responses_body

PROMPT = "Flip a coin. Return Heads or Tails only."
BASE = math.log(0.6)


@dataclass
class Engine:
    """A fake engine: deterministic unless told to break one cause."""

    batch: bool = False  # the logprob moves when another request is in flight
    mixed: bool = False  # ... when an unrelated prompt is in flight
    prefix: bool = False  # ... when a prompt sharing the measured one's start is in flight
    top_logprobs: bool = False  # the chosen logprob depends on how many top logprobs are asked
    first_call: bool = False  # the first call after a start differs
    ignores_seed: bool = False  # temperature > 0 samples without the seed
    greedy_samples: bool = False  # temperature 0 samples anyway
    logprobs_text: bool = False  # asking for logprobs changes the greedy text
    noisy: bool = False  # every call one of three values, whatever the arm
    refuses_top1: bool = False  # a 400 for top_logprobs 1
    throttles_batch: bool = False  # a 429 for a measured request sent beside another one
    down: range = range(0)  # the request numbers answered 503 (an outage)
    new_backend_from: int | None = None  # from this request on, another fingerprint and value
    hold_s: float = 0.003  # how long a request is held: long enough for a batch to overlap
    in_flight: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, i: int, request: dict) -> Reply:
        if self.refuses_top1 and request.get("top_logprobs") == 1:
            error = {"error": {"message": "top_logprobs must be at least 5", "type": "invalid"}}
            return Reply(400, json.dumps(error).encode())
        if i in self.down:
            error = {"error": {"message": "the server is overloaded", "type": "server_error"}}
            return Reply(503, json.dumps(error).encode())
        responses = "input" in request  # the Responses API: the prompt as `input`
        prompt = request["input"] if responses else request["messages"][0]["content"]
        with self.lock:
            others = list(self.in_flight)
            if self.throttles_batch and prompt == PROMPT and PROMPT in others:
                error = {"error": {"message": "rate limited", "type": "requests"}}
                return Reply(429, json.dumps(error).encode())
            self.in_flight.append(prompt)
        time.sleep(self.hold_s)
        with self.lock:
            others += [p for p in self.in_flight if p is not prompt]
            self.in_flight.remove(prompt)
        measured = prompt == PROMPT
        shift = 0.0
        if measured and self.batch and any(p == PROMPT for p in others):
            shift += 1e-6
        if measured and self.mixed and any(not p.startswith(PROMPT[:5]) for p in others):
            shift += 2e-6
        if (
            measured
            and self.prefix
            and any(p.startswith(PROMPT[:10]) and p != PROMPT for p in others)
        ):  # noqa: E501
            shift += 4e-6
        if self.top_logprobs and request.get("top_logprobs") == 1:
            shift += 8e-6
        if self.first_call and i == 0:
            shift += 16e-6
        if self.noisy:
            shift += 1e-6 * (i % 3)
        moved = self.new_backend_from is not None and i >= self.new_backend_from
        if moved:
            shift += 32e-6
        if responses:
            body = responses_body(i, BASE - shift, top_k=request.get("top_logprobs", 20))
            part = body["output"][0]["content"][0]
            if request.get("max_output_tokens", 16) > 16:  # a whole answer (16 is the least)
                part["text"] = self._text(i, request)
            if "include" not in request:  # no logprobs asked for: none sent
                del part["logprobs"]
            return Reply(200, json.dumps(body).encode())
        fingerprint = "fp_new" if moved else "fp_test"
        body = chat_body(i, BASE - shift, fingerprint, top_k=request.get("top_logprobs", 20))
        if request.get("max_tokens", 1) > 1:  # a whole answer: its text is what is compared
            body["choices"][0]["message"]["content"] = self._text(i, request)
        if not request.get("logprobs"):  # not asked for: none sent, as real servers do
            body["choices"][0]["logprobs"] = None
        return Reply(200, json.dumps(body).encode())

    def _text(self, i: int, request: dict) -> str:
        sampled = request["temperature"] > 0 or self.greedy_samples
        if not sampled:
            asked = request.get("logprobs") or "include" in request  # chat, or Responses
            return "Heads, surely" if self.logprobs_text and asked else "Heads"
        draw = i if self.ignores_seed or request["temperature"] == 0 else request.get("seed", i)
        return f"answer {draw * 7919 % 6}"


def audit(engine: Engine, tmp_path, *args: str) -> tuple[int, dict]:
    with FakeOpenAI(engine) as server:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        result = CliRunner().invoke(
            app, ["audit", "--out", str(tmp_path), "--json", "-q", *args], env=env
        )
    assert result.exit_code in (0, 1), result.stderr or result.exception
    return result.exit_code, json.loads(result.stdout)


def verdict_of(data: dict) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in data["checks"]}
