"""The daemon as a process: graceful stop, crash durability under SIGKILL, reload, sd_notify,
last will, config errors at start."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.configs import load_config
from tests.mqtt_peer import Collector

ROOT = Path(__file__).resolve().parent.parent


def config_text(tmp: Path, port: int, *, devices: str = "", window: float = 0.2) -> str:
    return load_config("daemon", tmp=tmp, port=port, devices=devices, window=window)


class Proc:
    def __init__(
        self,
        cfg: Path,
        log: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(cfg), *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def events(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_event(self, name: str, timeout: float = 20) -> dict:
        return self.wait_for(lambda e: e.get("event") == name, timeout, name)

    def wait_for(self, match, timeout: float = 20, what: str = "matching") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if match(e):
                    return e
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {what!r} event; log:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.p.send_signal(sig)
        return self.p.wait(timeout)


def delivered_seqs(c: Collector) -> list[int]:
    return [
        item["seq"]
        for m in list(c.messages)
        if m.topic == "gateway/gw1/counter"
        for item in json.loads(m.payload)
    ]


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_sigterm_stops_gracefully_with_exit_0(tmp_path, broker, platform):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    proc = Proc(cfg, tmp_path / "log")
    proc.wait_event("gateway running")
    platform.wait_for(lambda ms: len(delivered_seqs(platform)) > 100)
    assert proc.stop() == 0
    assert proc.events()[-1]["event"] == "gateway stopped"
    platform.wait_for(lambda ms: ms[-1].topic == "gateway/gw1/status")
    assert platform.on("gateway/gw1/status")[-1].payload == b"offline"
    # The store was closed cleanly: the WAL is checkpointed into a sound file.
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_sigkill_20_times_loses_no_appended_reading(tmp_path, broker, platform):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    rng = random.Random(7)
    wills = 0
    for _ in range(20):
        status = len(platform.on("gateway/gw1/status"))
        proc = Proc(cfg, tmp_path / "log")
        platform.wait_for(lambda ms, b=status: len(platform.on("gateway/gw1/status")) > b)
        time.sleep(rng.uniform(0.1, 0.5))  # killed mid-publish, at a random point
        proc.stop(signal.SIGKILL)
        platform.wait_for(lambda ms, b=status: len(platform.on("gateway/gw1/status")) > b + 1)
        wills += platform.on("gateway/gw1/status")[-1].payload == b"offline"
    assert wills == 20  # the broker announced every crash through the last will
    proc = Proc(cfg, tmp_path / "log")
    proc.wait_event("gateway running")
    time.sleep(1.0)
    assert proc.stop() == 0
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        (hwm,) = db.execute("SELECT value FROM meta WHERE key = 'seq_hwm'").fetchone()
        left = {s for (s,) in db.execute("SELECT seq FROM outbox")}
    got = delivered_seqs(platform)
    assert hwm > 1000
    # Appends commit contiguous ranges in order, so the committed seqs are exactly 1..hwm:
    # each must have reached the platform or still wait in the outbox.
    missing = set(range(1, hwm + 1)) - set(got) - left
    assert not missing, f"{len(missing)} appended readings lost, e.g. {sorted(missing)[:5]}"
    assert max(got) <= hwm
    duplicates = len(got) - len(set(got))
    assert duplicates <= 21 * 20 * 500  # at most the batches in flight at each kill


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_sighup_reloads_and_bad_config_keeps_running(tmp_path, broker, platform):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    proc = Proc(cfg, tmp_path / "log")
    proc.wait_event("gateway running")
    extra = """
