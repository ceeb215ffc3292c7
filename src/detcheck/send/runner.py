"""Running flips in an event loop: one (a run), or several at once sharing one limit of
requests in flight (a prompt set measured batched, or one at a time); Ctrl-C and SIGTERM stop
them all, with what arrived kept."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

from detcheck.errors import Interrupted


def install_stop_handlers(loop, flips) -> dict:
    """The loop's handlers for Ctrl-C and SIGTERM; returns the handlers they replace (for
    remove_stop_handlers to put back: a verification's own, between its phases)."""

    def stop() -> None:
        for flip in flips:
            flip.stop()

    before = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        # not in the main thread (detcheck.flip() from a notebook's running loop): no handlers
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            before[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, stop)
    return before


def remove_stop_handlers(loop, before: dict | None = None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)
            if before and before.get(sig) is not None:
                signal.signal(sig, before[sig])


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM read as Ctrl-C (KeyboardInterrupt) for a command of many runs, also between
    them: the default would end the process there with nothing said. Only in the main thread;
    the handler before is put back after."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


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
        before = install_stop_handlers(loop, flips)
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
            remove_stop_handlers(loop, before)

    gc.freeze()
    try:
        return asyncio.run(together())
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    finally:
        gc.unfreeze()
