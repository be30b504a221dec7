"""The Modbus simulator: simulated slaves served over Modbus TCP or RTU on a serial port.

`Simulator` is an async context manager (tests, the demo); `main` is `gateway sim modbus`:

    gateway sim modbus --profile urm14 --unit 12 --param mount_height=1000 \
        --port tcp:127.0.0.1:5020          # Modbus TCP (port 0 picks a free one)
    gateway sim modbus --profile relay-4ch --unit 1 --port /dev/ttyUSB1 --baud 9600
                                           # RTU on a real RS-485 adapter (rig) or a pty
    fault injection: --silent, --exception N, --garbage, --delay S, --drop-rate P

The serial side uses the OS tty interface directly (termios raw mode, non-blocking fd), so
it runs on any real port or pseudo-terminal without a Modbus library. It frames requests by
length (function code) and resynchronises on silence. Writes are printed as they arrive.
It must not be imported by the gateway's runtime path (only tests, the demo and the CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import struct
import sys
import termios
import tty
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from drivers.modbus import rtu
from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.options import BAUDS
from drivers.modbus.slave import Faults, SimUnit, Write
from gateway.model import Value

# A gap this long between received bytes starts a new frame (3.5 characters at 1200 baud is
# 32 ms; a pty delivers a frame in one read anyway).
_RESYNC_SILENCE = 0.05


class Simulator:
    """Serve `units` (unit id -> SimUnit) on `port`: "tcp:HOST:PORT" or a serial device path."""

    def __init__(
        self, units: Mapping[int, SimUnit], port: str = "tcp:127.0.0.1:0", *, baud: int = 9600
    ) -> None:
        self.units = dict(units)
        self.port = port
        self.baud = baud
        self.host = ""
        self.tcp_port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fd: int | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        # Every request seen, in order, as (unit, function code), and the most requests ever
        # being answered at once: tests check that a bus never overlaps two transactions.
        self.requests: list[tuple[int, int]] = []
        self.inflight = 0
        self.max_inflight = 0

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        if self.port.startswith("tcp:"):
            host, _, port = self.port[4:].rpartition(":")
            self._server = await asyncio.start_server(
                self._tcp_client, host or "127.0.0.1", int(port)
            )
            self.host, self.tcp_port = self._server.sockets[0].getsockname()[:2]
        else:
            self._open_serial()
            self._spawn(self._serial_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop serving and drop every connection (what a vanished peer looks like)."""
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            self._server = None
            # Let each connection handler see its EOF and end (cancelling a stream handler
            # makes asyncio log a spurious error on Python 3.11).
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=2.0)
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def address(self) -> str:
        return f"tcp:{self.host}:{self.tcp_port}" if self._server else self.port

    # -- one request ----------------------------------------------------------------------
    async def _answer(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The response PDU, or None to stay silent; applies the unit's faults."""
        self.requests.append((unit_id, pdu[0] if pdu else -1))
        unit = self.units.get(unit_id)
        if unit is None:
            return None  # not our address: on RS-485 another slave (or nobody) answers
        f = unit.faults
        if f.silent or (f.drop_rate and unit.rng.random() < f.drop_rate):
            unit.requests += 1
            return None
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if f.delay:
                await asyncio.sleep(f.delay)
            return unit.handle(pdu)
        finally:
            self.inflight -= 1

    # -- TCP ------------------------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                # MBAP header (Modbus Messaging on TCP/IP V1.0b section 3.1.3): transaction
                # id, protocol id 0, length of unit id + PDU, unit id.
                header = await reader.readexactly(7)
                tid, _, length, unit_id = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(max(0, length - 1))
                response = await self._answer(unit_id, pdu)
                if response is None:
                    continue
                if self.units[unit_id].faults.garbage:
                    writer.write(b"\xde\xad" + os.urandom(5))
                else:
                    writer.write(
                        struct.pack(">HHHB", tid, 0, len(response) + 1, unit_id) + response
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    # -- serial ---------------------------------------------------------------------------
    def _open_serial(self) -> None:
        speed = getattr(termios, f"B{self.baud}", None)
        if speed is None:
            raise OSError(f"{self.baud} baud is not a standard rate on this system")
        fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # a pty may refuse some settings; the bytes flow all the same
        self._fd = fd
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        last = 0.0

        def readable() -> None:
            nonlocal last
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the other end or the adapter went away
                loop.remove_reader(fd)
                return
            now = loop.time()
            if now - last > _RESYNC_SILENCE:
                buffer.clear()
            last = now
            buffer.extend(data)
            while buffer:
                n = rtu.request_length(bytes(buffer))
                if n is None or (n and len(buffer) < n):
                    return
                if n == 0 or not rtu.crc_ok(bytes(buffer[:n])):
                    buffer.clear()  # not a request we understand: wait for silence
                    return
                self._queue.put_nowait(bytes(buffer[:n]))
                del buffer[:n]

        loop.add_reader(fd, readable)

    async def _serial_loop(self) -> None:
        while True:
            request = await self._queue.get()
            response = await self._answer(request[0], request[1:-2])
            if response is None or self._fd is None:
                continue
            out = rtu.frame(request[0], response)
            if self.units[request[0]].faults.garbage:
                out = out[:-2] + bytes([out[-2] ^ 0x5A, out[-1] ^ 0xA5])
            await self._write_serial(out)

    async def _write_serial(self, data: bytes) -> None:
        while data and self._fd is not None:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            except OSError:
                return
            data = data[sent:]


# -- CLI ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway sim modbus", description="Serve a simulated Modbus slave from a profile."
    )
    p.add_argument("--profile", required=True, help="profile name (firmware-configs/modbus/)")
    p.add_argument("--unit", type=int, action="append", help="unit id (repeatable; default 1)")
    p.add_argument("--port", required=True, help="tcp:HOST:PORT or a serial device path")
    p.add_argument("--baud", type=int, default=9600, choices=BAUDS)
    p.add_argument("--param", action="append", default=[], help="device parameter KEY=VALUE")
    p.add_argument("--profile-dir", action="append", default=[], help="extra profile dir")
    p.add_argument("--silent", action="store_true", help="never answer")
    p.add_argument("--exception", type=int, default=0, help="answer with this exception code")
    p.add_argument("--garbage", action="store_true", help="answer with broken frames")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--drop-rate", type=float, default=0.0, help="probability of no answer")
    return p


def main(argv: list[str]) -> int:
    from gateway.config.profiles import ProfileLibrary, default_dirs
    from gateway.errors import Problem

    args = _parser().parse_args(argv)
    problems: list[Problem] = []
    profile = ProfileLibrary(default_dirs(args.profile_dir)).get(
        args.profile, problems, "--profile"
    )
    decoder = profile.decoder if profile is not None else None
    if not isinstance(decoder, ModbusDecoder):
        for problem in problems or [Problem("--profile", "not a modbus profile")]:
            print(problem, file=sys.stderr)
        return 1
    params: dict[str, Value] = {}
    for item in args.param:
        key, _, raw = item.partition("=")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    faults = Faults(args.silent, args.exception, args.garbage, args.delay, args.drop_rate)

    def show(unit: int) -> Callable[[Write], None]:
        return lambda w: print(
            f"unit {unit}: write {w.kind} {w.address} = {list(w.values)}", flush=True
        )

    units = {
        u: SimUnit(decoder, params, faults=faults, seed=u, on_write=show(u))
        for u in (args.unit or [1])
    }

    async def serve() -> None:
        async with Simulator(units, args.port, baud=args.baud) as sim:
            ids = ", ".join(map(str, units))
            print(f"serving {args.profile} as unit {ids} on {sim.address}", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"gateway sim modbus: {args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["Faults", "SimUnit", "Simulator", "Write", "main"]
