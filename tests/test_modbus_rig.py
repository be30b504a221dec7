"""Hardware-in-the-loop: the Modbus bus over two real RS-485 adapters wired A-A, B-B.

Opt-in: GATEWAY_RIG=1 GATEWAY_RIG_MODBUS_PORT=/dev/ttyUSB0 GATEWAY_RIG_MODBUS_SIM_PORT=/dev/ttyUSB1
[GATEWAY_RIG_MODBUS_BAUD=9600] python -m pytest -m rig tests/test_modbus_rig.py
The simulator serves a wind vane (unit 1) and a relay module (unit 2) on the SIM port at the
real baud rate; the gateway's bus polls them through the other adapter, with unit 3 absent.
"""

from __future__ import annotations

import os

import pytest

from drivers.modbus import create_bus
from drivers.modbus.sim import Simulator, SimUnit
from tests.fakes import RecordingSink
from tests.test_modbus_tcp import bus_config, context, decoder, device, running, until

pytestmark = [
    pytest.mark.rig,
]


async def test_poll_and_switch_over_real_rs485() -> None:
    port = os.environ["GATEWAY_RIG_MODBUS_PORT"]
    sim_port = os.environ["GATEWAY_RIG_MODBUS_SIM_PORT"]
    baud = int(os.environ.get("GATEWAY_RIG_MODBUS_BAUD", "9600"))
    relay = SimUnit(decoder("relay-4ch"))
    vane = SimUnit(decoder("sn3000-wind-vane"), registers={"holding": {0: 2, 1: 90}})
    async with Simulator({1: vane, 2: relay}, sim_port, baud=baud):
        sink = RecordingSink()
        ctx = context(sink)
        keys = f'transport = "modbus-rtu"\nport = "{port}"\nbaud = {baud}\ntimeout = 0.3'
        cfg = bus_config(
            keys,
            [
                device("vane", "sn3000-wind-vane", 1, 0.5),
                device("relay-1", "relay-4ch", 2, 0.5),
                device("absent", "sn3000-wind-vane", 3, 0.5),
            ],
        )
        async with running(create_bus(cfg, ctx)):
            await sink.wait_for(lambda s: len(s.values("vane", "wind_direction")) >= 3, 30)
            assert (
                await ctx.commands["relay"]({"device": "relay-1", "channel": 1, "state": True})
                == "OK"
            )
            await sink.wait_for(lambda s: True in s.values("relay-1", "relay_1"), 30)
            await until(lambda: ("absent", False) in [(d, ok) for d, ok, _ in sink.states])
    assert set(sink.values("vane", "wind_direction")) == {90}
    assert relay.coil(0)
    assert [d for d, ok, _ in sink.states] == ["absent"]
