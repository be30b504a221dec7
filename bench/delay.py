"""A delay line for benches that block: `tests.relay.Relay(delay=...)` on its own event loop
in a thread, so a local broker answers with a distant one's round trip (2 x delay).

    with DelayLine(broker_port, 0.01) as line:   # connect to line.port: a 20 ms round trip
        ...

The relay keeps order each way and holds at most a few MiB per direction (tests.relay).
Its thread runs at a raised priority where the OS allows (root: nice NICE): a network's
delay does not grow with this machine's load, and on two vCPUs beside a busy daemon an
ordinary thread was woken up to 1 ms late per chunk, on average, in some runs (its round
trip then 22 ms, not 20). `late` says how late its chunks went all the same.
Counts nothing else and decides nothing here: a stand-in for distance only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading

from tests.relay import Lateness, Relay

NICE = -15


class DelayLine:
    def __init__(self, peer_port: int, delay: float) -> None:
        self.peer_port = peer_port
        self.delay = delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._relay: Relay | None = None

    def __enter__(self) -> DelayLine:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._relay is not None:
            asyncio.run_coroutine_threadsafe(self._relay.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def late(self) -> Lateness:
        """How late the relay's chunks went, so far (read from another thread, each field is
        current; `chunks` and `seconds` may be a chunk apart)."""
        return self._relay.late if self._relay is not None else Lateness()

    async def _start(self) -> None:
        with contextlib.suppress(PermissionError):  # not root: an ordinary thread, `late` says
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        # Made in the thread's loop: the relay's events and tasks belong to it.
        self._relay = await Relay(self.peer_port, delay=self.delay).__aenter__()
        self.port = self._relay.port
