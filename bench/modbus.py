"""Modbus benchmark: polls per second over TCP against the simulator, and CPU per poll.

10 devices x 10 holding-register points (one merged 10-register read each) on one Modbus TCP
bus, polled as fast as the bus allows (interval 0). The simulator runs in its own process
(`gateway sim modbus`) so `modbus_cpu_ms_per_poll` is the gateway side only: the bus task,
pymodbus and the decoder, delivering to a counting sink (not the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.figures import Doc, Figure, Mode, collect, repeat
from tests.configs import load_config

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 10
POINTS = 10
REPEATS = 3
SECONDS: dict[Mode, float] = {"smoke": 0.5, "quick": 2.0, "full": 10.0}  # per repeat
DOCS = {
    "modbus_tcp_polls_per_s": Doc(
        f"{DEVICES} devices x {POINTS} points over TCP to the simulator process"
    ),
    "modbus_cpu_ms_per_poll": Doc("the gateway side's CPU per poll: bus, pymodbus, decoder"),
}


class _CountingSink:
    def __init__(self) -> None:
        self.polls = 0
        self.values = 0

    async def emit(
        self, device: str, observations: Sequence[object], ts: float | None = None
    ) -> None:
        self.polls += 1
        self.values += len(observations)

    def device_state(self, device: str, available: bool, reason: str = "") -> None:
        pass


def _profile() -> str:
    text = '[profile]\nprotocol = "modbus"\nkind = "holding"\n'
    for i in range(POINTS):
        text += (
            f'[[point]]\nquantity = "q{i}"\naddress = {i}\ntype = "i16"\nscale = 0.1\n'
            f"range = [-100.0, 100.0]\n"
        )
    return text


async def _measure(port: str, profile_dir: Path, seconds: float) -> dict[str, float]:
    import structlog

    from drivers.modbus import create_bus
    from gateway.config import loader as config
    from gateway.config.profiles import ProfileLibrary
    from gateway.contract import BusContext

    devices = "".join(
        f'[[buses.devices]]\nid = "d{unit}"\nprofile = "bench10"\nunit = {unit}\ninterval = 0\n'
        for unit in range(1, DEVICES + 1)
    )
    text = load_config("bench_modbus", port=port.rsplit(":", 1)[1], devices=devices)
    cfg = config.parse(text, "bench", ProfileLibrary([profile_dir]))
    sink = _CountingSink()
    bus = create_bus(cfg.buses[0], BusContext(sink=sink, log=structlog.get_logger()))
    task = asyncio.create_task(bus.run())
    try:
        while sink.polls < DEVICES:
            await asyncio.sleep(0.01)
        polls0, cpu0, t0 = sink.polls, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        polls, cpu, wall = sink.polls - polls0, time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "modbus_tcp_polls_per_s": round(polls / wall, 1),
        "modbus_cpu_ms_per_poll": round(1000 * cpu / max(1, polls), 3),
    }


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    seconds = SECONDS[mode]
    with tempfile.TemporaryDirectory() as tmp:
        profile_dir = Path(tmp)
        (profile_dir / "bench10.toml").write_text(_profile())
        units = [a for u in range(1, DEVICES + 1) for a in ("--unit", str(u))]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "sim",
                "modbus",
                "--profile",
                "bench10",
                "--profile-dir",
                tmp,
                "--port",
                "tcp:127.0.0.1:0",
                *units,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline().strip()
            if not banner:
                raise RuntimeError("the Modbus simulator did not start")
            port = banner.rsplit(" ", 1)[1]
            runs = repeat(repeats, lambda: asyncio.run(_measure(port, profile_dir, seconds)))
        finally:
            proc.terminate()
            proc.wait(5)
    settings = {
        "transport": "modbus-tcp, loopback",
        "devices": DEVICES,
        "registers_per_poll": POINTS,
        "interval": 0,
        "sink": "counting (no outbox)",
        "log_level": "info",
        "seconds": seconds,
    }
    return collect(runs, settings, DOCS)
