"""`gateway demo` end to end: its own broker, the simulated field, live output, clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import loader as config_mod
from gateway.demo.template import DemoValues, render

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # the whole demo as a process, ~9 s
def test_demo_shows_the_field_reaching_the_platform(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--seconds", "8", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("platform <- ")]
    topics = {ln.split()[2] for ln in lines}
    for device in ("paddy-01", "buoy-01", "trap-01"):
        assert f"/json/demo/{device}/attrs" in topics, res.stdout
    paddy = next(ln for ln in lines if "/json/demo/paddy-01/attrs" in ln)
    body = json.loads(paddy.split("  ", 1)[1])
    first = body[0] if isinstance(body, list) else body
    assert 3.0 <= first["wl"] <= 5.5 and first["TimeInstant"].endswith("Z")
    assert res.stdout.rstrip().endswith("demo: stopped")
    assert "platform <- gateway/demo-field/status  offline" in res.stdout


RELAY_BUS = """
[[buses]]
name = "relays"
transport = "modbus-tcp"
host = "127.0.0.1"
port = 1502

[[buses.devices]]
id = "relay-1"
profile = "relay-4ch"
unit = 2
"""


def test_template_fills_in_the_run_values_and_the_relay_actions(tmp_path):
    workdir = tmp_path / 'odd "dir" \\ name'
    text = render(DemoValues("::1", 18830, workdir, 2525, (RELAY_BUS,)))
    cfg = config_mod.parse(text, "<demo>")
    assert (cfg.uplink.host, cfg.uplink.port) == ("::1", 18830)
    assert cfg.store.path == str(workdir / "outbox.sqlite")
    # Whoever runs the demo can write its status file (not /run/gateway, the unit's).
    assert cfg.store.runtime_dir == str(workdir / "run")
    assert cfg.alerts.smtp is not None and cfg.alerts.smtp.port == 2525
    assert {d.id for d in cfg.devices()} >= {"paddy-01", "buoy-01", "trap-01", "relay-1"}
    assert set(cfg.alerts.actions) == {"siren", "flash"}
    trap = cfg.alerts.rule("trap")
    assert trap is not None and trap.actions == ("siren", "flash")


def test_template_without_a_relay_module_has_no_local_actions(tmp_path):
    cfg = config_mod.parse(render(DemoValues("127.0.0.1", 1883, tmp_path, 2525)), "<demo>")
    trap = cfg.alerts.rule("trap")
    assert not cfg.alerts.actions and trap is not None and trap.actions == ()
    assert [b.name for b in cfg.buses] == ["synthetic"]
