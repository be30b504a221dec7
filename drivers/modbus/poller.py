"""The Modbus bus task: one owner per bus polls every device on its schedule and does writes.

RS-485 is half-duplex and a Modbus TCP gateway serialises its RTU side anyway, so one task
owns the link: no lock, polls and writes interleave through a queue drained between
transactions, and the inter-frame gap is kept between every two transactions. A device that
fails (silence, exception, garbage, undecodable answer) is reported unavailable once and
retried on its normal schedule; its poll stops at the first failed request, so a dead slave
costs at most timeout x (1 + retries) + settle per cycle and the others keep their schedule.
`settle` keeps the line quiet after an unanswered request so a slow slave's late answer does
not land on the next unit's (the link also re-asks once when that happens anyway). A lost
link ends the attempt; gateway.supervise reconnects with backoff. This module does not import
pymodbus (drivers.modbus.transport does).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.modbus import BusOptions, NoResponse
from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.plan import Block, plan
from gateway.contract import BusConfig, BusContext, DeviceConfig
from gateway.errors import BusUnavailable, ConfigError, DecodeError, DeviceUnavailable, Problem
from gateway.supervise import Backoff, Health, supervise


@dataclass
class _Device:
    config: DeviceConfig
    decoder: ModbusDecoder
    unit: int
    blocks: list[Block]
    due: float = 0.0
    available: bool | None = None  # None until the first poll


@dataclass
class _Write:
    device: _Device
    kind: str  # "coil" or "holding"
    address: int
    values: tuple[int, ...]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _default_link(options: BusOptions) -> Any:
    from drivers.modbus.transport import Link

    return Link(options)


class ModbusBus:
    """gateway.contract.Bus for modbus-rtu / modbus-tcp. `counters` feeds status and benchmarks."""

    def __init__(
        self,
        bus: BusConfig,
        ctx: BusContext,
        *,
        link_factory: Callable[[BusOptions], Any] = _default_link,
        wake: asyncio.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = bus.name
        self.options: BusOptions = bus.options
        self.ctx = ctx
        self.log = ctx.log
        self.counters: Counter[str] = Counter()
        self._link_factory = link_factory
        self._hub: Any = None
        if wake is None and isinstance(ctx.hotplug, asyncio.Event):
            wake = ctx.hotplug
        elif wake is None and hasattr(ctx.hotplug, "subscribe") and bus.transport == "modbus-rtu":
            # A gateway.hotplug source: an adapter plugged back in cuts the backoff short.
            self._hub = ctx.hotplug
            wake = asyncio.Event()
        self._wake_reconnect = wake
        self._rng = rng or random.Random()
        self._link: Any = None
        self._queue: list[_Write] = []
        self._kick: asyncio.Event | None = None
        self.relay_offs: dict[tuple[str, int], float] = {}  # (device, channel) -> off time
        self._last_end = 0.0
        self.devices: dict[str, _Device] = {}
        problems = []
        for i, d in enumerate(bus.devices):
            if not isinstance(d.decoder, ModbusDecoder):
                problems.append(
                    Problem(
                        f"{bus.name}.devices[{i}].profile", f'"{d.profile}" is not a Modbus profile'
                    )
                )
                continue
            gap = d.options.max_gap if d.options.max_gap is not None else self.options.max_gap
            self.devices[d.id] = _Device(d, d.decoder, d.options.unit, plan(d.decoder.spans(), gap))
        if problems:
            raise ConfigError(problems)
        from drivers.modbus.relay import register

        register(self, ctx)

    # -- the task -------------------------------------------------------------------------
    async def run(self) -> None:
        o = self.options
        health = Health(self.log, "modbus bus")
        backoff = Backoff(initial=o.reconnect_min, maximum=o.reconnect_max, rng=self._rng)
        watch = self._hub.subscribe(self._on_device) if self._hub else contextlib.nullcontext()
        with watch:
            await supervise(self._attempt, health, backoff, wake=self._wake_reconnect)

    def _on_device(self, event: Any) -> None:
        """Hotplug listener: an `add` of our port (by node or udev link) wakes the reconnect."""
        device = event.device
        if event.action == "add" and self.options.port in (device.devnode, *device.devlinks):
            assert self._wake_reconnect is not None
            self._wake_reconnect.set()

    async def _attempt(self, health: Health) -> None:
        self.counters["connects"] += 1
        try:
            async with self._link_factory(self.options) as link:
                health.up(bus=self.name, port=self.options.where)
                self._link = link
                await self._serve(link)
        except BusUnavailable as exc:
            for dev in self.devices.values():
                self._down(dev, f"bus down: {exc}")
            raise
        finally:
            self._link = None
            for w in self._queue:
                if not w.done.done():
                    w.done.set_exception(BusUnavailable(f"bus {self.name} is down"))
            self._queue.clear()

    def _schedule_first(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        n = len(self.devices)
        # Stagger first polls a little so a restart does not burst every trigger write and
        # read at once; the bus serialises them anyway, so a short spread is enough.
        for i, dev in enumerate(self.devices.values()):
            if dev.due <= now:
                dev.due = now + min(dev.config.interval, 2.0) * i / max(1, n)

    def _next_due(self, dev: _Device, now: float) -> float:
        interval = dev.config.interval
        if interval <= 0:
            return now
        j = self.options.jitter
        step = interval * (1 + self._rng.uniform(-j, j))
        # Fixed rate from the previous due time; after falling behind, restart from now.
        return dev.due + step if dev.due + step > now else now + step

    async def _serve(self, link: Any) -> None:
        loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()
        self._schedule_first()
        from drivers.modbus.relay import due_offs

        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # Python 3.11's asyncio.wait_for (used by pymodbus for every request) drops
                # a cancellation that races a response arriving (gh-86296); honour it here.
                raise asyncio.CancelledError
            if self._queue:
                await self._do_write(link, self._queue.pop(0))
                continue
            wake_at = await due_offs(self, loop.time())
            if not self.devices:
                await self._idle(wake_at - loop.time())
                continue
            dev = min(self.devices.values(), key=lambda d: d.due)
            now = loop.time()
            if dev.due > now:
                await self._idle(min(dev.due, wake_at) - now)
                continue
            await self._poll(link, dev)
            dev.due = self._next_due(dev, loop.time())

    async def _idle(self, seconds: float) -> None:
        assert self._kick is not None
        self._kick.clear()
        if self._queue or seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(seconds, 3600.0)):
                await self._kick.wait()

    async def _quiet(self) -> None:
        """Keep the inter-frame gap between two transactions (spec section 2.5.1.1)."""
        if self.options.gap:
            wait = self._last_end + self.options.gap - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)

    def _ended(self) -> None:
        self._last_end = asyncio.get_running_loop().time()

    # -- polling --------------------------------------------------------------------------
    async def _poll(self, link: Any, dev: _Device) -> None:
        self.counters["polls"] += 1
        ts = time.time()
        try:
            for t in dev.decoder.triggers:
                await self._quiet()
                try:
                    if t.kind == "coil":
                        await link.write_coils(dev.unit, t.address, [bool(t.value)])
                    else:
                        await link.write_registers(dev.unit, t.address, [t.value])
                finally:
                    self._ended()
                await asyncio.sleep(t.wait)
                ts = time.time()
            data: dict[str, dict[int, int]] = {}
            for b in dev.blocks:
                await self._quiet()
                try:
                    values = await link.read(dev.unit, b.kind, b.address, b.count)
                finally:
                    self._ended()
                data.setdefault(b.kind, {}).update(
                    zip(range(b.address, b.end), values, strict=True)
                )
            observations = dev.decoder.decode(data, dev.config.params)
        except DeviceUnavailable as exc:
            self.counters["poll_failures"] += 1
            self.counters[type(exc).__name__] += 1
            if isinstance(exc, NoResponse) and self.options.settle:
                self._last_end = asyncio.get_running_loop().time() + self.options.settle
            self._down(dev, str(exc))
            return
        except DecodeError as exc:
            self.counters["poll_failures"] += 1
            self.counters["decode_errors"] += 1
            self._down(dev, f"cannot decode: {exc}")
            return
        self._up(dev)
        bad = sum(1 for o in observations if not o.plausible)
        if bad:
            self.counters["implausible"] += bad
        self.counters["readings"] += len(observations)
        await self.ctx.sink.emit(dev.config.id, observations, ts)

    def _down(self, dev: _Device, reason: str) -> None:
        if dev.available is not False:
            dev.available = False
            self.counters["device_down"] += 1
            self.ctx.sink.device_state(dev.config.id, False, reason)

    def _up(self, dev: _Device) -> None:
        if dev.available is False:
            self.ctx.sink.device_state(dev.config.id, True, "")
        dev.available = True

    # -- writes ---------------------------------------------------------------------------
    async def write_coils(self, device: str, address: int, values: Sequence[bool]) -> None:
        """Write coils on `device` between polls; raises Transient when not confirmed."""
        await self._submit(device, "coil", address, tuple(1 if v else 0 for v in values))

    async def write_registers(self, device: str, address: int, values: Sequence[int]) -> None:
        """Write holding registers on `device` between polls (see write_coils)."""
        if any(not 0 <= v <= 0xFFFF for v in values):
            raise ValueError(f"register values must be 0..65535, got {list(values)}")
        await self._submit(device, "holding", address, tuple(values))

    async def _submit(self, device: str, kind: str, address: int, values: tuple[int, ...]) -> None:
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f'no device "{device}" on bus {self.name}')
        if not values:
            raise ValueError("nothing to write")
        if self._link is None:
            raise BusUnavailable(f"bus {self.name} is down")
        request = self.enqueue(device, kind, address, values)
        o = self.options
        # Worst case: the poll in progress (its blocks and trigger) and then our own request.
        budget = o.timeout * (o.retries + 1) * (len(dev.blocks) + 3) + 2 * o.gap + 1.0
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the write completes, and the caller would never stop.
            async with asyncio.timeout(budget):
                await asyncio.shield(request.done)
        except TimeoutError:
            if request in self._queue:
                self._queue.remove(request)
            raise DeviceUnavailable(f"{device}: write not done within {budget:.1f} s") from None

    def enqueue(self, device: str, kind: str, address: int, values: tuple[int, ...]) -> _Write:
        """Queue a write for the bus task without waiting for it (used from inside the task)."""
        request = _Write(self.devices[device], kind, address, values)
        # Retrieve the outcome even when nobody awaits it any more (a timed-out caller).
        request.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(request)
        self.kick()
        return request

    def kick(self) -> None:
        """Wake the bus task early (a write or a relay timer was added)."""
        if self._kick is not None:
            self._kick.set()

    async def _do_write(self, link: Any, w: _Write) -> None:
        if w.done.done():
            return
        await self._quiet()
        try:
            if w.kind == "coil":
                await link.write_coils(w.device.unit, w.address, [bool(v) for v in w.values])
            else:
                await link.write_registers(w.device.unit, w.address, list(w.values))
        except DeviceUnavailable as exc:
            self.counters["write_failures"] += 1
            if isinstance(exc, NoResponse) and self.options.settle:
                self._last_end = asyncio.get_running_loop().time() + self.options.settle
            if not w.done.done():
                w.done.set_exception(exc)
            return
        except BusUnavailable as exc:
            if not w.done.done():
                w.done.set_exception(exc)
            raise
        finally:
            self._ended()
        self.counters["writes"] += 1
        if not w.done.done():
            w.done.set_result(None)
        # Read the new state back soon so the platform sees the relay switch.
        w.device.due = min(w.device.due, asyncio.get_running_loop().time())
