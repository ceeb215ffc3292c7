"""Running flips in an event loop: one (a run), or several at once sharing one limit of
requests in flight (a prompt set measured batched, or one at a time); Ctrl-C and SIGTERM stop
them all, with what arrived kept."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

from detcheck.errors import Interrupted


def install_stop_handlers(loop, flips) -> None:
    def stop() -> None:
        for flip in flips:
            flip.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        # not in the main thread (detcheck.flip() from a notebook's running loop): no handlers
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)


def remove_stop_handlers(loop) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)


def run_flip(flip):
    """Run a measurement to the end; Ctrl-C / SIGTERM end it early with what arrived kept."""
    # Everything alive now (modules, the SDK, the tokenizer: ~100k objects) lives through the
    # run: frozen, the collector's full passes (~60 ms each, with every call in flight waiting)
    # do not walk it.
    gc.freeze()
    try:
        return asyncio.run(flip.run())
    except KeyboardInterrupt:  # signal handlers could not be installed (not the main thread)
        raise Interrupted("interrupted") from None
    finally:
        gc.unfreeze()


def run_flips(flips: list) -> list:
    """Several flips at once in one loop (their limits may be one shared object, their
    endpoint too); each one's outcome, or the exception that ended it, in order."""

    from detcheck.send.client import make_client

    async def together():
        loop = asyncio.get_running_loop()
        install_stop_handlers(loop, flips)
        try:
            # one client (one connection pool, one TLS set-up) when they share an endpoint
            if len({id(f.endpoint) for f in flips}) == 1:
                async with make_client(flips[0].endpoint) as client:
                    return await asyncio.gather(
                        *(f.run(signals=False, client=client) for f in flips),
                        return_exceptions=True,
                    )
            return await asyncio.gather(
                *(f.run(signals=False) for f in flips), return_exceptions=True
            )
        finally:
            remove_stop_handlers(loop)

    gc.freeze()
    try:
        return asyncio.run(together())
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    finally:
        gc.unfreeze()
