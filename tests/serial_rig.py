"""Test helpers for the serial driver: a config for a pty-backed bus and a running bus task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from drivers.serial import create_bus
from drivers.serial.bus import SerialBus
from gateway.config import loader as config_mod
from gateway.contract import BusContext
from gateway.hotplug import Hotplug
from tests.configs import load_config
from tests.fakes import RecordingSink


def bus_toml(port: str, devices: str, extra: str = "", backoff: float = 0.05) -> str:
    return load_config(
        "serial_bus",
        port=f'port = "{port}"' if port else "",
        reconnect_min=backoff,
        reconnect_max=backoff * 2,
        bus=extra,
        devices=devices,
    )


BUOY = """
[[buses.devices]]
id = "buoy-1"
profile = "buoy-nmea"
interval = 0
"""

TRAPS = """
[[buses.devices]]
id = "rx"
profile = "trap-receiver"
"""


@dataclass
class Running:
    bus: SerialBus
    sink: RecordingSink
    hotplug: Hotplug | None


@contextlib.asynccontextmanager
async def running_bus(
    text: str, hotplug: Hotplug | None = None, sink: RecordingSink | None = None
) -> AsyncIterator[Running]:
    """Parse `text` with the real config parser, start its first bus, stop it afterwards."""
    cfg = config_mod.parse(text)
    sink = sink or RecordingSink()
    ctx = BusContext(sink=sink, log=structlog.get_logger().bind(bus="line1"), hotplug=hotplug)
    bus = create_bus(cfg.buses[0], ctx)
    assert isinstance(bus, SerialBus)
    task = asyncio.create_task(bus.run())
    try:
        yield Running(bus, sink, hotplug)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def available(sink: RecordingSink, device: str) -> bool | None:
    """The last state reported for `device` (None when never reported)."""
    states = [a for d, a, _ in sink.states if d == device]
    return states[-1] if states else None


async def until_available(sink: RecordingSink, device: str, want: bool = True) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while available(sink, device) is not want:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{device} never became available={want}: {sink.states}")
        await asyncio.sleep(0.01)
