"""The real SDK client an endpoint is called through: its own retries off (detcheck retries,
and records every attempt), every body read through CappedTransport, user:password never sent;
and `within`, the timeout of a whole request (the SDK's are per read)."""

from __future__ import annotations

import asyncio

import openai

from detcheck.config import split_query, without_userinfo
from detcheck.plan import Endpoint
from detcheck.send.transport import CappedTransport


def make_client(endpoint: Endpoint, max_retries: int = 0) -> openai.AsyncOpenAI:
    """The real SDK client for an endpoint, every response body read through CappedTransport. A
    query string on the base URL is sent with every request, not glued onto the path."""
    kind = endpoint.client_kind
    if kind == "transport":
        http_client = openai.DefaultAsyncHttpx2Client(transport=endpoint.transport)
    elif kind == "aiohttp":
        # The SDK's aiohttp client: 1.4-1.6x the requests/s of its default httpx2 pool at
        # concurrency 16-256 on loopback (bench/run.py), and it holds up at high concurrency.
        http_client = openai.DefaultAioHttpClient()
    else:
        http_client = openai.DefaultAsyncHttpx2Client()  # the SDK's default httpx2 client
    # the client's own transports (and those it mounts for proxies from the environment),
    # wrapped: every body is capped, whichever transport reads it
    http_client._transport = CappedTransport(http_client._transport)
    http_client._mounts = {
        pattern: CappedTransport(t) if t is not None else None
        for pattern, t in http_client._mounts.items()
    }
    # user:password is never sent: the SDK's HTTP client would turn it into Authorization:
    # Basic, in place of the key (which always goes as Bearer)
    base_url, query = split_query(without_userinfo(endpoint.base_url))
    return openai.AsyncOpenAI(
        api_key=endpoint.api_key,
        base_url=base_url,
        default_query=query or None,
        max_retries=max_retries,
        timeout=endpoint.timeout_s,
        http_client=http_client,
    )


if hasattr(asyncio, "timeout"):

    async def within(seconds: float, awaitable):
        """`awaitable`, cancelled after `seconds` in all (TimeoutError): the SDK's timeouts are per
        read, so a server that drips a byte a second would otherwise never time out."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # Python 3.10

    async def within(seconds: float, awaitable):
        return await asyncio.wait_for(awaitable, seconds)
