"""Core figures: end-to-end and drain throughput, daemon CPU per reading, idle cost, and wire
bytes per reading for each payload format.

The daemon, mosquitto and the counting subscriber run as separate processes on loopback, so
the CPU figure is the daemon's own. Nothing here asserts; it measures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from gateway.demo.broker import LocalBroker
from gateway.model import Reading
from gateway.outbox.store import Outbox
from gateway.uplink.payload import ENCODERS, Target, wire_bytes
from tests.configs import load_config

ROOT = Path(__file__).resolve().parent.parent


def _config(work: Path, port: int, buses: str, *, window: float = 0.5) -> Path:
    path = work / "gw.toml"
    path.write_text(load_config("bench_core", port=port, window=window, work=work, buses=buses))
    return path


def _synthetic(devices: int, points: int, interval: float, count: int = 0) -> str:
    pts = ", ".join(
        f'{{ quantity = "q{i}", unit = "u", pattern = "counter" }}' for i in range(points)
    )
    return load_config(
        "bench_synthetic", replicas=devices, interval=interval, count=count, points=pts
    )


class _Daemon:
    def __init__(self, cfg: Path, log: Path) -> None:
        self.log = log
        self.out = open(log, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
            cwd=ROOT,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.p.pid)

    def wait_running(self, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b'"gateway running"' in self.log.read_bytes():
                return time.monotonic()
            if self.p.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            time.sleep(0.01)
        raise TimeoutError("daemon did not start")

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.out.close()


class _Subscriber:
    def __init__(self, port: int, target: int) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bench.subscriber", str(port), str(target)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not start")

    def wait_done(self, timeout: float) -> tuple[int, float, float]:
        assert self.p.stdout is not None
        line = self.p.stdout.readline().split()
        self.p.wait(timeout)
        return int(line[1]), float(line[2]), float(line[3])


def e2e(readings: int) -> dict[str, float]:
    devices, points = 10, 10
    polls = readings // (devices * points)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "b") as broker:
        work = Path(tmp)
        cfg = _config(work, broker.port, _synthetic(devices, points, 0.0, polls))
        sub = _Subscriber(broker.port, polls * devices * points)
        daemon = _Daemon(cfg, work / "daemon.log")
        try:
            daemon.wait_running()
            cpu0 = daemon.cpu()
            n, first, last = sub.wait_done(timeout=1800)
            cpu = daemon.cpu() - cpu0
        finally:
            daemon.stop()
    return {
        "e2e_readings": n,
        "e2e_readings_per_s": round(n / max(last - first, 1e-9)),
        "cpu_ms_per_1k_readings": round(cpu * 1000 / (n / 1000), 2),
    }


async def _fill(path: Path, readings: int, devices: int) -> None:
    async with Outbox.open(path, sync="normal", max_rows=readings * 2) as ob:
        t0 = time.time() - readings
        batch = 10_000
        for start in range(0, readings, batch):
            seqs = ob.allocate(min(batch, readings - start))
            await ob.append(
                [
                    Reading(s, f"dev-{s % devices:03d}", f"q{s % 3}", float(s % 1000), "u", t0 + s)
                    for s in seqs
                ]
            )


def drain(readings: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        asyncio.run(_fill(work / "outbox.sqlite", readings, 100))
        with LocalBroker(work / "b") as broker:
            cfg = _config(work, broker.port, "", window=0.0)
            sub = _Subscriber(broker.port, readings)
            daemon = _Daemon(cfg, work / "daemon.log")
            try:
                start = daemon.wait_running()
                n, _first, last = sub.wait_done(timeout=1800)
            finally:
                daemon.stop()
    return {"drain_readings": n, "drain_readings_per_s": round(n / max(last - start, 1e-9))}


def idle(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "b") as broker:
        work = Path(tmp)
        cfg = _config(work, broker.port, _synthetic(100, 3, 60.0), window=60.0)
        daemon = _Daemon(cfg, work / "daemon.log")
        try:
            daemon.wait_running()
            time.sleep(3)  # imports done, first polls spread out
            cpu0, t0 = daemon.cpu(), time.monotonic()
            time.sleep(seconds)
            cpu, elapsed = daemon.cpu() - cpu0, time.monotonic() - t0
            rss = daemon.ps.memory_info().rss
        finally:
            daemon.stop()
    return {
        "idle_cpu_pct": round(100 * cpu / elapsed, 3),
        "idle_rss_mb": round(rss / 2**20, 1),
    }


def wire_figures() -> dict[str, float]:
    """One day of 10-minute paddy readings (level, temperature, battery), sent as one backlog
    under the default 64 KiB payload limit; MQTT PUBLISH + PUBACK framing included."""
    target = Target(
        "k3y",
        "gw1",
        attributes={
            ("paddy-01", "water_level"): "wl",
            ("paddy-01", "water_temperature"): "wt",
            ("paddy-01", "battery"): "bat",
        },
    )
    t0 = 1748736000.0
    rs: list[Reading] = []
    seq = 1
    for k in range(144):
        hour = (k / 6) % 24
        # A plausible day: level drifting by millimetres, water warming in the afternoon.
        level = round(4.5 - 0.004 * k + 0.1 * ((k * 7919) % 5 - 2) / 2, 1)
        temp = round(19.0 + 6.0 * max(0.0, 1 - abs(hour - 14) / 8) + 0.1 * ((k * 31) % 3), 1)
        bat = round(3.65 - 0.0001 * k, 2)
        for q, v, u in (
            ("water_level", level, "cm"),
            ("water_temperature", temp, "degC"),
            ("battery", bat, "V"),
        ):
            rs.append(Reading(seq, "paddy-01", q, v, u, t0 + 600 * k))
            seq += 1
    out = {}
    for name, encode in ENCODERS.items():
        messages = encode(rs, target, 65536)
        out[f"bytes_per_reading_{name.replace('-', '_')}"] = round(
            sum(wire_bytes(m) for m in messages) / len(rs), 2
        )
    return out


def run(quick: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    figures.update(wire_figures())
    figures.update(e2e(100_000 if quick else 1_000_000))
    figures.update(drain(100_000 if quick else 1_000_000))
    figures.update(idle(15 if quick else 60))
    return figures


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv)))
    os._exit(0)
