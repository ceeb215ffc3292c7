"""A zero-latency (or --latency-ms) OpenAI-compatible chat server for benchmarks, run in its own
process so that it never competes with the client for the GIL.

    python bench/server.py --port 8765 [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import secrets

from aiohttp import web


def body(i: int) -> bytes:
    heads = (-0.0380541235211714, -0.01105206273458597, -0.038054123521171435)[i % 3]
    top = [("Heads", heads), ("T", math.log1p(-math.exp(heads)))]
    top += [(f"tok{j}", -12.0 - 0.125 * j) for j in range(18)]
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    return json.dumps(
        {
            # random ids, as a real endpoint sends: they are what compresses worst
            "id": f"chatcmpl-{secrets.token_urlsafe(22)}",
            "object": "chat.completion",
            "created": 1_738_368_000 + i,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Heads", "refusal": None},
                    "logprobs": {
                        "content": [dict(entries[0], top_logprobs=entries)],
                        "refusal": None,
                    },
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": 18,
                "completion_tokens": 1,
                "total_tokens": 19,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
            "system_fingerprint": ("fp_f9f4fb6dbf", "fp_eb9dce56a8")[i % 2],
        }
    ).encode()


WORDS = [f" w{j}" for j in range(500)]


def generation_body(i: int, tokens: int = 128, top_k: int = 5) -> bytes:
    """A whole generation as an engine at temperature 0 gives it: the same answer nearly every
    time (one call in 20 parts at a position of its own), the chosen token's logprob in one of
    three bit-distinct values (batch-dependent arithmetic), random ids."""
    rng = random.Random(i)
    split = rng.randrange(tokens) if i % 20 == 0 else None
    entries, text = [], []
    for p in range(tokens):
        chosen = WORDS[(p * 37) % 500] if split is None or p < split else WORDS[(p * 11 + i) % 500]
        lp = -0.05 - (i % 3) * 2**-40 - (p % 7) * 0.01
        ranked = [(chosen, lp)] + [(WORDS[(p * 37 + k) % 500], -3.0 - k) for k in range(1, top_k)]
        top = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in ranked]
        entries.append({"token": chosen, "logprob": lp, "bytes": list(chosen.encode()),
                        "top_logprobs": top})  # fmt: skip
        text.append(chosen)
    return json.dumps(
        {
            "id": f"chatcmpl-{secrets.token_urlsafe(22)}",
            "object": "chat.completion",
            "created": 1_738_368_000 + i,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(text), "refusal": None},
                    "logprobs": {"content": entries, "refusal": None},
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": 18,
                "completion_tokens": tokens,
                "total_tokens": 18 + tokens,
            },
            "system_fingerprint": ("fp_f9f4fb6dbf", "fp_eb9dce56a8")[i % 2],
        }
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    # fault rates (seeded per request): 429 (half with Retry-After), 500, cut-off JSON, dropped
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--p-malformed", type=float, default=0.0)
    parser.add_argument("--p-drop", type=float, default=0.0)
    parser.add_argument("--generate", action="store_true", help="128-token generations")
    args = parser.parse_args()
    # a pool of bodies with random ids, so each request costs the server almost nothing
    bodies = [generation_body(i) if args.generate else body(i) for i in range(4096)]
    counter = {"n": 0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        i = counter["n"]
        counter["n"] += 1
        if args.latency_ms:
            await asyncio.sleep(args.latency_ms / 1000)
        r = random.Random(i).random()
        if r < args.p429:
            headers = {"retry-after-ms": "200"} if i % 2 else {}
            return web.json_response(
                {"error": {"message": "Rate limit"}}, status=429, headers=headers
            )
        r -= args.p429
        if r < args.p500:
            return web.json_response({"error": {"message": "server error"}}, status=500)
        r -= args.p500
        if r < args.p_malformed:
            return web.Response(body=b'{"id": "x", "choices": [', content_type="application/json")
        r -= args.p_malformed
        if r < args.p_drop:
            request.transport.close()
            raise asyncio.CancelledError
        counter["ok"] = counter.get("ok", 0) + 1
        return web.Response(
            body=bodies[i % len(bodies)],
            content_type="application/json",
            headers={"x-request-id": f"req_{i}"},
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=1024)


if __name__ == "__main__":
    main()
