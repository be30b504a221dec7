"""Relay channels on Modbus coils: Actuators for local alerts and the `relay` downlink command.

Each device whose profile gives coils a `channel` becomes `ctx.actuators[device_id]`; the bus
registers one `relay` command handler taking {"device": "relay-1", "channel": 1,
"state": true, "seconds": 30} (state defaults to true when seconds is given; seconds switches
the channel off again after that long, done by the bus task, retried until confirmed so a
siren never stays on because one write was lost). The allow-list is the core's job. Nothing
here touches the link directly: every write goes through the bus's queue.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import TYPE_CHECKING, Any

from gateway.contract import BusContext, CommandHandler
from gateway.errors import Transient

if TYPE_CHECKING:
    from drivers.modbus.poller import ModbusBus

_RETRY_OFF = 2.0  # seconds between attempts to switch a timed channel off again


class RelayActuator:
    """gateway.contract.Actuator for one relay module."""

    def __init__(self, bus: ModbusBus, device: str, channels: dict[int, int]) -> None:
        self.bus = bus
        self.device = device
        self.channels = channels

    def address(self, channel: int) -> int:
        if channel not in self.channels:
            have = ", ".join(map(str, sorted(self.channels)))
            raise ValueError(f"{self.device} has no channel {channel} (channels: {have})")
        return self.channels[channel]

    async def switch(self, channel: int, on: bool, seconds: float | None = None) -> None:
        address = self.address(channel)
        offs: dict[tuple[str, int], float] = self.bus.relay_offs
        offs.pop((self.device, channel), None)  # an explicit command replaces a timer
        await self.bus.write_coils(self.device, address, [on])
        if on and seconds:
            offs[(self.device, channel)] = asyncio.get_running_loop().time() + seconds
            self.bus.kick()


async def due_offs(bus: ModbusBus, now: float) -> float:
    """Queue the timed switch-offs that are due; return when the next one is (inf if none)."""
    for key, when in list(bus.relay_offs.items()):
        if when > now:
            continue
        device, channel = key
        del bus.relay_offs[key]
        actuator = bus.ctx.actuators.get(device)
        if not isinstance(actuator, RelayActuator):
            continue
        request = bus.enqueue(device, "coil", actuator.address(channel), (0,))

        def retry(done: asyncio.Future[None], key: tuple[str, int] = key) -> None:
            if done.cancelled() or done.exception() is not None:
                bus.relay_offs.setdefault(key, asyncio.get_running_loop().time() + _RETRY_OFF)
                bus.counters["relay_off_retries"] += 1

        request.done.add_done_callback(retry)
    return min(bus.relay_offs.values(), default=math.inf)


class RelayCommand:
    """The `relay` command for every relay module of one bus, chained to other buses'."""

    def __init__(self, bus: ModbusBus, previous: CommandHandler | None) -> None:
        self.bus = bus
        self.previous = previous

    async def __call__(self, arg: Any) -> str:
        try:
            request = json.loads(arg) if isinstance(arg, str | bytes) else arg
        except json.JSONDecodeError as exc:
            return f"error: not JSON: {exc.msg}"
        if not isinstance(request, dict):
            return 'error: expected {"device": ..., "channel": ..., "state": ...}'
        device = request.get("device")
        if not isinstance(device, str):
            return 'error: "device" must be a device id string'
        actuator = self.bus.ctx.actuators.get(device)
        if not isinstance(actuator, RelayActuator) or actuator.bus is not self.bus:
            if self.previous is not None:
                return await self.previous(arg)
            return f'error: no relay module "{device}"'
        unknown = set(request) - {"device", "channel", "state", "seconds"}
        if unknown:
            return f"error: unknown key(s) {', '.join(sorted(unknown))}"
        channel = request.get("channel", 1)
        seconds = request.get("seconds")
        state = request.get("state", True if seconds is not None else None)
        if isinstance(channel, bool) or not isinstance(channel, int):
            return f'error: "channel" must be an integer, got {channel!r}'
        if not isinstance(state, bool):
            return f'error: "state" must be true or false, got {state!r}'
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds <= 86400
        ):
            return f'error: "seconds" must be a number in (0, 86400], got {seconds!r}'
        try:
            await actuator.switch(channel, state, seconds)
        except ValueError as exc:
            return f"error: {exc}"
        except Transient as exc:
            return f"error: {exc}"
        return "OK"


def register(bus: ModbusBus, ctx: BusContext) -> None:
    """Add the bus's relay modules to ctx.actuators and chain its `relay` command."""
    found = False
    for device_id, dev in bus.devices.items():
        channels = dev.decoder.channels
        if channels:
            ctx.actuators[device_id] = RelayActuator(bus, device_id, channels)
            found = True
    if found:
        ctx.commands["relay"] = RelayCommand(bus, ctx.commands.get("relay"))
