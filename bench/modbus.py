"""Modbus benchmark: polls per second over TCP against the simulator, and CPU per request,
ours beside a bare pymodbus client loop on the same simulator in the same repeat.

10 devices x 10 holding-register points (one merged 10-register read each, so one poll is
one request) on one Modbus TCP bus, polled as fast as the bus allows (interval 0). The
simulator runs in its own process (`gateway sim modbus`), so the CPU figures are the gateway
side only. Each repeat first runs the bare loop (pymodbus's AsyncModbusTcpClient reading the
same registers from the same units in turn, nothing else), then our bus (the bus task, the
link, the decoder, delivering to a counting sink, not the outbox); the ratio of the two is
taken within the repeat, so load from other processes mostly cancels out.

`python -m bench.modbus {ours,bare} [SECONDS]` runs one loop alone (to profile it, e.g.
`py-spy record -f raw -o OUT -- python -m bench.modbus ours 10`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.figures import Doc, Figure, Mode, collect, repeat
from tests.configs import load_config

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 10
POINTS = 10
REPEATS = 3
SECONDS: dict[Mode, float] = {"smoke": 0.5, "quick": 2.0, "full": 10.0}  # per loop, per repeat
DOCS = {
    "modbus_tcp_polls_per_s": Doc(
        f"{DEVICES} devices x {POINTS} points over TCP to the simulator process"
    ),
    "modbus_cpu_ms_per_request": Doc(
        "the gateway side's CPU per Modbus request: bus task, link, decoder", "≤ 0.15"
    ),
    "modbus_bare_requests_per_s": Doc(
        "bare pymodbus AsyncModbusTcpClient reading the same registers in a tight loop"
    ),
    "modbus_bare_cpu_ms_per_request": Doc("bare pymodbus's CPU per request, same simulator"),
    "modbus_cpu_ratio_vs_bare": Doc(
        "our CPU per request / bare pymodbus's, within one repeat (0.15 ms at the bare "
        "loop's cost on this machine)"
    ),
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


async def _bare(port: str, seconds: float) -> tuple[float, float]:
    """Requests per second and CPU ms per request of pymodbus alone, as its docs use it."""
    from pymodbus.client import AsyncModbusTcpClient

    host, _, number = port.removeprefix("tcp:").rpartition(":")
    client = AsyncModbusTcpClient(host, port=int(number), timeout=1.0, retries=1)
    if not await client.connect():
        raise RuntimeError(f"bare pymodbus cannot connect to {port}")
    try:
        done = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            for unit in range(1, DEVICES + 1):
                response = await client.read_holding_registers(0, count=POINTS, device_id=unit)
                if response.isError() or len(response.registers) != POINTS:
                    raise RuntimeError(f"bare pymodbus: bad answer from unit {unit}")
            done += DEVICES
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        client.close()
    return done / wall, 1000 * cpu / done


async def _ours(port: str, profile_dir: Path, seconds: float) -> tuple[float, float]:
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
    if sink.values != sink.polls * POINTS:
        raise RuntimeError("our bus delivered polls without all their points")
    return polls / wall, 1000 * cpu / max(1, polls)


async def _measure(port: str, profile_dir: Path, seconds: float) -> dict[str, float]:
    bare_rate, bare_cpu = await _bare(port, seconds)
    rate, cpu = await _ours(port, profile_dir, seconds)
    return {
        "modbus_tcp_polls_per_s": round(rate, 1),
        "modbus_cpu_ms_per_request": round(cpu, 4),
        "modbus_bare_requests_per_s": round(bare_rate, 1),
        "modbus_bare_cpu_ms_per_request": round(bare_cpu, 4),
        "modbus_cpu_ratio_vs_bare": round(cpu / bare_cpu, 3),
    }


@contextlib.contextmanager
def _simulator() -> Iterator[tuple[str, Path]]:
    """`gateway sim modbus` in its own process serving the bench profile on units 1..DEVICES:
    its address (tcp:127.0.0.1:PORT) and the profile directory."""
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
            yield banner.rsplit(" ", 1)[1], profile_dir
        finally:
            proc.terminate()
            proc.wait(5)


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    seconds = SECONDS[mode]
    with _simulator() as (port, profile_dir):
        runs = repeat(repeats, lambda: asyncio.run(_measure(port, profile_dir, seconds)))
    settings = {
        "transport": "modbus-tcp, loopback",
        "devices": DEVICES,
        "registers_per_request": POINTS,
        "requests_per_poll": 1,
        "interval": 0,
        "timeout": 1.0,
        "retries": 1,
        "sink": "counting (no outbox)",
        "log_level": "info",
        "seconds_per_loop": seconds,
        "order": "bare pymodbus loop, then our bus, in each repeat",
    }
    return collect(runs, settings, DOCS)


def main(argv: list[str]) -> int:
    """`python -m bench.modbus {ours,bare} [SECONDS]`: one loop alone, e.g. under py-spy."""
    from gateway import logs

    parser = argparse.ArgumentParser(prog="python -m bench.modbus", description=main.__doc__)
    parser.add_argument("loop", choices=("ours", "bare"))
    parser.add_argument("seconds", type=float, nargs="?", default=10.0)
    args = parser.parse_args(argv)
    logs.setup("info", json=True, stream=sys.stderr)  # as `python -m bench` runs it
    with _simulator() as (port, profile_dir):
        if args.loop == "bare":
            rate, cpu = asyncio.run(_bare(port, args.seconds))
        else:
            rate, cpu = asyncio.run(_ours(port, profile_dir, args.seconds))
    print(f"{args.loop}: {rate:.0f} requests/s, {cpu:.4f} ms CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
