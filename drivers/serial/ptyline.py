"""The far end of a simulated serial line: a pseudo-terminal pair that can be unplugged.

The gateway opens the slave side (`path`, or the stable `link` pointing at it, like a udev
`/dev/gateway/<name>` link); the simulator writes to the master side. `unplug()` closes both
ends, so the gateway's read fails as it would when a USB adapter is pulled; `replug()` makes a
new pair (a new /dev/pts number, as a re-enumerated adapter gets) and moves the link. A pty does
not enforce a baud rate. Writes wait while the line's buffer is full (the gateway is slow).
It knows nothing about NMEA or traps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator
from pathlib import Path


class Unplugged(Exception):
    """Written to a line that is currently unplugged."""


class PtyLine:
    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.path = ""
        self._master: int | None = None
        self._slave: int | None = None
        self._waiting: set[asyncio.Future[None]] = set()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def port(self) -> str:
        """What a gateway config should name: the stable link when there is one."""
        return str(self.link) if self.link is not None else self.path

    def plug(self) -> str:
        if self._master is not None:
            return self.path
        master, slave = os.openpty()
        # Raw and without echo from the start: bytes written before the gateway opens the
        # port must not be cooked or echoed back into our own master.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)  # atomic: a reader never sees the link missing
        return self.path

    replug = plug

    def unplug(self) -> None:
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(Unplugged(self.path))

    close = unplug

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            fd = self._master
            if fd is None:
                raise Unplugged(self.path)
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, _resolve, ready)
                self._waiting.add(ready)
                try:
                    await ready
                finally:
                    self._waiting.discard(ready)
                    loop.remove_writer(fd)
                continue
            view = view[n:]


@contextlib.asynccontextmanager
async def pty_line(link: Path | None = None) -> AsyncIterator[PtyLine]:
    """A plugged-in PtyLine that is closed (and its link removed) when the block ends."""
    line = PtyLine(link)
    line.plug()
    try:
        yield line
    finally:
        line.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
