"""Engineer a near-tie into the tiny model, measured against the real engine: after the coin-flip
prompt, `Tails` is made to score within llama.cpp's batch noise of `Heads`.

Tails' output row becomes (1 + s) * Heads' row + r: r a fixed random direction (its size sets how
much batch noise moves the gap), s the knob. The gap logit(Tails) - logit(Heads) is linear in s
(the hidden state does not depend on output.weight), so it is tuned by the secant method on gaps
the server itself reports, one token at a time, and then centred on the gaps it reports under
batching: at concurrency 1 every call falls on one side (one completion), at 8 on both (two). The
hidden state is never estimated, so the engine's own kernels, on this CPU, set the tie.
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tiny_gguf import write_tiny_llama

PROMPT = "Flip a coin. Return Heads or Tails only."
HEADS, TAILS = "Heads", "Tails"


def tied_model(path: Path, params: dict, s: float, r_scale: float, seed: int = 7) -> Path:
    def edit(out: np.ndarray, tokens: list[str]) -> None:
        heads, tails = tokens.index(HEADS), tokens.index(TAILS)
        r = np.random.default_rng(seed).standard_normal(out.shape[1])
        r[0] = 0.0  # not the constant dimension: that is the coin flip's bias
        r *= r_scale / np.linalg.norm(r)
        out[tails] = ((1.0 + s) * out[heads].astype(np.float64) + r).astype(np.float32)

    return write_tiny_llama(path, **params, edit_output=edit)


def first_token_gap(url: str) -> float:
    """logprob(Tails) - logprob(Heads) at the first generated position (their logit gap)."""
    body = {
        "model": "small",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 20,
    }
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer unused"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        data = json.loads(response.read())
    (first,) = data["choices"][0]["logprobs"]["content"]
    top = {e["token"]: e["logprob"] for e in first["top_logprobs"]}
    return top[TAILS] - top[HEADS]


def gaps(url: str, n: int, concurrency: int) -> list[float]:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: first_token_gap(url), range(n)))


def engineer(
    directory: Path, params: dict, serve, r_scale: float = 0.5, log=print
) -> tuple[Path, dict]:
    """A model whose first-token Heads/Tails gap straddles zero under batching; and what was
    measured on the way (the gap at each step, the batch spread)."""
    steps: list[tuple[float, float]] = []

    def measure(s: float, batched: int = 0) -> tuple[float, list[float]]:
        model = tied_model(directory / f"tie-{len(steps)}.gguf", params, s, r_scale)
        with serve(model) as url:
            first_token_gap(url)  # the first call evaluates the whole prompt: not typical
            alone = gaps(url, 3, 1)
            spread = gaps(url, batched, 8) if batched else []
        assert len(set(alone)) == 1, f"one at a time should repeat exactly: {alone}"
        steps.append((s, alone[0]))
        if spread:
            below = sum(g < 0 for g in spread)
            values = sorted(set(spread))
            log(f"s = {s:.9g}: gap {alone[0]:.3g} alone; batched {values}, {below} below 0")
        else:
            log(f"s = {s:.9g}: gap {alone[0]:.3g} alone")
        return alone[0], spread

    g0, _ = measure(0.0)
    s1 = -g0 / 6.0  # Heads' logit is about 6 (its bias): a first guess, refined below
    g1, _ = measure(s1)
    slope = (g1 - g0) / s1
    s2 = s1 - g1 / slope
    g2, spread = measure(s2, batched=96)
    # Batched calls land on a few discrete values, most on one that is not the lone call's:
    # zero goes halfway between the two, so a lone call falls on one side and most batched
    # calls on the other, each with a margin of half their distance
    others = [g for g in spread if g != g2]
    assert others, f"batching did not move the gap: {set(spread)}"
    batched_mode = statistics.mode(others)
    s3 = s2 - (g2 + batched_mode) / (2 * slope)
    g3, spread3 = measure(s3, batched=96)
    model = directory / f"tie-{len(steps) - 1}.gguf"
    return model, {"steps": steps, "slope": slope, "alone": g3, "batched": spread3}
