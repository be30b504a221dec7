"""The demo field's Modbus part: simulated sensors and a relay module on one local TCP bus.

`field` starts an in-process Simulator (TCP on 127.0.0.1, a free port) serving a URM14 paddy
level sensor (unit 12), an SN-3000 anemometer (unit 1) and a 4-channel relay module (unit 2),
and returns the `[[buses]]` TOML `gateway demo` appends to its config. Only the demo uses it.
"""

from __future__ import annotations

import contextlib
import pathlib

from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.sim import Simulator, SimUnit
from gateway.config.profiles import ProfileLibrary
from gateway.errors import Problem

MOUNT_HEIGHT = 1000.0  # mm from the sensor face to the paddy floor


async def field(stack: contextlib.AsyncExitStack, workdir: pathlib.Path) -> str:
    problems: list[Problem] = []
    library = ProfileLibrary()

    def decoder(name: str) -> ModbusDecoder:
        profile = library.get(name, problems, f"demo {name}")
        if profile is None or not isinstance(profile.decoder, ModbusDecoder):
            raise RuntimeError("; ".join(map(str, problems)) or f"{name}: not a modbus profile")
        return profile.decoder

    units = {
        12: SimUnit(decoder("urm14"), {"mount_height": MOUNT_HEIGHT}, seed=12),
        1: SimUnit(decoder("sn3000-anemometer"), seed=1),
        2: SimUnit(decoder("relay-4ch"), seed=2),
    }
    sim = await stack.enter_async_context(Simulator(units, "tcp:127.0.0.1:0"))
    return f"""
[[buses]]
name = "modbus-demo"
transport = "modbus-tcp"
host = "{sim.host}"
port = {sim.tcp_port}
timeout = 0.5
retries = 1

[[buses.devices]]
id = "paddy-1"
name = "Paddy 1 water level"
profile = "urm14"
unit = 12
interval = 10
params = {{ mount_height = {MOUNT_HEIGHT} }}

[[buses.devices]]
id = "wind-1"
name = "Anemometer"
profile = "sn3000-anemometer"
unit = 1
interval = 10

[[buses.devices]]
id = "relay-1"
name = "Siren (1) and flash (2)"
profile = "relay-4ch"
unit = 2
interval = 30
"""
