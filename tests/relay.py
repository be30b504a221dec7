"""A TCP relay on loopback between the gateway and a peer, for tests and the bench.

`async with Relay(peer_port) as relay:` the gateway connects to `relay.port`. It counts the
connections it accepted and the bytes each way on the gateway's side of the socket (TCP
payload: what the gateway wrote and read). With `tls=` a server context it terminates TLS
(a connection counts once its handshake succeeded; a context with CERT_REQUIRED asks for a
client certificate) and the counts are of the plaintext. With `delay=` seconds every chunk
goes on that long after it was read, each way, in order (a distant peer's round trip of
2 x delay at loopback bandwidth; bench/delay.py runs one in a thread); `late` says how much
later than that the chunks went (a busy machine wakes the relay late). `hold` cleared holds
the peer's bytes back until it is set again; `stall` cleared stops reading the gateway's
(its socket buffers fill and its writes would block). Also `AnswerStub`: an HTTP/1.1 server
answering each request with the next status of a list (None: never answer), recording what
it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field


@dataclass
class Lateness:
    """How late a delaying relay's chunks went on, each way together."""

    chunks: int = 0  # chunks sent on
    seconds: float = 0.0  # their lateness past `delay`, summed
    worst: float = 0.0
    least: float = float("inf")  # below 0: a chunk went early (a bug of the relay)

    def add(self, late: float) -> None:
        self.chunks += 1
        self.seconds += late
        self.worst = max(self.worst, late)
        self.least = min(self.least, late)


class Relay:
    def __init__(
        self,
        peer_port: int,
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
        delay: float = 0.0,
    ):
        self.peer_port = peer_port
        self.tls = tls
        self.port = port
        self.delay = delay
        self.connections = 0
        self.sent = 0  # bytes the gateway wrote
        self.received = 0  # bytes the gateway read
        self.late = Lateness()
        self.hold = asyncio.Event()
        self.hold.set()
        self.stall = asyncio.Event()
        self.stall.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bytes(self) -> int:
        return self.sent + self.received

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.peer_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))
        tasks = [
            asyncio.create_task(self._pipe(reader, up_w, upstream=True)),
            asyncio.create_task(self._pipe(up_r, writer, upstream=False)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the loop is ending (a bench or a test's last moments): close quietly
        finally:
            for t in tasks:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            for w in (writer, up_w):
                self._writers.discard(w)
                w.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        late = _Late(dst, self.delay, self.late) if self.delay else None
        try:
            with contextlib.suppress(OSError, ssl.SSLError):
                while data := await src.read(65536):
                    if upstream:
                        await self.stall.wait()
                        self.sent += len(data)
                    else:
                        await self.hold.wait()
                        self.received += len(data)
                    if late is None:
                        dst.write(data)
                        await dst.drain()
                    else:
                        await late.put(data)
                if late is not None:
                    await late.flush()  # the other end closed: what it sent still arrives
        finally:
            if late is not None:
                await late.close()


class _Late:
    """One direction of a delaying relay: `put` queues a chunk for `delay` s after now and
    returns at once unless MAX_LATE bytes wait already (then the relay stops reading, and
    TCP's own back-pressure reaches the sender); a task writes each when it is due."""

    MAX_LATE = 4 << 20

    def __init__(self, dst: asyncio.StreamWriter, delay: float, lateness: Lateness) -> None:
        self.dst = dst
        self.delay = delay
        self.lateness = lateness
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()
        self.task = asyncio.create_task(self._send())

    async def put(self, data: bytes) -> None:
        self.queue.put_nowait((self.loop.time() + self.delay, data))
        self.held += len(data)
        if self.held > self.MAX_LATE:
            self.room.clear()
            await self.room.wait()

    async def flush(self) -> None:
        """Until every queued chunk is written (or the writing failed)."""
        joined = asyncio.ensure_future(self.queue.join())
        await asyncio.wait([joined, self.task], return_when=asyncio.FIRST_COMPLETED)
        joined.cancel()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self.task

    async def _send(self) -> None:
        while True:
            due, data = await self.queue.get()
            if (wait := due - self.loop.time()) > 0:
                await asyncio.sleep(wait)
            self.lateness.add(self.loop.time() - due)
            self.dst.write(data)
            await self.dst.drain()
            self.held -= len(data)
            if self.held <= self.MAX_LATE:
                self.room.set()
            self.queue.task_done()


@dataclass
class AnswerStub:
    """An HTTP/1.1 endpoint answering POST n with `statuses[n]` (the last one repeats; None:
    never answer) and HEAD with 400. `requests` holds (request line, body) of all it read."""

    statuses: list[int | None]
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> AnswerStub:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def posts(self) -> list[bytes]:
        return [body for target, body in self.requests if target.startswith("POST")]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(x.split(":", 1)[1])
                        for x in lines
                        if x.lower().startswith("content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                head_only = lines[0].startswith("HEAD")
                n = len(self.posts())
                self.requests.append((lines[0], body))
                # The gateway's HEAD (is anyone there?) gets the agent's 400 and takes no turn.
                status = 400 if head_only else self.statuses[min(n, len(self.statuses) - 1)]
                if status is None:
                    await reader.read()  # never answer: wait for the gateway to give up
                    break
                answer = b'{"name":"STUB","message":"as told"}' if status != 200 else b"{}"
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + (b"" if head_only else answer)
                )
                await writer.drain()
        writer.close()
