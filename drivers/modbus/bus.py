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
import operator
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drivers.modbus import HOTPLUG
from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.errors import NoResponse
from drivers.modbus.link import Link
from drivers.modbus.options import BusOptions, DeviceOptions
from drivers.modbus.plan import Block, plan
from drivers.modbus.recipe import Recipe
from drivers.modbus.relay import OffTimers, register
from drivers.modbus.schedule import first_dues, next_due
from gateway.contract import BusConfig, BusContext, DeviceConfig, decoder_as, options_as
from gateway.errors import BusUnavailable, DecodeError, DeviceUnavailable
from gateway.hotplug import DeviceEvent, Hotplug
from gateway.logs import debugging
from gateway.supervise import Backoff, Health, supervise


@dataclass
class _Device:
    config: DeviceConfig
    decoder: ModbusDecoder
    unit: int
    blocks: list[Block]
    recipe: Recipe  # the decoder compiled for these blocks
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


_DUE = operator.attrgetter("due")  # the next device to poll: min() by this, ties in config order


def _default_link(options: BusOptions) -> Link:
    from drivers.modbus import transport

    return transport.Link(options)


class ModbusBus:
    """gateway.contract.Bus for modbus-rtu / modbus-tcp. `counters` feeds status and benchmarks."""

    def __init__(
        self,
        bus: BusConfig,
        ctx: BusContext,
        *,
        link_factory: Callable[[BusOptions], Link] = _default_link,
        wake: asyncio.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = bus.name
        self.options = options_as(bus.options, BusOptions)
        self.ctx = ctx
        self.log = ctx.log
        self._debug = debugging(ctx.log)  # polls and their failures, each one
        self.counters: Counter[str] = Counter()
        self._link_factory = link_factory
        self._hub: Hotplug | None = None
        if wake is None and ctx.hotplug is not None and bus.transport in HOTPLUG:
            # An adapter plugged back in cuts the backoff short.
            self._hub = ctx.hotplug
            wake = asyncio.Event()
        self._wake_reconnect = wake
        self._rng = rng or random.Random()
        self._link: Link | None = None
        self._queue: list[_Write] = []
        self._kick: asyncio.Event | None = None
        self._last_end = 0.0
        self.devices: dict[str, _Device] = {}
        recipes: dict[tuple[int, tuple[Block, ...]], Recipe] = {}  # one per profile and plan
        for d in bus.devices:
            # Config parsing guarantees a Modbus profile (PROTOCOLS) and the options' ranges.
            decoder = decoder_as(d, ModbusDecoder)
            opts = options_as(d.options, DeviceOptions)
            gap = opts.max_gap if opts.max_gap is not None else self.options.max_gap
            blocks = plan(decoder.spans(), gap)
            # Keyed by id: every decoder stays alive in its device's config meanwhile.
            if (recipe := recipes.get(key := (id(decoder), tuple(blocks)))) is None:
                recipe = recipes[key] = Recipe(decoder, blocks)
            self.devices[d.id] = _Device(d, decoder, opts.unit, blocks, recipe)
        self.relays = OffTimers(self, self._rng)
        register(self, self.relays, ctx, {i: d.decoder.channels for i, d in self.devices.items()})

    # -- the task -------------------------------------------------------------------------
    async def run(self) -> None:
        o = self.options
        health = Health(self.log, "modbus bus")
        backoff = Backoff(initial=o.reconnect_min, maximum=o.reconnect_max, rng=self._rng)
        watch = self._hub.subscribe(self._on_device) if self._hub else contextlib.nullcontext()
        with watch:
            if not any(d.decoder.channels for d in self.devices.values()):
                await supervise(self._attempt, health, backoff, wake=self._wake_reconnect)
                return
            async with asyncio.TaskGroup() as tg:
                # Timed relay switch-offs run beside the link: they also wait out a bus outage.
                tg.create_task(self.relays.run(), name=f"{self.name}-relay-timers")
                await supervise(self._attempt, health, backoff, wake=self._wake_reconnect)

    def _on_device(self, event: DeviceEvent) -> None:
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
                self.relays.retry_now()  # switch-offs that failed while the bus was down
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
        devices = list(self.devices.values())
        now = asyncio.get_running_loop().time()
        dues = first_dues([d.due for d in devices], [d.config.interval for d in devices], now)
        for dev, due in zip(devices, dues, strict=True):
            dev.due = due

    async def _serve(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()
        self._schedule_first()
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # A cancel swallowed below us ends the loop: 3.11's asyncio.wait_for drops one
                # that races its inner call finishing (gh-86296). Our link does not use it, but
                # a Link another module provides may, and this check costs next to nothing.
                raise asyncio.CancelledError
            if self._queue:
                await self._do_write(link, self._queue.pop(0))
                continue
            if not self.devices:
                await self._idle(3600.0)
                continue
            dev = min(self.devices.values(), key=_DUE)
            now = loop.time()
            if dev.due > now:
                await self._idle(dev.due - now)
                continue
            await self._poll(link, dev, loop)  # get_running_loop() is a getpid() call on 3.11
            dev.due = next_due(
                dev.due, dev.config.interval, self.options.jitter, self._rng, loop.time()
            )

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
    async def _poll(self, link: Link, dev: _Device, loop: asyncio.AbstractEventLoop) -> None:
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
            reads: list[list[int]] = []
            for b in dev.blocks:
                if self.options.gap:  # a coroutine less per request when there is no gap
                    await self._quiet()
                try:
                    reads.append(await link.read(dev.unit, b.kind, b.address, b.count))
                finally:
                    self._last_end = loop.time()
            observations = dev.recipe.decode(reads, dev.config.params)
        except DeviceUnavailable as exc:
            if self._debug:
                self.log.debug("poll failed", device=dev.config.id, unit=dev.unit, error=str(exc))
            self.counters["poll_failures"] += 1
            self.counters[type(exc).__name__] += 1
            if isinstance(exc, NoResponse) and self.options.settle:
                self._last_end = loop.time() + self.options.settle
            self._down(dev, str(exc))
            return
        except DecodeError as exc:
            self.counters["poll_failures"] += 1
            self.counters["decode_errors"] += 1
            self._down(dev, f"cannot decode: {exc}")
            return
        self._up(dev)
        if self._debug:
            self.log.debug(
                "polled",
                device=dev.config.id,
                unit=dev.unit,
                registers=sum(b.count for b in dev.blocks),
                ms=round((time.time() - ts) * 1000, 1),
            )
        bad = [o.plausible for o in observations].count(False)  # a generator costs more
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
        request = _Write(dev, kind, address, values)
        # Retrieve the outcome even when nobody awaits it any more (a timed-out caller).
        request.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(request)
        if self._kick is not None:
            self._kick.set()  # wake the bus task from its idle wait
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

    async def _do_write(self, link: Link, w: _Write) -> None:
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
