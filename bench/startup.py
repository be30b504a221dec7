"""Start-up, idle and reconnect figures of the daemon as a process, with the defaults a user gets.

- `start_to_running_s` / `start_to_ready_s`: from just before the process is spawned
  (`python -m gateway run -c ...`, as systemd starts it) to the "gateway running" log line (its
  own timestamp) and to READY=1 on $NOTIFY_SOCKET (the kernel's receive timestamp,
  SO_TIMESTAMP), median of several runs on an existing store (a restart; the first run creates
  the store and is not counted), for a small config (one synthetic device, no [alerts]) and
  the demo's config (`gateway demo`'s synthetic field with alert rules, SMTP and the digest).
  `python_bare_s` is the floor: the interpreter alone (`python -c pass`).
- `idle_*`: 100 synthetic devices at one reading a minute each, defaults otherwise, a local
  broker, the daemon's environment as the unit gives it (its watchdog: WATCHDOG_USEC from
  systemd/gateway.service's WatchdogSec); CPU share of one core (the scheduler's run time of
  its threads in ns, /proc/PID/task/*/schedstat; `idle_cpu_ticks_pct` is the same from the
  process's clock-tick CPU time, 10 ms a tick), RSS and USS (its private
  pages: RSS less pages it shares with other processes, such as libpython's and libcrypto's
  code while another Python process runs) of the daemon, and its wake-ups per second: the
  voluntary context switches of all its threads (/proc/PID/task/*/status), each one a thread
  that blocked (the event loop in epoll, aiosqlite's worker on its queue) and was woken again;
  `idle_loop_wakeups_per_s` counts the event loop's thread alone.
(The time back after a broker outage is bench/outage.py's.)

Each figure says its settings in its name or in `startup_settings`; medians come with their
spread (min and max). Nothing here asserts; it measures. Self-contained: it needs only the
gateway, mosquitto (gateway.demo.broker) and psutil.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.figures import Doc, Figure, Mode, collect
from gateway.demo.broker import LocalBroker, free_port
from gateway.demo.template import DemoValues, render
from tests.configs import load_config

ROOT = Path(__file__).resolve().parent.parent
# Linux's SO_TIMESTAMP (asm-generic/socket.h; Python does not export it): the kernel stamps
# each datagram with its arrival time (a struct timeval), so polling adds nothing to a figure.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)
UNIT = ROOT / "systemd" / "gateway.service"


def unit_watchdog_usec(unit: Path = UNIT) -> str:
    """WATCHDOG_USEC as systemd sets it for the shipped unit (its `WatchdogSec=`, in seconds):
    the daemon then pings every half of it, as it does on a box."""
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "WatchdogSec":
            return str(int(value.strip()) * 1_000_000)
    raise ValueError(f"{unit}: no WatchdogSec=")


def _small(work: Path, port: int, devices: int = 1, interval: float = 60.0) -> Path:
    path = work / "gateway.toml"
    text = load_config("startup", port=port, work=work, replicas=devices, interval=interval)
    path.write_text(text)
    return path


def _demo(work: Path, port: int) -> Path:
    path = work / "gateway.toml"
    path.write_text(render(DemoValues("127.0.0.1", port, work, smtp_port=free_port())))
    return path


def _timestamp(line: dict[str, object]) -> float:
    text = str(line["timestamp"]).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def bytecode_env(cache: Path, *, compiled: bool) -> dict[str, str]:
    """The environment a daemon starts in: its bytecode cached under `cache` (written on the
    first start, as an installed gateway has it) or, `compiled=False`, the project's own
    modules compiled from source at every start (as when the cache cannot be written:
    PYTHONDONTWRITEBYTECODE, or a read-only install without compiled files). Libraries keep
    their cached bytecode either way (pip compiles them at install)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    if not compiled:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        shutil.rmtree(cache / ROOT.relative_to(ROOT.anchor), ignore_errors=True)
    return env


