"""A small OpenAI-compatible chat server on 127.0.0.1 for tests: real sockets, real HTTP.

Each request is answered by `respond(request_number, body) -> Reply`. The default answers a coin
flip whose Heads logprob cycles through a few values; tests pass their own to inject faults.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    usable: bool = True  # a 200 whose body is a usable completion (False: a malformed one)
    # writes the body itself, after the status line and `headers` (no content-length is sent
    # unless `headers` has one): a server that drips, never ends, or sends too much
    stream: Callable | None = None


def chat_body(
    i: int,
    heads_logprob: float,
    fingerprint: str | None = "fp_test",
    top_k: int = 20,
    model: str = "gpt-4o-2024-08-06",
) -> dict:
    tokens = [("Heads", heads_logprob), ("T", math.log1p(-math.exp(heads_logprob)))]
    tokens += [(f"tok{j}", -12.0 - 0.125 * j) for j in range(max(0, top_k - 2))]
    top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tokens[:top_k]]
    body = {
        "id": f"chatcmpl-test-{i}",
        "object": "chat.completion",
        "created": 1_700_000_000 + i,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": top[0]["token"]},
                "logprobs": {"content": [dict(top[0], top_logprobs=top)]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 18, "completion_tokens": 1, "total_tokens": 19},
    }
    if fingerprint is not None:
        body["system_fingerprint"] = fingerprint
    return body


COIN_LOGPROBS = (-0.0380541235211714, -0.0380541235211714, -0.01105206273458597)


def coin_flip(i: int, request: dict) -> Reply:
    body = chat_body(
        i, COIN_LOGPROBS[i % len(COIN_LOGPROBS)], top_k=request.get("top_logprobs", 20)
    )
    return Reply(200, json.dumps(body).encode(), {"x-request-id": f"req_{i}"})


SERVED = ("gpt-4o-2024-08-06",)  # what GET /v1/models lists by default: the model it answers as


class FakeOpenAI:
    """Start with `with FakeOpenAI(respond) as server:`; `server.base_url` ends in /v1.

    As OpenAI does, it answers a path outside /v1 with 404 "Invalid URL (POST /...)", and
    GET /v1/models with the models it serves (`models`; None: 404). Neither reaches `respond`
    or `requests`: those are the API calls."""

    def __init__(
        self,
        respond: Callable[[int, dict], Reply] = coin_flip,
        models: Sequence[str] | None = SERVED,
    ):
        self.respond = respond
        self.models = models
        self.model_listings = 0  # GET /v1/models answered
        self.wrong_paths: list[str] = []  # requests outside /v1, answered 404
        self.requests: list[dict] = []
        self.paths: list[str] = []  # each request's path and query string
        self.headers: list[dict] = []
        self.replies: list[Reply] = []
        self.times: list[float] = []  # each request's arrival (time.monotonic())
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path.split("?")[0] == "/v1/models":
                    return self._models()
                self.do_POST()

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _models(self) -> None:
                with outer._lock:
                    outer.model_listings += 1
                if outer.models is None:
                    return self._answer(404, {"error": {"message": "Not Found"}})
                listed = [{"id": m, "object": "model", "owned_by": "test"} for m in outer.models]
                self._answer(200, {"object": "list", "data": listed})

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                if not self.path.startswith("/v1/"):
                    self.rfile.read(length)
                    with outer._lock:
                        outer.wrong_paths.append(self.path)
                    path = self.path.split("?")[0]
                    error = {"message": f"Invalid URL ({self.command} {path})", "code": None}
                    return self._answer(404, {"error": error})
                request = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    i = len(outer.requests)
                    outer.times.append(time.monotonic())
                    outer.requests.append(request)
                    outer.paths.append(self.path)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = outer.respond(i, request)
                with outer._lock:
                    outer.replies.append(reply)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                if reply.stream is None:
                    self.send_header("content-length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.stream is None:
                    self.wfile.write(reply.body)
                    return
                with contextlib.suppress(OSError):  # the client gave up on it
                    reply.stream(self.wfile)
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def successes(self) -> int:
        """Usable completions the server actually sent."""
        return sum(1 for r in self.replies if r.status == 200 and not r.drop and r.usable)


def responses_body(i: int, heads_logprob: float, top_k: int = 20, model: str = "gpt-4o") -> dict:
    """A Responses API body (POST /v1/responses) with output_text logprobs, as OpenAI sends it."""
    chat = chat_body(i, heads_logprob, top_k=top_k, model=model)
    first = chat["choices"][0]["logprobs"]["content"][0]
    return {
        "id": f"resp_test_{i}",
        "object": "response",
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{i}",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": first["token"],
                        "annotations": [],
                        "logprobs": [first],
                    }
                ],
            }
        ],
        "usage": {
            "input_tokens": 18,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 1,
            "total_tokens": 19,
        },
    }


def coin_flip_any_api(i: int, request: dict) -> Reply:
    """A coin flip in whichever shape was asked: chat, legacy completions or Responses."""
    lp = COIN_LOGPROBS[i % len(COIN_LOGPROBS)]
    if "input" in request:
        body = responses_body(i, lp, top_k=request.get("top_logprobs", 20))
        return Reply(200, json.dumps(body).encode(), {"x-request-id": f"req_{i}"})
    return coin_flip(i, request)


@dataclass(frozen=True)
class Story:
    """Whole generations with a known ground truth. Call i generates `length` tokens w0 w1 ...;
    calls with i % modulus == remainder take `x<p>` at `position` instead and `y<q>` after it
    (one branch each; branches never share a call). The modal path's top-2 gap is `tie_gap`
    nats at each branch position (the near-tie that explains the split), 5 nats elsewhere. At
    positions below `jitter_until` the chosen token's logprob takes one of `jitter` bit-distinct
    values (cycling with i): drift that never flips a token."""

    length: int = 40
    branches: tuple[tuple[int, int, int], ...] = ((10, 3, 17), (25, 7, 5))
    tie_gap: float = 0.002
    jitter_until: int = 10
    jitter: int = 3
    words: tuple[str, ...] = ()  # the modal path's words (w<p> past their end)
    short: tuple[int, int, int] | None = None  # (modulus, remainder, length): calls that stop

    def word(self, prefix: str, p: int) -> str:
        if prefix == "w" and p < len(self.words):
            return f" {self.words[p]}"
        if prefix == "x" and p < len(self.words):
            return f" {self.words[p].upper()}"  # the other side of the tie
        if prefix == "y" and self.words:  # after a split: the story goes on differently
            return f" {self.words[(p * 7 + 3) % len(self.words)]}"
        return f" {prefix}{p}"

    def branch_of(self, i: int) -> int | None:
        return next((p for m, r, p in self.branches if i % m == r), None)

    def positions(self, i: int, top_k: int) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """(token, logprob, ranked top tokens) per position of call i."""
        branch = self.branch_of(i)
        ties = {p for _, _, p in self.branches}
        out = []
        length = self.length
        if self.short is not None and i % self.short[0] == self.short[1]:
            length = self.short[2]
        for p in range(length):
            w, x = self.word("w", p), self.word("x", p)
            if branch is not None and p > branch:
                chosen, other = self.word("y", p), w
            elif branch == p:
                chosen, other = x, w
            else:
                chosen, other = w, x
            top1 = -0.69 if p in ties else -0.01
            if p < self.jitter_until:
                top1 -= (i % self.jitter) * 2**-40  # bit-distinct, far below any tie
            top2 = top1 - (self.tie_gap if p in ties else 5.0)
            ranked = [(chosen, top1), (other, top2)]
            ranked += [(f" z{p}_{j}", -12.0 - j) for j in range(max(0, top_k - 2))]
            out.append((chosen, top1, ranked[:top_k]))
        return out

    def unique_completions(self, n: int) -> int:
        return 1 + sum(any(i % m == r for i in range(n)) for m, r, _ in self.branches)


def story_reply(story: Story = Story()) -> Callable[[int, dict], Reply]:
    """A respond function telling `story` in whichever API shape was asked."""

    def respond(i: int, request: dict) -> Reply:
        top_k = request.get("top_logprobs")
        if top_k is None:  # legacy completions: `logprobs` is the count
            top_k = request.get("logprobs") or 0
        steps = story.positions(i, top_k)
        text = "".join(t for t, _, _ in steps)
        entries = [
            {
                "token": t,
                "logprob": lp,
                "bytes": list(t.encode()),
                "top_logprobs": [
                    {"token": a, "logprob": b, "bytes": list(a.encode())} for a, b in ranked
                ],
            }
            for t, lp, ranked in steps
        ]
        usage = {"prompt_tokens": 12, "completion_tokens": len(steps)}
        if "input" in request:  # Responses API
            body = {
                "id": f"resp_{i}",
                "object": "response",
                "status": "completed",
                "model": request["model"],
                "output": [
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "logprobs": entries}],
                    }
                ],
                "usage": {"input_tokens": 12, "output_tokens": len(steps)},
            }
        elif "prompt" in request:  # legacy completions
            body = {
                "id": f"cmpl-{i}",
                "model": request["model"],
                "choices": [
                    {
                        "text": text,
                        "finish_reason": "stop",
                        "logprobs": {
                            "tokens": [t for t, _, _ in steps],
                            "token_logprobs": [lp for _, lp, _ in steps],
                            "top_logprobs": [dict(r) for _, _, r in steps],
                        },
                    }
                ],
                "usage": usage,
            }
        else:
            body = {
                "id": f"chatcmpl-{i}",
                "object": "chat.completion",
                "model": request["model"],
                "system_fingerprint": "fp_story",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": {"content": entries},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        return Reply(200, json.dumps(body).encode(), {"x-request-id": f"req_{i}"})

    return respond
