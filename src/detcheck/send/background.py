"""What --background-load sends beside the measured calls (other users' traffic): prompts of
4 to 58 words, at least 16 tokens of answer each, never recorded. Pure, so a plan can price the
largest of them without importing the client."""

from __future__ import annotations

from dataclasses import replace

MIN_ANSWER_TOKENS = 16  # long enough to stay in the batch while measured calls come and go


def background_request(config, prefix: str, stream: int, sent: int):
    """The `sent`-th request of background stream `stream`: another prompt (beginning with
    `prefix`: the audit's shared prefix) whose length varies with each request."""
    words = " ".join(["background"] * (4 + 9 * ((stream + sent) % 7)))
    return replace(
        config,
        prompt=f"{prefix}Request {stream}.{sent}: {words}",
        max_tokens=max(config.max_tokens, MIN_ANSWER_TOKENS),
    )


def largest_background_request(config, prefix: str):
    """A request at least as large as any a background stream sends (the most words, and
    numbers longer than any run's), for pricing."""
    largest = background_request(config, prefix, 6, 0)  # (6 + 0) % 7 == 6: the most words
    return replace(largest, prompt=largest.prompt.replace("6.0:", "99999.9999999:"))
