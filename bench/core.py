"""Core figures: end-to-end and drain throughput, daemon CPU per reading (idle cost and
start-up: bench/startup.py; bytes per reading of each payload format: bench/formats.py).

The daemon, mosquitto and the counting subscriber run as separate processes on loopback, so
the CPU figure is the daemon's own. The headline e2e, drain and CPU figures run with the
uplink and store defaults a user gets; the `*_tuned_*` figures with the large batches of
`TUNED` (and say so in their settings). Nothing here asserts; it measures.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from bench.figures import Doc, Figure, Mode, collect, repeat
from gateway.config import loader as config
from gateway.demo.broker import LocalBroker
from gateway.model import Reading
from gateway.outbox.store import Outbox
from gateway.uplink.order import AGENT_RATE, FINAL_PAUSE, MAX_PAUSE
from tests.configs import load_config

ROOT = Path(__file__).resolve().parent.parent
# Five: on this 2-vCPU VM one e2e run's CPU per 1,000 readings ranges about +-10 % around
# its median, so a median of three moved by more than the last changes' gains between runs.
REPEATS = 5
# Readings per e2e / drain repeat (idle cost is bench/startup.py's). Each repeat ends with
# the uplink's end-of-drain hold (up to MAX_PAUSE, 15 s; a few seconds for the smoke's 2,000
# readings), which is why the smoke runs the defaults only, not the tuned runs.
SIZES: dict[Mode, int] = {"smoke": 2_000, "quick": 200_000, "full": 1_000_000}
# The uplink's end-of-drain hold (gateway.uplink.order), part of every e2e and drain run.
DRAIN_HOLD = f"{FINAL_PAUSE} s + backlog at {AGENT_RATE:.0f}/s, at most {MAX_PAUSE} s"
DEVICES, POINTS = 10, 10  # the e2e source: 10 synthetic devices x 10 counting points
# The tuned runs' [uplink] keys: what a site with a fast broker link might set.
TUNED = "batch_window = 0.5\nbatch_max_readings = 5000\nmax_payload_bytes = 262144\ninflight = 32\n"
HOLD = "the uplink's end-of-drain hold of each device's newest message"
STREAM = (
    "the stream until the end-of-drain hold (gateway.uplink.order: each device's newest "
    "message waits for the IoT Agent, up to MAX_PAUSE s, and is counted in *_held_readings)"
)
DOCS = {
    "e2e_readings_per_s": Doc(
        "synthetic readings → outbox → mosquitto QoS 1 → counting subscriber, from the first "
        f"reading, {STREAM}; defaults",
        "≥ 50,000",
    ),
    "e2e_all_readings_per_s": Doc(f"the same run until its last reading, {HOLD} included"),
    "e2e_final_hold_s": Doc(f"the same run: {HOLD}, gateway.uplink.order"),
    "e2e_held_readings": Doc("the readings those held messages carried"),
    "cpu_ms_per_1k_readings": Doc(
        "daemon process over the e2e run, incl. the synthetic source; defaults", "≤ 10"
    ),
    "drain_readings_per_s": Doc(
        f"a backlog buffered while the broker was away, from `gateway running`, {STREAM}; defaults",
        "≥ 100,000",
    ),
    "drain_all_readings_per_s": Doc(f"the same drain until its last reading, {HOLD} included"),
    "drain_final_hold_s": Doc(f"the same drain: {HOLD}"),
    "drain_held_readings": Doc("the readings those held messages carried"),
    "e2e_tuned_readings_per_s": Doc("the e2e run with large batches (tuned, not the default)"),
    "e2e_tuned_all_readings_per_s": Doc("the same, until the last reading"),
    "e2e_tuned_final_hold_s": Doc(f"the same: {HOLD}"),
    "e2e_tuned_held_readings": Doc("the readings those held messages carried"),
    "cpu_tuned_ms_per_1k_readings": Doc("daemon CPU over the tuned e2e run"),
    "drain_tuned_readings_per_s": Doc("the drain with large batches (tuned, not the default)"),
    "drain_tuned_all_readings_per_s": Doc("the same, until the last reading"),
    "drain_tuned_final_hold_s": Doc(f"the same: {HOLD}"),
    "drain_tuned_held_readings": Doc("the readings those held messages carried"),
}


def _config(work: Path, port: int, buses: str, extra: str = "") -> Path:
    path = work / "gw.toml"
    path.write_text(load_config("bench_core", port=port, extra=extra, work=work, buses=buses))
    return path


def settings(extra: str, **more: Any) -> dict[str, Any]:
    """The uplink and store settings the daemon runs with (defaults unless `extra` sets
    them), read back from the parsed config as `gateway config` would show them."""
    text = load_config("bench_core", port=1883, extra=extra, work="/tmp", buses="")
    cfg = config.parse(text, "bench_core")
    up, store = cfg.uplink, cfg.store
    return {
        "uplink": "tuned" if extra else "defaults",
        "format": up.format,
        "qos": up.qos,
        "batch_window": up.batch_window,
        "batch_max_readings": up.batch_max_readings,
        "max_payload_bytes": up.max_payload_bytes,
        "inflight": up.inflight,
        "sync": store.sync,
        **more,
    }


def _whole_batches(readings: int, batch: int, step: int) -> int:
    """`readings` rounded up to whole uplink batches (and whole polls of `step` readings): a
    last, partial batch would wait out the batch window and the figure would time the wait."""
    unit = math.lcm(batch, step)
    return max(unit, -(-readings // unit) * unit)


def _synthetic(devices: int, points: int, interval: float, count: int = 0) -> str:
    pts = ", ".join(
        f'{{ quantity = "q{i}", unit = "u", pattern = "counter" }}' for i in range(points)
    )
    return load_config(
        "bench_synthetic", replicas=devices, interval=interval, count=count, points=pts
    )


class Daemon:
    """`gateway run -c cfg` as a child process, its output in `log`; `command` is what runs
    it (bench.profile puts py-spy in front)."""

    def command(self, cfg: Path) -> list[str]:
        return [sys.executable, "-m", "gateway", "run", "-c", str(cfg)]

    def __init__(self, cfg: Path, log: Path) -> None:
        self.log = log
        self.out = open(log, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(
            self.command(cfg),
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
        return float(t.user + t.system)

    def stop(self) -> None:
        self.ps.terminate()  # the daemon (under py-spy: py-spy then writes its profile)
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

    def wait_done(self, timeout: float) -> Delivered:
        assert self.p.stdout is not None
        line = self.p.stdout.readline().split()
        self.p.wait(timeout)
        return Delivered(int(line[1]), float(line[2]), float(line[3]), int(line[4]), float(line[5]))


@dataclass(frozen=True)
class Delivered:
    """What the subscriber saw (monotonic s): every reading, and the bulk before the uplink's
    end-of-drain hold (bench.subscriber)."""

    readings: int
    first: float
    last: float
    bulk: int
    bulk_last: float

    def figures(self, name: str, since: float | None = None) -> dict[str, float]:
        """`<name>_readings_per_s` until the end-of-drain hold, `<name>_all_readings_per_s`
        until the last reading, `<name>_final_hold_s` and `<name>_held_readings`; from the
        first reading or from `since`."""
        start = self.first if since is None else since
        return {
            f"{name}_readings_per_s": round(self.bulk / max(self.bulk_last - start, 1e-9)),
            f"{name}_all_readings_per_s": round(self.readings / max(self.last - start, 1e-9)),
            f"{name}_final_hold_s": round(self.last - self.bulk_last, 2),
            f"{name}_held_readings": self.readings - self.bulk,
        }


def e2e(
    readings: int, extra: str = "", label: str = "", daemon_type: type[Daemon] | None = None
) -> dict[str, float]:
    """One run: `readings` synthetic readings (whole polls, whole batches) from the daemon's
    first poll to the subscriber's last reading; the daemon's CPU over the same span."""
    polls = readings // (DEVICES * POINTS)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "b") as broker:
        work = Path(tmp)
        cfg = _config(work, broker.port, _synthetic(DEVICES, POINTS, 0.0, polls), extra)
        sub = _Subscriber(broker.port, polls * DEVICES * POINTS)
        daemon = (daemon_type or Daemon)(cfg, work / "daemon.log")
        try:
            daemon.wait_running()
            cpu0 = daemon.cpu()
            seen = sub.wait_done(timeout=1800)
            cpu = daemon.cpu() - cpu0
        finally:
            daemon.stop()
    return seen.figures(f"e2e_{label}".rstrip("_")) | {
        f"cpu_{label}ms_per_1k_readings": round(cpu * 1000 / (seen.readings / 1000), 2)
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


def drain(
    backlog: Path,
    readings: int,
    extra: str = "",
    label: str = "",
    daemon_type: type[Daemon] | None = None,
) -> dict[str, float]:
    """One run: a copy of the `backlog` outbox drained by a starting daemon, readings per
    second from "gateway running" to the subscriber's last reading."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(backlog, work / "outbox.sqlite")
        with LocalBroker(work / "b") as broker:
            cfg = _config(work, broker.port, "", extra)
            sub = _Subscriber(broker.port, readings)
            daemon = (daemon_type or Daemon)(cfg, work / "daemon.log")
            try:
                start = daemon.wait_running()
                seen = sub.wait_done(timeout=1800)
            finally:
                daemon.stop()
    return seen.figures(f"drain_{label}".rstrip("_"), since=start)


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    size = SIZES[mode]
    figures: dict[str, Figure] = {}
    # (extra [uplink] keys, figure label)
    variants: tuple[tuple[str, str], ...] = (("", ""), (TUNED, "tuned_"))
    if mode == "smoke":
        variants = variants[:1]
    for extra, label in variants:
        s = settings(extra)
        n = _whole_batches(size, s["batch_max_readings"], DEVICES * POINTS)
        runs = repeat(repeats, partial(e2e, n, extra, label))
        source = f"{DEVICES} devices x {POINTS} points, interval 0"
        more = {"readings": n, "source": source, "drain_hold": DRAIN_HOLD}
        figures |= collect(runs, s | more, DOCS)
    with tempfile.TemporaryDirectory() as tmp:
        backlog = Path(tmp) / "outbox.sqlite"
        # One backlog for every drain run, in whole batches of either setting.
        batch = math.lcm(*(settings(extra)["batch_max_readings"] for extra, _ in variants))
        n = _whole_batches(size, batch, 1)
        asyncio.run(_fill(backlog, n, 100))
        for extra, label in variants:
            runs = repeat(repeats, partial(drain, backlog, n, extra, label))
            more = {"readings": n, "devices": 100, "drain_hold": DRAIN_HOLD}
            figures |= collect(runs, settings(extra, **more), DOCS)
    return figures
