"""A fake model on 127.0.0.1 for `detcheck verify`: each prompt's next-token distribution comes
from the model's weights (a seed), so two servers of one model answer alike and another model
(a step away, or another vocabulary) does not; batch states move the logprobs a little, by how
many requests the server holds at once, as batch-variant kernels do."""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field

from fake_openai import Reply

VOCABULARY = 200


def _prompt_of(request: dict) -> str:
    if "messages" in request:
        return request["messages"][0]["content"]
    return request.get("prompt") or request.get("input") or ""


def _rng(*parts) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class Model:
    """`weights`: which model; `step`: how far these weights are from them (each logit moved by
    step x N(0, 1)); `batch_noise`: how far a batch state moves the logits (0: batch-invariant);
    `prefix`: the vocabulary's tokens (another prefix: another vocabulary); `ids`: send token
    ids as llama.cpp's server does (`id_shift`: another tokenizer's ids for the same texts)."""

    weights: int = 1
    step: float = 0.0
    batch_noise: float = 0.0
    prefix: str = "tok"
    ids: bool = False
    id_shift: int = 0  # another tokenizer: the same text under another id
    hold_s: float = 0.004
    model: str = "gpt-4o-2024-08-06"
    down: bool = False
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def logits(self, prompt: str, state: int) -> list[float]:
        base = _rng("weights", self.weights, prompt)
        out = [base.gauss(0, 3) for _ in range(VOCABULARY)]
        if self.step:
            moved = _rng("step", self.weights, self.step, prompt)
            out = [x + self.step * moved.gauss(0, 1) for x in out]
        if self.batch_noise and state > 1:
            noise = _rng("state", state, prompt)
            out = [x + self.batch_noise * noise.gauss(0, 1) for x in out]
        return out

    def __call__(self, i: int, request: dict) -> Reply:
        if self.down:
            return Reply(503, json.dumps({"error": {"message": "down"}}).encode())
        with self.lock:
            self.in_flight += 1
            state = self.in_flight  # how many the server holds with this one
        time.sleep(self.hold_s)
        with self.lock:
            self.in_flight -= 1
        logits = self.logits(_prompt_of(request), min(state, 4))
        norm = max(logits) + math.log(sum(math.exp(x - max(logits)) for x in logits))
        ranked = sorted(range(VOCABULARY), key=lambda j: -logits[j])
        k = request.get("top_logprobs") or 20
        top = [{"token": f" {self.prefix}{j}", "logprob": logits[j] - norm,
                "bytes": list(f" {self.prefix}{j}".encode()),
                **({"id": j + self.id_shift} if self.ids else {})}
               for j in ranked[:k]]  # fmt: skip
        body = {
            "id": f"chatcmpl-verify-{i}",
            "object": "chat.completion",
            "model": self.model,
            "system_fingerprint": "fp_verify",
            "choices": [{
                "index": 0, "finish_reason": "length",
                "message": {"role": "assistant", "content": top[0]["token"]},
                "logprobs": {"content": [dict(top[0], top_logprobs=top)]},
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }  # fmt: skip
        return Reply(200, json.dumps(body).encode())
