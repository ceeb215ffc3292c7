"""What a run is to do, resolved once before anything is sent: the endpoint, the retry policy,
the tokens looked for, and (in Plan) everything else a run needs. Sending, storing and resuming
take these; they are plain values (no I/O), so any stage may import them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from detcheck import spec
from detcheck.config import FlipConfig, strip_credentials, uri_secrets

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


@dataclass(frozen=True)
class Control:
    """How a run goes, not what it measures: a resume may change these (detcheck.spec)."""

    concurrency: int = spec.default("concurrency")
    rpm: float | None = None  # a cap on requests per minute; None: none
    background_load: int = 0  # unrelated requests kept in flight alongside (online only)
    background_prefix: str = ""  # what they begin with (the audit's shared prefix)
    hold_concurrency: bool = False  # 429s retried without cutting the concurrency
    poll_s: float = spec.default("batch_poll_s")  # the Batch API: between status checks
    cancel_on_interrupt: bool = False  # the Batch API: Ctrl-C cancels the batch too
    progress: bool = True  # a progress bar on the terminal
    pacer: object = None  # a send.pace.Pacer shared with other runs (an audit's arms), if any
    limit: object = None  # a send.retry.AdaptiveLimit shared by flips run at once, if any


@dataclass(frozen=True)
class Start:
    """Where a run picks up: what it already holds (nothing, for a new run)."""

    done: int = 0  # successes stored
    call: int = 0  # the next call's index
    seq: int = 0  # the next attempt's number


@dataclass
class Plan:
    """One run, resolved once from the options (and, for a resume, from the stored run): what
    is sent, to where, how, until when, and where it is written. Sending, the Batch API path and
    the report take this, not the options."""

    config: FlipConfig
    targets: list[Target]
    endpoint: Endpoint | None  # None: nothing will be sent (a dry run, a finished run)
    n: int  # successes the run holds when complete
    control: Control
    policy: RetryPolicy
    spend: dict  # what it will send and cost at most (the --dry-run answer)
    meta: dict  # run.json as it starts (a resume: the stored one, this session added)
    out: str = ""  # where a new run's directory goes (a resume writes into its own)
    via: str = "online"  # the serving tier: online, or the Batch API
    start: Start = Start()
    thresholds: tuple = ()  # the report's clustering gaps
    answer_regex: str | None = None  # generate: the answer in each completion (TARa@N)
    stored: object = None  # a resume: the stored run (its directory, lock and upload mirror)

    @property
    def remaining(self) -> int:
        return self.n - self.start.done

    @property
    def replay(self) -> bool:
        return bool(self.meta.get("replay_of"))
