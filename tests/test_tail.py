"""`gateway tail` and `gateway status` against a running daemon process, over its monitor
socket: live readings with filters, status that stays current when the status file cannot be
written, and the right exit codes when no daemon runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.demo.broker import LocalBroker
from tests.test_daemon import Proc, config_text
from tests.test_status_config import gateway

pytestmark = pytest.mark.slow

SECOND_DEVICE = """
[[buses.devices]]
id = "level"
interval = 0.05
points = [ { quantity = "water_level", pattern = "ramp", unit = "cm" } ]
"""


def start(tmp: Path, broker: LocalBroker) -> tuple[Path, Proc]:
    cfg = tmp / "gw.toml"
    cfg.write_text(config_text(tmp, broker.port, devices=SECOND_DEVICE))
    proc = Proc(cfg, tmp / "daemon.log")
    proc.wait_event("gateway running")
    return cfg, proc


def test_tail_shows_live_readings_filtered_in_the_daemon(tmp_path, broker) -> None:
    cfg, proc = start(tmp_path, broker)
    try:
        raw = gateway("tail", "-c", str(cfg), "--json", "--device", "counter", "--count", "20")
        assert raw.returncode == 0, raw.stderr
        events = [json.loads(x) for x in raw.stdout.splitlines()]
        assert len(events) == 20
        assert {(e["event"], e["device"], e["quantity"]) for e in events} == {
            ("reading", "counter", "n")
        }
        values = [e["value"] for e in events]
        assert values == list(range(values[0], values[0] + 20)), "consecutive, none lost"
        text = gateway("tail", "-c", str(cfg), "--quantity", "water_level", "--count", "3")
        assert text.returncode == 0, text.stderr
        # The uplink's state may come first (a client in the daemon's first second hears it).
        lines = [x for x in text.stdout.splitlines() if "UPLINK" not in x]
        assert len(lines) == 3, text.stdout
        assert all("level" in x and "water_level" in x and x.endswith(" cm") for x in lines)
    finally:
        assert proc.stop() == 0


def test_status_asks_the_daemon_and_stays_current_without_a_status_file(tmp_path, broker):
    cfg, proc = start(tmp_path, broker)
    try:
        run = tmp_path / "run"
        (run / "status.json").unlink(missing_ok=True)
        (run / "status.tmp").mkdir()  # the report can no longer write its file
        rep = gateway("status", "-c", str(cfg), "--json")
        assert rep.returncode == 0, rep.stdout + rep.stderr
        daemon = json.loads(rep.stdout)["daemon"]
        assert daemon["state"] == "running" and daemon["source"] == "socket"
        assert daemon["readings_emitted"] > 0
    finally:
        assert proc.stop() == 0
    # Stopped: no socket any more; tail says so, and status falls back to the disk, where the
    # daemon could write no file.
    assert not (tmp_path / "run" / "gateway.sock").exists()
    tail = gateway("tail", "-c", str(cfg), "--count", "1")
    assert tail.returncode == 3
    assert "no daemon listens" in tail.stderr
    rep = gateway("status", "-c", str(cfg), "--json")
    assert rep.returncode == 3
    assert json.loads(rep.stdout)["daemon"]["state"] == "none"
