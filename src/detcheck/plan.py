"""What a run is to do, resolved once before anything is sent: the endpoint, the retry policy,
the tokens looked for, and (in Plan) everything else a run needs. Sending, storing and resuming
take these; they are plain values (no I/O), so any stage may import them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from detcheck import spec
from detcheck.config import strip_credentials, uri_secrets

if TYPE_CHECKING:
    import httpx2


@dataclass
class Endpoint:
    base_url: str
    api_key: str
    # A transport to hand the real client (replay, fault injection); None means the network.
    transport: httpx2.AsyncBaseTransport | None = None
    timeout_s: float = spec.default("timeout_s")  # a whole request, connect to last byte

    @property
    def shown(self) -> str:
        """The URL as it may be printed: no user:password, no query string."""
        return strip_credentials(self.base_url)

    @property
    def client_kind(self) -> str:
        """What carries the requests: "transport" (a replay's or a test's), "aiohttp" (the
        default), or "httpx" (DETCHECK_HTTP_CLIENT=httpx)."""
        if self.transport is not None:
            return "transport"
        if os.environ.get("DETCHECK_HTTP_CLIENT", "aiohttp") == "aiohttp":
            return "aiohttp"
        return "httpx"

    @property
    def secrets(self) -> list[str]:
        """What must never reach disk or the terminal: the key, and what the URL carries."""
        return [self.api_key, *uri_secrets(self.base_url)]


@dataclass
class RetryPolicy:
    max_attempts: int = spec.default("max_attempts")  # per call, the first try included
    initial_backoff_s: float = spec.default("backoff_s")
    max_backoff_s: float = spec.default("max_backoff_s")
    max_retry_after_s: float = 120.0  # a longer Retry-After is capped, not obeyed


@dataclass(frozen=True)
class Target:
    label: str
    token: str
    how: str  # why this token was chosen, for the user
