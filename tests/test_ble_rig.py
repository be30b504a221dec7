"""Real-hardware check for a BLE rig: opt-in with GATEWAY_RIG=1 (never runs in CI).

On a Pi (or any Linux box) with BlueZ and a powered adapter, and at least one BTHome /
Ruuvi / ATC / pvvx sensor advertising nearby:

    GATEWAY_RIG=1 GATEWAY_RIG_BLE=A4:C1:38:0B:5E:6D[,profile] \\
        python -m pytest -m rig tests/test_ble_rig.py

(`profile` defaults to bthome; GATEWAY_RIG_ADAPTER picks the adapter, default hci0). The test
runs the real bus for up to 60 s and passes when the sensor's readings arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from drivers.ble import create_bus
from gateway.config import loader as config
from gateway.contract import BusContext
from tests.configs import load_config
from tests.fakes import RecordingSink

pytestmark = [
    pytest.mark.rig,
]


async def test_real_adapter_delivers_readings() -> None:
    spec = os.environ.get("GATEWAY_RIG_BLE", "")
    assert spec, "set GATEWAY_RIG_BLE=<MAC>[,<profile>] to the sensor next to the rig"
    address, _, profile = spec.partition(",")
    adapter = os.environ.get("GATEWAY_RIG_ADAPTER", "hci0")
    cfg = config.parse(
        load_config("ble_rig", adapter=adapter, profile=profile or "bthome", address=address)
    )
    sink = RecordingSink()

    class Log:
        def info(self, event: str, **kw: object) -> None:
            print(event, kw)

        warning = error = info

    bus = create_bus(cfg.buses[0], BusContext(sink=sink, log=Log()))
    task = asyncio.create_task(bus.run())
    try:
        await sink.wait_for(lambda s: any(e.device == "sensor" for e in s.emitted), timeout=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    print(sink.emitted[0])
