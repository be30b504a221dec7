"""A delay line: a TCP relay on loopback that holds every byte `delay` seconds each way, so a
local broker answers with a distant one's round trip (2 x delay) at loopback bandwidth.

    with DelayLine(broker_port, 0.01) as line:   # connect to line.port: a 20 ms round trip
        ...

It runs its own event loop in a thread, so the caller (a bench driving subprocesses) may
block. Order is kept each way; a chunk goes out `delay` after it was read. Bounded: it reads
no more while a direction holds more than `MAX_HELD` bytes (TCP's own back-pressure then
reaches the sender). Counts nothing and decides nothing: a stand-in for distance only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading

MAX_HELD = 4 << 20  # bytes one direction may hold before it stops reading
CHUNK = 1 << 16


class DelayLine:
    def __init__(self, peer_port: int, delay: float) -> None:
        self.peer_port = peer_port
        self.delay = delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> DelayLine:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer_reader, peer_writer = await asyncio.open_connection("127.0.0.1", self.peer_port)
        except OSError:
            writer.close()
            return
        for a, b in ((reader, peer_writer), (peer_reader, writer)):
            task = asyncio.create_task(self._pipe(a, b))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read as it comes, write each chunk `delay` after it was read."""
        loop = asyncio.get_running_loop()
        held: collections.deque[tuple[float, bytes]] = collections.deque()
        size = 0
        arrived = asyncio.Event()
        room = asyncio.Event()
        room.set()

        async def release() -> None:
            nonlocal size
            while True:
                while not held:
                    arrived.clear()
                    await arrived.wait()
                due, data = held.popleft()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                size -= len(data)
                if size <= MAX_HELD:
                    room.set()

        sender = asyncio.create_task(release())
        try:
            while data := await reader.read(CHUNK):
                held.append((loop.time() + self.delay, data))
                size += len(data)
                arrived.set()
                if size > MAX_HELD:
                    room.clear()
                    await room.wait()
            while held:  # the other end closed: what it sent still arrives, late
                await asyncio.sleep(self.delay)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
            writer.close()
