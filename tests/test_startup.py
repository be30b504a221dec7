"""What a run imports: only what its config uses (start-up time is the imports' time).

The daemon runs as a process (`gateway run`, as systemd starts it) with a NOTIFY_SOCKET of the
test's own; once it said READY=1 and its uplink is connected it is stopped, and the modules it
had loaded by its exit (an `atexit` hook of the `-c` script that starts it: nothing in the
daemon is replaced) are compared with what its config asks for. How fast it starts is the
bench's business (bench/startup.py), not a test's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.demo.broker import free_port
from gateway.demo.template import DemoValues, render
from gateway.notify import Notifier
from tests.configs import load_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# The `-c` script: `gateway run -c CFG`, writing every loaded module's name to OUT at exit.
RUN = """
import atexit, sys
out, cfg = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from gateway.cli.main import main
sys.exit(main(["run", "-c", cfg]))
"""

# Libraries a config without them must not load: transports of drivers it does not use, the
# mailer's SMTP client, the HTTP uplink's client, the chart child's plotting library.
TRANSPORTS = ("pymodbus", "bleak", "serial", "dbus_fast", "pyudev")
UNUSED = (*TRANSPORTS, "aiosmtplib", "httpx", "matplotlib")


def loaded_modules(tmp: Path, cfg_text: str) -> set[str]:
    """Run the daemon on `cfg_text` until it is ready and connected; the modules it loaded."""
    cfg = tmp / "gateway.toml"
    cfg.write_text(cfg_text)
    out = tmp / "modules.txt"
    notify_path = tmp / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(60)
        with open(tmp / "daemon.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", RUN, str(out), str(cfg)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            )
            try:
                while b"READY=1" not in notify.recv(4096).split(b"\n"):
                    pass
                until_connected(tmp / "run" / "status.json")
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(30)
    assert code == 0, (tmp / "daemon.log").read_text()[-2000:]
    return set(out.read_text().split())


def until_connected(status: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(status.read_text())["uplink"]["connected"]:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the uplink did not connect within {timeout} s")


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_a_synthetic_config_without_alerts_loads_no_transport_mail_or_alert_side(
    tmp_path, broker
) -> None:
    text = load_config("startup", port=broker.port, work=tmp_path, replicas=1, interval=60.0)
    modules = loaded_modules(tmp_path, text)
    assert "gateway.daemon" in modules and "drivers.synthetic.bus" in modules  # it ran
    assert "paho.mqtt.client" in modules  # the uplink it uses
    for package in UNUSED:
        assert not loaded(modules, package), f"{package} loaded by a config that does not use it"
    # No [alerts]: the alert side's runtime is not loaded (the config reader of [alerts] is,
    # to parse the file), nor the bus code of drivers that no bus uses.
    assert not loaded(modules, "gateway.alerts.wiring")
    assert not loaded(modules, "gateway.alerts.mailer")
    assert not loaded(modules, "gateway.alerts.digest")
    for driver in ("modbus", "serial", "ble"):
        assert f"drivers.{driver}.bus" not in modules
    # `run` builds its own command line only: the other subcommands' modules and the driver
    # packages `sim` and `scan` would list stay out, and so does difflib (hints for mistakes).
    for module in ("gateway.cli.tail", "gateway.cli.outbox", "gateway.outbox.export", "difflib"):
        assert module not in modules, f"{module} loaded by `run`"
    for driver in ("modbus", "serial", "ble"):
        assert not loaded(modules, f"drivers.{driver}"), f"drivers.{driver} loaded by `run`"
    # What an idle daemon of this config would only carry (its memory: bench/startup.py):
    # the msgpack format's encoder (the config sends fiware-json), the salvage of a damaged
    # outbox, ctypes for the kernel's clock check (the clock is trusted), and what paho imports
    # but uses only with PySocks or WebSockets (urllib.request's email, http.client and
    # tempfile; hashlib's OpenSSL digests: gateway.uplink.standin).
    for module in (
        "msgpack",
        "gateway.uplink.compact",
        "gateway.outbox.salvage",
        "ctypes",
        "email",
        "http.client",
        "tempfile",
        "_hashlib",
    ):
        assert module not in modules, f"{module} loaded by an idle daemon that does not use it"


def test_the_demo_config_loads_the_alert_side_it_configures_and_still_no_transport(
    tmp_path, broker
) -> None:
    """The other side of the test above: `[alerts]` with SMTP and a digest loads the mailer
    (and aiosmtplib), the digest and the wiring, so the dump sees what a config asks for."""
    text = render(DemoValues("127.0.0.1", broker.port, tmp_path, smtp_port=free_port()))
    modules = loaded_modules(tmp_path, text)
    for module in ("gateway.alerts.wiring", "gateway.alerts.mailer", "gateway.alerts.digest"):
        assert module in modules
    assert loaded(modules, "aiosmtplib")
    for package in (*TRANSPORTS, "httpx", "matplotlib"):
        assert not loaded(modules, package), f"{package} loaded by the demo's synthetic field"


def test_a_notify_socket_nobody_reads_never_blocks_the_daemon(tmp_path) -> None:
    """systemd's socket backed up (or a tool that stopped reading): the datagram queue fills
    and a send reports failure at once; a blocking send would stop the event loop for good
    (the test would hang until its timeout)."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        notifier = Notifier(str(path))
        try:
            sent = [notifier.send(f"STATUS=line {i}") for i in range(10_000)]
        finally:
            notifier.close()
        assert sent[0] and not sent[-1], "the queue filled up: later lines were dropped"
        assert listener.recv(4096) == b"STATUS=line 0"  # what fitted arrived, in order
