"""The daemon's local monitor socket: live status and events for `gateway status` / `tail`.

A Unix stream socket `gateway.sock` in `[store] runtime_dir` (RuntimeDirectory=gateway, 0700;
the socket itself 0600), so it works with the uplink dead and a full data disk. A client sends
one request line of JSON and gets JSON lines back:
- `{"op": "status"}`: one line, the status report's snapshot (what status.json holds, but
  current), then the server closes;
- `{"op": "tail", "device": D?, "quantity": Q?}`: a `{"event": "hello", ...}` line, then one
  line per event as the daemon accepts it until the client hangs up: `reading` (time, device,
  quantity, value, unit, synced, plausible), `alert` (the platform's alert object), `device`
  (available true/false and why), `uplink` (connected true/false and why). `device` and
  `quantity` filter readings (a device filter also filters alerts and device events).
Each tail client has a bounded queue: a client that reads slower than readings come (a bad SSH
link) loses the oldest events, told by a `{"event": "dropped", "count": N}` line, and never
slows the daemon. A bad request (not JSON, too long, unknown op, no request in time) gets one
`{"error": ...}` line and the connection closes. With no client connected the observers return
at once and the link is not looked at (no timer wakes the daemon for nobody). Must not change
any state of the daemon; never raises into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.clock import iso
from gateway.model import Lane, Reading

SOCKET_NAME = "gateway.sock"
QUEUE = 2000  # events held per tail client before the oldest are dropped
REQUEST_MAX = 1024  # bytes of one request line
REQUEST_TIMEOUT = 5.0  # seconds a client may take to send its request
WRITE_TIMEOUT = 30.0  # seconds a client may leave a line unread before it is hung up on


def socket_path(runtime_dir: str) -> Path:
    """Where the daemon of a config with this `[store] runtime_dir` listens."""
    return Path(runtime_dir) / SOCKET_NAME


class _Client:
    """One tail subscription: its filters, its bounded queue, how much it lost."""

    def __init__(self, device: str | None, quantity: str | None) -> None:
        self.device = device
        self.quantity = quantity
        self.queue: deque[dict[str, Any]] = deque(maxlen=QUEUE)
        self.dropped = 0
        self.ready = asyncio.Event()

    def wants(self, device: str, quantity: str | None) -> bool:
        if self.device is not None and device != self.device:
            return False
        return self.quantity is None or quantity is None or quantity == self.quantity

    def put(self, event: dict[str, Any]) -> None:
        if len(self.queue) == QUEUE:
            self.dropped += 1  # deque(maxlen) pushes the oldest out
        self.queue.append(event)
        self.ready.set()


class Monitor:
    """`await start()`; hook `observe` and `device_state`; run `run()`; `await stop()`."""

    def __init__(
        self,
        runtime_dir: str,
        snapshot: Callable[[], dict[str, object]],
        link: Callable[[], tuple[bool, str]],
        log: Any,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """`snapshot()`: the status report; `link()`: (uplink connected, why it is down)."""
        self.request_timeout = request_timeout
        self.path = socket_path(runtime_dir)
        self.snapshot = snapshot
        self.link = link
        self.log = log
        self.clients: list[_Client] = []
        self._server: asyncio.AbstractServer | None = None
        self._link: tuple[bool, str] | None = None
        self._watched = asyncio.Event()  # set while a tail client is connected

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> bool:
        """Listen; False (logged once) when the socket cannot be made: the daemon runs on."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.path.exists() or self.path.is_symlink():
                if await self._answered():
                    self.log.warning(
                        "monitor socket in use by another daemon; not serving",
                        path=str(self.path),
                    )
                    return False
                self.path.unlink()  # left by a daemon that was killed
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=REQUEST_MAX
            )
            os.chmod(self.path, 0o600)
        except OSError as exc:
            self.log.warning(
                "monitor socket unavailable; gateway tail will not work",
                path=str(self.path),
                error=exc.strerror or str(exc),
            )
            return False
        return True

    async def _answered(self) -> bool:
        """Does a live daemon listen on the existing socket file?"""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 2)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for client in self.clients:
            client.ready.set()  # their writers see the server gone and end
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._server = None

    # -- events (called by the daemon's parts; cheap when nobody listens) -------------------
    def observe(self, readings: Sequence[Reading]) -> None:
        if not self.clients:
            return
        for r in readings:
            if r.lane == Lane.MAIL:
                continue
            event = self._event(r)
            for client in self.clients:
                if client.wants(r.device, None if r.lane == Lane.ALERT else r.quantity):
                    client.put(event)

    def _event(self, r: Reading) -> dict[str, Any]:
        if r.lane == Lane.ALERT and isinstance(r.value, str):
            try:
                alert = json.loads(r.value)
            except json.JSONDecodeError:
                alert = r.value
            return {"event": "alert", "time": iso(r.ts), "device": r.device, "alert": alert}
        return {
            "event": "reading",
            "time": iso(r.ts),
            "device": r.device,
            "quantity": r.quantity,
            "value": r.value,
            "unit": r.unit,
            "synced": r.synced,
            "plausible": r.plausible,
        }

    def device_state(self, device: str, available: bool, reason: str) -> None:
        event = {"event": "device", "device": device, "available": available, "reason": reason}
        for client in self.clients:
            if client.wants(device, None):
                client.put(event)

    async def run(self) -> None:
        """Tell tail clients of uplink changes (looked at every second while one is
        connected), until cancelled. With no client it sleeps: an idle daemon is not woken
        every second for nobody. A client may hear the link's current state in its first
        second (a change since the last look, which may predate it)."""
        while True:
            await self._watched.wait()
            await asyncio.sleep(1.0)
            state = self.link()
            if state != self._link:
                self._link = state
                for client in self.clients:
                    client.put({"event": "uplink", "connected": state[0], "reason": state[1]})

    # -- one connection --------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._request(reader)
            if isinstance(request, str):
                await self._send(writer, {"error": request})
            elif request["op"] == "status":
                await self._send(writer, {"status": self.snapshot()})
            else:
                await self._tail(request, reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stopped reading: nothing of ours to keep
        except Exception as exc:  # a bug here must end this client, never the daemon
            self.log.error("monitor client failed", error_type=type(exc).__name__, error=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _request(self, reader: asyncio.StreamReader) -> dict[str, Any] | str:
        """The request object, or the error text to answer."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self.request_timeout)
        except TimeoutError:
            return f"no request within {self.request_timeout:g} s"
        except asyncio.LimitOverrunError:
            return f"request longer than {REQUEST_MAX} bytes"
        except asyncio.IncompleteReadError as exc:
            line = exc.partial
        if len(line) > REQUEST_MAX:
            return f"request longer than {REQUEST_MAX} bytes"
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return 'request is not JSON: send {"op": "status"} or {"op": "tail"}'
        if not isinstance(request, dict) or request.get("op") not in ("status", "tail"):
            return 'unknown request: send {"op": "status"} or {"op": "tail"}'
        for key in ("device", "quantity"):
            if not isinstance(request.get(key, ""), str):
                return f"{key} must be a string"
        return request

    async def _tail(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = _Client(request.get("device") or None, request.get("quantity") or None)
        self.clients.append(client)
        self._watched.set()
        hangup = asyncio.ensure_future(reader.read(1))  # a tail client sends nothing more
        try:
            await self._send(writer, {"event": "hello", "socket": str(self.path)})
            while self._server is not None and not hangup.done():
                ready = asyncio.ensure_future(client.ready.wait())
                await asyncio.wait([ready, hangup], return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                client.ready.clear()
                if client.dropped:
                    lost, client.dropped = client.dropped, 0
                    await self._send(writer, {"event": "dropped", "count": lost})
                while client.queue:
                    await self._send(writer, client.queue.popleft())
        finally:
            hangup.cancel()
            self.clients.remove(client)
            if not self.clients:
                self._watched.clear()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
        writer.write(line.encode() + b"\n")
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


def ask(path: Path, request: dict[str, Any], timeout: float = 3.0) -> socket.socket:
    """A connected client socket that has sent `request` (for the CLI; blocking).
    Raises OSError (FileNotFoundError: no daemon; PermissionError: not ours to read)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
    except OSError:
        sock.close()
        raise
    return sock
