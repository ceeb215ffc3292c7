"""The HTTP seam: transports handed to the real `openai` client.

Replay serves recorded response bodies in order (wrapping around), so a recorded run goes through
exactly the same client, parsing and storage code as a live one, with no key and no network.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import httpx2


class ReplayTransport(httpx2.AsyncBaseTransport):
    """Answers every request with the next recorded body."""

    def __init__(self, bodies: Sequence[bytes], start: int = 0):
        """`start`: how many bodies were already served (a resumed replay carries on)."""
        if not bodies:
            raise ValueError("a replay needs at least one recorded response")
        self.count = start
        self.size = len(bodies)
        self._bodies = itertools.islice(itertools.cycle(bodies), start % len(bodies), None)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        # Yield to the event loop as a network read would: otherwise one task runs every call
        # without ever suspending, and signals (Ctrl-C) wait until the run is over.
        await asyncio.sleep(0)
        self.count += 1
        return httpx2.Response(
            200,
            content=next(self._bodies),
            headers={"content-type": "application/json", "x-request-id": f"replay-{self.count}"},
        )
