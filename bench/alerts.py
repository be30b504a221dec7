"""Alert latency: from a trap event entering the pipeline to the siren relay's coil write seen
by the Modbus simulator (Modbus TCP on loopback), with the uplink down.

The whole daemon runs in-process (outbox, pipeline, alert engine, actions, mailer, a Modbus
bus to the simulator, an uplink retrying a closed port); each sample stages one
`trap_state = "triggered"` observation the way a bus emits it and times the simulator's
record of the FC05 write. The siren runs 100 ms per sample; the next sample starts once the
simulator has seen the coil go off again. Nothing here asserts; it measures.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path

import structlog

from drivers.modbus.sim import Simulator, SimUnit
from drivers.modbus.slave import Write
from gateway import config as config_mod
from gateway.daemon import Control, Daemon
from gateway.errors import Problem
from gateway.model import Observation
from gateway.profiles import ProfileLibrary


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(work: Path, sim: Simulator) -> str:
    return f"""
[gateway]
id = "bench-alerts"
trust_clock = true
[uplink]
host = "127.0.0.1"
port = {_closed_port()}
reconnect_min = 1.0
[store]
path = "{work}/outbox.sqlite"
[[buses]]
name = "relays"
transport = "modbus-tcp"
host = "{sim.host}"
port = {sim.tcp_port}
timeout = 0.5
[[buses.devices]]
id = "relay-1"
profile = "relay-4ch"
unit = 2
interval = 3600
[alerts.actions.siren]
device = "relay-1"
channel = 1
seconds = 0.1
[[alerts.rules]]
name = "trap"
kind = "event"
quantity = "trap_state"
equals = "triggered"
severity = "high"
actions = ["siren"]
cooldown = 600
"""


async def _measure(samples: int) -> list[float]:
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

    unit = SimUnit(profile.decoder, registers={"coil": {0: 0, 1: 0, 2: 0, 3: 0}}, on_write=seen)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        async with Simulator({2: unit}, "tcp:127.0.0.1:0") as sim:
            cfg = config_mod.parse(_config(Path(tmp), sim), "<bench>")
            control = Control()
            daemon = Daemon(cfg, control, stop_deadline=0.5)
            task = asyncio.create_task(daemon.run())
            while not off.is_set():  # the rest-state write: the bus is up
                await asyncio.sleep(0.01)
            pipe = daemon.pipeline
            assert pipe is not None
            rng = random.Random(1)
            for _ in range(samples):
                off.clear()
                count = len(on_at)
                await asyncio.sleep(rng.uniform(0.0, 0.01))  # no phase lock with any timer
                t0 = time.perf_counter()
                pipe.stage("traps", [Observation("trap_state", "triggered", "", source="7")])
                await asyncio.wait_for(off.wait(), 10)
                if len(on_at) > count:
                    latencies.append((on_at[count] - t0) * 1000)
                pipe.stage("traps", [Observation("trap_state", "set", "", source="7")])
            control.request_stop()
            await task
    return latencies


def run(quick: bool) -> dict[str, float]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    try:
        latencies = asyncio.run(_measure(100 if quick else 500))
    finally:
        structlog.configure(**saved)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return {
        "alert_latency_ms_p50": round(statistics.median(latencies), 2),
        "alert_latency_ms_p99": round(p99, 2),
    }


if __name__ == "__main__":
    print(run(quick=True))
