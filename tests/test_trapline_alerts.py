"""examples/trapline.toml carries the alert rules its traps need (the `trap` rule driving the
siren and flash on its own relay module, mailing its groups), and `gateway test-alert RULE`
without `--device` raises the alert for a device the rule watches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import structlog

from gateway.alerts.engine import AlertEngine
from gateway.alerts.wiring import places
from gateway.clock import SystemClock
from gateway.config import loader as config_mod

ROOT = Path(__file__).resolve().parent.parent
TRAPLINE = ROOT / "examples" / "trapline.toml"


def test_alert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "test-alert", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


test_alert.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_trapline_sounds_its_own_siren_and_mails_both_groups():
    cfg = config_mod.load(TRAPLINE)
    rules = {r.name: r for r in cfg.alerts.rules}
    assert rules["trap"].actions == ("siren", "flash")
    devices = {d.id for d in cfg.devices()}
    assert {cfg.alerts.actions[a].device for a in rules["trap"].actions} <= devices
    res = test_alert("trap", "-c", str(TRAPLINE))
    assert res.returncode == 0, res.stderr
    # A trap behind the receiver `traps`, which `traps-*` matches; not the receiver itself.
    assert "--- alert row for traps-test:" in res.stdout
    assert '"alertSource": "traps-test"' in res.stdout
    assert "--- action siren: siren-relay channel 1, 30 s" in res.stdout
    assert "--- action flash: siren-relay channel 2, 60 s" in res.stdout
    assert "--- mail to tanaka@example.jp" in res.stdout
    assert "--- mail to suzuki@example.jp" in res.stdout


CONFIG = """
[gateway]
id = "gw1"
[store]
path = "{store}"
[[buses]]
name = "sim"
transport = "synthetic"
[[buses.devices]]
id = "relay-1"
points = [ {{ quantity = "relay", pattern = "sine", low = 0, high = 1 }} ]
[[buses.devices]]
id = "gauge-north"
points = [ {{ quantity = "water_level", unit = "cm", pattern = "sine", low = 3, high = 6 }} ]
[alerts.groups.farmers]
to = ["tanaka@example.jp"]
[alerts.smtp]
host = "127.0.0.1"
from = "gw1@example.jp"
[[alerts.rules]]
name = "dry"
kind = "threshold"
quantity = "water_level"
below = 2.0
devices = ["gauge-*"]
groups = ["farmers"]
[[alerts.rules]]
name = "trap"
kind = "event"
quantity = "trap_state"
equals = "triggered"
devices = ["relay-1-*"]
groups = ["farmers"]
[[alerts.rules]]
name = "any"
kind = "stale"
minutes = 10
groups = ["farmers"]
"""


def test_the_default_device_is_one_the_rule_matches(tmp_path):
    cfg = config_mod.parse(CONFIG.format(store=tmp_path / "o.sqlite"))
    engine = AlertEngine(
        cfg.alerts,
        places(cfg),
        stage=lambda *args: None,
        clock=SystemClock(trust=True),
        log=structlog.get_logger(),
    )
    assert engine.test("dry").device == "gauge-north"  # not relay-1, the first device
    assert engine.test("trap").device == "relay-1-test"  # a sub-device the pattern matches
    assert engine.test("any").device == "relay-1"  # every device: the first one
    assert engine.test("dry", "relay-1").device == "relay-1"  # named: as named
