"""Building a PKI from async code without holding Ctrl-C back.

:func:`lab.pki.build.build_pki` is plain, blocking code: on a cold cache it generates one RSA
key per certificate (about 50 ms each, 200 clients: seconds; thousands: minutes). Called
inside an event loop it would keep the loop from seeing a cancellation (asyncio.run turns
Ctrl-C into one) until every key exists. :func:`build_pki_async` runs it in a thread of its
own and, when the awaiting task is cancelled, asks it to stop before the next key: the key
being generated is finished and published whole (the cache never holds half a file), no
further key is started, and the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from lab.clock import Clock
from lab.pki.build import BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.scenario.model import Scenario

__all__ = ["build_pki_async"]


async def build_pki_async(scenario: Scenario, clock: Clock, cache: PKICache) -> BuiltPKI:
    """``build_pki(scenario, clock, cache)`` in a thread; cancellable between two keys."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BuiltPKI] = loop.create_future()
    stop = threading.Event()

    def settle(result: BuiltPKI | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            assert result is not None
            done.set_result(result)

    def work() -> None:
        try:
            with cache.stop_when(stop):
                result = build_pki(scenario, clock, cache)
        except BaseException as e:  # handed to the awaiting task, never lost
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    thread = threading.Thread(target=work, name="ibcm-lab-pki", daemon=True)
    thread.start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        stop.set()
        # wait for the thread to finish the key it is on (a second cancellation leaves it:
        # the thread is a daemon and writes each file atomically)
        with contextlib.suppress(Exception):  # KeyGenerationStopped, most likely
            await asyncio.shield(done)
        raise
