"""`gateway demo` shows the alert path: the synthetic trap triggers, the simulated siren relay
switches on (a coil write the Modbus simulator confirmed) and the mail sink prints the mail
with its map links."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # the whole demo as a process, ~17 s


def test_demo_trap_sounds_the_siren_and_mails_with_the_map(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--seconds", "16", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout.splitlines()
    # Rest state at start, then the siren on for the trap.
    assert "relay  -> relay-1 channel 1 off" in out
    on = out.index("relay  -> relay-1 channel 1 ON")
    assert out.index("relay  -> relay-1 channel 1 off") < on
    mail = next(
        i for i, ln in enumerate(out) if ln.startswith("mail sink <- to farmers@") and "わな" in ln
    )
    # The synthetic trap or a trap behind the serial receiver (`わな17`), whichever is first.
    assert "【警報】わな作動 " in out[mail]
    assert out[mail + 1].strip().startswith("https://maps.gsi.go.jp/#16/36.1")
    assert any(
        ln.startswith("mail sink <- to hunters@") and "[ALERT] Trap triggered" in ln for ln in out
    )
