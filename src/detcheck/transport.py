"""The HTTP seam: transports handed to the real `openai` client.

Replay serves recorded response bodies in order (wrapping around), so a recorded run goes through
exactly the same client, parsing and storage code as a live one, with no key and no network.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import httpx2


class ReplayTransport(httpx2.AsyncBaseTransport):
    """Answers every request with the next recorded body."""

    def __init__(self, bodies: Sequence[bytes]):
        if not bodies:
            raise ValueError("a replay needs at least one recorded response")
        self.count = 0
        self.size = len(bodies)
        self._bodies = itertools.cycle(bodies)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.count += 1
        return httpx2.Response(
            200,
            content=next(self._bodies),
            headers={"content-type": "application/json", "x-request-id": f"replay-{self.count}"},
        )
