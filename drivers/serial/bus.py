"""The serial bus task: owns one port, frames lines, feeds its devices, survives unplugging.

One task per port. Each attempt resolves the port (a path, or a udev match looked up in the
device table at connect time), opens it, and reads until it fails; `gateway.supervise` retries
with capped, jittered backoff, and a hotplug `add` matching the port cuts the wait short. A
hotplug `remove` of the open device aborts the read at once, so its devices are reported
unavailable before the kernel even returns EIO. Bad lines (undecodable bytes, bad checksums,
overlong runs, lines no profile matches) are dropped and counted in `counters`, each kind
logged once per connection; so are XDR quads that map to no quantity (`xdr_unmapped`).
Transient errors never leave `run`; bugs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter

from drivers.serial.framer import LineFramer
from drivers.serial.nmea import ChecksumError
from drivers.serial.options import BusOptions
from drivers.serial.stream import Batch, DeviceStream
from drivers.serial.transport import SerialPort, open_port
from gateway.contract import BusConfig, BusContext, options_as
from gateway.errors import BusUnavailable, DecodeError, GatewayError, Permanent
from gateway.hotplug import DeviceEvent, DeviceInfo, Hotplug, enumerate_devices
from gateway.logs import debugging
from gateway.supervise import Backoff, Health, supervise

HEALTHY_AFTER = 60.0  # seconds connected before the backoff schedule starts again from the top


class SerialBus:
    def __init__(self, bus: BusConfig, ctx: BusContext) -> None:
        self.name = bus.name
        self.options = options_as(bus.options, BusOptions)
        self.ctx = ctx
        self.log = ctx.log
        self._debug = debugging(ctx.log)  # every line read, decoded or not
        self.hotplug: Hotplug | None = ctx.hotplug
        # config parsing guarantees every device has an nmea or line profile (PROTOCOLS)
        self.streams = [DeviceStream(d) for d in bus.devices]
        self.framer = LineFramer(self.options.max_line)
        self.counters: Counter[str] = Counter()
        self.health = Health(self.log, "serial port")
        self._wake: asyncio.Event | None = None
        self._port: SerialPort | None = None
        self._current: DeviceInfo | None = None
        self._warned: set[str] = set()
        self._settle: asyncio.TimerHandle | None = None

    def stats(self) -> dict[str, int]:
        """Counters for status output: lines, decoded, drops by reason, duplicates, connects."""
        out = dict(self.counters)
        out["overlong"] = self.framer.overlong
        out["duplicates"] = sum(s.duplicates for s in self.streams)
        return out

    async def run(self) -> None:
        self._wake = asyncio.Event()
        backoff = Backoff(initial=self.options.reconnect_min, maximum=self.options.reconnect_max)
        with self._subscription():
            try:
                await supervise(
                    self._attempt,
                    self.health,
                    backoff,
                    wake=self._wake,
                    healthy_after=HEALTHY_AFTER,
                )
            finally:
                if self._settle is not None:
                    self._settle.cancel()

    # -- hotplug ----------------------------------------------------------------------------
    def _subscription(self) -> contextlib.AbstractContextManager[None]:
        if self.hotplug is None:
            return contextlib.nullcontext()
        return self.hotplug.subscribe(self._on_event)

    def _on_event(self, event: DeviceEvent) -> None:
        if event.device.subsystem != "tty":
            return
        if event.action == "add" and self._port is None and self._wants(event.device):
            settle = self.hotplug.settle if self.hotplug is not None else 0.0
            if settle > 0:
                if self._settle is not None:
                    self._settle.cancel()
                self._settle = asyncio.get_running_loop().call_later(settle, self._wake_up)
            else:
                self._wake_up()
        elif event.action == "remove" and self._port is not None and self._is_open(event.device):
            self._port.abort(BusUnavailable(f"adapter removed ({event.device.devnode})"))

    def _wake_up(self) -> None:
        self._settle = None
        if self._wake is not None:
            self._wake.set()

    def _wants(self, device: DeviceInfo) -> bool:
        if self.options.match is not None:
            return self.options.match.matches(device)
        port = self.options.port
        return port in device.devlinks or os.path.realpath(port) == device.devnode

    def _is_open(self, device: DeviceInfo) -> bool:
        current = self._current
        if current is None:
            return False
        if device.devpath and current.devpath:
            return device.devpath == current.devpath
        return device.devnode == current.devnode

    # -- connection -------------------------------------------------------------------------
    def _resolve(self) -> tuple[str, DeviceInfo]:
        """The path to open and what we know of the device behind it."""
        listed = self.hotplug.devices("tty") if self.hotplug is not None else None
        if self.options.match is None:
            path = self.options.port
            node = os.path.realpath(path)
            known = next((d for d in listed or () if d.devnode == node), None)
            return path, known or DeviceInfo(devnode=node)
        if listed is None:
            listed = enumerate_devices("tty")
        found = [d for d in listed if self.options.match.matches(d)]
        if not found:
            raise BusUnavailable(f"no serial port matches {self.options.match} (unplugged?)")
        if len(found) > 1:
            nodes = ", ".join(sorted(d.devnode for d in found))
            raise Permanent(
                f"{len(found)} serial ports match {self.options.match} ({nodes}); "
                "add serial or usb_path to the match to tell them apart"
            )
        return found[0].devnode, found[0]

    async def _attempt(self, health: Health) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                path, info = self._resolve()
                port = await stack.enter_async_context(open_port(path, self.options.settings))
            except GatewayError as exc:
                # A port missing since boot must still show its devices as down (once).
                for s in self.streams:
                    self._set_available(s, False, str(exc))
                raise
            await self._connected(health, path, info, port)

    async def _connected(
        self, health: Health, path: str, info: DeviceInfo, port: SerialPort
    ) -> None:
        loop = asyncio.get_running_loop()
        self._port, self._current = port, info
        self.counters["connects"] += 1
        if self.counters["connects"] == 1:
            self.log.info("serial port open", port=path, device=info.devnode)
        health.up(port=path)
        self.framer.reset()
        self._warned.clear()
        for s in self.streams:
            s.last_heard = loop.time()
            self._set_available(s, True)
        try:
            await self._serve(port)
        except BusUnavailable as exc:
            # Not on cancellation: a gateway shutting down has not lost its devices.
            for s in self.streams:
                self._set_available(s, False, str(exc))
            raise
        finally:
            self._port = None

    def _set_available(self, stream: DeviceStream, available: bool, reason: str = "") -> None:
        if stream.available is not available:
            stream.available = available
            self.ctx.sink.device_state(stream.device.id, available, reason)

    # -- reading ----------------------------------------------------------------------------
    async def _serve(self, port: SerialPort) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._next_deadline()
            if deadline is None:
                chunk = await port.read()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await port.read()
                except TimeoutError:
                    chunk = b""
            now = loop.time()
            batch: Batch = {}
            if chunk:
                overlong = self.framer.overlong
                for raw in self.framer.feed(chunk):
                    self._line(raw, now, batch)
                if self.framer.overlong != overlong:
                    self._warn("overlong", f"a line exceeded max_line={self.framer.max_line}")
            for s in self.streams:
                s.flush(now, batch)
                if (
                    s.silence > 0
                    and s.available
                    and s.last_heard is not None
                    and now - s.last_heard >= s.silence
                ):
                    self._set_available(s, False, f"no data for {s.silence:g} s")
            for key, observations in batch.items():
                await self.ctx.sink.emit(key, observations)

    def _next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for s in self.streams:
            due = s.next_due()
            if due is not None:
                deadlines.append(due)
            if s.silence > 0 and s.available and s.last_heard is not None:
                deadlines.append(s.last_heard + s.silence)
        return min(deadlines) if deadlines else None

    def _line(self, raw: bytes, now: float, batch: Batch) -> None:
        self.counters["lines"] += 1
        try:
            text = raw.decode(self.options.encoding)
            clean = True
        except UnicodeDecodeError:
            # Noise bytes glued to the front of a good line (no line end in between) must
            # not cost the line: the decoders resynchronise on the sentence start.
            text = raw.decode(self.options.encoding, "replace")
            clean = False
        accepted = False
        error: DecodeError | None = None
        for s in self.streams:
            try:
                unmapped = s.accept(text, now, batch)
            except ChecksumError as exc:
                error = exc
            except DecodeError as exc:
                if not isinstance(error, ChecksumError):
                    error = exc
            else:
                accepted = True
                if s.available is False:
                    self._set_available(s, True)
                if unmapped:
                    self._unmapped(s, unmapped)
        if self._debug:
            self.log.debug(
                "line", text=text[:120], accepted=accepted, error=str(error) if error else None
            )
        if accepted:
            self.counters["decoded"] += 1
        elif not clean:
            self._drop("undecodable", raw, f"not {self.options.encoding} text")
        elif isinstance(error, ChecksumError):
            self._drop("bad_checksum", raw, str(error))
        else:
            self._drop("unmatched", raw, str(error) if error else "no device on this port")

    def _unmapped(self, stream: DeviceStream, quads: tuple[str, ...]) -> None:
        self.counters["xdr_unmapped"] += len(quads)
        if "xdr_unmapped" not in self._warned:  # once per connection, like dropped lines
            self._warned.add("xdr_unmapped")
            self.log.warning(
                "XDR quad maps to no quantity",
                device=stream.device.id,
                quad=quads[0],
                hint="name it in the profile's [[xdr]] table",
                repeats="counted only",
            )

    def _drop(self, kind: str, raw: bytes, why: str) -> None:
        self.counters[kind] += 1
        self._warn(kind, why, line=repr(raw[:80]))

    def _warn(self, kind: str, why: str, **context: object) -> None:
        # Once per kind per connection: a noisy line would otherwise flood the journal.
        if kind not in self._warned:
            self._warned.add(kind)
            self.log.warning(
                "dropped serial line", reason=kind, error=why, repeats="counted only", **context
            )
