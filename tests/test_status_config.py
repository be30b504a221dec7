"""`gateway status --json / --watch` against a running daemon and `gateway config` (issue 12).

The daemon runs as a real process with a real broker; one serial device points at a port that
does not exist, so it is unavailable with a reason. The uplink is taken down by stopping the
broker, so the report shows since when it is down and when the next try is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from gateway.config import loader
from tests.configs import load_config
from tests.test_daemon import ROOT, Proc

WATCH = ("--watch", "--interval", "0.3")
MISSING_PORT = """
[[buses]]
name = "rs"
transport = "serial"
port = "${tmp}/no-such-port"
reconnect_min = 0.1
reconnect_max = 0.5
[[buses.devices]]
id = "buoy"
profile = "buoy-nmea"
"""


def gateway(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def daemon_config(tmp: Path, port: int) -> Path:
    cfg = tmp / "gw.toml"
    extra = MISSING_PORT.replace("${tmp}", str(tmp))
    cfg.write_text(load_config("daemon", tmp=tmp, port=port, devices=extra, window=3600))
    return cfg


def status_json(cfg: Path, until, timeout: float = 20) -> dict:
    """`gateway status --json` until `until(report)` holds (the daemon reports within ~1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        res = gateway("status", "-c", str(cfg), "--json")
        rep = json.loads(res.stdout)
        assert rep["exit"] == res.returncode
        if until(rep) or time.monotonic() > deadline:
            return rep
        time.sleep(0.3)


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_status_json_reports_devices_uplink_backlog_and_disk(tmp_path, broker):
    cfg = daemon_config(tmp_path, broker.port)
    proc = Proc(cfg, tmp_path / "log")
    try:
        proc.wait_event("gateway running")
        rep = status_json(
            cfg,
            lambda r: (
                r["daemon"]["state"] == "running"
                and r["daemon"]["uplink"]["connected"]
                and "buoy" in r["daemon"]["devices_unavailable"]
                and "telemetry" in r["outbox"].get("lanes", {})
            ),
        )
        assert rep["exit"] == 0 and rep["gateway"] == "gw1"
        down = rep["daemon"]["devices_unavailable"]["buoy"]
        assert "no-such-port" in down["reason"] or "No such file" in down["reason"], down
        assert down["since"] <= rep["time"]
        lane = rep["outbox"]["lanes"]["telemetry"]
        assert lane["rows"] > 0 and lane["age_s"] >= 0
        assert rep["disk"]["free_bytes"] > 0 and rep["disk"]["path"] == str(tmp_path)
        assert rep["daemon"]["uplink"]["down_since"] is None

        broker.stop()  # the link goes down: since when, why, next try
        rep = status_json(cfg, lambda r: r["daemon"]["uplink"]["down_since"] is not None)
        up = rep["daemon"]["uplink"]
        assert not up["connected"] and up["down_reason"]
        assert up["down_since"] <= rep["time"] and up["next_try"] >= up["down_since"]
        text = gateway("status", "-c", str(cfg))
        assert "uplink down" in text.stdout, text.stdout
        assert "next try in" in text.stdout or "a try was due" in text.stdout, text.stdout
        assert "unavailable buoy for" in text.stdout and "disk" in text.stdout
    finally:
        assert proc.stop() == 0
    stopped = gateway("status", "-c", str(cfg), "--json")
    assert stopped.returncode == 3 and json.loads(stopped.stdout)["daemon"]["state"] == "stopped"


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_status_watch_prints_a_block_per_interval_until_ctrl_c(tmp_path, broker):
    cfg = daemon_config(tmp_path, broker.port)
    proc = Proc(cfg, tmp_path / "log")
    try:
        proc.wait_event("gateway running")
        watch = subprocess.Popen(
            [sys.executable, "-m", "gateway", "status", "-c", str(cfg), *WATCH],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watch.stdout is not None
        blocks = 0
        lines = []
        while blocks < 2:  # a non-TTY gets a new block (ended by a rule) each time
            line = watch.stdout.readline()
            assert line, "status --watch ended early:\n" + "".join(lines)
            lines.append(line)
            blocks += line.startswith("-" * 40)
        watch.send_signal(signal.SIGINT)
        rest, _ = watch.communicate(timeout=20)
        assert watch.returncode in (0, 3)
        text = "".join(lines)
        assert text.count("gateway gw1  config") == 2 and text.count("daemon   pid") == 2
    finally:
        assert proc.stop() == 0


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_status_watch_on_a_terminal_redraws_the_screen(tmp_path, broker):
    cfg = daemon_config(tmp_path, broker.port)
    proc = Proc(cfg, tmp_path / "log")
    master, slave = pty.openpty()
    try:
        proc.wait_event("gateway running")
        watch = subprocess.Popen(
            [sys.executable, "-m", "gateway", "status", "-c", str(cfg), *WATCH],
            cwd=ROOT,
            stdout=slave,
        )
        seen = b""
        while seen.count(b"\x1b[H\x1b[2J") < 2:  # cursor home + erase, once per report
            chunk = os.read(master, 4096)
            assert chunk, seen
            seen += chunk
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=20) in (0, 3)
        assert b"daemon   pid" in seen and b"-" * 40 not in seen
    finally:
        os.close(master)
        os.close(slave)
        assert proc.stop() == 0


def test_status_json_without_a_daemon_exits_3(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(load_config("daemon", tmp=tmp_path, port=1, devices="", window=1))
    res = gateway("status", "-c", str(cfg), "--json")
    rep = json.loads(res.stdout)
    assert res.returncode == 3 and rep["daemon"]["state"] == "none"
    assert rep["outbox"]["state"] == "missing"


def _no_decoder(device: loader.DeviceConfig) -> loader.DeviceConfig:
    return dataclasses.replace(device, decoder=None)


def _comparable(cfg: loader.Config) -> loader.Config:
    """`cfg` without compiled profile decoders (two loads of one file build unequal ones)."""
    buses = tuple(
        dataclasses.replace(
            b, devices=tuple(dataclasses.replace(d, decoder=None) for d in b.devices)
        )
        for b in cfg.buses
    )
    return dataclasses.replace(cfg, buses=buses)


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.stem
)
@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_config_prints_toml_that_parses_back_to_the_same_config(example):
    res = gateway("config", "-c", str(example))
    assert res.returncode == 0, res.stderr
    back = loader.parse(res.stdout, str(example))
    assert _comparable(back) == _comparable(loader.load(example))
    doc = tomllib.loads(res.stdout)
    # Defaults are written out, including the derived ones.
    assert doc["store"]["sync"] in ("full", "normal") and "max_rows" in doc["store"]
    assert doc["uplink"]["client_id"] and doc["uplink"]["status_topic"]
    assert all("interval" in d for b in doc.get("buses", []) for d in b.get("devices", []))
    as_json = gateway("config", "-c", str(example), "--json")
    assert json.loads(as_json.stdout) == doc
    # The drivers' and the rule kinds' own defaults too, read where they were used.
    for bus in doc.get("buses", []):
        if bus["transport"] == "modbus-rtu":
            assert {"timeout", "retries", "gap", "settle", "jitter", "stopbits"} <= set(bus)
    for rule in doc.get("alerts", {}).get("rules", []):
        assert {"cooldown", "category", "notify_clear", "description"} <= set(rule), rule


def test_config_leaves_out_a_table_the_file_leaves_out(tmp_path):
    """An absent table means "off" (no digest, no TLS client cert): never written in."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        '[gateway]\nid = "g"\n[[alerts.rules]]\nname = "low"\nkind = "threshold"\n'
        'quantity = "water_level"\nbelow = 3.0\n'
    )
    res = gateway("config", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    doc = tomllib.loads(res.stdout)
    assert "digest" not in doc["alerts"] and "smtp" not in doc["alerts"]
    assert doc["alerts"]["rules"][0]["cooldown"] > 0


def test_config_masks_secrets_and_never_reads_password_files(tmp_path):
    secret_file = tmp_path / "mqtt.pass"
    secret_file.write_text("hunter2-file")
    secret_file.chmod(0)  # unreadable: printing the config must not need it
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f"""
[gateway]
id = "gw1"
[uplink]
username = "box"
password_file = "{secret_file}"
[store]
path = "{tmp_path}/outbox.sqlite"
runtime_dir = "{tmp_path}/run"
[[buses]]
name = "air"
transport = "ble"
[[buses.devices]]
id = "th1"
profile = "bthome"
address = "A4:C1:38:00:00:01"
bindkey = "0123456789abcdef0123456789abcdef"
params = {{ token = "t0ps3cret", room = "shed" }}
"""
    )
    for args in ((), ("--json",)):
        res = gateway("config", "-c", str(cfg), *args)
        assert res.returncode == 0, res.stderr
        assert "0123456789abcdef" not in res.stdout and "t0ps3cret" not in res.stdout
        assert "hunter2" not in res.stdout
        assert str(secret_file) in res.stdout and '"shed"' in res.stdout
        assert res.stdout.count('"***"') == 2


def test_config_exits_78_on_a_bad_config(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\nid = "gw1"\n[store]\nsync = "sometimes"\n')
    res = gateway("config", "-c", str(cfg))
    assert res.returncode == 78 and res.stdout == ""
    assert "store.sync" in res.stderr
