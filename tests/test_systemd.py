"""The shipped systemd unit: it verifies, is Type=notify with a watchdog, and stays hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "gateway.service"


def test_unit_verifies(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (apt-get install systemd)"
    # verify checks that ExecStart exists; point it at a binary this machine has.
    text = UNIT.read_text().replace("/opt/gateway/.venv/bin/gateway", "/bin/true")
    unit = tmp_path / "gateway.service"
    unit.write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [ln for ln in res.stderr.splitlines() if "gateway.service" in ln]
    assert res.returncode == 0 and not problems, res.stderr


def test_unit_is_notify_with_watchdog_and_no_restart_on_bad_config():
    text = UNIT.read_text()
    assert "Type=notify" in text and re.search(r"^WatchdogSec=\d+", text, re.M)
    assert "Restart=on-failure" in text and "RestartPreventExitStatus=78" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text


def test_unit_exposure_stays_low():
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for gateway\.service: ([\d.]+)", res.stdout)
    assert match, res.stdout[-2000:] + res.stderr
    assert float(match.group(1)) <= 2.5
