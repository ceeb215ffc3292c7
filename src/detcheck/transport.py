"""The HTTP seam: transports handed to the real `openai` client.

Replay serves recorded response bodies in order (wrapping around), so a recorded run goes through
exactly the same client, parsing and storage code as a live one, with no key and no network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx2


class ReplayTransport(httpx2.AsyncBaseTransport):
    """Answers every request with the next recorded body (wrapping around)."""

    def __init__(self, bodies: Sequence, start: int = 0):
        """`bodies`: bytes, or an Arrow string array (kept as it is: no second copy in memory).
        `start`: how many bodies were already served (a resumed replay carries on)."""
        if not len(bodies):
            raise ValueError("a replay needs at least one recorded response")
        self.count = start
        self.size = len(bodies)
        self._bodies = bodies

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        # Yield to the event loop as a network read would: otherwise one task runs every call
        # without ever suspending, and signals (Ctrl-C) wait until the run is over.
        await asyncio.sleep(0)
        body = self._bodies[self.count % self.size]
        self.count += 1
        return httpx2.Response(
            200,
            content=body if isinstance(body, bytes) else body.as_py().encode(),
            headers={"content-type": "application/json", "x-request-id": f"replay-{self.count}"},
        )
