"""When to send again: which statuses are worth another try, how long the server asks to wait
(Retry-After, the rate-limit reset headers), and the concurrency limit that 429s lower and
successes raise again."""

from __future__ import annotations

import asyncio
import math
import re
import time

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


class TransientError(Exception):
    def __init__(self, kind: str, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


def retry_after_s(headers) -> float | None:
    """Seconds to wait as the server asked (retry-after-ms, or retry-after in seconds)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue  # an HTTP date: rare for APIs; fall back to backoff
    return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset_s(value: str | None) -> float | None:
    """OpenAI's x-ratelimit-reset-* durations ("1s", "6m0s", "20ms") in seconds."""
    if not value:
        return None
    parts = _DURATION.findall(value)
    if not parts:
        try:
            return float(value)
        except ValueError:
            return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


class AdaptiveLimit:
    """Requests in flight, at most `limit`. A 429 halves the limit (at most once a second);
    a run of successes as long as the limit raises it by one, back up to the ceiling. A rate-limit
    header saying nothing is left pauses new requests until its reset time."""

    def __init__(self, ceiling: int, adaptive: bool = True):
        self.ceiling = ceiling
        self.adaptive = adaptive  # False: a 429 is retried, but the limit is held (a sweep)
        self.limit = ceiling
        self.lowest = ceiling
        self.in_flight = 0
        self._ok_streak = 0
        self._last_cut = -math.inf
        self._paused_until = 0.0
        self._cond = asyncio.Condition()

    async def acquire(self) -> int:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            in_flight = self.in_flight
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        return in_flight

    async def release(self, throttled: bool, pause_s: float | None = None) -> None:
        async with self._cond:
            self.in_flight -= 1
            now = time.monotonic()
            if pause_s:
                self._paused_until = max(self._paused_until, now + min(pause_s, 120.0))
            if throttled and self.adaptive:
                self._ok_streak = 0
                if now - self._last_cut > 1.0:
                    self.limit = max(1, self.limit // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self._last_cut = now
            else:
                self._ok_streak += 1
                if self._ok_streak >= self.limit and self.limit < self.ceiling:
                    self.limit += 1
                    self._ok_streak = 0
            self._cond.notify_all()


def fatal_message(status: int, message: str, model: str) -> str:
    if status == 429:
        return f"the account has no quota left (429 insufficient_quota): {message}"
    if status == 401:
        return f"the endpoint rejected the API key (401): {message}"
    if status == 403:
        return f"the endpoint refused access (403): {message}"
    if status == 404:
        return f"not found (404) - is {model!r} a model this endpoint serves? {message}"
    return f"the endpoint refused the request ({status}): {message}"
