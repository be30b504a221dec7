"""The files [uplink.tls] names: missing, unreadable or not PEM. `gateway check` reports each
with its config path and the file; the daemon keeps sensors and the outbox running with the
uplink down, and heals once the file is fixed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.demo.broker import BrokerTls, LocalBroker
from tests.certs import issue, make_ca
from tests.test_daemon import Proc, config_text

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[gateway]
id = "gw1"
[uplink]
host = "127.0.0.1"
[uplink.tls]
{tls}
[store]
path = "{tmp}/outbox.sqlite"
"""


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key, ca_file = make_ca(d, "field-ca")
    server = issue(d, "broker", ca, ca_key, server=True)
    client = issue(d, "gw1", ca, ca_key, server=False)
    other = issue(d, "other", ca, ca_key, server=False)
    return {"ca": ca_file, "server": server, "client": client, "other": other}


def check(tmp_path: Path, tls: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(tls=tls, tmp=tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(cfg), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_reports_a_missing_ca_with_its_path_and_exits_78(tmp_path):
    res = check(tmp_path, f'ca = "{tmp_path}/nope/ca.pem"')
    assert res.returncode == 78
    assert f"uplink.tls.ca: cannot read {tmp_path}/nope/ca.pem: No such file or directory" in (
        res.stderr
    )
    assert "Traceback" not in res.stderr
    # The unit's ExecStartPre skips these files: a missing CA must not stop the sensors.
    assert check(tmp_path, f'ca = "{tmp_path}/nope/ca.pem"', "--skip-files").returncode == 0


@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_check_reports_unreadable_and_non_pem_files(tmp_path, pki):
    (tmp_path / "adir").mkdir()  # root reads any file: a directory is what it cannot read
    res = check(tmp_path, f'ca = "{tmp_path}/adir"')
    assert res.returncode == 78 and f"uplink.tls.ca: cannot read {tmp_path}/adir: " in res.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00\xffnot a certificate\n" * 10)
    res = check(tmp_path, f'ca = "{garbage}"')
    assert res.returncode == 78 and f"uplink.tls.ca: {garbage} is not a PEM certificate" in (
        res.stderr
    )
    cert, key = pki["client"]
    res = check(tmp_path, f'ca = "{pki["ca"]}"\ncert = "{cert}"\nkey = "{garbage}"')
    assert res.returncode == 78 and f"uplink.tls.key: {garbage} is not a PEM private key" in (
        res.stderr
    )
    res = check(tmp_path, f'ca = "{pki["ca"]}"\ncert = "{cert}"\nkey = "{pki["other"][1]}"')
    assert res.returncode == 78 and "uplink.tls.key: " in res.stderr
    assert f"does not load with {cert}" in res.stderr
    res = check(tmp_path, f'ca = "{pki["ca"]}"\ncert = "{cert}"\nkey = "{key}"')
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def _outbox_rows(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


@pytest.mark.parametrize("fault", ["missing", "not PEM"])
@pytest.mark.slow  # over half a second: a process, a peer or a wait
def test_daemon_with_a_bad_ca_keeps_sensors_running_and_heals_when_it_is_fixed(
    tmp_path, pki, fault
):
    ca = tmp_path / "etc" / "ca.pem"
    if fault == "not PEM":
        ca.parent.mkdir()
        ca.write_bytes(b"\x00\x01 not a certificate\n" * 50)
    tls = BrokerTls(pki["ca"], *pki["server"])
    with LocalBroker(tmp_path / "b", tls=tls) as broker:
        cfg = tmp_path / "gw.toml"
        cfg.write_text(
            config_text(tmp_path, broker.port, window=3600) + f'\n[uplink.tls]\nca = "{ca}"\n'
        )
        proc = Proc(cfg, tmp_path / "log")
        try:
            down = proc.wait_event("uplink down")
            assert down["reason"].startswith(
                f"uplink.tls.ca: cannot read {ca}: No such file or directory"
                if fault == "missing"
                else f"uplink.tls.ca: {ca} is not a PEM certificate"
            )
            proc.wait_event("gateway running")
            first = _outbox_rows(tmp_path / "outbox.sqlite")
            deadline = time.monotonic() + 20
            while _outbox_rows(tmp_path / "outbox.sqlite") <= first + 100:
                assert time.monotonic() < deadline, "readings stopped reaching the outbox"
                time.sleep(0.1)
            assert proc.p.poll() is None  # still running
            downs = [e for e in proc.events() if e["event"] == "uplink down"]
            assert len(downs) == 1  # one line, not one per retry
            ca.parent.mkdir(exist_ok=True)
            shutil.copy(pki["ca"], ca)
            proc.wait_event("uplink recovered", timeout=30)
            assert proc.stop() == 0
        finally:
            if proc.p.poll() is None:
                proc.p.kill()
    assert "Traceback" not in (tmp_path / "log").read_text()
