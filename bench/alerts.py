"""Alert latency: from a trap event to the siren relay's coil write seen by the Modbus
simulator (Modbus TCP on loopback), with the uplink down.

The whole daemon runs in-process (outbox, pipeline, alert engine, actions, a Modbus bus to the
simulator, a serial bus on a pseudo-terminal, an uplink retrying a closed port).
`alert_latency_ms_*`: each sample writes one trap receiver line (`TRAP,<id>,TRIG,...`) to the
pty and times the simulator's record of the FC05 write (serial read, decode, pipeline, rule,
action, Modbus). `alert_staged_latency_ms_*`: the same from an observation staged straight
into the pipeline (what any bus's emit does), without the serial part. The siren runs 100 ms
per sample; the next sample starts once the simulator has seen the coil go off again.
Nothing here asserts; it measures.
"""

from __future__ import annotations

import asyncio
import random
import socket
import tempfile
import time
from pathlib import Path

import structlog

from bench.figures import Doc, Figure, Mode, collect, repeat
from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.sim import Simulator, SimUnit
from drivers.modbus.slave import Write
from drivers.serial.ptyline import pty_line
from drivers.serial.sim import trap_line
from gateway.config import loader as config_mod
from gateway.config.profiles import ProfileLibrary
from gateway.daemon import Control, Daemon
from gateway.errors import Problem
from gateway.model import Observation
from tests.configs import load_config

REPEATS = 3
SAMPLES: dict[Mode, int] = {"smoke": 10, "quick": 50, "full": 100}  # per path, per repeat
DOCS = {
    "alert_latency_ms_p50": Doc(
        "trap receiver line on a pty → serial bus → rule → siren coil write seen by the "
        "Modbus simulator over TCP, uplink down; median sample"
    ),
    "alert_latency_ms_p99": Doc("the same, 99th percentile sample", "≤ 50"),
    "alert_staged_latency_ms_p50": Doc("from an observation staged into the pipeline; median"),
    "alert_staged_latency_ms_p99": Doc("the same, 99th percentile"),
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(work: Path, sim: Simulator, tty: str) -> str:
    return load_config(
        "bench_alerts",
        uplink_port=_closed_port(),
        work=work,
        sim_host=sim.host,
        sim_port=sim.tcp_port,
        tty=tty,
    )


async def _measure(samples: int, via_pty: bool) -> list[float]:
    problems: list[Problem] = []
    profile = ProfileLibrary().get("relay-4ch", problems, "bench")
    assert profile is not None, problems
    on_at: list[float] = []
    off = asyncio.Event()

    def seen(w: Write) -> None:
        if w.kind == "coil" and w.address == 0:
            if w.values[0]:
                on_at.append(time.perf_counter())
            else:
                off.set()

    assert isinstance(profile.decoder, ModbusDecoder)  # relay-4ch is a Modbus profile
    unit = SimUnit(profile.decoder, registers={"coil": {0: 0, 1: 0, 2: 0, 3: 0}}, on_write=seen)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        async with (
            Simulator({2: unit}, "tcp:127.0.0.1:0") as sim,
            pty_line(Path(tmp) / "trap-tty") as line,
        ):
            cfg = config_mod.parse(_config(Path(tmp), sim, line.port), "<bench>")
            control = Control()
            daemon = Daemon(cfg, control, stop_deadline=0.5)
            task = asyncio.create_task(daemon.run())
            while not off.is_set():  # the rest-state write: the bus is up
                await asyncio.sleep(0.01)
            pipe = (await daemon.running()).pipeline
            await asyncio.sleep(0.5)  # the serial bus opens its port
            rng = random.Random(1)
            for i in range(samples):
                # A new trap each time: the receiver profile drops repeats of one message
                # within its dedup window (radio resends).
                trap = str(100 + i)
                off.clear()
                count = len(on_at)
                await asyncio.sleep(rng.uniform(0.0, 0.01))  # no phase lock with any timer
                t0 = time.perf_counter()
                if via_pty:
                    await line.write(f"{trap_line(trap, 'TRIG')}\r\n".encode())
                else:
                    pipe.stage("trap-rx", [Observation("trap_state", "triggered", "", trap)])
                await asyncio.wait_for(off.wait(), 10)
                if len(on_at) > count:
                    latencies.append((on_at[count] - t0) * 1000)
                if via_pty:
                    await line.write(f"{trap_line(trap, 'SET')}\r\n".encode())
                else:
                    pipe.stage("trap-rx", [Observation("trap_state", "set", "", trap)])
                await asyncio.sleep(0.02)
            control.request_stop()
            await task
    return latencies


def _once(n: int) -> dict[str, float]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    try:
        pty = asyncio.run(_measure(n, via_pty=True))
        staged = asyncio.run(_measure(n, via_pty=False))
    finally:
        structlog.configure(**saved)
    return {
        "alert_latency_ms_p50": _pct(pty, 0.5),
        "alert_latency_ms_p99": _pct(pty, 0.99),
        "alert_staged_latency_ms_p50": _pct(staged, 0.5),
        "alert_staged_latency_ms_p99": _pct(staged, 0.99),
        "alert_samples_lost": float(2 * n - len(pty) - len(staged)),
    }


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    n = SAMPLES[mode]
    settings = {
        "samples": n,
        "siren_s": 0.1,
        "transport": "serial pty + modbus-tcp loopback",
        "uplink": "down",
        "log_level": "error",
    }
    return collect(repeat(repeats, lambda: _once(n)), settings, DOCS)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)
