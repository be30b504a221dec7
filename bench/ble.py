"""BLE figures: adverts per second from the replay source through decode, router and outbox.

`ble_adverts_per_s` plays a recorded field (drivers.ble.field: plain and encrypted BTHome,
Ruuvi, pvvx, iBeacon) as fast as the pipeline takes it into a real SQLite outbox (sync=full),
every device at `interval = 0` so every new measurement becomes readings;
`ble_cpu_ms_per_1k_adverts` is this process's CPU time for the same run per 1000 adverts;
`ble_decode_only_adverts_per_s` is the router alone (decode + de-duplication), no outbox.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.figures import Doc, Figure, Mode, collect, repeat
from drivers.ble import create_bus
from drivers.ble.field import Field, devices_toml
from drivers.ble.replay import read_lines
from drivers.ble.router import Router
from drivers.ble.sim import record
from gateway.config import loader as config
from gateway.contract import BusContext
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from tests.configs import load_config

REPEATS = 3
ROUNDS: dict[Mode, int] = {"smoke": 200, "quick": 2_000, "full": 10_000}  # field rounds
DOCS = {
    "ble_adverts_per_s": Doc("replay source → decoders → outbox sync=full"),
    "ble_cpu_ms_per_1k_adverts": Doc("this process over the same run"),
    "ble_decode_only_adverts_per_s": Doc("the router alone: decode + de-duplication"),
}


class _Quiet:
    """The bench prints figures only (a gateway.contract.Log that says nothing)."""

    def bind(self, **context: Any) -> _Quiet:
        return self

    def debug(self, event: str, *args: Any, **context: Any) -> None:
        pass

    info = warning = error = exception = debug


def _bus(path: Path):  # type: ignore[no-untyped-def]
    text = load_config("bench_ble", file=path, devices=devices_toml(interval=0.0))
    return config.parse(text).buses[0]


async def _through_outbox(work: Path, replay: Path, adverts: int) -> tuple[float, float, int]:
    bus_config = _bus(replay)
    log = _Quiet()
    async with Outbox.open(work / "outbox.sqlite", sync="full") as outbox:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        async with Pipeline(outbox) as sink:
            bus = create_bus(bus_config, BusContext(sink=sink, log=log))
            task = asyncio.create_task(bus.run())
            try:
                while bus.source.played < adverts or not bus.idle.is_set():  # type: ignore[attr-defined]
                    await asyncio.sleep(0.005)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            # Drain through the outbox's write lock before the pipeline cancels its flusher:
            # cancelling it mid-transaction leaves the connection inside BEGIN (core issue).
            await sink.flush()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        rows = await outbox.count()
    return wall, cpu, rows


def _decode_only(replay: Path) -> float:
    records = [item for _, item in read_lines(replay.read_text().splitlines())]
    router = Router(_bus(replay).devices, 0.0)
    start = time.perf_counter()
    for i, (_t, advert) in enumerate(records):  # type: ignore[misc]
        router.advert(advert, float(i), float(i))
    return len(records) / (time.perf_counter() - start)


def _once(replay: Path, adverts: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ble-") as tmp:
        wall, cpu, rows = asyncio.run(_through_outbox(Path(tmp), replay, adverts))
    return {
        "ble_adverts_per_s": round(adverts / wall, 1),
        "ble_cpu_ms_per_1k_adverts": round(cpu * 1000 / (adverts / 1000), 2),
        "ble_decode_only_adverts_per_s": round(_decode_only(replay), 1),
        "ble_readings_per_advert": round(rows / adverts, 2),
    }


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    rounds = ROUNDS[mode]
    with tempfile.TemporaryDirectory(prefix="bench-ble-") as tmp:
        replay = Path(tmp) / "field.replay"
        adverts = record(replay, rounds, 1.0, Field(cow_away=(0, 0)))
        runs = repeat(repeats, lambda: _once(replay, adverts))
    settings = {
        "field": "BTHome plain + encrypted, Ruuvi, pvvx, iBeacon (drivers.ble.field)",
        "rounds": rounds,
        "adverts": adverts,
        "interval": 0,
        "sync": "full",
    }
    return collect(runs, settings, DOCS)
