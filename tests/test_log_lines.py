"""The daemon's log as journald gets it: every line one JSON object (paho's and the other
libraries' stdlib logging included), and an outage that says when the next try is and, on
recovery, how long it lasted and how much is queued."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_daemon import Proc, config_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_every_line_is_json_paho_included_and_an_outage_says_retry_and_duration(tmp_path, broker):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port, window=3600))
    log = tmp_path / "log"
    proc = Proc(cfg, log, args=("--log-level", "debug"))
    try:
        proc.wait_event("gateway running")
        proc.wait_for(lambda e: "CONNACK" in str(e.get("event")))  # paho's line, as JSON
        broker.stop()
        down = proc.wait_event("uplink down")
        assert down["retry_in_s"] >= 0 and down["reason"]
        broker.start()
        back = proc.wait_event("uplink recovered", timeout=30)
        assert back["down_s"] >= 0 and back["queued"] > 0
        assert proc.stop() == 0
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    paho = [e for e in parsed if e.get("logger", "").startswith("paho")]
    assert paho, "paho's debug lines are missing"
    assert all(e["level"] == "debug" and e["timestamp"] for e in paho)


def test_library_warnings_are_json_at_the_default_level(tmp_path, broker):
    # A stdlib logger at warning (as pymodbus or asyncio use) renders as JSON too.
    code = (
        "import logging, sys; from gateway import logs; logs.setup('info');"
        "logging.getLogger('pymodbus').warning('lost %s', 'frame');"
        "logging.getLogger('paho.mqtt.client').debug('Sending PUBLISH');"
        "import structlog; structlog.get_logger().info('ours', n=1)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    events = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert [(e["event"], e.get("logger")) for e in events] == [
        ("lost frame", "pymodbus"),
        ("ours", None),
    ]
    assert events[0]["level"] == "warning"
