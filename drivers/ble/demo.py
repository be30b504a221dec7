"""The BLE part of `gateway demo`: the scripted field on a mocked adapter, or from a replay.

Where dbus-daemon and python3-dbusmock are installed, the demo gets a fake BlueZ (its own
private bus; the demo process's DBUS_SYSTEM_BUS_ADDRESS points there until the demo ends, so a
real adapter is never touched) with the field's advertisers and a GATT wind sensor, read by
the real bleak code. Elsewhere it replays a recorded field in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from drivers.ble.field import devices_toml
from drivers.ble.mockbluez import MockBlueZ, MockUnavailable, check_tools
from drivers.ble.sim import play, record, start_field

PERIOD = 2.0


async def field(stack: contextlib.AsyncExitStack, workdir: Path) -> str:
    try:
        check_tools()
    except MockUnavailable:
        return _replay(workdir)
    bluez = await stack.enter_async_context(MockBlueZ(workdir / "bluez"))
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bluez.address
    stack.callback(_restore, old)
    await start_field(bluez)
    task = asyncio.create_task(play(bluez, PERIOD, 0.0), name="ble-demo-field")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    return f"""
[[buses]]
name = "ble-demo"
transport = "ble"
adapter = "hci0"
reconnect_min = 1.0
reconnect_max = 10.0
{devices_toml(interval=10.0, gatt=True)}"""


def _restore(old: str | None) -> None:
    if old is None:
        os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    else:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


def _replay(workdir: Path) -> str:
    path = workdir / "ble-field.replay"
    record(path, rounds=150, period=PERIOD)
    return f"""
[[buses]]
name = "ble-demo"
transport = "ble-replay"
file = "{path}"
loop = true
{devices_toml(interval=10.0)}"""
