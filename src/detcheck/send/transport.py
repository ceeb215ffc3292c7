"""The HTTP seam: transports handed to the real `openai` client.

Replay serves recorded response bodies in order (wrapping around), so a recorded run goes through
exactly the same client, parsing and storage code as a live one, with no key and no network.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from pathlib import Path

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


# The largest response body detcheck takes, after decoding: a real chat completion with 20 top
# logprobs is ~4 KB, and a generation of 128 tokens with top 5 ~60 KB.
MAX_BODY_BYTES = 8 * 1024 * 1024
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyRejected(Exception):
    """A response body detcheck will not take (too large once decoded, or an encoding it did not
    ask for): the attempt is recorded as failed and retried, and memory stays bounded."""


class CappedTransport(httpx2.AsyncBaseTransport):
    """Wraps the transport the client uses, and reads every response body itself, decoding gzip
    or deflate as it goes, up to `max_body_bytes` decoded: a 2 MB gzip bomb or a 200 MB body is a
    failed attempt after at most that many bytes, not the whole of it in memory."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, max_body_bytes: int = MAX_BODY_BYTES):
        self.inner = inner
        self.max_body_bytes = max_body_bytes

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.inner.__aexit__(*exc)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["accept-encoding"] = "gzip, deflate"  # nothing we cannot decode here
        response = await self.inner.handle_async_request(request)
        headers = [
            (k, v)
            for k, v in response.headers.raw
            if k.lower() not in (b"content-encoding", b"content-length", b"transfer-encoding")
        ]
        if request.url.path.endswith("/content") and response.status_code == 200:
            # a file's content (a Batch API output file can be gigabytes): streamed, decoded a
            # bounded piece at a time, for the reader to cap line by line
            return httpx2.Response(
                response.status_code,
                headers=headers,
                stream=_DecodedStream(response, self._decoder(response)),
                request=request,
                extensions=response.extensions,
            )
        try:
            body = await self._read(response)
        finally:
            await response.aclose()
        return httpx2.Response(
            response.status_code,
            headers=headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )

    @staticmethod
    def _decoder(response: httpx2.Response):
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity") and encoding not in _DECODERS:
            raise BodyRejected(f"response body in an encoding not asked for: {encoding[:40]!r}")
        return zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None

    async def _read(self, response: httpx2.Response) -> bytes:
        limit = self.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyRejected(f"response body of {int(declared):,} bytes, over {limit:,} bytes")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        decoder = self._decoder(response)
        chunks: list[bytes] = []
        size = 0
        async for raw in response.stream:
            chunk = raw
            if decoder is not None:
                try:
                    # never more than what is left under the limit, plus one byte to know
                    chunk = decoder.decompress(raw, limit - size + 1)
                except zlib.error as exc:
                    raise BodyRejected(f"response body is not valid {encoding}: {exc}") from None
                if decoder.unconsumed_tail:
                    raise BodyRejected(f"response body over {limit:,} bytes once decoded")
            size += len(chunk)
            if size > limit:
                raise BodyRejected(f"response body over {limit:,} bytes")
            chunks.append(chunk)
        if decoder is not None:
            try:
                tail = decoder.flush()
            except zlib.error as exc:
                raise BodyRejected(f"response body is not valid {encoding}: {exc}") from None
            size += len(tail)
            if size > limit:
                raise BodyRejected(f"response body over {limit:,} bytes once decoded")
            chunks.append(tail)
        return b"".join(chunks)


STREAM_PIECE_BYTES = 1024 * 1024  # the most one decoded piece of a streamed body holds


class _DecodedStream(httpx2.AsyncByteStream):
    """A streamed body, decoded (gzip, deflate) at most STREAM_PIECE_BYTES at a time: a small
    bomb that decodes to gigabytes never sits in memory whole."""

    def __init__(self, response: httpx2.Response, decoder):
        self.response, self.decoder = response, decoder

    async def __aiter__(self):
        decoder = self.decoder
        async for raw in self.response.stream:
            if decoder is None:
                yield raw
                continue
            data = raw
            while data:
                try:
                    piece = decoder.decompress(data, STREAM_PIECE_BYTES)
                except zlib.error as exc:
                    raise BodyRejected(f"response body is not valid gzip/deflate: {exc}") from None
                data = decoder.unconsumed_tail
                if piece:
                    yield piece
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                yield tail

    async def aclose(self) -> None:
        await self.response.aclose()


def replay_source(path: Path):
    """The successful response bodies of a stored run (an Arrow string array), in the order
    they were received, and the run's metadata."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from detcheck.errors import DataError
    from detcheck.recordings import locate
    from detcheck.store import read_run

    run = read_run(locate(path), columns=["ok", "seq", "raw_body"])
    meta, table = run.meta, run.table
    del run
    # One copy of the bodies, not one per step (filter, sort, drop nulls): a 10,000-response
    # recording is ~36 MB of text, and every intermediate copy stayed in the process's RSS.
    usable = pc.and_(table["ok"], pc.is_valid(table["raw_body"])).to_numpy()
    seq = table["seq"].to_numpy()
    keep = np.flatnonzero(usable)
    keep = keep[np.argsort(seq[keep], kind="stable")]
    if len(keep) == table.num_rows and (np.diff(keep) == 1).all():
        bodies = table["raw_body"].combine_chunks()  # the usual recording: in order, all usable
    else:
        bodies = table["raw_body"].take(pa.array(keep)).combine_chunks()
    del table
    pa.default_memory_pool().release_unused()
    if not len(bodies):
        raise DataError(f"{path}: no successful responses with a stored body to replay")
    return bodies, meta