[[buses.devices]]
id = "added"
interval = 0.1
points = [ { quantity = "n", pattern = "counter" } ]
"""
    cfg.write_text(config_text(tmp_path, broker.port, devices=extra))
    proc.p.send_signal(signal.SIGHUP)
    proc.wait_event("config reloaded")
    platform.wait_for(lambda ms: any(m.topic == "gateway/gw1/added" for m in ms))
    cfg.write_text("[gateway]\nid = 1\n")
    proc.p.send_signal(signal.SIGHUP)
    proc.wait_event("keeping the running config")
    refused = [e for e in proc.events() if e["event"] == "reload refused: config problem"]
    assert refused and "gateway.id: expected a string, got 1" in refused[0]["problem"]
    n = len(platform.messages)
    platform.wait_for(lambda ms: len(ms) > n + 3)  # still publishing on the old config
    assert proc.stop() == 0


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_reload_command_from_the_platform(tmp_path, broker, platform):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    proc = Proc(cfg, tmp_path / "log")
    proc.wait_event("gateway running")
    platform.wait_for(lambda ms: len(delivered_seqs(platform)) > 0)
    platform.publish("/gateway/gw1/cmd", b'{"reload": {}}')
    proc.wait_event("config reloaded")
    answers = [json.loads(m.payload) for m in platform.on("/json/gateway/gw1/cmdexe")]
    assert answers == [{"reload": "OK"}]
    assert proc.stop() == 0


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_sd_notify_ready_status_watchdog_stopping(tmp_path, broker):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    proc = Proc(
        cfg, tmp_path / "log", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
    )
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        any("READY=1" in s for s in seen) and sum("WATCHDOG=1" in s for s in seen) >= 3
    ):
        seen.append(sock.recv(4096).decode())
    ready = next(s for s in seen if "READY=1" in s)
    assert "STATUS=uplink" in ready
    assert sum("WATCHDOG=1" in s for s in seen) >= 3
    proc.p.send_signal(signal.SIGTERM)
    while "STOPPING=1" not in seen[-1]:
        seen.append(sock.recv(4096).decode())
    assert proc.p.wait(20) == 0
    sock.close()


def test_config_error_at_start_exits_78_with_the_problem(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\nid = "x"\n[uplink]\nport = 0\n')
    proc = Proc(cfg, tmp_path / "log")
    assert proc.p.wait(30) == 78
    problems = [e["problem"] for e in proc.events() if e["event"] == "config problem"]
    assert problems == ["uplink.port: expected 1..65535, got 0"]


@pytest.mark.parametrize("obstacle", ["a file", "no permission"])
@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_a_store_directory_that_cannot_be_created_exits_78_with_a_clear_line(obstacle):
    # Outside pytest's 0700 tmp_path: the unprivileged run must read its config.
    base = Path(tempfile.mkdtemp(prefix="gw-store-"))
    try:
        base.chmod(0o755)
        (base / "root-only").mkdir(mode=0o755)  # root's: nobody cannot create in it
        (base / "afile").write_text("")
        store = base / ("afile" if obstacle == "a file" else "root-only/gw") / "outbox.sqlite"
        cfg = base / "gw.toml"
        cfg.write_text(f'[gateway]\nid = "gw1"\n[store]\npath = "{store}"\n')
        cfg.chmod(0o644)
        unprivileged = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        res = subprocess.run(
            [
                *(unprivileged if obstacle == "no permission" else []),
                *(sys.executable, "-m", "gateway", "run", "-c", str(cfg)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 78, res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        (event,) = [json.loads(line) for line in res.stdout.splitlines()]
        assert event["event"] == "cannot start"
        reason = (
            "a file stands where the directory should be"
            if obstacle == "a file"
            else "Permission denied"
        )
        where = store.parent
        assert event["problem"] == f"store.path: cannot create or open {where}: {reason}"
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("damage", [b"garbage" * 1000])
def test_corrupt_outbox_at_start_is_quarantined_not_a_crash_loop(tmp_path, broker, damage):
    (tmp_path / "outbox.sqlite").write_bytes(damage)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port))
    proc = Proc(cfg, tmp_path / "log")
    event = proc.wait_event("outbox file is corrupt; moved aside and starting a fresh one")
    assert Path(event["moved_to"]).read_bytes() == damage
    proc.wait_event("gateway running")
    assert proc.stop() == 0


@pytest.mark.slow
def test_status_command_reports_outbox_and_daemon(tmp_path, broker):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port, window=3600))
    proc = Proc(cfg, tmp_path / "log")
    proc.wait_event("gateway running")
    deadline = time.monotonic() + 15
    while True:  # status.json follows the link state within a second or so
        res = subprocess.run(
            [sys.executable, "-m", "gateway", "status", "-c", str(cfg)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if "uplink connected" in res.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "uplink connected" in res.stdout
    assert "telemetry" in res.stdout and "rows, oldest" in res.stdout
    assert proc.stop() == 0
    broker.stop()
    stale = subprocess.run(
        [sys.executable, "-m", "gateway", "status", "-c", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    # The daemon recorded its stop: reported stopped at once (issue 10; it used to show the
    # stopped daemon as running, link down, for 30 s).
    assert stale.returncode == 3 and "stopped" in stale.stdout
