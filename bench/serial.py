"""Serial line throughput: NMEA sentences through pty -> transport -> decoder -> outbox.

`nmea_lines_per_s`: sentences per second from the first byte written until every reading is
in the outbox (committed by the pipeline's flusher, sync=full).
`serial_cpu_ms_per_1k_lines`: process CPU time per 1000 sentences over the same run; it
includes the simulator's own writes (one write per 4 KB, small next to decoding) and the
outbox appends. A pty does not enforce a baud rate, so this is the gateway's ceiling, not a
4800-baud line's (which carries about 7 sentences per second).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.figures import Doc, Figure, Mode, collect, repeat
from drivers.serial import create_bus
from drivers.serial.ptyline import pty_line
from drivers.serial.sim import sentence
from gateway.config import loader as config_mod
from gateway.contract import BusContext
from gateway.model import Observation
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from tests.configs import load_config

CHUNK = 4096
REPEATS = 5
LINES: dict[Mode, int] = {"smoke": 1_000, "quick": 5_000, "full": 50_000}  # per repeat
DOCS = {
    "nmea_lines_per_s": Doc("pty → transport → NMEA decoder → outbox sync=full"),
    "serial_cpu_ms_per_1k_lines": Doc("this process, incl. the simulator's writes"),
}


class _Quiet:
    def bind(self, **_: object) -> _Quiet:
        return self

    def __getattr__(self, _name: str):  # type: ignore[no-untyped-def]
        return lambda *a, **k: None


class _Counting:
    """Counts observations on their way into the pipeline (to know when the run is done)."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner = inner
        self.observations = 0
        self.up = asyncio.Event()
        self.done = asyncio.Event()
        self.target = -1

    async def emit(
        self, device: str, observations: Sequence[Observation], ts: float | None = None
    ) -> None:
        self.observations += len(observations)
        await self.inner.emit(device, observations, ts)
        if self.observations >= self.target >= 0:
            self.done.set()

    def device_state(self, device: str, available: bool, reason: str = "") -> None:
        if available:
            self.up.set()


def _workload(n: int) -> tuple[bytes, int]:
    lines = []
    observations = 0
    for i in range(n):
        if i % 2:
            lines.append(sentence(f"INMTW,{15 + (i % 100) / 10:.1f},C"))
            observations += 1
        else:
            lines.append(sentence(f"WIMWV,{i % 360},T,{(i % 200) / 10:.1f},N,A"))
            observations += 2
    return b"".join(s.encode() + b"\r\n" for s in lines), observations


async def _measure(n: int, workdir: Path) -> dict[str, float]:
    data, expected = _workload(n)
    async with (
        Outbox.open(workdir / "outbox.sqlite", sync="full", log=_Quiet()) as outbox,
        pty_line() as line,
    ):
        cfg = config_mod.parse(load_config("bench_serial", port=line.path))
        async with Pipeline(outbox, log=_Quiet()) as pipe:
            sink = _Counting(pipe)
            sink.target = expected
            bus = create_bus(cfg.buses[0], BusContext(sink=sink, log=_Quiet()))
            task = asyncio.create_task(bus.run())
            try:
                await asyncio.wait_for(sink.up.wait(), 10)
                wall, cpu = time.perf_counter(), time.process_time()
                for i in range(0, len(data), CHUNK):
                    await line.write(data[i : i + CHUNK])
                await asyncio.wait_for(sink.done.wait(), 300)
                # Wait for the pipeline's own flusher to land every row (calling flush()
                # concurrently with it races its in-flight batch at exit).
                while await outbox.count() < expected:
                    await asyncio.sleep(0.005)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        rows = await outbox.count()
    return {
        "nmea_lines_per_s": round(n / wall, 1),
        "serial_cpu_ms_per_1k_lines": round(cpu * 1000 / (n / 1000), 2),
        "serial_outbox_rows": float(rows),
    }


def _once(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_measure(n, Path(tmp)))


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    n = LINES[mode]
    settings = {
        "lines": n,
        "sentences": "MTW and MWV alternating",
        "write_chunk_bytes": CHUNK,
        "sync": "full",
        "interval": 0,
    }
    return collect(repeat(repeats, lambda: _once(n)), settings, DOCS)
