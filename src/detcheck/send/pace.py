"""The --rpm cap: request starts spaced evenly, whoever sends them (a measured call, a retry, a
background stream) and across every run that shares one Pacer (an audit's arms), so no 60-second
window holds more than rpm requests: not at the client, and not at the server either, where the
network moves each arrival a little (the spacing is 1% wider than 60/rpm s: rpm requests then
span 60.6 s, so jitter of up to 0.6 s cannot bring an extra one into a minute)."""

from __future__ import annotations

import asyncio
import math
import time

MARGIN = 0.01  # the spacing's share beyond 60/rpm s, for the network's jitter


class Pacer:
    """Hands out start times one interval apart, in the order asked. It keeps only the next
    free time (monotonic seconds), so one Pacer serves one event loop after another: a new run
    does not start with a fresh allowance the last one already spent."""

    def __init__(self, rpm: float):
        self.rpm = rpm
        self.interval_s = 60.0 / rpm * (1 + MARGIN)
        self._next_s = -math.inf

    async def wait(self) -> None:
        now = time.monotonic()
        at = max(now, self._next_s)
        self._next_s = at + self.interval_s  # reserved before sleeping: the order is kept
        if at > now:
            await asyncio.sleep(at - now)


def pacer_for(rpm: float | None, shared: Pacer | None = None) -> Pacer | None:
    """The pacer a run uses: the one it shares (an audit's), else its own, else none."""
    if shared is not None:
        return shared
    return Pacer(rpm) if rpm else None
