"""`gateway check` looks at what the config points at beyond [uplink]: the store directory and
the serial ports. Both are warnings (`warning: <path>: <message>`, exit 0): the daemon creates
the store directory, and a bus waits for an unplugged adapter. `--skip-files` skips them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.config import loader as config_mod
from gateway.config import reach
from gateway.hotplug import DeviceInfo, Hotplug
from tests.disk import needs_root, remount, tmpfs

ROOT = Path(__file__).resolve().parent.parent

HEAD = """
[gateway]
id = "gw1"
[store]
path = "{store}"
"""

SERIAL = """
[[buses]]
name = "{name}"
transport = "serial"
{where}
"""

RTU = """
[[buses]]
name = "{name}"
transport = "modbus-rtu"
port = "{port}"
"""


def check(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(cfg), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def warnings(res: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning: ")]


@contextlib.contextmanager
def pty_port() -> Iterator[str]:
    """A real serial device node (a pty's slave side), open while the block runs."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def test_missing_ports_and_an_unanswered_match_are_warnings_not_errors(tmp_path):
    text = (
        HEAD.format(store=tmp_path / "data" / "outbox.sqlite")
        + SERIAL.format(name="buoy", where=f'port = "{tmp_path}/ttyGONE"')
        + SERIAL.format(name="rx", where='match = { vid = "0403", pid = "6001", serial = "ZZ9" }')
        + RTU.format(name="rtu", port=tmp_path / "gw.toml")
    )
    res = check(tmp_path, text)
    assert res.returncode == 0, res.stderr
    assert warnings(res) == [
        f"warning: buses[0].port: {tmp_path}/ttyGONE does not exist "
        "(unplugged, or no udev rule names it?)",
        "warning: buses[1].match: no serial port matches vid=0403 pid=6001 serial=ZZ9 (unplugged?)",
        f"warning: buses[2].port: {tmp_path}/gw.toml is not a device node "
        "(a character device such as /dev/ttyUSB0)",
    ]
    assert "OK" in res.stdout and "Traceback" not in res.stderr
    # The unit's ExecStartPre: nothing looked at, nothing said.
    skipped = check(tmp_path, text, "--skip-files")
    assert skipped.returncode == 0 and warnings(skipped) == []
    assert not (tmp_path / "data").exists()  # check creates nothing


def test_present_ports_give_no_warning(tmp_path):
    with pty_port() as tty, pty_port() as rtu:
        text = (
            HEAD.format(store=tmp_path / "new" / "deeper" / "outbox.sqlite")
            + SERIAL.format(name="buoy", where=f'port = "{tty}"')
            + RTU.format(name="rtu", port=rtu)
        )
        res = check(tmp_path, text)
    assert res.returncode == 0, res.stderr
    assert warnings(res) == []
    assert not (tmp_path / "new").exists()


@needs_root
def test_a_store_on_a_read_only_disk_is_a_warning(tmp_path):
    with tmpfs(tmp_path / "ro") as mnt:
        (mnt / "gateway").mkdir()
        remount(mnt, "ro")
        for store, directory in (
            (mnt / "gateway" / "outbox.sqlite", f"directory {mnt}/gateway"),
            (mnt / "missing" / "outbox.sqlite", f"directory (creating {mnt}/missing) {mnt}"),
        ):
            res = check(tmp_path, HEAD.format(store=store))
            assert res.returncode == 0, res.stderr
            assert warnings(res) == [
                f"warning: store.path: cannot write in the {directory}: read-only file system"
            ]


def test_a_store_under_a_file_is_a_warning(tmp_path):
    (tmp_path / "plain").write_text("not a directory")
    res = check(tmp_path, HEAD.format(store=tmp_path / "plain" / "db" / "outbox.sqlite"))
    assert res.returncode == 0, res.stderr
    assert warnings(res) == [
        f"warning: store.path: {tmp_path}/plain is not a directory, so "
        f"{tmp_path}/plain/db/outbox.sqlite cannot be created"
    ]


def test_a_udev_match_resolves_through_the_device_list(tmp_path):
    """The serial driver's reach hook reads the devices the hotplug source lists (sysfs by
    default; here a table, as the daemon's udev source would hold it)."""
    text = HEAD.format(store=tmp_path / "outbox.sqlite") + SERIAL.format(
        name="rx", where='match = { vid = "0403", pid = "6001" }'
    )
    cfg = config_mod.parse(text)
    ftdi = DeviceInfo(devnode="/dev/ttyUSB0", vid="0403", pid="6001", serial="A1")
    other = DeviceInfo(devnode="/dev/ttyACM0", vid="2341", pid="0043")
    assert reach.warnings(cfg, Hotplug(table={"a": ftdi, "b": other})) == []
    twin = DeviceInfo(devnode="/dev/ttyUSB1", vid="0403", pid="6001", serial="B2")
    found = reach.warnings(cfg, Hotplug(table={"a": ftdi, "b": twin}))
    assert [str(p) for p in found] == [
        "buses[0].match: 2 serial ports match vid=0403 pid=6001 (/dev/ttyUSB0, /dev/ttyUSB1); "
        "add serial or usb_path to the match to tell them apart"
    ]
    assert [str(p) for p in reach.warnings(cfg, Hotplug(table={"b": other}))] == [
        "buses[0].match: no serial port matches vid=0403 pid=6001 (unplugged?)"
    ]