class Daemon:
    """`python -m gateway run` as systemd starts it: a NOTIFY_SOCKET of our own and the
    unit's watchdog (WATCHDOG_USEC; no WATCHDOG_PID, which the daemon reads as its own)."""

    def __init__(self, cfg: Path, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.notify_path = work / f"notify-{time.monotonic_ns()}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.log_path = work / "daemon.log"
        self.out = open(self.log_path, "ab")  # noqa: SIM115
        self.offset = self.log_path.stat().st_size
        env = {
            **env,
            "NOTIFY_SOCKET": str(self.notify_path),
            "WATCHDOG_USEC": unit_watchdog_usec(),
        }
        self.started = time.time()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
            cwd=ROOT,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.ps = psutil.Process(self.p.pid)

    def ready(self, timeout: float = 60.0) -> float:
        """Wall time READY=1 arrived (the kernel's timestamp of the datagram)."""
        self.notify.settimeout(timeout)
        try:
            return self._ready()
        finally:
            # systemd keeps reading (STATUS= lines); so do we, or the queue would fill up
            threading.Thread(target=self._drain, daemon=True).start()

    def _ready(self) -> float:
        while True:
            data, ancillary, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(16))
            if b"READY=1" not in data.split(b"\n"):
                continue
            for level, kind, cdata in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    sec, usec = struct.unpack("qq", cdata[:16])
                    return float(sec + usec / 1e6)
            return time.time()

    def _drain(self) -> None:
        self.notify.settimeout(None)
        with contextlib.suppress(OSError):
            while self.notify.recv(4096):
                pass

    def line(self, event: str, timeout: float = 120.0) -> dict[str, object]:
        """The first log line of this run with `event` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                for raw in f:
                    with contextlib.suppress(ValueError):
                        obj = json.loads(raw)
                        if isinstance(obj, dict) and obj.get("event") == event:
                            return obj
            if self.p.poll() is not None:
                raise RuntimeError(self.log_path.read_text()[-2000:])
            time.sleep(0.05)
        raise TimeoutError(f"no {event!r} line within {timeout} s")

    def connected(self, timeout: float = 60.0) -> None:
        """Wait until status.json says the uplink is connected (the first connect logs no
        line: only transitions are logged)."""
        path = self.work / "run" / "status.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text())["uplink"]["connected"]:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"uplink not connected within {timeout} s")

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def run_ns(self) -> dict[str, int]:
        """Each live thread's time on a CPU in nanoseconds (the scheduler's own sum,
        /proc/PID/task/TID/schedstat), by thread id. `cpu()` comes in clock ticks (10 ms
        here): over an idle minute 0.2 % of a core is 12 ticks, so one tick more or less
        moved the figure by 0.017 points."""
        out: dict[str, int] = {}
        for task in Path(f"/proc/{self.p.pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[task.name] = int((task / "schedstat").read_text().split()[0])
        return out

    def wakeups(self) -> tuple[int, int]:
        """(voluntary context switches of all threads, of the event loop's thread)."""
        total = loop = 0
        for task in Path(f"/proc/{self.p.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for text in (task / "status").read_text().splitlines():
                    if text.startswith("voluntary_ctxt_switches:"):
                        n = int(text.split()[1])
                        total += n
                        loop += n if task.name == str(self.p.pid) else 0
        return total, loop

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.out.close()
        with contextlib.suppress(OSError):
            self.notify.shutdown(socket.SHUT_RDWR)  # ends the drain's recv
        self.notify.close()
        self.notify_path.unlink()


def _spread(values: list[float], name: str) -> dict[str, float]:
    return {
        name: round(statistics.median(values), 3),
        f"{name}_min": round(min(values), 3),
        f"{name}_max": round(max(values), 3),
    }


def bare_python(repeats: int) -> dict[str, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return {"python_bare_s": times}


def start_up(
    kind: str, repeats: int, cache: Path, *, compiled: bool = True
) -> dict[str, list[float]]:
    """Start to "gateway running" and to READY=1, `repeats` restarts on one store."""
    running: list[float] = []
    ready: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "b") as broker:
        work = Path(tmp)
        cfg = (_small if kind == "small" else _demo)(work, broker.port)
        env = bytecode_env(cache, compiled=compiled)
        for i in range(repeats + 1):
            daemon = Daemon(cfg, work, env)
            try:
                at_ready = daemon.ready()
                at_running = _timestamp(daemon.line("gateway running"))
            finally:
                daemon.stop()
            if i:  # the first run created the store (a first boot, not a restart)
                running.append(at_running - daemon.started)
                ready.append(at_ready - daemon.started)
    name = kind if compiled else f"{kind}_from_source"
    return {f"start_to_running_s_{name}": running, f"start_to_ready_s_{name}": ready}


def warm(cfg: Path, work: Path, env: dict[str, str]) -> None:
    """One run until READY=1, so the next starts from cached bytecode (a restart, not the
    first start after an install: compiling would cost time and leave memory behind)."""
    daemon = Daemon(cfg, work, env)
    try:
        daemon.ready()
    finally:
        daemon.stop()


def idle(seconds: float, cache: Path, devices: int = 100) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "b") as broker:
        work = Path(tmp)
        env = bytecode_env(cache, compiled=True)
        cfg = _small(work, broker.port, devices, 60.0)
        warm(cfg, work, env)
        daemon = Daemon(cfg, work, env)
        try:
            daemon.ready()
            daemon.connected()
            time.sleep(5)  # imports done, first polls spread out, the link settled
            cpu0, ns0, (all0, loop0) = daemon.cpu(), daemon.run_ns(), daemon.wakeups()
            t0 = time.monotonic()
            time.sleep(seconds)
            ticks, ns1, (all1, loop1) = daemon.cpu() - cpu0, daemon.run_ns(), daemon.wakeups()
            elapsed = time.monotonic() - t0
            cpu = ticks
            if ns0.keys() <= ns1.keys():  # no thread ended meanwhile (its time would be lost)
                cpu = sum(ns1[tid] - ns0.get(tid, 0) for tid in ns1) / 1e9
            rss = daemon.ps.memory_info().rss
            uss = daemon.ps.memory_full_info().uss
        finally:
            daemon.stop()
    return {
        "idle_cpu_pct": round(100 * cpu / elapsed, 3),
        "idle_cpu_ticks_pct": round(100 * ticks / elapsed, 3),
        "idle_rss_mb": round(rss / 2**20, 1),
        "idle_uss_mb": round(uss / 2**20, 1),
        "idle_wakeups_per_s": round((all1 - all0) / elapsed, 2),
        "idle_loop_wakeups_per_s": round((loop1 - loop0) / elapsed, 2),
        "idle_seconds": round(elapsed, 1),
    }


REPEATS = 5  # restarts per start-up figure; idle and outage are measured once per repeat
DOCS = {
    "start_to_running_s_small": Doc("start to `gateway running`, one synthetic device", "<= 0.5"),
    "idle_cpu_pct": Doc(
        "idle: 100 devices, one reading a minute, % of a core (scheduler run time, ns)", "<= 0.2"
    ),
    "idle_cpu_ticks_pct": Doc("the same, from the process's CPU time in clock ticks (10 ms)"),
    "idle_rss_mb": Doc("idle RSS (MB)", "<= 30"),
    "idle_uss_mb": Doc("idle USS (MB): the daemon's private pages, not those it shares"),
    "idle_wakeups_per_s": Doc("idle: wake-ups per second, all threads (voluntary switches)"),
    "idle_loop_wakeups_per_s": Doc("idle: wake-ups per second of the event loop's thread"),
}


def run(mode: Mode, repeats: int) -> dict[str, Figure]:
    """The bench harness's entry: start-up times (each restart one value) and idle."""
    restarts = 2 if mode == "smoke" else repeats
    settings = {
        "config": "defaults + one synthetic device (small) or the demo field (demo)",
        "restarts": restarts,
        "bytecode": "cached (from_source: compiled at every start)",
    }
    figures: dict[str, Figure] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        samples = bare_python(restarts)
        for kind in ("small", "demo"):
            samples.update(start_up(kind, restarts, cache))
            samples.update(start_up(kind, restarts, cache, compiled=False))
        for name, values in samples.items():
            figures[name] = Figure(values, settings, DOCS.get(name, Doc("")))
        seconds = {"smoke": 5.0, "quick": 20.0, "full": 60.0}[mode]
        idle_settings = {
            "devices": 100,
            "reading_every_s": 60,
            "seconds": seconds,
            "watchdog": f"WATCHDOG_USEC={unit_watchdog_usec()} (the unit's WatchdogSec)",
        }
        once = [idle(seconds, cache) for _ in range(1 if mode == "smoke" else repeats)]
        figures.update(collect(once, idle_settings, DOCS))
    return figures


def run_alone(quick: bool) -> dict[str, object]:
    repeats = 5 if quick else 11
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        samples = bare_python(repeats)
        samples.update(start_up("small", repeats, cache))
        samples.update(start_up("demo", repeats, cache))
        samples.update(start_up("small", repeats, cache, compiled=False))
        samples.update(start_up("demo", repeats, cache, compiled=False))
        for name, values in samples.items():
            figures.update(_spread(values, name))
        figures.update(idle(20 if quick else 60, cache))
    return figures


if __name__ == "__main__":
    # `python -m bench.startup [--quick] [start|idle ...]`: all, or the parts named.
    which = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    if not which:
        print(json.dumps(run_alone(quick)))
    with tempfile.TemporaryDirectory() as cache_dir:
        for name in which:
            cache = Path(cache_dir)
            if name == "start":
                for kind in ("small", "demo"):
                    print(json.dumps(start_up(kind, 5, cache)), flush=True)
                    print(json.dumps(start_up(kind, 5, cache, compiled=False)), flush=True)
            elif name == "idle":
                print(json.dumps(idle(20 if quick else 60, cache)), flush=True)
    os._exit(0)
