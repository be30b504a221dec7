"""Relay channels on Modbus coils: Actuators for local alerts and the `relay` downlink command.

Each device whose profile gives coils a `channel` becomes `ctx.actuators[device_id]`; the bus
registers one `relay` command (a gateway.contract.Command with a declared schema) taking
{"device": "relay-1", "channel": 1, "state": true, "seconds": 30}: the device must be a relay
module, channel an integer, state a boolean (default true when seconds is given), seconds a
finite number in (0, 86400] that switches the channel off again after that long. A timed
switch-off is retried with gateway.supervise's Backoff until the module confirms it, so a siren
never stays on because one write was lost or the bus was down at that moment. The allow-list is
the core's job.

Everything here talks to the bus through `CoilWriter` (its public, queued `write_coils`); this
module does not import the bus and never touches a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.contract import BusContext, Command
from gateway.errors import Transient
from gateway.schema import Field, Schema
from gateway.supervise import Backoff

RETRY_OFF = 2.0  # seconds before the first retry of a switch-off the module did not confirm
RETRY_OFF_MAX = 30.0  # cap: a dead module costs a full timeout per attempt on a shared bus


class CoilWriter(Protocol):
    """What relays need of a bus: a confirmed coil write, queued between polls."""

    @property
    def name(self) -> str: ...

    async def write_coils(self, device: str, address: int, values: Sequence[bool]) -> None:
        """Raises Transient when the write was not confirmed (or the bus is down)."""
        ...


@dataclass
class _Off:
    device: str
    address: int
    when: float
    backoff: Backoff
    attempts: int = 0


@dataclass
class OffTimers:
    """Timed switch-offs of one bus's relay channels; `run` does them until cancelled."""

    writer: CoilWriter
    rng: random.Random = field(default_factory=random.Random)
    retry_initial: float = RETRY_OFF
    retry_max: float = RETRY_OFF_MAX
    retries: int = 0  # switch-offs that had to be tried again (status, tests)
    _offs: dict[tuple[str, int], _Off] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self, device: str, channel: int, address: int, seconds: float) -> None:
        """Switch (device, channel) off at coil `address` in `seconds` (replaces a timer)."""
        when = asyncio.get_running_loop().time() + seconds
        backoff = Backoff(initial=self.retry_initial, maximum=self.retry_max, rng=self.rng)
        self._offs[(device, channel)] = _Off(device, address, when, backoff)
        self._changed.set()

    def cancel(self, device: str, channel: int) -> None:
        """Forget the timer of (device, channel): an explicit command replaces it."""
        self._offs.pop((device, channel), None)

    def retry_now(self) -> None:
        """Try failed switch-offs again at once (the bus is back: no need to wait them out)."""
        now = asyncio.get_running_loop().time()
        for off in self._offs.values():
            if off.attempts:
                off.when = min(off.when, now)
        self._changed.set()

    def pending(self) -> list[tuple[str, int]]:
        return sorted(self._offs)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            now = loop.time()
            for key, off in list(self._offs.items()):
                if off.when <= now:
                    await self._switch_off(key, off)
            wait = min((o.when for o in self._offs.values()), default=math.inf) - loop.time()
            if wait <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: 3.11's wait_for may lose a cancel.
                async with asyncio.timeout(min(wait, 3600.0)):
                    await self._changed.wait()

    async def _switch_off(self, key: tuple[str, int], off: _Off) -> None:
        off.attempts += 1
        try:
            await self.writer.write_coils(off.device, off.address, [False])
        except Transient:
            if self._offs.get(key) is off:  # not replaced by a command meanwhile
                self.retries += 1
                off.when = asyncio.get_running_loop().time() + off.backoff.next_delay()
            return
        if self._offs.get(key) is off:
            del self._offs[key]


class RelayActuator:
    """gateway.contract.Actuator for one relay module."""

    def __init__(
        self, writer: CoilWriter, timers: OffTimers, device: str, channels: Mapping[int, int]
    ) -> None:
        self.writer = writer
        self.timers = timers
        self.device = device
        self.channels = dict(channels)

    def address(self, channel: int) -> int:
        if channel not in self.channels:
            have = ", ".join(map(str, sorted(self.channels)))
            raise ValueError(f"{self.device} has no channel {channel} (channels: {have})")
        return self.channels[channel]

    async def switch(self, channel: int, on: bool, seconds: float | None = None) -> None:
        address = self.address(channel)
        self.timers.cancel(self.device, channel)  # an explicit command replaces a timer
        await self.writer.write_coils(self.device, address, [on])
        if on and seconds:
            self.timers.start(self.device, channel, address, seconds)


class RelayCommand:
    """The `relay` command for every relay module of one bus, chained to other buses' (an
    earlier bus's RelayCommand is `previous`): its declared schema (`command`) accepts only a
    device that is a relay module of one of them."""

    def __init__(self, actuators: Mapping[str, object], previous: RelayCommand | None) -> None:
        self.actuators = actuators
        self.previous = previous
        self.command = Command(
            Schema(
                {
                    "device": Field(
                        "text",
                        required=True,
                        accept=lambda d: self.find(d) is not None,
                        expect="a relay module of this gateway",
                    ),
                    "channel": Field("integer", lo=1, hi=65536),
                    "state": Field("boolean"),
                    # A day at most: a timed switch is for a siren or a pump, not a setting.
                    "seconds": Field("number", lo=0, hi=86400, accept=_positive, expect="> 0"),
                }
            ),
            self.run,
        )

    def find(self, device: str) -> RelayActuator | None:
        actuator = self.actuators.get(device)
        if isinstance(actuator, RelayActuator):
            return actuator
        return self.previous.find(device) if self.previous is not None else None

    async def run(self, args: dict[str, object]) -> str:
        """Switch as the checked `args` say; the error text to answer with when it fails."""
        device, channel = args["device"], args.get("channel", 1)
        seconds = args.get("seconds")
        state = args.get("state", True if seconds is not None else None)
        assert isinstance(device, str) and isinstance(channel, int)  # the schema checked them
        assert seconds is None or isinstance(seconds, int | float)
        if not isinstance(state, bool):
            return 'error: "state" (true or false) is required unless "seconds" is given'
        actuator = self.find(device)
        if actuator is None:  # gone since the check (a reload)
            return f'error: no relay module "{device}"'
        try:
            await actuator.switch(channel, state, None if seconds is None else float(seconds))
        except (ValueError, Transient) as exc:
            return f"error: {exc}"
        return "OK"


def _positive(value: float) -> bool:
    return value > 0


def register(
    writer: CoilWriter,
    timers: OffTimers,
    ctx: BusContext,
    channels: Mapping[str, Mapping[int, int]],
) -> None:
    """Add the relay modules (device -> channel -> coil address; sensors have no channels) to
    ctx.actuators and chain this bus's `relay` command to the one already registered."""
    found = False
    for device_id, device_channels in channels.items():
        if device_channels:
            ctx.actuators[device_id] = RelayActuator(writer, timers, device_id, device_channels)
            found = True
    if found:
        previous = ctx.commands.get("relay")
        chained = getattr(previous, "run", None)
        earlier = getattr(chained, "__self__", None)  # the earlier bus's RelayCommand
        relay = RelayCommand(ctx.actuators, earlier if isinstance(earlier, RelayCommand) else None)
        ctx.commands["relay"] = relay.command
