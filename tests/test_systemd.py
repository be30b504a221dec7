"""The shipped systemd unit: it verifies, is Type=notify with a watchdog, and stays hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
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
    # gateway check exits 78 on a bad config (the code RestartPreventExitStatus names); it
    # skips the TLS files, which keep only the uplink down.
    assert re.search(r"^ExecStartPre=\S+/gateway check --skip-files ", text, re.M)


def test_unit_allows_sc16is752_uarts_private_mounts_and_documents_ip_allow():
    lines = UNIT.read_text().splitlines()
    assert "DeviceAllow=char-ttySC rw" in lines
    assert "PrivateMounts=yes" in lines
    assert any(ln.startswith("#IPAddressAllow=") for ln in lines)


def test_unit_exposure_stays_low():
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for gateway\.service: ([\d.]+)", res.stdout)
    assert match, res.stdout[-2000:] + res.stderr
    assert float(match.group(1)) <= 1.7


def _unit_values(key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in UNIT.read_text().splitlines() if ln.startswith(f"{key}=")]


def test_unit_user_and_paths_match_the_sysusers_file_and_the_production_example():
    # The unit runs as the user the installer creates, and lets it write exactly where the
    # production config keeps its outbox and its status file.
    sysusers = (ROOT / "systemd" / "gateway.sysusers").read_text().splitlines()
    entries = [ln.split() for ln in sysusers if ln and not ln.startswith("#")]
    assert entries[0][:3] == ["u", "gateway", "-"]
    assert {e[2] for e in entries if e[0] == "m"} == {"dialout", "bluetooth"}
    assert _unit_values("User") == ["gateway"] and _unit_values("Group") == ["gateway"]

    store = tomllib.loads((ROOT / "examples" / "production.toml").read_text())["store"]
    state = Path(store["path"]).parent
    assert _unit_values("StateDirectory") == [state.name] and str(state.parent) == "/var/lib"
    assert _unit_values("ReadWritePaths") == [str(state)]
    assert store["runtime_dir"] == "/run/" + _unit_values("RuntimeDirectory")[0]
    assert "PrivateTmp=yes" in UNIT.read_text().splitlines()
    # No shipped example keeps its outbox where the unit loses it or may not write, but the
    # demo (run by hand, never by the unit).
    for example in sorted((ROOT / "examples").glob("*.toml")):
        if example.name == "demo.toml":
            continue
        path = tomllib.loads(example.read_text()).get("store", {}).get("path", "")
        assert Path(path).parent == state, example.name
