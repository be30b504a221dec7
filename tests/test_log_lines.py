"""The daemon's log as journald gets it: every line one JSON object (paho's and the other
libraries' stdlib logging included), and an outage that says when the next try is and, on
recovery, how long it lasted and how much is queued."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


@pytest.mark.slow  # a daemon process and a broker
def test_debug_level_shows_the_data_path_and_info_does_not(tmp_path, broker):
    """`run --log-level debug` is for a technician chasing a reading: each accepted reading
    with its values, each append to the outbox, each lease and each acknowledgement."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text(config_text(tmp_path, broker.port, window=0.2))
    debug = Proc(cfg, tmp_path / "debug.log", args=("--log-level", "debug"))
    try:
        for name in ("accepted", "appended to outbox", "leased", "acknowledged"):
            debug.wait_event(name)
        accepted = debug.wait_event("accepted")
        assert accepted["device"] == "counter" and "n" in accepted["values"]
        leased = debug.wait_event("leased")
        assert leased["lane"] == "telemetry" and leased["rows"] > 0
        assert debug.stop() == 0
    finally:
        if debug.p.poll() is None:
            debug.p.kill()
    info = Proc(cfg, tmp_path / "info.log")
    try:
        info.wait_event("gateway running")
        time.sleep(2)  # readings flow and are published meanwhile (as at debug above)
        assert info.stop() == 0
    finally:
        if info.p.poll() is None:
            info.p.kill()
    quiet = {e.get("event") for e in info.events()}
    assert not quiet & {"accepted", "appended to outbox", "leased", "acknowledged"}


class _SlowStream:
    """A stream whose every write lets other threads run (a pipe to a busy journald)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        time.sleep(0)  # give up the GIL: another thread's write may come now
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_library_lines_from_other_threads_never_splice_into_ours():
    """aiosqlite logs from its worker thread while the event loop logs: at debug both write
    to the same stream, and every line must still be one JSON object (journald keeps lines)."""
    import logging
    import threading

    import structlog

    from gateway import logs

    stream = _SlowStream()
    try:
        logs.setup("debug", json=True, stream=stream)
        ours = structlog.get_logger()
        library = logging.getLogger("library.worker")

        def chatter() -> None:
            for i in range(500):
                library.debug("worker line %d", i)

        threads = [threading.Thread(target=chatter) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(500):
            ours.debug("loop line", i=i)
        for t in threads:
            t.join()
    finally:
        logs.setup("info", json=True)
    lines = "".join(stream.parts).splitlines()
    assert len(lines) == 2000
    assert all(isinstance(json.loads(line), dict) for line in lines)
