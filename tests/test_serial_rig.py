"""Real-hardware checks for the serial driver (opt-in).

Run on a rig with a USB serial adapter whose TX is jumpered to its RX (a loopback plug):

    GATEWAY_RIG=1 GATEWAY_RIG_SERIAL=/dev/ttyUSB0 python -m pytest tests/test_serial_rig.py -m rig

It checks what a pty cannot: real termios at 4800 8N1, and that pyudev enumeration finds the
adapter's USB identity so a `match = {vid, pid, serial}` bus resolves to it.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from drivers.serial.options import PortSettings
from drivers.serial.sim import sentence
from drivers.serial.transport import open_writer
from gateway.hotplug import enumerate_devices
from tests.serial_rig import BUOY, bus_toml, running_bus, until_available

PORT = os.environ.get("GATEWAY_RIG_SERIAL", "/dev/ttyUSB0")
pytestmark = [
    pytest.mark.rig,
]


def _adapter_match() -> str:
    node = os.path.realpath(PORT)
    found = [d for d in enumerate_devices("tty") if d.devnode == node]
    assert found, f"{node} is not among the ttys pyudev enumerates"
    d = found[0]
    assert d.vid and d.pid, f"{node} has no USB identity: {d}"
    key = f'serial = "{d.serial}"' if d.serial else f'usb_path = "{d.usb_path}"'
    return f'match = {{ vid = "{d.vid}", pid = "{d.pid}", {key} }}'


async def test_loopback_at_4800_through_a_udev_match() -> None:
    writer = open_writer(PORT, PortSettings(exclusive=False))
    try:
        async with running_bus(bus_toml("", BUOY, _adapter_match(), backoff=0.5)) as r:
            await until_available(r.sink, "buoy-1")
            await asyncio.sleep(0.2)  # let the open's input flush pass
            lines = [sentence(f"INMTW,{t:.1f},C") for t in (17.1, 17.2, 17.3)]
            await writer.write("".join(s + "\r\n" for s in lines).encode())
            await r.sink.wait_for(
                lambda s: s.values("buoy-1", "water_temperature") == [17.1, 17.2, 17.3], 10
            )
    finally:
        writer.close()
